// Latency histogram percentiles against exact ones computed from the samples.
#include "kvstore/latency_histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "test_util.h"

namespace lmkv {
namespace {

TEST(LatencyHistogram, EmptyReportsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.quantile_ns(0.5), 0.0);
  EXPECT_EQ(h.max_ns(), 0u);
}

TEST(LatencyHistogram, QuantilesWithinBucketPrecision) {
  std::mt19937_64 rng(test::fresh_seed());
  std::lognormal_distribution<double> latency(std::log(20'000.0), 1.2);  // around 20 us
  LatencyHistogram h;
  std::vector<uint64_t> samples(20'000);
  for (auto& s : samples) {
    s = static_cast<uint64_t>(latency(rng)) + 1;
    h.record_ns(s);
  }
  std::sort(samples.begin(), samples.end());
  for (double q : {0.5, 0.9, 0.99}) {
    const double exact = samples[static_cast<size_t>(std::ceil(q * samples.size())) - 1];
    EXPECT_NEAR(h.quantile_ns(q), exact, 0.05 * exact) << "q=" << q;
  }
  EXPECT_EQ(h.max_ns(), samples.back());
  EXPECT_EQ(h.count(), samples.size());
}

TEST(LatencyHistogram, MergeEqualsRecordingBoth) {
  LatencyHistogram a, b, both;
  for (uint64_t v = 1; v < 100'000; v = v * 3 + 1) {
    a.record_ns(v);
    both.record_ns(v);
    b.record_ns(v * 7);
    both.record_ns(v * 7);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), both.count());
  EXPECT_EQ(a.max_ns(), both.max_ns());
  EXPECT_EQ(a.quantile_ns(0.9), both.quantile_ns(0.9));
}

}  // namespace
}  // namespace lmkv
