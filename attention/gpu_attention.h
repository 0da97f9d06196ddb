// Landmark attention of one layer on the GPU, given a page table: for every (query token, query
// head) row, the GPU slots of its retrieved blocks and their landmark scores, as plain device
// arrays (FlashInfer style), so the kernels never touch the store or the index. Decode is a chunk
// of one token. retrieval_attention.h builds the page table from an index search and a page-in.
#pragma once

#include <cstdint>
#include <memory>

#include "kvstore/block.h"
#include "lmkv/status.h"

struct CUstream_st;

namespace lmkv {

// Rotary position encoding applied inside the kernels, for keys stored before encoding
// (rotate-half pairing, dimension i with i + d/2, frequency theta^(-2i/d)).
enum class RopeMode {
  kNone,      // keys and queries are used as given
  kStored,    // block b's token j sits at position b * B + j, window token j at window_start + j
  kRemapped,  // a row's retrieved blocks sit, in entry order, right before the window: entry i of
              // n starts at window_start - (n - i) * B (the paper's placement for long contexts)
};

struct RopeOptions {
  RopeMode mode = RopeMode::kNone;
  float theta = 10000.f;
};

// Every pointer is device memory. Rows are row = token * heads + head.
struct GpuAttentionArgs {
  uint32_t tokens = 0;    // queries per head in the chunk (1 for decode)
  uint32_t heads = 0;     // query heads
  uint32_t kv_heads = 0;  // query head h reads KV head h / (heads / kv_heads)
  uint32_t dim = 0;       // 64, 128 or 256
  uint32_t block_tokens = 0;
  DType dtype = DType::kFloat16;  // of queries, window and blocks

  const void* queries = nullptr;        // [tokens][heads][dim]
  const void* window_keys = nullptr;    // [kv_heads][window_tokens][dim]
  const void* window_values = nullptr;  // [kv_heads][window_tokens][dim]
  // The local window per KV head; its last `tokens` entries are the chunk's own tokens, and query
  // t sees the window up to and including its own token.
  uint32_t window_tokens = 0;
  // Row stride of the window arrays in tokens (0: window_tokens); larger when a caller runs the
  // first tokens of a longer window.
  uint32_t window_stride_tokens = 0;
  int64_t window_start = 0;  // position of window token 0 (RoPE only)

  const char* slot_base = nullptr;  // slot s holds K[B][d], V[B][d] at slot_base + s * payload
  const int32_t* indptr = nullptr;  // [tokens * heads + 1], indptr[0] = 0
  const int32_t* slots = nullptr;   // [indptr[rows]]: each entry's slot
  const float* landmark_scores = nullptr;  // [indptr[rows]]: q . landmark, unscaled
  const int64_t* block_nos = nullptr;      // [indptr[rows]]: needed for RopeMode::kStored only
  uint32_t max_blocks_per_row = 0;         // an upper bound on any row's entries
  // A speed hint for prefill in the paper's offload mode (Retrieval::kPerChunk): rows of one head
  // list the same blocks in the same order, so each block is read once per group of tokens. Rows
  // that differ are still computed exactly, only slower.
  bool rows_share_blocks = false;

  float scale = 0;  // 0: 1/sqrt(dim)
  RopeOptions rope;
  float* out = nullptr;  // [tokens][heads][dim], fp32
};

// Runs the kernels; owns the scratch space their partial results need (grown on demand). One
// instance per stream: calls must not overlap on one instance.
class GpuAttention {
 public:
  GpuAttention();
  ~GpuAttention();
  GpuAttention(const GpuAttention&) = delete;
  GpuAttention& operator=(const GpuAttention&) = delete;

  // Checks the shapes and pointers it can check on the host, then enqueues the kernels on
  // `stream`. Slots, entry counts and scores on the device are trusted (the page table's builder
  // produces them).
  Status run(const GpuAttentionArgs& args, CUstream_st* stream);

 private:
  struct Scratch;
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace lmkv
