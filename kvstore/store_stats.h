// Statistics of a TieredStore: per tier hits, misses, bytes in and out, evictions, and swap-in
// latency histograms per source tier. Counters are read as a consistent snapshot.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>

#include "kvstore/block.h"
#include "kvstore/latency_histogram.h"

namespace lmkv {

struct TierCounters {
  uint64_t hits = 0;             // blocks a page-in found in this tier
  uint64_t misses = 0;           // blocks a page-in looked for here and went further down for
  uint64_t bytes_in = 0;         // bytes written into this tier (puts, promotions, write-backs)
  uint64_t bytes_out = 0;        // bytes read out of this tier toward a caller or an upper tier
  uint64_t evictions = 0;        // blocks evicted from this tier
  uint64_t resident_blocks = 0;  // blocks held now (GPU and host tiers)
  uint64_t capacity_blocks = 0;  // slots (GPU and host tiers)
};

// The disk tier's reads at the file level: blobs and RocksDB's own table blocks alike. read_ns
// sums the time each thread spent inside them, so read_ns over a page-in's wall time is the mean
// number of threads it kept reading.
struct DiskReadCounters {
  uint64_t reads = 0;    // table blocks and blobs read from files (each of a merged read counts)
  uint64_t bytes = 0;    // bytes read from files
  uint64_t read_ns = 0;  // time inside those reads, summed over threads

  DiskReadCounters operator-(const DiskReadCounters& o) const {
    return {reads - o.reads, bytes - o.bytes, read_ns - o.read_ns};
  }
};

struct StoreStatsSnapshot {
  std::array<TierCounters, kTierCount> tiers{};
  // Swap-in latency per source tier: from the page_in call until its blocks from that tier are
  // usable in the target (a GPU hit measures the bookkeeping alone).
  std::array<LatencyHistogram, kTierCount> swap_in_latency{};
  uint64_t page_ins = 0;
  uint64_t puts = 0;
  DiskReadCounters disk_reads;

  const TierCounters& tier(Tier t) const { return tiers[static_cast<int>(t)]; }
  TierCounters& tier(Tier t) { return tiers[static_cast<int>(t)]; }
  const LatencyHistogram& latency(Tier t) const { return swap_in_latency[static_cast<int>(t)]; }
  // {"tiers": {"gpu": {...}, ...}, "swap_in_latency_us": {"disk": {"count", "p50", "p90", "p99",
  //  "max", "mean"}, ...}, "page_ins": n, "puts": n, "disk_reads": {"reads", "bytes", "read_us"}}
  std::string to_json() const;
};

// The live, thread-safe counters behind the snapshots.
class StoreStats {
 public:
  void add(Tier tier, uint64_t TierCounters::*field, uint64_t amount);
  // Applies several changes under one lock: update(snapshot&).
  template <typename Update>
  void update(Update&& update) {
    std::lock_guard<std::mutex> lock(mu_);
    update(data_);
  }
  void record_swap_in(Tier source, uint64_t ns);
  StoreStatsSnapshot snapshot() const;
  void reset();

 private:
  mutable std::mutex mu_;
  StoreStatsSnapshot data_;
};

}  // namespace lmkv
