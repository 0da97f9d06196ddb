// make_gpu_fused_index in builds without CUDA.
#include "index/gpu_fused_index.h"

namespace lmkv {

Result<std::unique_ptr<GpuFusedIndex>> make_gpu_fused_index(const GpuFusedOptions&) {
  return Status::FailedPrecondition("the GPU index needs a CUDA build of lmkv");
}

}  // namespace lmkv
