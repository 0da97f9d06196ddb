// Landmark attention for a prefill chunk whose tokens share their retrieved blocks (the paper's
// offload mode, Retrieval::kPerChunk): a thread block takes kStagedWarps consecutive tokens of one
// query head, copies each shared block into shared memory once (cp.async, double-buffered) and
// lets every token's warp read it from there, so a block leaves HBM or L2 once per group of tokens
// instead of once per token.
//
// Sharing is a speed hint, never a correctness assumption: the blocks staged are those of the
// group's first row, and any row whose entry differs (another slot, or entries past the first
// row's) reads that block from global memory, exactly as landmark_attention_parts does.
#pragma once

#include <cuda_pipeline.h>

#include "attention/kernels/landmark_attention.cuh"

namespace lmkv {
namespace kernels {

inline constexpr int kStagedWarps = 8;  // tokens per thread block, one warp each

// Dynamic shared memory of landmark_attention_staged: two block payloads.
inline int64_t staged_shared_bytes(int64_t payload_bytes) { return 2 * payload_bytes; }

// Block (token group, head). Requires payload_bytes % 16 == 0 and a 16-byte aligned slot base.
template <typename T, int D>
__global__ void __launch_bounds__(kStagedWarps * 32, 2)
    landmark_attention_staged(const __grid_constant__ AttentionParams p) {
  constexpr int L = D / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int h = blockIdx.y, g = h / p.group;
  const int t = blockIdx.x * kStagedWarps + warp;
  const bool active = t < p.tokens;
  const int row = t * p.heads + h;
  const int leader = int(blockIdx.x) * kStagedWarps * p.heads + h;
  const int staged_first = p.indptr[leader];
  const int staged = p.indptr[leader + 1] - staged_first;

  extern __shared__ __align__(16) unsigned char staging[];
  auto buffer = [&](int i) { return staging + (i % 2) * p.payload_bytes; };
  // Every thread copies its 16-byte pieces of the group's entry i into buffer(i).
  auto stage = [&](int i) {
    const char* src = p.slot_base + int64_t(p.slots[staged_first + i]) * p.payload_bytes;
    unsigned char* dst = buffer(i);
    for (int64_t at = int64_t(threadIdx.x) * 16; at < p.payload_bytes; at += blockDim.x * 16) {
      __pipeline_memcpy_async(dst + at, src + at, 16);
    }
    __pipeline_commit();
  };

  const int own = p.window_tokens - p.tokens + t;
  const Rope<L> rotary(p.rope_theta, lane);
  float q[L] = {};
  int first = 0, blocks = 0;
  if (active) {
    load_query<T, L>(p, row, own, rotary, lane, q);
    first = p.indptr[row];
    blocks = p.indptr[row + 1] - first;
  }

  Softmax<L> main;
  // Few rows in flight: most blocks come from shared memory (rare global fallbacks pay for it).
  auto add_entry = [&](int item, const T* k) {
    const int e = first + item;
    add_block<T, L, kSharedRowsInFlight>(main, p, q, k, k + int64_t(p.block_tokens) * D,
                                         p.landmark_scores[e], rotary,
                                         block_position(p, e, item, blocks), lane);
  };
  auto global_block = [&](int e) {
    return reinterpret_cast<const T*>(p.slot_base + int64_t(p.slots[e]) * p.payload_bytes);
  };

  if (staged > 0) stage(0);
  for (int i = 0; i < staged; ++i) {
    if (i + 1 < staged) {
      stage(i + 1);
      __pipeline_wait_prior(1);  // entry i has landed; i + 1 may still be in flight
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    if (i < blocks) {
      const int e = first + i;
      const bool shared = p.slots[e] == p.slots[staged_first + i];
      add_entry(i, shared ? reinterpret_cast<const T*>(buffer(i)) : global_block(e));
    }
    __syncthreads();  // every warp is done with buffer(i) before entry i + 2 overwrites it
  }
  if (!active) return;
  for (int i = staged; i < blocks; ++i) add_entry(i, global_block(first + i));
  const int visible = own + 1;
  for (int j0 = 0; j0 < visible; j0 += p.local_chunk) {
    // The group's warps read the same window rows, mostly from L1: few rows in flight too.
    add_window<T, L, kSharedRowsInFlight>(main, p, q, g, j0, min(visible, j0 + p.local_chunk),
                                          rotary, lane);
  }
  store_row<L>(p, row, main, lane);
}

}  // namespace kernels
}  // namespace lmkv
