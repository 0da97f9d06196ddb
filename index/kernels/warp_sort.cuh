// Sorting networks across a warp's 32 lanes (one 64-bit value per lane), shared by the landmark
// search and the attention's page-table builder.
#pragma once

#include <cstdint>

namespace lmkv::kernels {

// One value per lane, sorted ascending across the warp (bitonic sort).
__device__ __forceinline__ uint64_t warp_sort(uint64_t v, int lane) {
#pragma unroll
  for (int size = 2; size <= 32; size *= 2) {
#pragma unroll
    for (int stride = size / 2; stride > 0; stride /= 2) {
      const uint64_t other = __shfl_xor_sync(0xffffffffu, v, stride);
      const bool keep_min = ((lane & stride) == 0) == ((lane & size) == 0);
      v = keep_min ? min(v, other) : max(v, other);
    }
  }
  return v;
}

// A bitonic sequence (one value per lane), sorted ascending by one bitonic merge.
__device__ __forceinline__ uint64_t bitonic_sort(uint64_t v, int lane) {
#pragma unroll
  for (int stride = 16; stride > 0; stride /= 2) {
    const uint64_t other = __shfl_xor_sync(0xffffffffu, v, stride);
    v = (lane & stride) == 0 ? min(v, other) : max(v, other);
  }
  return v;
}

// The best 32 of two ascending warp lists, ascending: the lane-wise minimum of one list and the
// other reversed is bitonic and holds exactly those 32.
__device__ __forceinline__ uint64_t warp_merge(uint64_t best, uint64_t sorted, int lane) {
  return bitonic_sort(min(best, __shfl_sync(0xffffffffu, sorted, 31 - lane)), lane);
}

}  // namespace lmkv::kernels
