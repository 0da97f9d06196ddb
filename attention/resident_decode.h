// Decode for a (sequence, layer) whose blocks all stay in the GPU tier: the landmark search, the
// page table and the attention kernels run on one stream, with no host round trip per step. An
// inference engine keeps queries, the local window and the output on the device.
//
// open() pages every sealed block of the layer into the GPU tier once and keeps them pinned (never
// evicted) while the object lives; grow() pins blocks sealed since. Each step then costs the fused
// search (GpuFusedIndex::search_on_device), one small kernel that turns its results into the page
// table (each head's blocks in increasing block order, as RetrievalAttention orders them), and the
// attention kernels: the same kernels and order as RetrievalAttention's GPU path, so the same
// output bits.
//
// Blocks of every KV head are numbered 0, 1, 2, ... as they seal, and the index holds exactly
// blocks [0, blocks_per_head) of each head: step() checks the counts on the host. A block the
// search returns that is not pinned (an index out of step with the store) is counted in
// missing_blocks() and turns its head's output into NaN, never into a silently wrong result.
//
// One step or grow() at a time per object (they share its buffers); objects for different layers
// may run on different streams at once. The index is the fused GPU index that make_landmark_index
// returns for IndexBackend::kGpuFused (or kAuto on a GPU machine).
#pragma once

#include <cstdint>
#include <memory>

#include "attention/gpu_attention.h"
#include "index/gpu_fused_index.h"
#include "kvstore/tiered_store.h"

namespace lmkv {

struct ResidentDecodeOptions {
  uint64_t sequence = 0;
  uint32_t layer = 0;
  uint32_t heads = 0;            // query heads
  uint32_t kv_heads = 0;         // the store's and index's heads; query head h reads h / group
  uint32_t blocks_per_head = 0;  // sealed blocks of every KV head, pinned by open()
  uint32_t top_k = 32;           // 1..32, at most blocks_per_head
  float scale = 0;               // 0: 1/sqrt(dim)
  RopeOptions rope;
};

// One step's device buffers.
struct ResidentDecodeInputs {
  const float* queries = nullptr;  // [heads][dim]
  // The local window per KV head in the store's dtype, [kv_heads][window_tokens][dim]; its last
  // entry is the decoded token.
  uint32_t window_tokens = 0;
  const void* window_keys = nullptr;
  const void* window_values = nullptr;
  int64_t window_start = 0;  // position of window token 0 (RoPE only)
  float* out = nullptr;      // [heads][dim]
};

class ResidentDecode {
 public:
  // The store (with a GPU tier large enough for the layer) and the index outlive this object.
  static Result<std::unique_ptr<ResidentDecode>> open(TieredStore& store, GpuFusedIndex& index,
                                                      const ResidentDecodeOptions& options);
  virtual ~ResidentDecode() = default;

  // Pins blocks [current, blocks_per_head) of every KV head, sealed since.
  virtual Status grow(uint32_t blocks_per_head) = 0;
  // Enqueues one decode step on `stream`; the output is ready when the stream reaches it.
  virtual Status step(const ResidentDecodeInputs& in, CUstream_st* stream) = 0;
  // Search results that named a block not pinned here, since open (waits for the device).
  virtual Result<uint64_t> missing_blocks() = 0;
};

}  // namespace lmkv
