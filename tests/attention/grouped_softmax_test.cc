// The grouped-softmax reference against the paper's definition written out independently.
#include "attention/grouped_softmax.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "test_util.h"

namespace lmkv {
namespace {

// Random context of one head: `blocks` blocks of B tokens and a window of `local` tokens.
struct Context {
  uint32_t d, B;
  std::vector<float> keys, values, landmarks, local_keys, local_values, query;
  HeadBlocks blocks() const {
    return {B, d, landmarks.size() / d, keys.data(), values.data(), landmarks.data()};
  }
  LocalWindow window() const {
    return {local_keys.size() / d, local_keys.data(), local_values.data()};
  }
};

Context random_context(std::mt19937_64& rng, uint32_t d, uint32_t B, size_t blocks, size_t local) {
  std::normal_distribution<float> normal;
  Context c{d, B, {}, {}, {}, {}, {}, {}};
  auto fill = [&](std::vector<float>& v, size_t n) {
    v.resize(n);
    for (auto& x : v) x = normal(rng);
  };
  fill(c.keys, blocks * B * d);
  fill(c.values, blocks * B * d);
  fill(c.landmarks, blocks * d);
  fill(c.local_keys, local * d);
  fill(c.local_values, local * d);
  fill(c.query, d);
  return c;
}

// The definition, term by term in long double, without the reference's max subtraction:
// weight of local token j = e^{s q.k_j} / Z; of token j of block b = e^{s q.l_b} / Z * e^{s q.k_bj}
// / Z_b.
std::vector<long double> by_definition(const Context& c, const std::vector<uint32_t>& selected,
                                       double s) {
  auto dot = [&](const float* a, const float* b) {
    long double r = 0;
    for (uint32_t i = 0; i < c.d; ++i) r += (long double)a[i] * b[i];
    return r;
  };
  const size_t local = c.local_keys.size() / c.d;
  long double z = 0;
  for (size_t j = 0; j < local; ++j) z += std::exp(s * dot(c.query.data(), &c.local_keys[j * c.d]));
  for (uint32_t b : selected) z += std::exp(s * dot(c.query.data(), &c.landmarks[b * c.d]));
  std::vector<long double> out(c.d, 0);
  for (size_t j = 0; j < local; ++j) {
    const long double w = std::exp(s * dot(c.query.data(), &c.local_keys[j * c.d])) / z;
    for (uint32_t i = 0; i < c.d; ++i) out[i] += w * c.local_values[j * c.d + i];
  }
  for (uint32_t b : selected) {
    const long double gate = std::exp(s * dot(c.query.data(), &c.landmarks[b * c.d])) / z;
    long double zb = 0;
    for (uint32_t t = 0; t < c.B; ++t)
      zb += std::exp(s * dot(c.query.data(), &c.keys[(size_t(b) * c.B + t) * c.d]));
    for (uint32_t t = 0; t < c.B; ++t) {
      const size_t row = (size_t(b) * c.B + t) * c.d;
      const long double w = gate * std::exp(s * dot(c.query.data(), &c.keys[row])) / zb;
      for (uint32_t i = 0; i < c.d; ++i) out[i] += w * c.values[row + i];
    }
  }
  return out;
}

void expect_close(const std::vector<double>& got, const std::vector<long double>& want) {
  // Relative to the output's magnitude: double accumulation over a few hundred terms.
  long double norm = 0;
  for (long double v : want) norm = std::max(norm, std::fabs(v));
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i], double(want[i]), 1e-12 * double(1 + norm)) << "dimension " << i;
  }
}

TEST(GroupedSoftmax, TinyExampleWorkedByHand) {
  // d = 2, B = 2, scale 1. Local token: key (0.5, 0), value (1, 0). Block 0: keys (1,0) (0,0),
  // values (0,1) (0,2), landmark (2,0). Block 1: keys (0,0) (3,0), values (5,5) (7,7), landmark
  // (1,0).
  const float query[] = {1, 0};
  const float local_k[] = {0.5f, 0}, local_v[] = {1, 0};
  const float keys[] = {1, 0, 0, 0, 0, 0, 3, 0}, values[] = {0, 1, 0, 2, 5, 5, 7, 7};
  const float landmarks[] = {2, 0, 1, 0};
  const HeadBlocks blocks{2, 2, 2, keys, values, landmarks};
  double out[2];
  ASSERT_TRUE(
      grouped_softmax_reference(query, {1, local_k, local_v}, blocks, {0, 1}, 1.0, out).ok());
  const double e = std::exp(1.0);
  const double z = std::exp(0.5) + std::exp(2.0) + e;
  const double p_local = std::exp(0.5) / z, p0 = std::exp(2.0) / z, p1 = e / z;
  const double b0_first = e / (e + 1), b0_second = 1 / (e + 1);
  const double b1_first = 1 / (1 + std::exp(3.0)), b1_second = std::exp(3.0) / (1 + std::exp(3.0));
  const double want_x = p_local * 1 + p1 * (b1_first * 5 + b1_second * 7);
  const double want_y = p0 * (b0_first * 1 + b0_second * 2) + p1 * (b1_first * 5 + b1_second * 7);
  EXPECT_NEAR(out[0], want_x, 1e-14);
  EXPECT_NEAR(out[1], want_y, 1e-14);
}

TEST(GroupedSoftmax, FullAndRetrievedEqualTheDefinition) {
  std::mt19937_64 rng(test::fresh_seed());
  for (int trial = 0; trial < 5; ++trial) {
    const Context c = random_context(rng, 16, 5, 12, 3);
    const double scale = 1 / std::sqrt(16.0);
    std::vector<uint32_t> all(12);
    for (uint32_t b = 0; b < 12; ++b) all[b] = b;
    for (const auto& selected : {all, std::vector<uint32_t>{7, 2, 11}, std::vector<uint32_t>{}}) {
      std::vector<double> out(16);
      ASSERT_TRUE(grouped_softmax_reference(c.query.data(), c.window(), c.blocks(), selected, scale,
                                            out.data())
                      .ok());
      expect_close(out, by_definition(c, selected, scale));
      std::vector<double> weights;
      ASSERT_TRUE(
          grouped_softmax_weights(c.query.data(), c.window(), c.blocks(), selected, scale, &weights)
              .ok());
      double sum = 0;
      for (double w : weights) sum += w;
      EXPECT_NEAR(sum, 1.0, 1e-12);
    }
  }
}

TEST(GroupedSoftmax, BadInputGetsAClearError) {
  std::mt19937_64 rng(test::fresh_seed());
  const Context c = random_context(rng, 8, 4, 3, 1);
  double out[8];
  const Status beyond =
      grouped_softmax_reference(c.query.data(), c.window(), c.blocks(), {3}, 1, out);
  EXPECT_EQ(beyond.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(beyond.message().find("selected block 3 of 3"), std::string::npos) << beyond.message();
  EXPECT_EQ(
      grouped_softmax_reference(c.query.data(), c.window(), c.blocks(), {1, 1}, 1, out).code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(grouped_softmax_reference(c.query.data(), {}, c.blocks(), {}, 1, out).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(grouped_softmax_reference(nullptr, c.window(), c.blocks(), {0}, 1, out).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lmkv
