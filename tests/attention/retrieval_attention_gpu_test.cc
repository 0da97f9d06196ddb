// The GPU path of retrieval attention against the CPU path, for every RoPE mode and tier.
#include <gtest/gtest.h>

#include "attention/retrieval_fixture.h"

namespace lmkv {
namespace {

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
    // The first wave finds its blocks on disk; later waves may find some an earlier one promoted.
    EXPECT_GT(trace.blocks_from_tier[size_t(Tier::kDisk)], 0u);
    size_t counted = 0;
    for (size_t n : trace.blocks_from_tier) counted += n;
    EXPECT_EQ(counted, trace.unique_blocks);
    const std::vector<double> reference(cpu.begin(), cpu.end());
    EXPECT_LE(relative_error(from_host_or_disk, reference), kGpuBound) << int(mode);
    EXPECT_EQ(from_gpu, from_host_or_disk);
    EXPECT_EQ(from_disk, from_host_or_disk);
  }
}

// Offload mode (one retrieval per chunk, staged blocks on the GPU) equals the CPU path.
TEST_F(RetrievalAttentionTest, GpuOffloadModeEqualsCpuPath) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  build(100, 20, /*with_gpu_tier=*/true);
  const std::vector<float> q = queries(12);
  for (RopeMode mode : {RopeMode::kNone, RopeMode::kRemapped}) {
    RetrievalOptions options;
    options.top_k = 16;
    options.retrieval = Retrieval::kPerChunk;
    options.rope.mode = mode;
    RetrievalInputs in = inputs(q, 12);
    in.window_start = 100 * kB;
    const std::vector<float> cpu = run(in, options);
    options.device = AttentionDevice::kGpu;
    const std::vector<float> gpu = run(in, options);
    EXPECT_LE(relative_error(gpu, std::vector<double>(cpu.begin(), cpu.end())), kGpuBound)
        << int(mode);
  }
}

}  // namespace
}  // namespace lmkv
