// LandmarkCache: lmkv as an inference engine's KV cache, in C++. The engine appends each layer's
// new keys and values; the cache seals full blocks into the tiered store, computes (or takes) their
// landmark keys and indexes them; attend() runs retrieval attention for the newest tokens' queries
// over the retrieved blocks plus the local window. include/lmkv/lmkv.h wraps this for C.
//
// The local window of an attend() call is the open block plus every block sealed since the
// previous append() of that layer: such blocks enter the index only at the next append(), so a
// prefill chunk attends to its own tokens causally and never retrieves them (as in the paper's
// chunked processing). Sealed blocks and their landmarks are durable after sync(); a reopened
// cache rebuilds its index from them (tokens of a block still open are not kept).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "attention/retrieval_attention.h"
#include "index/index_factory.h"
#include "kvstore/tiered_store.h"

namespace lmkv {

enum class LandmarkSource { kGiven, kMean, kRepresentative };
const char* landmark_source_name(LandmarkSource source);

// The landmark a cache computes for a sealed block from its keys ([tokens][dim] floats): the mean
// key, or the representative key with the block's own keys standing in for the queries (none
// exist at sealing time), which picks its most central key. kGiven has nothing to compute.
Status sealed_block_landmark(LandmarkSource source, const float* keys, uint32_t tokens,
                             uint32_t dim, float* out);

struct CacheOptions {
  StoreOptions store;  // block shape, tier capacities, disk path, write policy
  uint32_t layers = 1;
  uint32_t heads = 32;     // query heads
  uint32_t kv_heads = 32;  // KV heads (the store's and index's heads)
  IndexBackend backend = IndexBackend::kAuto;
  LandmarkSource landmark = LandmarkSource::kMean;
  RetrievalOptions retrieval;  // top-k, granularity, RoPE, CPU or GPU attention
};

class LandmarkCache {
 public:
  static Result<std::unique_ptr<LandmarkCache>> open(CacheOptions options);
  ~LandmarkCache();

  // Appends `tokens` tokens of one layer of a sequence: keys and values [tokens][kv_heads][d] in
  // the store's dtype (host memory). Blocks that fill up are sealed. With LandmarkSource::kGiven,
  // `landmarks` holds [sealing][kv_heads][d] floats, one per block this call seals
  // (blocks_sealed_by(sequence, layer, tokens) of them; null when it seals none); otherwise it
  // must be null. NaN or infinite keys, values or landmarks are refused before anything is stored.
  Status append(uint64_t sequence, uint32_t layer, uint32_t tokens, const void* keys,
                const void* values, const float* landmarks = nullptr);
  // How many blocks an append of `tokens` tokens would seal now.
  Result<uint32_t> blocks_sealed_by(uint64_t sequence, uint32_t layer, uint32_t tokens);

  // Attention of the last `tokens` appended tokens of a layer: queries [tokens][heads][d] floats,
  // out [tokens][heads][d] floats (host memory).
  Status attend(uint64_t sequence, uint32_t layer, uint32_t tokens, const float* queries,
                float* out, RetrievalTrace* trace = nullptr);

  // Tokens appended to a layer of a sequence (sealed blocks included).
  uint64_t length(uint64_t sequence, uint32_t layer);

  Status sync();
  Status erase(uint64_t sequence);
  Status close();
  std::string stats_json() const;
  const CacheOptions& options() const { return options_; }

 private:
  struct LayerState;
  LandmarkCache(CacheOptions options, std::unique_ptr<TieredStore> store,
                std::unique_ptr<LandmarkIndex> index);
  LayerState& state(uint64_t sequence, uint32_t layer);
  Status index_pending(uint64_t sequence, uint32_t layer, LayerState& s);
  Status seal(uint64_t sequence, uint32_t layer, LayerState& s, const float* landmarks);
  Status check_open() const;
  Status check_finite(const void* keys, const void* values, uint32_t tokens) const;

  CacheOptions options_;
  std::unique_ptr<TieredStore> store_;
  std::unique_ptr<LandmarkIndex> index_;
  std::unique_ptr<RetrievalAttention> attention_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::vector<std::unique_ptr<LayerState>>> sequences_;
  bool closed_ = false;
};

}  // namespace lmkv
