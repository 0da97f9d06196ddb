// A log-bucketed latency histogram (HdrHistogram-like: 16 buckets per power of two, so any
// percentile is within about 4.4% of the true value) with exact count, sum and max.
// Not thread-safe: StoreStats guards it.
#pragma once

#include <array>
#include <cstdint>

namespace lmkv {

class LatencyHistogram {
 public:
  void record_ns(uint64_t ns);
  void merge(const LatencyHistogram& other);

  uint64_t count() const { return count_; }
  uint64_t max_ns() const { return max_ns_; }
  double mean_ns() const { return count_ ? static_cast<double>(sum_ns_) / count_ : 0.0; }
  // The q-quantile (q in [0, 1]) as the midpoint of its bucket, clamped to the observed max.
  double quantile_ns(double q) const;

 private:
  static constexpr int kSubBuckets = 16;
  static constexpr int kBuckets = 64 * kSubBuckets;
  static int bucket_of(uint64_t ns);
  static double bucket_low(int bucket);

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_ns_ = 0;
  uint64_t max_ns_ = 0;
};

}  // namespace lmkv
