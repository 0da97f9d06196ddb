// GPU arena allocation and the slot gather kernel.
#include <fmt/format.h>

#include <algorithm>

#include "kvstore/cuda_util.h"
#include "kvstore/dependent_launch.cuh"
#include "kvstore/gpu_tier.h"
#include "kvstore/slot_copy.cuh"

namespace lmkv {
namespace {

// Slot pairs travel as kernel parameters (CUDA 12.1+ allows 32 KB of them), so a launch needs no
// staging buffer and no extra copy. The parameter block is sized to the batch (32, 128, 512 or
// 1024 pairs): a launch copies its whole parameter block, and small early batches are common.
template <int kPairs>
struct SlotPairs {
  int32_t src[kPairs];
  int32_t dst[kPairs];
};
constexpr int kMaxSlotsPerLaunch = 1024;

// Each thread block copies kThreads * kLoads 16-byte vectors of one slot. The next gather may
// start at once; this one ends only after the one before it (a no-op unless launched as its
// programmatic dependent), so the last gather of a chain finishing means all have.
template <int kThreads, int kLoads, int kPairs>
__global__ void __launch_bounds__(kThreads)
    slot_gather_kernel(const uint4* __restrict__ src_base, uint4* __restrict__ dst_base,
                       size_t slot_vecs, int chunks_per_slot,
                       const __grid_constant__ SlotPairs<kPairs> pairs) {
  constexpr int kChunkVecs = kThreads * kLoads;
  kernels::let_dependent_grid_launch();
  const int item = blockIdx.x / chunks_per_slot;
  const size_t begin = static_cast<size_t>(blockIdx.x % chunks_per_slot) * kChunkVecs;
  kernels::copy_slot_chunk<kThreads, kLoads>(
      src_base + static_cast<size_t>(pairs.src[item]) * slot_vecs,
      dst_base + static_cast<size_t>(pairs.dst[item]) * slot_vecs, begin, slot_vecs);
  kernels::wait_for_prerequisite_grid();
}

template <int kThreads, int kLoads, int kPairs>
Status launch_pairs(const uint4* src_base, uint4* dst_base, size_t slot_vecs,
                    const int32_t* src_slots, const int32_t* dst_slots, int n, cudaStream_t stream,
                    bool overlap_previous) {
  constexpr size_t kChunkVecs = kThreads * kLoads;
  const int chunks_per_slot = static_cast<int>((slot_vecs + kChunkVecs - 1) / kChunkVecs);
  SlotPairs<kPairs> pairs;
  std::copy(src_slots, src_slots + n, pairs.src);
  std::copy(dst_slots, dst_slots + n, pairs.dst);
  const dim3 grid(unsigned(n * chunks_per_slot));
  LMKV_CUDA_RETURN_IF_ERROR(launch_kernel(slot_gather_kernel<kThreads, kLoads, kPairs>, grid,
                                          dim3(kThreads), 0, stream, overlap_previous, src_base,
                                          dst_base, slot_vecs, chunks_per_slot, pairs));
  return Status::Ok();
}

template <int kThreads, int kLoads>
Status launch_shape(const uint4* src_base, uint4* dst_base, size_t slot_vecs,
                    const int32_t* src_slots, const int32_t* dst_slots, size_t count,
                    cudaStream_t stream, bool overlap_previous) {
  for (size_t first = 0; first < count; first += kMaxSlotsPerLaunch) {
    const int n = static_cast<int>(std::min<size_t>(kMaxSlotsPerLaunch, count - first));
    const int32_t* src = src_slots + first;
    const int32_t* dst = dst_slots + first;
    // Launches after the first of this call are the same page-in's batches.
    const bool overlap = overlap_previous || first > 0;
    Status s = n <= 32 ? launch_pairs<kThreads, kLoads, 32>(src_base, dst_base, slot_vecs, src, dst,
                                                            n, stream, overlap)
               : n <= 128 ? launch_pairs<kThreads, kLoads, 128>(src_base, dst_base, slot_vecs, src,
                                                                dst, n, stream, overlap)
               : n <= 512 ? launch_pairs<kThreads, kLoads, 512>(src_base, dst_base, slot_vecs, src,
                                                                dst, n, stream, overlap)
                          : launch_pairs<kThreads, kLoads, kMaxSlotsPerLaunch>(
                                src_base, dst_base, slot_vecs, src, dst, n, stream, overlap);
    LMKV_RETURN_IF_ERROR(s);
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<GpuArena>> GpuArena::allocate(int32_t slot_count, size_t slot_bytes) {
  std::unique_ptr<GpuArena> arena(new GpuArena());
  arena->slot_bytes_ = slot_bytes;
  const size_t bytes = static_cast<size_t>(slot_count) * slot_bytes;
  if (bytes == 0) return std::move(arena);
  void* p = nullptr;
  const cudaError_t error = cudaMalloc(&p, bytes);
  if (error == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    return Status::ResourceExhausted(fmt::format(
        "cannot allocate a GPU tier of {} bytes ({} slots): the device has {} bytes free", bytes,
        slot_count, free_bytes));
  }
  LMKV_CUDA_RETURN_IF_ERROR(error);
  arena->base_ = static_cast<char*>(p);
  return std::move(arena);
}

GpuArena::~GpuArena() {
  if (base_) cudaFree(base_);
}

Status check_gather_slot_bytes(size_t slot_bytes) {
  if (slot_bytes % sizeof(uint4) != 0) {
    return Status::InvalidArgument(
        fmt::format("slot_bytes={} is not a multiple of {}", slot_bytes, sizeof(uint4)));
  }
  return Status::Ok();
}

Status launch_slot_gather(const char* src_base, char* dst_base, size_t slot_bytes,
                          const int32_t* src_slots, const int32_t* dst_slots, size_t count,
                          cudaStream_t stream, GatherShape shape, bool overlap_previous) {
  LMKV_RETURN_IF_ERROR(check_gather_slot_bytes(slot_bytes));
  const auto* src = reinterpret_cast<const uint4*>(src_base);
  auto* dst = reinterpret_cast<uint4*>(dst_base);
  const size_t vecs = slot_bytes / sizeof(uint4);
#define LMKV_GATHER_SHAPE(t, l)                                                    \
  if (shape.threads == t && shape.loads_per_thread == l) {                         \
    return launch_shape<t, l>(src, dst, vecs, src_slots, dst_slots, count, stream, \
                              overlap_previous);                                   \
  }
  LMKV_GATHER_SHAPE(128, 4)
  LMKV_GATHER_SHAPE(256, 4)
  LMKV_GATHER_SHAPE(256, 8)
#undef LMKV_GATHER_SHAPE
  return Status::InvalidArgument(fmt::format("gather shape {} threads x {} loads is not supported",
                                             shape.threads, shape.loads_per_thread));
}

}  // namespace lmkv
