// Programmatic dependent launch (sm_90), shared by the search and attention kernels: a kernel
// launched with launch_dependent may start while the kernel before it on the stream still runs,
// which hides its launch latency. Its blocks must call wait_for_prerequisite_grid before they
// touch anything the kernel before writes or reads; that call returns once that kernel has
// finished and its writes are visible. Both device calls are no-ops for an ordinary launch.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace lmkv {
namespace kernels {

// Lets the kernel after this one on the stream (if launched with launch_dependent) start now.
__device__ __forceinline__ void let_dependent_grid_launch() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}
// Waits for the kernel before this one on the stream to finish, its writes visible.
__device__ __forceinline__ void wait_for_prerequisite_grid() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

}  // namespace kernels

// Launches `kernel` on `stream` with `shared_bytes` of dynamic shared memory; with `dependent`,
// as a programmatic dependent of the kernel before it (see above), else in plain stream order.
template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                          cudaStream_t stream, bool dependent, Args&&... args) {
  cudaLaunchAttribute overlap[1] = {};
  overlap[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = overlap;
  config.numAttrs = dependent ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

// launch_kernel as a programmatic dependent of the kernel before it.
template <typename... Params, typename... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                             cudaStream_t stream, Args&&... args) {
  return launch_kernel(kernel, grid, block, shared_bytes, stream, /*dependent=*/true,
                       std::forward<Args>(args)...);
}

}  // namespace lmkv
