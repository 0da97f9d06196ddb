// Host-side checks of GpuAttentionArgs (every build, with or without CUDA).
#pragma once

#include "attention/gpu_attention.h"

namespace lmkv {

// Shapes, dtypes, null pointers and alignment: what the host can check without reading device
// memory. The offending value is named in the error.
Status validate_gpu_attention_args(const GpuAttentionArgs& args);

}  // namespace lmkv
