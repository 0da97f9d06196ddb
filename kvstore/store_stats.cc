// Store statistics and their JSON form.
#include "kvstore/store_stats.h"

#include <nlohmann/json.hpp>

namespace lmkv {

void StoreStats::add(Tier tier, uint64_t TierCounters::*field, uint64_t amount) {
  std::lock_guard<std::mutex> lock(mu_);
  data_.tiers[static_cast<int>(tier)].*field += amount;
}

void StoreStats::record_swap_in(Tier source, uint64_t ns) {
  std::lock_guard<std::mutex> lock(mu_);
  data_.swap_in_latency[static_cast<int>(source)].record_ns(ns);
}

StoreStatsSnapshot StoreStats::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return data_;
}

void StoreStats::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  data_ = StoreStatsSnapshot{};
}

std::string StoreStatsSnapshot::to_json() const {
  nlohmann::json j;
  for (int t = 0; t < kTierCount; ++t) {
    const TierCounters& c = tiers[t];
    const char* name = tier_name(static_cast<Tier>(t));
    j["tiers"][name] = {{"hits", c.hits},
                        {"misses", c.misses},
                        {"bytes_in", c.bytes_in},
                        {"bytes_out", c.bytes_out},
                        {"evictions", c.evictions},
                        {"resident_blocks", c.resident_blocks},
                        {"capacity_blocks", c.capacity_blocks}};
    const LatencyHistogram& h = swap_in_latency[t];
    j["swap_in_latency_us"][name] = {{"count", h.count()},
                                     {"p50", h.quantile_ns(0.50) / 1e3},
                                     {"p90", h.quantile_ns(0.90) / 1e3},
                                     {"p99", h.quantile_ns(0.99) / 1e3},
                                     {"max", h.max_ns() / 1e3},
                                     {"mean", h.mean_ns() / 1e3}};
  }
  j["page_ins"] = page_ins;
  j["puts"] = puts;
  j["disk_reads"] = {{"reads", disk_reads.reads},
                     {"bytes", disk_reads.bytes},
                     {"read_us", disk_reads.read_ns / 1e3}};
  return j.dump(2);
}

}  // namespace lmkv
