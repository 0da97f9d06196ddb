// GpuAttention in builds without CUDA: arguments are still checked, then the call is refused.
#include "attention/gpu_attention.h"
#include "attention/gpu_attention_args.h"

namespace lmkv {

struct GpuAttention::Scratch {};
GpuAttention::GpuAttention() = default;
GpuAttention::~GpuAttention() = default;

Status GpuAttention::run(const GpuAttentionArgs& args, CUstream_st*) {
  LMKV_RETURN_IF_ERROR(validate_gpu_attention_args(args));
  return Status::FailedPrecondition("GPU attention needs a CUDA build of lmkv");
}

}  // namespace lmkv
