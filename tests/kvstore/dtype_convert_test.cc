// Host fp16/bf16 conversions: exact round trips, round to nearest even, special values; checked
// against the CUDA headers' host conversions where CUDA is built.
#include "kvstore/dtype_convert.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "test_util.h"

#ifdef LMKV_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstring>
#endif

namespace lmkv {
namespace {

TEST(DtypeConvert, EveryHalfAndBf16ValueRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = half_bits_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(float_to_half_bits(f), h) << std::hex << h;
    const float b = bf16_bits_to_float(uint16_t(h));
    if (std::isnan(b)) continue;
    EXPECT_EQ(float_to_bf16_bits(b), h) << std::hex << h;
  }
}

TEST(DtypeConvert, RoundsToNearestEvenAndSaturatesToInfinity) {
  EXPECT_EQ(half_bits_to_float(float_to_half_bits(1.f + std::ldexp(1.f, -11))), 1.f);  // tie
  EXPECT_EQ(half_bits_to_float(float_to_half_bits(1.f + 3 * std::ldexp(1.f, -11))),
            1.f + std::ldexp(1.f, -9));
  EXPECT_TRUE(std::isinf(half_bits_to_float(float_to_half_bits(70000.f))));
  EXPECT_EQ(half_bits_to_float(float_to_half_bits(65504.f)), 65504.f);
  EXPECT_TRUE(std::isnan(half_bits_to_float(float_to_half_bits(NAN))));
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(NAN))));
  EXPECT_EQ(bf16_bits_to_float(float_to_bf16_bits(1.f + std::ldexp(1.f, -8))), 1.f);  // tie
}

TEST(DtypeConvert, BadArgumentsAreErrors) {
  float f = 0;
  uint16_t h = 0;
  EXPECT_FALSE(to_floats(nullptr, DType::kFloat16, 1, &f).ok());
  EXPECT_FALSE(from_floats(&f, 1, static_cast<DType>(9), &h).ok());
}

#ifdef LMKV_WITH_CUDA
TEST(DtypeConvert, MatchesTheCudaHeadersOnRandomFloats) {
  std::mt19937_64 rng(test::fresh_seed());
  std::uniform_int_distribution<uint32_t> any_bits;
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = any_bits(rng);
    float x;
    std::memcpy(&x, &bits, 4);
    if (std::isnan(x)) continue;
    const __half h = __float2half_rn(x);
    const __nv_bfloat16 b = __float2bfloat16_rn(x);
    uint16_t hb, bb;
    std::memcpy(&hb, &h, 2);
    std::memcpy(&bb, &b, 2);
    EXPECT_EQ(float_to_half_bits(x), hb) << x;
    EXPECT_EQ(float_to_bf16_bits(x), bb) << x;
  }
}
#endif

}  // namespace
}  // namespace lmkv
