// Host arena allocation: pinned and mapped with CUDA, page-aligned heap memory otherwise.
#include "kvstore/host_tier.h"

#include <fmt/format.h>

#include <cstdlib>

#include "kvstore/cuda_util.h"

namespace lmkv {

Result<std::unique_ptr<HostArena>> HostArena::allocate(int32_t slot_count, size_t slot_bytes,
                                                       bool pinned) {
  std::unique_ptr<HostArena> arena(new HostArena());
  arena->slot_bytes_ = slot_bytes;
  const size_t bytes = static_cast<size_t>(slot_count) * slot_bytes;
  if (bytes == 0) return arena;
  if (pinned) {
#ifdef LMKV_WITH_CUDA
    void* p = nullptr;
    const cudaError_t error = cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable);
    if (error == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      return Status::ResourceExhausted(fmt::format(
          "cannot allocate a pinned host tier of {} bytes ({} slots)", bytes, slot_count));
    }
    LMKV_CUDA_RETURN_IF_ERROR(error);
    arena->base_ = static_cast<char*>(p);
    arena->pinned_ = true;
    void* device_view = nullptr;
    LMKV_CUDA_RETURN_IF_ERROR(cudaHostGetDevicePointer(&device_view, p, 0));
    arena->device_view_ = static_cast<const char*>(device_view);
    return arena;
#else
    return Status::FailedPrecondition("a pinned host tier needs a CUDA build");
#endif
  }
  constexpr size_t kPage = 4096;
  arena->base_ = static_cast<char*>(std::aligned_alloc(kPage, (bytes + kPage - 1) / kPage * kPage));
  if (arena->base_ == nullptr) {
    return Status::ResourceExhausted(
        fmt::format("cannot allocate a host tier of {} bytes ({} slots)", bytes, slot_count));
  }
  return arena;
}

HostArena::~HostArena() {
  if (base_ == nullptr) return;
#ifdef LMKV_WITH_CUDA
  if (pinned_) {
    cudaFreeHost(base_);
    return;
  }
#endif
  std::free(base_);
}

}  // namespace lmkv
