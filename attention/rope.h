// Rotary position encoding on the CPU, the same convention the kernels apply (rotate-half pairing:
// dimension i with i + d/2, frequency theta^(-2i/d)): the reference for RoPE tests and the CPU
// path's encoding of keys stored before it.
#pragma once

#include <cstdint>

#include "lmkv/status.h"

namespace lmkv {

// Rotates x[dim] (dim even) in place to `position`, computing in double.
Status apply_rope(float* x, uint32_t dim, int64_t position, double theta);

}  // namespace lmkv
