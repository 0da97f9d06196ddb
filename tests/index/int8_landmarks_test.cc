// The int8 codes of the screening pass keep every element within half a scale step of its fp16
// key, the bound the GPU search's proof rests on.
#include "index/int8_landmarks.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "test_util.h"

namespace lmkv {
namespace {

// Checks |key - scale * code| <= scale (1/2 + 2^-17) (half a step, plus the rounding of key /
// scale, a quotient of at most 128) and |code| <= 127 for every element, and that each row's
// largest element gets code +-127.
void expect_within_half_a_step(const std::vector<float>& keys, size_t n, uint32_t dim) {
  std::vector<int8_t> codes(n * dim, 99);
  std::vector<float> scales(n, -1.f);
  quantize_landmark_rows(keys.data(), n, dim, codes.data(), scales.data());
  for (size_t r = 0; r < n; ++r) {
    ASSERT_GE(scales[r], 0.f) << "row " << r;
    int largest_code = 0;
    for (uint32_t j = 0; j < dim; ++j) {
      const size_t i = r * dim + j;
      ASSERT_LE(std::abs(int(codes[i])), 127) << "row " << r << " dim " << j;
      largest_code = std::max(largest_code, std::abs(int(codes[i])));
      const double error = std::fabs(double(keys[i]) - double(scales[r]) * codes[i]);
      ASSERT_LE(error, scales[r] * (0.5 + std::ldexp(1.0, -17))) << "row " << r << " dim " << j;
    }
    if (scales[r] > 0) EXPECT_EQ(largest_code, 127) << "row " << r;
  }
}

TEST(Int8LandmarksTest, RandomRowsStayWithinHalfAStep) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  for (uint32_t dim : {64u, 128u, 256u}) {
    const size_t n = 200;
    std::vector<float> keys(n * dim);
    // Rows of very different magnitudes, one with an outlier element.
    for (size_t r = 0; r < n; ++r) {
      const float magnitude = std::ldexp(1.f, int(r % 30) - 15);
      for (uint32_t j = 0; j < dim; ++j) keys[r * dim + j] = magnitude * normal(rng);
    }
    keys[7 * dim + 3] = 500.f;
    expect_within_half_a_step(keys, n, dim);
  }
}

TEST(Int8LandmarksTest, ZeroAndExtremeRows) {
  constexpr uint32_t kDim = 64;
  std::vector<float> keys(4 * kDim, 0.f);                          // row 0: all zero
  for (uint32_t j = 0; j < kDim; ++j) keys[kDim + j] = -65504.f;   // row 1: fp16's lowest
  for (uint32_t j = 0; j < kDim; ++j) keys[2 * kDim + j] = 6e-8f;  // row 2: subnormal fp16
  for (uint32_t j = 0; j < kDim; ++j) keys[3 * kDim + j] = j % 2 ? 1.f : -1.f;
  expect_within_half_a_step(keys, 4, kDim);
  std::vector<int8_t> codes(4 * kDim);
  std::vector<float> scales(4);
  quantize_landmark_rows(keys.data(), 4, kDim, codes.data(), scales.data());
  EXPECT_EQ(scales[0], 0.f);
  for (uint32_t j = 0; j < kDim; ++j) {
    EXPECT_EQ(codes[j], 0);
    EXPECT_EQ(codes[kDim + j], -127);
    EXPECT_EQ(codes[3 * kDim + j], j % 2 ? 127 : -127);
  }
}

}  // namespace
}  // namespace lmkv
