// The page table of a resident decode step, built on the device from the fused search's results:
// row h (query head h of the one decoded token) gets its k blocks in increasing block order, each
// with its pinned GPU slot and landmark score, and its query in the attention kernels' dtype.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "index/kernels/warp_sort.cuh"
#include "kvstore/dependent_launch.cuh"

namespace lmkv::kernels {

__device__ __forceinline__ void from_float(float x, __half* out) { *out = __float2half_rn(x); }
__device__ __forceinline__ void from_float(float x, __nv_bfloat16* out) {
  *out = __float2bfloat16_rn(x);
}

// One warp per row. found_* are the search's [heads][k] results (head-major, which for one token
// is row order); slot_of[g * stride + b] is KV head g's block b's slot, for b < pinned. Launched
// as a dependent of the search's last kernel, and the attention as a dependent of this one.
template <typename T>
__global__ void __launch_bounds__(32)
    resident_page_table_kernel(const int64_t* __restrict__ found_blocks,
                               const float* __restrict__ found_scores, int k, int group,
                               const int32_t* __restrict__ slot_of, int stride, int pinned,
                               const float* __restrict__ queries_f32, int dim,
                               T* __restrict__ queries, int32_t* __restrict__ slots,
                               float* __restrict__ scores, int64_t* __restrict__ block_nos,
                               unsigned long long* __restrict__ missing) {
  const int row = blockIdx.x, lane = threadIdx.x, g = row / group;
  const size_t at = static_cast<size_t>(row) * k;
  let_dependent_grid_launch();
  wait_for_prerequisite_grid();
  const int64_t block = lane < k ? found_blocks[at + lane] : -1;
  const float score = lane < k ? found_scores[at + lane] : 0.f;
  const bool known = lane >= k || (block >= 0 && block < pinned);
  // Ascending block numbers: sort (block, lane) and fetch each score from its lane.
  const uint64_t key =
      lane < k && known ? (static_cast<uint64_t>(block) << 5) | static_cast<uint64_t>(lane) : ~0ull;
  const uint64_t sorted = warp_sort(key, lane);
  const int from = static_cast<int>(sorted & 31);
  const float sorted_score = __shfl_sync(0xffffffffu, score, from);
  const unsigned unknown = __ballot_sync(0xffffffffu, !known);
  if (lane < k) {
    const int64_t b = sorted == ~0ull ? 0 : static_cast<int64_t>(sorted >> 5);
    slots[at + lane] = slot_of[static_cast<size_t>(g) * stride + b];
    scores[at + lane] = sorted_score;
    block_nos[at + lane] = b;
  }
  if (lane == 0 && unknown != 0)
    atomicAdd(missing, static_cast<unsigned long long>(__popc(unknown)));
  // A row that lost a block computes NaN rather than a quietly different result.
  for (int i = lane; i < dim; i += 32) {
    from_float(unknown != 0 ? NAN : queries_f32[static_cast<size_t>(row) * dim + i],
               queries + static_cast<size_t>(row) * dim + i);
  }
}

}  // namespace lmkv::kernels
