// lmkv_attend with device pointers (and a stream) gives what it gives with host pointers.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "kvstore/cuda_util.h"
#include "kvstore/dtype_convert.h"
#include "lmkv/lmkv.h"
#include "test_util.h"

namespace lmkv {
namespace {

#ifdef LMKV_WITH_CUDA
TEST(CApiGpu, DevicePointersEqualHostPointers) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  constexpr uint32_t kHeads = 4, kKv = 2, kDim = 64, kTokens = 90;
  test::TempDir dir;
  const std::string path = dir.sub("db");
  lmkv_config config = lmkv_default_config();
  config.heads = kHeads;
  config.kv_heads = kKv;
  config.head_dim = kDim;
  config.block_tokens = 16;
  config.top_k = 3;
  config.device = LMKV_DEVICE_GPU;
  config.gpu_capacity_bytes = 8 << 20;
  config.host_capacity_bytes = 8 << 20;
  config.data_dir = path.c_str();
  lmkv_cache* cache = nullptr;
  ASSERT_EQ(lmkv_open(&config, &cache), LMKV_OK) << lmkv_last_error();
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  std::vector<uint16_t> k(kTokens * kKv * kDim), v(k.size());
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = float_to_half_bits(normal(rng));
    v[i] = float_to_half_bits(normal(rng));
  }
  ASSERT_EQ(lmkv_append(cache, 1, 0, kTokens, k.data(), v.data(), nullptr), LMKV_OK);
  std::vector<float> queries(10 * kHeads * kDim), host_out(queries.size());
  for (auto& x : queries) x = half_bits_to_float(float_to_half_bits(normal(rng)));
  ASSERT_EQ(lmkv_attend(cache, 1, 0, 10, queries.data(), host_out.data(), nullptr), LMKV_OK)
      << lmkv_last_error();
  DeviceBuffer device_queries, device_out;
  ASSERT_TRUE(device_queries.reserve(queries.size() * 4).ok());
  ASSERT_TRUE(device_out.reserve(queries.size() * 4).ok());
  ASSERT_EQ(cudaMemcpy(device_queries.get(), queries.data(), queries.size() * 4,
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemset(device_out.get(), 0xFF, queries.size() * 4), cudaSuccess);  // NaN
  CudaStream stream;
  ASSERT_TRUE(stream.create().ok());
  ASSERT_EQ(lmkv_attend(cache, 1, 0, 10, static_cast<const float*>(device_queries.get()),
                        static_cast<float*>(device_out.get()), stream.get()),
            LMKV_OK)
      << lmkv_last_error();
  std::vector<float> from_device(queries.size());
  ASSERT_EQ(cudaMemcpy(from_device.data(), device_out.get(), queries.size() * 4,
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(from_device, host_out);
  ASSERT_EQ(lmkv_close(cache), LMKV_OK);
}
#endif

}  // namespace
}  // namespace lmkv
