// Retrieval attention end to end (index search, page-in through the store, attention) against the
// CPU reference: every block equals the full grouped softmax, top-k equals the reference's own
// selection, per-chunk mode, needles, tiers, the GPU path against the CPU path.
//
// Bounds (relative, ||got - ref|| / ||ref||): the CPU path differs from the reference only by the
// index's float landmark scores: 1e-5. The GPU path adds fp32 accumulation: 1e-4.
#include "attention/retrieval_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "attention/cpu_attention.h"
#include "index/faiss_cpu_index.h"
#include "kvstore/cuda_util.h"
#include "kvstore/dtype_convert.h"
#include "test_util.h"

namespace lmkv {
namespace {

constexpr double kCpuBound = 1e-5;
constexpr double kGpuBound = 1e-4;

double relative_error(const std::vector<float>& got, const std::vector<double>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return std::sqrt(diff / norm);
}

// A sequence's layer: blocks and landmarks of every KV head in a store and an exact index, the
// same data as floats (rounded to fp16) for the reference, and a window.
class RetrievalAttentionTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kDim = 64, kB = 16, kKv = 2, kHeads = 4;
  static constexpr uint32_t kLayer = 3;

  void build(size_t blocks, uint32_t window, bool with_gpu_tier = false) {
    blocks_ = blocks;
    window_ = window;
    if (store_ == nullptr) {
      StoreOptions options = test::test_store_options(dir_.sub("db"), 64, {kB, kDim});
      if (with_gpu_tier) options.gpu_capacity_bytes = 256 * options.shape.payload_bytes();
      auto store = TieredStore::open(options);
      ASSERT_TRUE(store.ok()) << store.status().to_string();
      store_ = std::move(store).value();
      index_ = std::move(make_faiss_cpu_index({FaissCpuKind::kFlat, kDim})).value();
    }
    std::normal_distribution<float> normal;
    auto fill = [&](size_t n) {
      std::vector<float> v(n);
      for (auto& x : v) x = half_bits_to_float(float_to_half_bits(normal(rng_)));
      return v;
    };
    const size_t tensor = size_t{kB} * kDim;
    keys_.clear(), values_.clear(), landmarks_.clear(), wkeys_.clear(), wvalues_.clear();
    for (uint32_t g = 0; g < kKv; ++g) {
      keys_.push_back(fill(blocks * tensor));
      values_.push_back(fill(blocks * tensor));
      landmarks_.push_back(fill(blocks * kDim));
      wkeys_.push_back(fill(size_t{window} * kDim));
      wvalues_.push_back(fill(size_t{window} * kDim));
    }
    write_blocks();
  }

  void write_blocks() {
    const size_t tensor = size_t{kB} * kDim;
    std::vector<uint16_t> k(tensor), v(tensor);
    for (uint32_t g = 0; g < kKv; ++g) {
      std::vector<uint64_t> numbers;
      for (size_t b = 0; b < blocks_; ++b) {
        ASSERT_TRUE(from_floats(keys_[g].data() + b * tensor, tensor, DType::kFloat16, k.data()).ok());
        ASSERT_TRUE(
            from_floats(values_[g].data() + b * tensor, tensor, DType::kFloat16, v.data()).ok());
        ASSERT_TRUE(store_->put({sequence_, kLayer, g, b}, k.data(), v.data()).ok());
        numbers.push_back(b);
      }
      if (blocks_ > 0) {
        ASSERT_TRUE(index_->add({sequence_, kLayer, g}, numbers.data(), landmarks_[g].data(), blocks_)
                        .ok());
      }
    }
  }

  // Queries for `tokens` tokens, and the window in fp16 [kv][window][d].
  std::vector<float> queries(uint32_t tokens) {
    std::normal_distribution<float> normal;
    std::vector<float> q(size_t{tokens} * kHeads * kDim);
    for (auto& x : q) x = 2 * normal(rng_);  // sharper landmark softmax
    return q;
  }

  RetrievalInputs inputs(const std::vector<float>& q, uint32_t tokens) {
    window_k16_.assign(size_t{kKv} * window_ * kDim, 0);
    window_v16_.assign(window_k16_.size(), 0);
    for (uint32_t g = 0; g < kKv; ++g) {
      EXPECT_TRUE(from_floats(wkeys_[g].data(), size_t{window_} * kDim, DType::kFloat16,
                              window_k16_.data() + size_t{g} * window_ * kDim)
                      .ok());
      EXPECT_TRUE(from_floats(wvalues_[g].data(), size_t{window_} * kDim, DType::kFloat16,
                              window_v16_.data() + size_t{g} * window_ * kDim)
                      .ok());
    }
    RetrievalInputs in;
    in.sequence = sequence_;
    in.layer = kLayer;
    in.heads = kHeads;
    in.kv_heads = kKv;
    in.tokens = tokens;
    in.queries = q.data();
    in.window_tokens = window_;
    in.window_keys = window_k16_.data();
    in.window_values = window_v16_.data();
    return in;
  }

  // The CPU reference with its own selection.
  std::vector<double> reference(const std::vector<float>& q, uint32_t tokens, uint32_t k,
                                Retrieval mode) {
    LayerAttentionInputs in;
    in.heads = kHeads;
    in.kv_heads = kKv;
    in.dim = kDim;
    in.tokens = tokens;
    in.queries = q.data();
    for (uint32_t g = 0; g < kKv; ++g) {
      in.blocks.push_back(
          {kB, kDim, blocks_, keys_[g].data(), values_[g].data(), landmarks_[g].data()});
      in.windows.push_back({window_, wkeys_[g].data(), wvalues_[g].data()});
    }
    std::vector<double> out;
    EXPECT_TRUE(cpu_layer_attention(in, {k, mode, 0}, &out).ok());
    return out;
  }

  std::vector<float> run(const RetrievalInputs& in, RetrievalOptions options,
                         RetrievalTrace* trace = nullptr) {
    RetrievalAttention attention(*store_, *index_);
    std::vector<float> out(size_t{in.tokens} * kHeads * kDim, NAN);
    const Status s = attention.run(in, options, out.data(), trace);
    EXPECT_TRUE(s.ok()) << s.to_string();
    return out;
  }

  test::TempDir dir_;
  std::mt19937_64 rng_{test::fresh_seed()};
  std::unique_ptr<TieredStore> store_;
  std::unique_ptr<LandmarkIndex> index_;
  uint64_t sequence_ = 7;
  size_t blocks_ = 0;
  uint32_t window_ = 0;
  std::vector<std::vector<float>> keys_, values_, landmarks_, wkeys_, wvalues_;
  std::vector<uint16_t> window_k16_, window_v16_;
};

TEST_F(RetrievalAttentionTest, EveryBlockEqualsTheFullGroupedSoftmax) {
  build(20, 9);
  const std::vector<float> q = queries(5);
  RetrievalOptions options;
  options.top_k = 20;
  EXPECT_LE(relative_error(run(inputs(q, 5), options), reference(q, 5, 20, Retrieval::kPerToken)),
            kCpuBound);
}

TEST_F(RetrievalAttentionTest, TopKEqualsTheReferenceSelection) {
  build(40, 6);
  const std::vector<float> q = queries(3);
  for (uint32_t k : {1u, 4u, 13u}) {
    RetrievalOptions options;
    options.top_k = k;
    EXPECT_LE(relative_error(run(inputs(q, 3), options), reference(q, 3, k, Retrieval::kPerToken)),
              kCpuBound)
        << "k " << k;
  }
}

TEST_F(RetrievalAttentionTest, PerChunkModeEqualsTheReferenceOffloadMode) {
  build(30, 12);
  const std::vector<float> q = queries(8);
  RetrievalOptions options;
  options.top_k = 5;
  options.retrieval = Retrieval::kPerChunk;
  RetrievalTrace trace;
  const std::vector<float> got = run(inputs(q, 8), options, &trace);
  EXPECT_LE(relative_error(got, reference(q, 8, 5, Retrieval::kPerChunk)), kCpuBound);
  // One selection per head for the whole chunk: every token of a head has the same blocks.
  for (uint32_t h = 0; h < kHeads; ++h) {
    for (uint32_t t = 1; t < 8; ++t) {
      for (uint32_t i = 0; i < 5; ++i) {
        EXPECT_EQ(trace.block_nos[(t * kHeads + h) * 5 + i], trace.block_nos[h * 5 + i]);
      }
    }
  }
}

TEST_F(RetrievalAttentionTest, BeforeAnyBlockIsSealedTheWindowAlone) {
  build(0, 4);
  const std::vector<float> q = queries(2);
  RetrievalOptions options;
  options.top_k = 8;
  EXPECT_LE(relative_error(run(inputs(q, 2), options), reference(q, 2, 8, Retrieval::kPerToken)),
            kCpuBound);
}

// A needle block whose landmark and keys align with a later query is retrieved at every depth
// and dominates that query's output.
TEST_F(RetrievalAttentionTest, PlantedNeedleIsRetrievedAtEveryDepthAndDominates) {
  const size_t blocks = 200;
  for (size_t depth : {size_t{0}, blocks / 2, blocks - 1}) {
    sequence_ = 100 + depth;  // a fresh sequence per depth
    build(0, 1);
    blocks_ = blocks;
    keys_.clear(), values_.clear(), landmarks_.clear();
    std::vector<float> q = queries(1);
    std::normal_distribution<float> normal;
    const size_t tensor = size_t{kB} * kDim;
    for (uint32_t g = 0; g < kKv; ++g) {
      keys_.push_back(std::vector<float>(blocks * tensor));
      values_.push_back(std::vector<float>(blocks * tensor));
      landmarks_.push_back(std::vector<float>(blocks * kDim));
      for (auto* v : {&keys_[g], &values_[g], &landmarks_[g]}) {
        for (auto& x : *v) x = half_bits_to_float(float_to_half_bits(0.3f * normal(rng_)));
      }
      // Needle: keys and landmark along query head 2g's direction, values all 5.
      const float* dir = q.data() + size_t{2 * g} * kDim;
      for (uint32_t i = 0; i < kDim; ++i) {
        landmarks_[g][depth * kDim + i] = half_bits_to_float(float_to_half_bits(dir[i]));
        for (uint32_t j = 0; j < kB; ++j) {
          keys_[g][depth * tensor + j * kDim + i] = half_bits_to_float(float_to_half_bits(dir[i]));
          values_[g][depth * tensor + j * kDim + i] = 5.f;
        }
      }
    }
    write_blocks();
    RetrievalOptions options;
    options.top_k = 4;
    RetrievalTrace trace;
    const std::vector<float> out = run(inputs(q, 1), options, &trace);
    for (uint32_t g = 0; g < kKv; ++g) {
      const uint32_t h = 2 * g;
      EXPECT_EQ(trace.block_nos[h * 4], int64_t(depth)) << "depth " << depth;
      double mean = 0;
      for (uint32_t i = 0; i < kDim; ++i) mean += out[h * kDim + i] / kDim;
      EXPECT_GT(mean, 4.5) << "depth " << depth << ": the needle's values should dominate";
    }
  }
}

TEST_F(RetrievalAttentionTest, OutputDoesNotDependOnTheTierBlocksComeFrom) {
  build(100, 5);  // more blocks than the 64-block host tier: some start on disk
  const std::vector<float> q = queries(4);
  RetrievalOptions options;
  options.top_k = 12;  // up to 48 blocks a token: the 4 tokens need several waves of 64 slots
  RetrievalTrace from_mixed, from_disk;
  const std::vector<float> mixed = run(inputs(q, 4), options, &from_mixed);
  ASSERT_TRUE(store_->evict_all(Tier::kHost).ok());
  const std::vector<float> disk = run(inputs(q, 4), options, &from_disk);
  EXPECT_EQ(mixed, disk);
  // Later waves may find blocks an earlier wave promoted; the first finds all on disk.
  EXPECT_GT(from_disk.blocks_from_tier[size_t(Tier::kDisk)], 0u);
  EXPECT_EQ(from_disk.blocks_from_tier[size_t(Tier::kGpu)], 0u);
  EXPECT_LE(relative_error(disk, reference(q, 4, 12, Retrieval::kPerToken)), kCpuBound);
  // A token whose heads retrieve more distinct blocks than the tier holds cannot run.
  options.top_k = 40;
  RetrievalAttention attention(*store_, *index_);
  std::vector<float> out(disk.size());
  const Status s = attention.run(inputs(q, 4), options, out.data());
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
  EXPECT_NE(s.message().find("holds 64"), std::string::npos) << s.message();
}

TEST_F(RetrievalAttentionTest, BadArgumentsAreClearErrors) {
  build(10, 4);
  const std::vector<float> q = queries(2);
  RetrievalAttention attention(*store_, *index_);
  std::vector<float> out(2 * kHeads * kDim);
  RetrievalOptions zero_k;
  zero_k.top_k = 0;
  EXPECT_EQ(attention.run(inputs(q, 2), zero_k, out.data()).code(), StatusCode::kInvalidArgument);
  RetrievalInputs in = inputs(q, 2);
  in.kv_heads = 3;
  EXPECT_EQ(attention.run(in, {}, out.data()).code(), StatusCode::kInvalidArgument);
  in = inputs(q, 2);
  in.window_tokens = 1;
  EXPECT_EQ(attention.run(in, {}, out.data()).code(), StatusCode::kInvalidArgument);
  in = inputs(q, 2);
  in.sequence = 99;  // unknown: no landmarks, window alone
  EXPECT_TRUE(attention.run(in, {}, out.data()).ok());
  auto wrong_dim = make_faiss_cpu_index({FaissCpuKind::kFlat, 32});
  RetrievalAttention mismatched(*store_, *wrong_dim.value());
  EXPECT_EQ(mismatched.run(inputs(q, 2), {}, out.data()).code(), StatusCode::kInvalidArgument);
  RetrievalOptions gpu;
  gpu.device = AttentionDevice::kGpu;  // the store has no GPU tier
  EXPECT_EQ(attention.run(inputs(q, 2), gpu, out.data()).code(), StatusCode::kFailedPrecondition);
}

// The GPU path equals the CPU path, for every RoPE mode, whichever tier blocks come from.
TEST_F(RetrievalAttentionTest, GpuPathEqualsCpuPathFromEveryTier) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  build(100, 20, /*with_gpu_tier=*/true);
  const std::vector<float> q = queries(6);
  for (RopeMode mode : {RopeMode::kNone, RopeMode::kStored, RopeMode::kRemapped}) {
    RetrievalOptions options;
    options.top_k = 16;
    options.rope.mode = mode;
    RetrievalInputs in = inputs(q, 6);
    in.window_start = 100 * kB;
    const std::vector<float> cpu = run(in, options);
    options.device = AttentionDevice::kGpu;
    const std::vector<float> from_host_or_disk = run(in, options);
    const std::vector<float> from_gpu = run(in, options);  // now resident in the GPU tier
    ASSERT_TRUE(store_->evict_all(Tier::kGpu).ok());
    ASSERT_TRUE(store_->evict_all(Tier::kHost).ok());
    RetrievalTrace trace;
    const std::vector<float> from_disk = run(in, options, &trace);
    EXPECT_EQ(trace.blocks_from_tier[size_t(Tier::kDisk)], trace.unique_blocks);
    const std::vector<double> reference(cpu.begin(), cpu.end());
    EXPECT_LE(relative_error(from_host_or_disk, reference), kGpuBound) << int(mode);
    EXPECT_EQ(from_gpu, from_host_or_disk);
    EXPECT_EQ(from_disk, from_host_or_disk);
  }
}

}  // namespace
}  // namespace lmkv
