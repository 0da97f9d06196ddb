// Kernels of the fused landmark search: scores of every query against every landmark key of its
// head (fp16 keys, fp32 accumulation) and the top k per (head, query), for all heads of a layer in
// two launches. Free of allocation and I/O: the host side owns memory and streams.
//
// Order: higher score first, then lower position in the head's key array (positions follow block
// numbers, which the index requires to be added in increasing order). Both are folded into one
// 64-bit sort key: the score's order-preserving bits, inverted for descending order, above the
// position.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <cub/block/block_radix_sort.cuh>
#include <type_traits>

#include "index/kernels/warp_dot.cuh"
#include "kvstore/dependent_launch.cuh"

namespace lmkv::kernels {

// One head's landmarks as the kernels see them.
struct HeadView {
  const __half* keys = nullptr;        // [n][D]
  const int64_t* block_nos = nullptr;  // [n], increasing
  int32_t n = 0;
};

inline constexpr int kMaxHeadsPerLaunch = 128;
struct HeadViews {
  HeadView heads[kMaxHeadsPerLaunch];
};

inline constexpr int kTopkThreads = 256;
inline constexpr int kItemsPerThread = 4;
inline constexpr int kTileKeys = kTopkThreads * kItemsPerThread;  // landmarks per thread block
inline constexpr uint64_t kEmptySlot = ~0ull;                     // sorts after every candidate

inline constexpr int kKeysPerStep = 8;  // landmarks a warp loads before reducing any

// Loads N consecutive halves (N * 2 bytes, aligned to that) as floats, in one vector load.
template <int N>
__device__ inline void load_halves(const __half* p, float* out) {
  static_assert(N == 2 || N == 4 || N == 8, "2, 4 or 8 halves per lane");
  using Vec =
      typename std::conditional<N == 2, uint32_t,
                                typename std::conditional<N == 4, uint2, uint4>::type>::type;
  const Vec v = *reinterpret_cast<const Vec*>(p);
  const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int i = 0; i < N / 2; ++i) {
    const float2 f = __half22float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// This lane's slice, dims [lane * L, +L), of query `query` of `head` (head-major queries of
// d = 32 * L floats).
template <int L>
__device__ __forceinline__ void load_query_slice(const float* queries, int head,
                                                 int queries_per_head, int query, int lane,
                                                 float (&q)[L]) {
  const float* p =
      queries + (static_cast<size_t>(head) * queries_per_head + query) * (32 * L) + lane * L;
#pragma unroll
  for (int i = 0; i < L; ++i) q[i] = p[i];
}

__device__ inline uint64_t sort_key(float score, uint32_t position) {
  uint32_t bits = __float_as_uint(score);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);  // ascending order of floats
  return (static_cast<uint64_t>(~bits) << 32) | position;      // descending score, then position
}

__device__ inline float score_of(uint64_t key) {
  uint32_t bits = ~static_cast<uint32_t>(key >> 32);
  bits = (bits & 0x80000000u) ? (bits & 0x7FFFFFFFu) : ~bits;
  return __uint_as_float(bits);
}

// Pass 1. Block (tile, query, head) scores landmarks [tile * kTileKeys, +kTileKeys) of its head
// against its query (each warp eight landmarks at a time), sorts the tile and writes its best k
// sort keys to partial[((head * queries + query) * tiles + tile) * k].
template <int D>
__global__ void __launch_bounds__(kTopkThreads)
    tile_topk_kernel(const __grid_constant__ HeadViews views, const float* __restrict__ queries,
                     int queries_per_head, int tiles, int k, uint64_t* __restrict__ partial) {
  static_assert(D % 64 == 0, "head dim must be a multiple of 64 for the warp dot product");
  static_assert(kTileKeys % (kTopkThreads / 32 * kKeysPerStep) == 0, "whole steps per tile");
  constexpr int kPerLane = D / 32;
  const int tile = blockIdx.x, query = blockIdx.y, head = blockIdx.z;
  const HeadView view = views.heads[head];
  const int first = tile * kTileKeys;
  let_dependent_grid_launch();

  __shared__ float scores[kTileKeys];
  using Sort = cub::BlockRadixSort<uint64_t, kTopkThreads, kItemsPerThread>;
  __shared__ typename Sort::TempStorage sort_storage;

  // Each lane holds its D/32 query values: lane l owns dimensions [l * kPerLane, +kPerLane).
  const float* q = queries + (static_cast<size_t>(head) * queries_per_head + query) * D;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float q_reg[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) q_reg[i] = q[lane * kPerLane + i];

  // A warp scores kKeysPerStep landmarks at a time, issuing all their loads before using any, so
  // that enough reads are in flight to keep HBM busy.
  constexpr int kWarps = kTopkThreads / 32;
  for (int j0 = warp * kKeysPerStep; j0 < kTileKeys; j0 += kWarps * kKeysPerStep) {
    float key_part[kKeysPerStep][kPerLane];
#pragma unroll
    for (int u = 0; u < kKeysPerStep; ++u) {
      const int row = first + j0 + u;
      if (row < view.n) {
        load_halves<kPerLane>(view.keys + static_cast<size_t>(row) * D + lane * kPerLane,
                              key_part[u]);
      } else {
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) key_part[u][i] = 0.f;
      }
    }
#pragma unroll
    for (int u = 0; u < kKeysPerStep; ++u) {
      float s = 0.f;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) s = fmaf(key_part[u][i], q_reg[i], s);
      s = warp_sum(s);
      if (lane == 0) scores[j0 + u] = s;
    }
  }
  __syncthreads();

  uint64_t items[kItemsPerThread];
#pragma unroll
  for (int i = 0; i < kItemsPerThread; ++i) {
    const int j = threadIdx.x * kItemsPerThread + i;
    items[i] = first + j < view.n ? sort_key(scores[j], first + j) : kEmptySlot;
  }
  Sort(sort_storage).SortBlockedToStriped(items);
  // Striped: item i of thread t holds rank i * kTopkThreads + t.
  uint64_t* out =
      partial + ((static_cast<size_t>(head) * queries_per_head + query) * tiles + tile) * k;
#pragma unroll
  for (int i = 0; i < kItemsPerThread; ++i) {
    const int rank = i * kTopkThreads + threadIdx.x;
    if (rank < k) out[rank] = items[i];
  }
}

// Pass 2 (k < kTileKeys). Block (query, head) merges the tiles' candidates of its query, keeping
// the best k across chunks, and writes block numbers and scores: out[(head * queries + query) * k +
// rank].
__global__ void __launch_bounds__(kTopkThreads)
    merge_topk_kernel(const __grid_constant__ HeadViews views, const uint64_t* __restrict__ partial,
                      int queries_per_head, int tiles, int k, int64_t* __restrict__ out_blocks,
                      float* __restrict__ out_scores) {
  const int query = blockIdx.x, head = blockIdx.y;
  using Sort = cub::BlockRadixSort<uint64_t, kTopkThreads, kItemsPerThread>;
  __shared__ typename Sort::TempStorage sort_storage;
  __shared__ uint64_t best[kTileKeys];  // ranks [0, k) hold the best so far
  let_dependent_grid_launch();
  wait_for_prerequisite_grid();

  const size_t base = (static_cast<size_t>(head) * queries_per_head + query) * tiles * k;
  const int candidates = tiles * k;
  for (int i = threadIdx.x; i < k; i += kTopkThreads) best[i] = kEmptySlot;
  __syncthreads();
  // Each round sorts the best k so far with the next kTileKeys - k candidates.
  const int fresh = kTileKeys - k;
  for (int start = 0; start < candidates; start += fresh) {
    uint64_t items[kItemsPerThread];
#pragma unroll
    for (int i = 0; i < kItemsPerThread; ++i) {
      const int j = threadIdx.x * kItemsPerThread + i;
      if (j < k) {
        items[i] = best[j];
      } else {
        const int c = start + (j - k);
        items[i] = c < candidates ? partial[base + c] : kEmptySlot;
      }
    }
    __syncthreads();  // everyone has read `best` before it is rewritten
    Sort(sort_storage).SortBlockedToStriped(items);
#pragma unroll
    for (int i = 0; i < kItemsPerThread; ++i) {
      const int rank = i * kTopkThreads + threadIdx.x;
      if (rank < k) best[rank] = items[i];
    }
    __syncthreads();
  }
  const int64_t* blocks = views.heads[head].block_nos;
  const size_t at = (static_cast<size_t>(head) * queries_per_head + query) * k;
  for (int r = threadIdx.x; r < k; r += kTopkThreads) {
    const uint64_t key = best[r];
    out_blocks[at + r] = key == kEmptySlot ? -1 : blocks[static_cast<uint32_t>(key)];
    out_scores[at + r] = key == kEmptySlot ? -__int_as_float(0x7f800000) : score_of(key);
  }
}

}  // namespace lmkv::kernels
