// Log-bucketed latency histogram.
#include "kvstore/latency_histogram.h"

#include <algorithm>
#include <cmath>

namespace lmkv {

int LatencyHistogram::bucket_of(uint64_t ns) {
  if (ns < kSubBuckets) return static_cast<int>(ns);  // exact below 16 ns
  const int exponent = 63 - __builtin_clzll(ns);      // ns in [2^e, 2^(e+1))
  const int shift = exponent - 4;                     // keep the 4 bits below the leading one
  const int sub = static_cast<int>((ns >> shift) & (kSubBuckets - 1));
  return (exponent - 3) * kSubBuckets + sub;
}

double LatencyHistogram::bucket_low(int bucket) {
  if (bucket < kSubBuckets) return bucket;
  const int exponent = bucket / kSubBuckets + 3;
  const int sub = bucket % kSubBuckets;
  return std::ldexp(1.0 + sub / static_cast<double>(kSubBuckets), exponent);
}

void LatencyHistogram::record_ns(uint64_t ns) {
  ++counts_[std::min(bucket_of(ns), kBuckets - 1)];
  ++count_;
  sum_ns_ += ns;
  max_ns_ = std::max(max_ns_, ns);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ns_ += other.sum_ns_;
  max_ns_ = std::max(max_ns_, other.max_ns_);
}

double LatencyHistogram::quantile_ns(double q) const {
  if (count_ == 0) return 0.0;
  q = std::clamp(q, 0.0, 1.0);
  const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * count_)));
  uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += counts_[b];
    if (seen >= rank) {
      const double mid = b < kSubBuckets ? b : 0.5 * (bucket_low(b) + bucket_low(b + 1));
      return std::min(mid, static_cast<double>(max_ns_));
    }
  }
  return static_cast<double>(max_ns_);
}

}  // namespace lmkv
