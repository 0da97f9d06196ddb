// The fused landmark search for k <= 32: each warp keeps its running best 32 candidates in
// registers (one per lane, ascending 64-bit sort keys) and merges a batch of 32 new ones only when
// one of them beats its current k-th best, so after the first batches scoring is a pure stream of
// landmark keys from HBM. Sorted lists merge with one bitonic merge, without a sort, which keeps
// both the in-block and the cross-block (second kernel) reductions short.
#pragma once

#include <cuda_pipeline.h>

#include "index/kernels/landmark_topk.cuh"
#include "index/kernels/warp_dot.cuh"
#include "index/kernels/warp_sort.cuh"

namespace lmkv::kernels {

inline constexpr int kSelectK = 32;     // the largest k of this path: one slot per lane
inline constexpr int kSelectWarps = 4;  // warps of a pass-1 block
inline constexpr int kMergeWarps = 8;   // warps of a pass-2 block

// A warp's running top 32, and the k-th best below which a candidate matters.
struct WarpTopk {
  uint64_t best = kEmptySlot;  // this lane's rank in the warp's list
  uint64_t kth = kEmptySlot;
  int k;

  __device__ explicit WarpTopk(int k_) : k(k_) {}

  // Adds one unsorted candidate per lane.
  __device__ __forceinline__ void push(uint64_t candidate, int lane) {
    if (__ballot_sync(0xffffffffu, candidate < kth) == 0) return;
    merge_sorted(warp_sort(candidate, lane), lane);
  }
  // Adds an ascending list of 32 (one per lane).
  __device__ __forceinline__ void merge_sorted(uint64_t sorted, int lane) {
    if (__shfl_sync(0xffffffffu, sorted, 0) >= kth) return;
    best = warp_merge(best, sorted, lane);
    kth = __shfl_sync(0xffffffffu, best, k - 1);
  }
};

// Reduces the lists of a block's warps into warp 0's (`lists` is shared, one list per warp).
template <int kWarps>
__device__ __forceinline__ void block_merge(WarpTopk& topk, uint64_t (*lists)[32], int warp,
                                            int lane) {
  lists[warp][lane] = topk.best;
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int w = 1; w < kWarps; ++w) topk.merge_sorted(lists[w][lane], lane);
  }
}

// Starts copying `count` (1..32) rows of D halves into a warp's staging buffer with cp.async (rows
// past `count` are zero-filled): the copies need no registers, so all 32 rows are in flight while
// the warp scores the previous ones.
template <int D>
__device__ __forceinline__ void stage_rows(__half* stage, const __half* rows, int count, int lane) {
  constexpr int kPieces = D * sizeof(__half) / 16;  // 16-byte copies per row
#pragma unroll
  for (int i = lane; i < 32 * kPieces; i += 32) {
    const int row = i / kPieces, piece = i % kPieces;
    const bool valid = row < count;
    const __half* src = rows + static_cast<size_t>(valid ? row : 0) * D + piece * 8;
    __pipeline_memcpy_async(stage + row * D + piece * 8, src, 16, valid ? 0 : 16);
  }
  __pipeline_commit();
}

// Dynamic shared memory of select_chunk_kernel<D>: one staging buffer of 32 rows per warp.
template <int D>
inline constexpr int kSelectStageBytes = kSelectWarps * 32 * D * sizeof(__half);

// Pass 1. Block (chunk, query, head) scores landmarks [chunk, chunk + 1) * kSelectWarps *
// keys_per_warp of its head (each warp a contiguous keys_per_warp, a multiple of 32, 32 at a time)
// and writes its best 32 sort keys, ascending, to lists[((head * queries + query) * chunks + chunk)
// * 32]. A warp reads its rows from its staging buffer into registers, then starts the next 32
// rows' copy before scoring these.
template <int D>
__global__ void __launch_bounds__(kSelectWarps * 32)
    select_chunk_kernel(const __grid_constant__ HeadViews views, const float* __restrict__ queries,
                        int queries_per_head, int chunks, int keys_per_warp, int k,
                        uint64_t* __restrict__ lists) {
  constexpr int L = D / 32;
  const int chunk = blockIdx.x, query = blockIdx.y, head = blockIdx.z;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const HeadView view = views.heads[head];
  __shared__ uint64_t warp_lists[kSelectWarps][32];
  let_dependent_grid_launch();

  float q_reg[L];
  load_query_slice<L>(queries, head, queries_per_head, query, lane, q_reg);

  extern __shared__ __align__(16) unsigned char select_stage[];
  __half* stage = reinterpret_cast<__half*>(select_stage) + warp * 32 * D;

  WarpTopk topk(k);
  const int first = (chunk * kSelectWarps + warp) * keys_per_warp;
  const int last = min(view.n, first + keys_per_warp);
  if (first < last) {
    stage_rows<D>(stage, view.keys + static_cast<size_t>(first) * D, min(32, last - first), lane);
  }
  for (int row = first; row < last; row += 32) {
    const int count = min(32, last - row);
    __pipeline_wait_prior(0);
    __syncwarp();
    Lanes<__half, L> raw[32];
    load_row_slices<__half, L, 32>(stage, 0, count, lane, raw);
    __syncwarp();  // every lane has read the buffer before the next copy overwrites it
    if (row + 32 < last) {
      stage_rows<D>(stage, view.keys + static_cast<size_t>(row + 32) * D, min(32, last - row - 32),
                    lane);
    }
    float part[32];
    slice_dots<__half, L, 32>(
        q_reg, raw, 0, count, [](float(&)[L], int) {}, part);
    reduce_scatter<16>(part, lane);
    const float score = part[0];
    topk.push(lane < count ? sort_key(score, row + lane) : kEmptySlot, lane);
  }
  block_merge<kSelectWarps>(topk, warp_lists, warp, lane);
  if (warp == 0) {
    lists[((static_cast<size_t>(head) * queries_per_head + query) * chunks + chunk) * 32 + lane] =
        topk.best;
  }
}

// Pass 2. Block (query, head) merges the chunks' lists of its query (warp w takes chunks w, w +
// kMergeWarps, ...) and writes the best k: out[(head * queries + query) * k + rank].
__global__ void __launch_bounds__(kMergeWarps * 32)
    merge_lists_kernel(const __grid_constant__ HeadViews views, const uint64_t* __restrict__ lists,
                       int queries_per_head, int chunks, int k, int64_t* __restrict__ out_blocks,
                       float* __restrict__ out_scores) {
  const int query = blockIdx.x, head = blockIdx.y;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __shared__ uint64_t warp_lists[kMergeWarps][32];
  const size_t at = static_cast<size_t>(head) * queries_per_head + query;
  const uint64_t* mine = lists + at * chunks * 32;
  let_dependent_grid_launch();
  wait_for_prerequisite_grid();

  WarpTopk topk(k);
  for (int c = warp; c < chunks; c += kMergeWarps) topk.merge_sorted(mine[c * 32 + lane], lane);
  block_merge<kMergeWarps>(topk, warp_lists, warp, lane);
  if (warp == 0 && lane < k) {
    const uint64_t key = topk.best;
    out_blocks[at * k + lane] = key == kEmptySlot ? -1 : views.heads[head].block_nos[uint32_t(key)];
    out_scores[at * k + lane] = key == kEmptySlot ? -INFINITY : score_of(key);
  }
}

}  // namespace lmkv::kernels
