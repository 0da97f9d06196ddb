// Stand-in landmark keys and half-precision reads.
#include "attention/landmark_keys.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "test_util.h"

namespace lmkv {
namespace {

TEST(LandmarkKeys, MeanIsTheMeanKey) {
  const float keys[] = {1, 2, 3, 4, 5, 6};  // 3 tokens of dim 2
  float out[2];
  ASSERT_TRUE(mean_landmark(keys, 3, 2, out).ok());
  EXPECT_FLOAT_EQ(out[0], 3);
  EXPECT_FLOAT_EQ(out[1], 4);
}

TEST(LandmarkKeys, RepresentativeIsTheKeyRecentQueriesFavour) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  constexpr uint32_t kDim = 16;
  std::vector<float> keys(50 * kDim), queries(4 * kDim);
  for (auto& v : keys) v = 0.1f * normal(rng);
  for (auto& v : queries) v = normal(rng);
  // Token 17 points along the queries' mean.
  for (uint32_t i = 0; i < kDim; ++i) {
    keys[17 * kDim + i] = 0;
    for (int q = 0; q < 4; ++q) keys[17 * kDim + i] += queries[q * kDim + i];
  }
  std::vector<float> out(kDim);
  ASSERT_TRUE(representative_landmark(keys.data(), 50, kDim, queries.data(), 4, out.data()).ok());
  for (uint32_t i = 0; i < kDim; ++i) EXPECT_EQ(out[i], keys[17 * kDim + i]);
  std::vector<float> mean(kDim);
  ASSERT_TRUE(representative_landmark(keys.data(), 50, kDim, nullptr, 0, out.data()).ok());
  ASSERT_TRUE(mean_landmark(keys.data(), 50, kDim, mean.data()).ok());
  EXPECT_EQ(out, mean);
  EXPECT_EQ(mean_landmark(keys.data(), 0, kDim, mean.data()).code(), StatusCode::kInvalidArgument);
}

TEST(LandmarkKeys, HalfAndBfloat16ReadExactly) {
  // fp16: 1.0 = 0x3C00, -2.5 = 0xC100, smallest subnormal 0x0001 = 2^-24, +inf 0x7C00.
  const uint16_t half[] = {0x3C00, 0xC100, 0x0001, 0x7C00, 0x0000, 0x8000};
  float out[6];
  ASSERT_TRUE(to_floats(half, DType::kFloat16, 6, out).ok());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.5f);
  EXPECT_EQ(out[2], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(out[3]) && out[3] > 0);
  EXPECT_EQ(out[4], 0.0f);
  EXPECT_TRUE(std::signbit(out[5]));
  // bf16: the top half of a float.
  const uint16_t bf[] = {0x3F80, 0xC020};  // 1.0, -2.5
  ASSERT_TRUE(to_floats(bf, DType::kBFloat16, 2, out).ok());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.5f);
  // fp16 patterns order like the numbers they encode: each finite positive pattern reads
  // strictly larger than the one before. The step is 2^-24 through the subnormals and the first
  // exponent, and doubles right after each later exponent starts (mantissa 1).
  float previous = 0, step = 0;
  for (uint32_t h = 1; h < 0x7C00; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    float f;
    ASSERT_TRUE(to_floats(&bits, DType::kFloat16, 1, &f).ok());
    ASSERT_GT(f, previous) << std::hex << h;
    const float this_step = f - previous;
    const bool doubles = (h & 0x3FF) == 1 && (h >> 10) >= 2;
    if (h > 1) ASSERT_EQ(this_step, doubles ? 2 * step : step) << std::hex << h;
    step = this_step;
    previous = f;
  }
  EXPECT_EQ(previous, 65504.0f);  // the largest finite fp16
}

}  // namespace
}  // namespace lmkv
