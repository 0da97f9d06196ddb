// Retrieval attention of one layer, end to end: the layer's queries search the landmark index for
// each head's top-k blocks, one batched page-in brings the union of those blocks to the GPU (or
// host) tier, and the grouped-softmax attention runs over them plus the local window, on the GPU
// kernels or the CPU reference.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "attention/block_selection.h"
#include "attention/gpu_attention.h"
#include "index/landmark_index.h"
#include "kvstore/tiered_store.h"

namespace lmkv {

enum class AttentionDevice {
  kCpu,  // page-in to the host tier, the double-precision reference (OpenMP over rows)
  kGpu,  // page-in to the GPU tier, the CUDA kernels
};

struct RetrievalOptions {
  uint32_t top_k = 32;                         // blocks per head (per token or per chunk)
  Retrieval retrieval = Retrieval::kPerToken;  // per-chunk mode scores every block of a head
  double scale = 0;                            // 0: 1/sqrt(dim)
  RopeOptions rope;                            // for keys stored before rotary encoding
  AttentionDevice device = AttentionDevice::kCpu;
};

// One layer's step for one sequence. Host memory.
struct RetrievalInputs {
  uint64_t sequence = 0;
  uint32_t layer = 0;
  uint32_t heads = 0;     // query heads
  uint32_t kv_heads = 0;  // the store's and index's heads; query head h reads h / (heads/kv_heads)
  uint32_t tokens = 0;    // queries in the chunk (1 for decode)
  const float* queries = nullptr;  // [tokens][heads][dim]
  // The local window per KV head in the store's dtype, [kv_heads][window_tokens][dim]; its last
  // `tokens` entries are the chunk's own tokens.
  uint32_t window_tokens = 0;
  const void* window_keys = nullptr;
  const void* window_values = nullptr;
  int64_t window_start = 0;  // position of window token 0 (RoPE only)
};

// What a step retrieved and what it cost, for experiments and diagnostics.
struct RetrievalTrace {
  uint32_t k = 0;                  // columns of block_nos
  std::vector<int64_t> block_nos;  // [tokens * heads][k]: row's blocks by score, -1 padding
  size_t unique_blocks = 0;        // paged in
  std::array<size_t, kTierCount> blocks_from_tier{};  // unique blocks by the tier they came from
  double search_us = 0, page_in_us = 0, attention_us = 0;
};

class RetrievalAttention {
 public:
  // The store holds the blocks, the index their landmark keys; both outlive this object.
  RetrievalAttention(TieredStore& store, LandmarkIndex& index);
  ~RetrievalAttention();
  RetrievalAttention(const RetrievalAttention&) = delete;
  RetrievalAttention& operator=(const RetrievalAttention&) = delete;

  // out[(t * heads + h) * dim + i] (host floats). Not thread-safe: one step at a time per object.
  Status run(const RetrievalInputs& in, const RetrievalOptions& options, float* out,
             RetrievalTrace* trace = nullptr);

  struct Gpu;  // the GPU path's stream and buffers (an implementation detail)

 private:
  TieredStore& store_;
  LandmarkIndex& index_;
  std::unique_ptr<Gpu> gpu_;
};

}  // namespace lmkv
