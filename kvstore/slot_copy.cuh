// The copy at the heart of both gather kernels: one thread block moves one chunk of a slot.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace lmkv::kernels {

// Copies 16-byte vectors [begin, begin + kThreads * kLoads) of a slot of slot_vecs vectors from
// `src` to `dst`, clipped to the slot: every load first, so that they are in flight together (the
// source is usually host memory across the link), then every store.
template <int kThreads, int kLoads>
__device__ __forceinline__ void copy_slot_chunk(const uint4* __restrict__ src,
                                                uint4* __restrict__ dst, size_t begin,
                                                size_t slot_vecs) {
  uint4 staged[kLoads];
#pragma unroll
  for (int j = 0; j < kLoads; ++j) {
    const size_t i = begin + threadIdx.x + j * kThreads;
    if (i < slot_vecs) staged[j] = src[i];
  }
#pragma unroll
  for (int j = 0; j < kLoads; ++j) {
    const size_t i = begin + threadIdx.x + j * kThreads;
    if (i < slot_vecs) dst[i] = staged[j];
  }
}

}  // namespace lmkv::kernels
