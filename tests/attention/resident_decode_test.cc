// Resident decode (search, page table and attention on the device) against RetrievalAttention's
// GPU path, which runs the same kernels over the same blocks in the same order: equal bits. And
// against the CPU path within the GPU bound.
#include "attention/resident_decode.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "attention/retrieval_fixture.h"

#ifdef LMKV_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace lmkv {
namespace {

#ifdef LMKV_WITH_CUDA

class ResidentDecodeTest : public RetrievalAttentionTest {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }

  // A fused GPU index holding `blocks` of each KV head's landmarks (block numbers as given).
  std::unique_ptr<GpuFusedIndex> fused_index(const std::vector<std::vector<uint64_t>>& blocks) {
    auto made = make_gpu_fused_index({kDim, 0});
    EXPECT_TRUE(made.ok());
    auto index = std::move(made).value();
    for (uint32_t g = 0; g < kKv; ++g) {
      std::vector<float> keys;
      for (uint64_t b : blocks[g]) {
        const size_t row =
            std::min<uint64_t>(b, blocks_ - 1);  // a block past the store reuses a key
        keys.insert(keys.end(), landmarks_[g].begin() + row * kDim,
                    landmarks_[g].begin() + (row + 1) * kDim);
      }
      EXPECT_TRUE(
          index->add({sequence_, kLayer, g}, blocks[g].data(), keys.data(), blocks[g].size()).ok());
    }
    return index;
  }
  std::vector<std::vector<uint64_t>> first_blocks(size_t n) {
    std::vector<uint64_t> numbers(n);
    for (size_t b = 0; b < n; ++b) numbers[b] = b;
    return std::vector<std::vector<uint64_t>>(kKv, numbers);
  }

  // Copies the step's inputs to the device, runs it, and returns the output (poisoned first).
  Result<std::vector<float>> step(ResidentDecode& decode, const RetrievalInputs& in) {
    const size_t window_bytes = window_k16_.size() * sizeof(uint16_t);
    const size_t out_floats = size_t{kHeads} * kDim;
    DeviceBuffer queries, wkeys, wvalues, out;
    LMKV_RETURN_IF_ERROR(queries.reserve(out_floats * sizeof(float)));
    LMKV_RETURN_IF_ERROR(wkeys.reserve(window_bytes));
    LMKV_RETURN_IF_ERROR(wvalues.reserve(window_bytes));
    LMKV_RETURN_IF_ERROR(out.reserve(out_floats * sizeof(float)));
    LMKV_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(queries.get(), in.queries, out_floats * sizeof(float), cudaMemcpyHostToDevice));
    LMKV_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(wkeys.get(), window_k16_.data(), window_bytes, cudaMemcpyHostToDevice));
    LMKV_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(wvalues.get(), window_v16_.data(), window_bytes, cudaMemcpyHostToDevice));
    LMKV_CUDA_RETURN_IF_ERROR(cudaMemset(out.get(), 0x7F, out_floats * sizeof(float)));  // poison
    ResidentDecodeInputs r;
    r.queries = static_cast<const float*>(queries.get());
    r.window_tokens = in.window_tokens;
    r.window_keys = wkeys.get();
    r.window_values = wvalues.get();
    r.window_start = in.window_start;
    r.out = static_cast<float*>(out.get());
    LMKV_RETURN_IF_ERROR(decode.step(r, nullptr));
    std::vector<float> got(out_floats);
    LMKV_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(got.data(), out.get(), out_floats * sizeof(float), cudaMemcpyDeviceToHost));
    return got;
  }

  ResidentDecodeOptions options(uint32_t blocks_per_head, uint32_t k, RopeMode mode) {
    ResidentDecodeOptions o;
    o.sequence = sequence_;
    o.layer = kLayer;
    o.heads = kHeads;
    o.kv_heads = kKv;
    o.blocks_per_head = blocks_per_head;
    o.top_k = k;
    o.rope.mode = mode;
    return o;
  }
};

// k up to 16: RetrievalAttention's page-ins of this fixture's store (64 host slots) hold a step.
TEST_F(ResidentDecodeTest, EqualsRetrievalAttentionOnTheGpuBitForBit) {
  build(100, 20, /*with_gpu_tier=*/true);
  auto index = fused_index(first_blocks(100));
  for (RopeMode mode : {RopeMode::kNone, RopeMode::kStored, RopeMode::kRemapped}) {
    for (uint32_t k : {1u, 5u, 16u}) {
      const std::vector<float> q = queries(1);
      RetrievalInputs in = inputs(q, 1);
      in.window_start = 100 * kB;
      RetrievalOptions gpu;
      gpu.top_k = k;
      gpu.rope.mode = mode;
      gpu.device = AttentionDevice::kGpu;
      RetrievalAttention attention(*store_, *index);
      std::vector<float> want(size_t{kHeads} * kDim);
      const Status on_gpu = attention.run(in, gpu, want.data());
      ASSERT_TRUE(on_gpu.ok()) << on_gpu.to_string();
      RetrievalOptions cpu = gpu;
      cpu.device = AttentionDevice::kCpu;
      std::vector<float> reference(want.size());
      ASSERT_TRUE(attention.run(in, cpu, reference.data()).ok());

      auto decode = ResidentDecode::open(*store_, *index, options(100, k, mode));
      ASSERT_TRUE(decode.ok()) << decode.status().to_string();
      auto got = step(**decode, in);
      ASSERT_TRUE(got.ok()) << got.status().to_string();
      EXPECT_EQ(*got, want) << "rope " << int(mode) << " k " << k;
      EXPECT_LE(relative_error(*got, std::vector<double>(reference.begin(), reference.end())),
                kGpuBound);
      EXPECT_EQ((*decode)->missing_blocks().value(), 0u);
    }
  }
}

// k = 32 (a full warp of entries to sort) against the full-precision reference's own selection.
TEST_F(ResidentDecodeTest, TopThirtyTwoEqualsTheReference) {
  build(100, 20, /*with_gpu_tier=*/true);
  auto index = fused_index(first_blocks(100));
  auto decode = ResidentDecode::open(*store_, *index, options(100, 32, RopeMode::kNone));
  ASSERT_TRUE(decode.ok()) << decode.status().to_string();
  for (int trial = 0; trial < 3; ++trial) {
    const std::vector<float> q = queries(1);
    auto got = step(**decode, inputs(q, 1));
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_LE(relative_error(*got, reference(q, 1, 32, Retrieval::kPerToken)), kGpuBound);
  }
}

// Steps refuse to run while the index holds blocks that are not pinned; grow() pins them.
TEST_F(ResidentDecodeTest, GrowPinsBlocksSealedSinceOpen) {
  build(100, 20, /*with_gpu_tier=*/true);
  auto index = fused_index(first_blocks(100));
  auto decode = ResidentDecode::open(*store_, *index, options(60, 16, RopeMode::kNone));
  ASSERT_TRUE(decode.ok()) << decode.status().to_string();
  const std::vector<float> q = queries(1);
  const RetrievalInputs in = inputs(q, 1);
  const Status early = step(**decode, in).status();
  EXPECT_EQ(early.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(early.message().find("holds 100 blocks, 60 are pinned"), std::string::npos)
      << early.message();
  EXPECT_EQ((*decode)->grow(50).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE((*decode)->grow(100).ok());
  auto got = step(**decode, in);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  RetrievalOptions gpu;
  gpu.top_k = 16;
  gpu.device = AttentionDevice::kGpu;
  RetrievalAttention attention(*store_, *index);
  std::vector<float> want(size_t{kHeads} * kDim);
  ASSERT_TRUE(attention.run(in, gpu, want.data()).ok());
  EXPECT_EQ(*got, want);
}

// An index out of step with the store (a block number nothing pinned) gives NaN for the heads that
// retrieved it and is counted, never a quietly different output.
TEST_F(ResidentDecodeTest, AnUnpinnedBlockTurnsItsHeadsToNaN) {
  build(100, 20, /*with_gpu_tier=*/true);
  const std::vector<float> q = queries(1);
  // KV head 0 indexes blocks 0..98 and 150 (100 blocks, as many as are pinned); block 150's
  // landmark points along query head 0, so that head retrieves it.
  auto made = make_gpu_fused_index({kDim, 0});
  ASSERT_TRUE(made.ok());
  std::unique_ptr<GpuFusedIndex> index = std::move(made).value();
  for (uint32_t g = 0; g < kKv; ++g) {
    std::vector<uint64_t> numbers(100);
    for (uint64_t b = 0; b < 100; ++b) numbers[b] = b;
    std::vector<float> keys = landmarks_[g];
    if (g == 0) {
      numbers.back() = 150;
      for (uint32_t i = 0; i < kDim; ++i) keys[99 * kDim + i] = 50 * q[i];
    }
    ASSERT_TRUE(index->add({sequence_, kLayer, g}, numbers.data(), keys.data(), 100).ok());
  }
  auto decode = ResidentDecode::open(*store_, *index, options(100, 32, RopeMode::kNone));
  ASSERT_TRUE(decode.ok()) << decode.status().to_string();
  auto got = step(**decode, inputs(q, 1));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  auto nan_in = [&](uint32_t h) {
    bool any = false;
    for (uint32_t i = 0; i < kDim; ++i) any |= std::isnan((*got)[h * kDim + i]);
    return any;
  };
  EXPECT_TRUE(nan_in(0));
  const uint32_t group = kHeads / kKv;
  size_t nan_heads = 0;
  for (uint32_t h = 0; h < group; ++h) nan_heads += nan_in(h);
  for (uint32_t h = group; h < kHeads; ++h) EXPECT_FALSE(nan_in(h)) << "head " << h;
  EXPECT_EQ((*decode)->missing_blocks().value(), nan_heads);
}

TEST_F(ResidentDecodeTest, BadOptionsAreClearErrors) {
  build(40, 20, /*with_gpu_tier=*/true);
  auto index = fused_index(first_blocks(40));
  auto refused = [&](ResidentDecodeOptions o, const std::string& needle) {
    const Status s = ResidentDecode::open(*store_, *index, o).status();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  };
  refused(options(40, 0, RopeMode::kNone), "not 0");
  refused(options(40, 33, RopeMode::kNone), "not 33");
  refused(options(10, 16, RopeMode::kNone), "blocks_per_head=10");
  ResidentDecodeOptions odd = options(40, 8, RopeMode::kNone);
  odd.heads = 3;
  refused(odd, "heads=3");
  ResidentDecodeOptions scale = options(40, 8, RopeMode::kNone);
  scale.scale = -1;
  refused(scale, "scale -1");
  // More blocks than the store holds: the page-in names the missing block.
  const Status unknown =
      ResidentDecode::open(*store_, *index, options(41, 8, RopeMode::kNone)).status();
  EXPECT_FALSE(unknown.ok());
  EXPECT_NE(unknown.message().find("block 40"), std::string::npos) << unknown.message();
}

#endif

}  // namespace
}  // namespace lmkv
