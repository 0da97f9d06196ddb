// The GPU tier's memory (one cudaMalloc arena of fixed-size slots) and the gather that fills GPU
// slots from host slots in one launch, reading mapped pinned memory directly: on the GPU machine
// this reaches 51 GB/s where one cudaMemcpyAsync per 25.6 KB block reaches 3.3 GB/s.
// Only built with CUDA.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "lmkv/status.h"

namespace lmkv {

class GpuArena {
 public:
  static Result<std::unique_ptr<GpuArena>> allocate(int32_t slot_count, size_t slot_bytes);
  ~GpuArena();
  GpuArena(const GpuArena&) = delete;
  GpuArena& operator=(const GpuArena&) = delete;

  char* base() { return base_; }
  char* slot(int32_t s) { return base_ + static_cast<size_t>(s) * slot_bytes_; }

 private:
  GpuArena() = default;
  char* base_ = nullptr;
  size_t slot_bytes_ = 0;
};

// How the gather kernel splits its work: threads per thread block, and 16-byte loads each thread
// keeps in flight. bench/page_in_bench.cc compares the supported shapes: on an H100 over PCIe 5
// all six shapes first tried (128 to 512 threads, 4 to 16 loads) moved 256 blocks at 43-46 GB/s
// and 1024 at 47-50 GB/s; these three remain.
struct GatherShape {
  int threads = 256;
  int loads_per_thread = 8;
};
inline constexpr GatherShape kSupportedGatherShapes[] = {{128, 4}, {256, 4}, {256, 8}};

// Ok when the gather kernels can copy slots of slot_bytes (a multiple of their 16-byte vectors).
Status check_gather_slot_bytes(size_t slot_bytes);

// Copies slot src_slots[i] of the region at `src_base` to slot dst_slots[i] of `dst_base`, for
// i < count, on `stream`. Either base may be device memory or mapped pinned host memory (its device
// view). slot_bytes must be a multiple of 16. Enqueues one launch per 1024 blocks.
//
// With `overlap_previous`, the gather may start while the kernel before it on the stream still
// runs (a programmatic dependent launch), so one batch's ramp-up hides the previous one's tail. It
// still finishes after that kernel. Only for a later batch of the same page-in: no kernel before
// it may touch its slots.
Status launch_slot_gather(const char* src_base, char* dst_base, size_t slot_bytes,
                          const int32_t* src_slots, const int32_t* dst_slots, size_t count,
                          cudaStream_t stream, GatherShape shape = {},
                          bool overlap_previous = false);

}  // namespace lmkv
