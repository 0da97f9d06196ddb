// Warp-level building blocks shared by the landmark search and the attention kernels: vector loads
// of a lane's slice of a row, and the reduce-scatter that turns 32 per-lane partial dot products
// into one full dot product per lane. Lane l holds dims [l*L, l*L+L) of a head of d = 32*L.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace lmkv {
namespace kernels {

__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// The sum and the maximum of one value per lane, in every lane (butterfly order).
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  }
  return x;
}

// L consecutive elements of a row, as one vector load.
template <typename T, int L>
struct alignas(sizeof(T) * L) Lanes {
  T v[L];
};

template <typename T, int L>
__device__ __forceinline__ void to_floats(const Lanes<T, L>& x, float (&dst)[L]) {
#pragma unroll
  for (int i = 0; i < L; ++i) dst[i] = to_float(x.v[i]);
}

template <typename T, int L>
__device__ __forceinline__ void load_lanes(const T* src, float (&dst)[L]) {
  to_floats(*reinterpret_cast<const Lanes<T, L>*>(src), dst);
}

// Halves the set of rows a lane sums at each step, exchanging the other half with lane ^ N, until
// lane l holds the full sum of row l in part[0]. Recursion on N (not a loop over offsets) so every
// index is a compile-time constant and part[] stays in registers.
template <int N>
__device__ __forceinline__ void reduce_scatter(float (&part)[32], int lane) {
  if constexpr (N >= 1) {
    const bool upper = lane & N;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const float send = upper ? part[i] : part[i + N];
      const float keep = upper ? part[i + N] : part[i];
      part[i] = keep + __shfl_xor_sync(0xffffffffu, send, N);
    }
    reduce_scatter<N / 2>(part, lane);
  }
}

// Rows whose loads a lane issues before using any, from global memory: 32 at d <= 128; 16 at
// d = 256, whose slices are twice as wide, to stay within registers. Shared memory's short
// latency needs far fewer (kSharedRowsInFlight), which leaves registers for more warps.
template <int L>
inline constexpr int kRowsInFlight = L <= 4 ? 32 : 16;
inline constexpr int kSharedRowsInFlight = 8;

// Loads this lane's slice of rows [first, first + N) of `rows` (d = 32*L elements each). Rows at
// or past `count` read row count - 1 instead: valid memory, so no load sits behind a branch and
// all N are in flight at once (one at a time, a warp would wait a full memory latency per row).
template <typename T, int L, int N>
__device__ __forceinline__ void load_row_slices(const T* rows, int first, int count, int lane,
                                                Lanes<T, L> (&raw)[N]) {
  constexpr int kDim = 32 * L;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const int row = min(first + j, count - 1);
    raw[j] =
        *reinterpret_cast<const Lanes<T, L>*>(rows + static_cast<long long>(row) * kDim + lane * L);
  }
}

// part[first + j] = this lane's share of q . row (first + j), from the row slices in `raw` (0 at
// or past `count`); transform(k, row) edits a row's slice first (RoPE).
template <typename T, int L, int N, typename Transform>
__device__ __forceinline__ void slice_dots(const float (&q)[L], const Lanes<T, L> (&raw)[N],
                                           int first, int count, Transform transform,
                                           float (&part)[32]) {
#pragma unroll
  for (int j = 0; j < N; ++j) {
    float k[L];
    to_floats(raw[j], k);
    transform(k, first + j);
    float s = 0;
#pragma unroll
    for (int i = 0; i < L; ++i) s = fmaf(q[i], k[i], s);
    part[first + j] = first + j < count ? s : 0.f;
  }
}

// part[j] = this lane's share of q . row j for the 32 rows from `rows` (0 past `count` >= 1),
// loading N rows at a time; transform(k, j) edits row j's slice first (RoPE).
template <typename T, int L, int N, typename Transform>
__device__ __forceinline__ void lane_dots(const float (&q)[L], const T* rows, int count, int lane,
                                          Transform transform, float (&part)[32]) {
#pragma unroll
  for (int first = 0; first < 32; first += N) {
    Lanes<T, L> raw[N];
    load_row_slices<T, L, N>(rows, first, count, lane, raw);
    slice_dots<T, L, N>(q, raw, first, count, transform, part);
  }
}

// Dot products of q (this lane's slice) with up to 32 consecutive rows of `rows`: lane j ends with
// row j's, or -inf past `count` (>= 1). transform(k, j) edits row j's slice first (RoPE). Each
// lane sums its own dims of every row, then a reduce-scatter leaves row j's total on lane j: 31
// shuffles for 32 dot products instead of 5 per row. N rows are loaded at a time.
template <typename T, int L, int N = kRowsInFlight<L>, typename Transform>
__device__ __forceinline__ float warp_dot32(const float (&q)[L], const T* rows, int count, int lane,
                                            Transform transform) {
  float part[32];
  lane_dots<T, L, N>(q, rows, count, lane, transform, part);
  reduce_scatter<16>(part, lane);
  return lane < count ? part[0] : -INFINITY;
}

}  // namespace kernels
}  // namespace lmkv
