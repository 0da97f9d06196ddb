// The fixture of the retrieval attention tests: a sequence's layer in a store and an exact index,
// the same data as floats for the reference.
//
// Bounds (relative, ||got - ref|| / ||ref||): the CPU path differs from the reference only by the
// index's float landmark scores: 1e-5. The GPU path adds fp32 accumulation: 1e-4.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "attention/cpu_attention.h"
#include "attention/retrieval_attention.h"
#include "index/faiss_cpu_index.h"
#include "kvstore/cuda_util.h"
#include "kvstore/dtype_convert.h"
#include "test_util.h"

namespace lmkv {

constexpr double kCpuBound = 1e-5;
constexpr double kGpuBound = 1e-4;

inline double relative_error(const std::vector<float>& got, const std::vector<double>& want) {
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
        ASSERT_TRUE(
            from_floats(keys_[g].data() + b * tensor, tensor, DType::kFloat16, k.data()).ok());
        ASSERT_TRUE(
            from_floats(values_[g].data() + b * tensor, tensor, DType::kFloat16, v.data()).ok());
        ASSERT_TRUE(store_->put({sequence_, kLayer, g, b}, k.data(), v.data()).ok());
        numbers.push_back(b);
      }
      if (blocks_ > 0) {
        ASSERT_TRUE(
            index_->add({sequence_, kLayer, g}, numbers.data(), landmarks_[g].data(), blocks_)
                .ok());
      }
    }
  }

  // Queries for `tokens` tokens, and the window in fp16 [kv][window][d].
  std::vector<float> queries(uint32_t tokens) {
    std::normal_distribution<float> normal;
    std::vector<float> q(size_t{tokens} * kHeads * kDim);
    // Sharper landmark softmax; fp16-exact, since the GPU path hands the kernels fp16 queries.
    for (auto& x : q) x = half_bits_to_float(float_to_half_bits(2 * normal(rng_)));
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

}  // namespace lmkv
