// The million-token landmark-attention experiment: ingest a synthetic context through the tiered
// store and the landmark index, decode queries through retrieval attention, and measure what
// retrieval finds (needle recall by depth, error against exact attention) and what it costs
// (ingest rate, decode latency, tier traffic, swap-in latency, peak memory per tier).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "attention/landmark_cache.h"  // LandmarkSource
#include "attention/landmark_keys.h"
#include "attention/retrieval_attention.h"
#include "index/index_factory.h"
#include "kvstore/store_stats.h"

namespace lmkv {

struct ExperimentConfig {
  uint64_t tokens = 1'000'000;
  uint32_t layers = 1;
  uint32_t heads = 4;
  uint32_t kv_heads = 4;
  uint32_t head_dim = 64;
  uint32_t block_tokens = 50;
  uint32_t top_k = 32;
  uint32_t chunk_tokens = 10'000;  // ingest chunk: tokens generated and sealed per step
  AttentionDevice device = AttentionDevice::kCpu;
  size_t gpu_capacity_bytes = 0;
  size_t host_capacity_bytes = 64ull << 20;
  std::string data_dir = "./lmkv-data";
  bool keep_data = false;  // leave the experiment's blocks in data_dir afterwards
  IndexBackend backend = IndexBackend::kAuto;
  bool int8_screening = true;  // the fused GPU search's screening pass (GpuFusedOptions)
  LandmarkSource landmark = LandmarkSource::kGiven;
  uint32_t queries = 64;       // decode queries; the first ones find the needles
  uint32_t exact_queries = 2;  // queries also computed by exact attention over every block
  uint64_t seed = 1;
  std::vector<double> needle_depths = {0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0};
};

// Checks every field; the error names the flag (e.g. "--block 0: ..."). With check_data_dir, also
// creates the data directory and checks that it is writable.
Status validate_experiment_config(const ExperimentConfig& config, bool check_data_dir = true);

struct QueryRecord {
  uint32_t query = 0;
  int needle = -1;     // needle index, or -1 for a topic query
  double depth = -1;   // the needle's depth
  double step_us = 0;  // decode step over all layers
  double search_us = 0, page_in_us = 0, attention_us = 0;
  double needle_recall = -1;   // share of (layer, head) that retrieved the needle block
  double relative_error = -1;  // against exact attention, for the sampled queries
  size_t blocks_paged = 0;
};

struct ExperimentReport {
  ExperimentConfig config;
  std::string device;  // "cpu" or "gpu"
  std::string index_backend;
  uint64_t blocks_per_head = 0;
  double ingest_seconds = 0, ingest_tokens_per_s = 0;
  std::vector<double> needle_depths;
  std::vector<double> needle_recall;  // per depth
  double max_relative_error = -1, mean_relative_error = -1;
  double step_p50_us = 0, step_p99_us = 0;
  StoreStatsSnapshot store;  // ingest and decode (the exact pass is excluded)
  std::array<uint64_t, kTierCount> peak_bytes{};
  std::vector<QueryRecord> queries;
  double total_seconds = 0;
};

// Progress: (phase, done, total); called from the experiment's thread.
using ProgressFn = std::function<void(const std::string& phase, uint64_t done, uint64_t total)>;

Result<ExperimentReport> run_experiment(const ExperimentConfig& config,
                                        const ProgressFn& progress = nullptr);

}  // namespace lmkv
