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

// L consecutive elements of a row, as one vector load.
template <typename T, int L>
struct alignas(sizeof(T) * L) Lanes {
  T v[L];
};

template <typename T, int L>
__device__ __forceinline__ void load_lanes(const T* src, float (&dst)[L]) {
  const Lanes<T, L> x = *reinterpret_cast<const Lanes<T, L>*>(src);
#pragma unroll
  for (int i = 0; i < L; ++i) dst[i] = to_float(x.v[i]);
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

// Dot products of q (this lane's slice) with up to 32 consecutive rows of `rows` (d = 32*L
// elements each): lane j ends with row j's, or -inf past `count`. Every row's load is issued before
// any is used, so a warp keeps 32 rows of reads in flight.
template <typename T, int L>
__device__ __forceinline__ float warp_dot32(const float (&q)[L], const T* rows, int count,
                                            int lane) {
  constexpr int kDim = 32 * L;
  float part[32];
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    float k[L] = {};
    if (j < count) load_lanes<T, L>(rows + static_cast<long long>(j) * kDim + lane * L, k);
    float s = 0;
#pragma unroll
    for (int i = 0; i < L; ++i) s = fmaf(q[i], k[i], s);
    part[j] = s;
  }
  reduce_scatter<16>(part, lane);
  return lane < count ? part[0] : -INFINITY;
}

}  // namespace kernels
}  // namespace lmkv
