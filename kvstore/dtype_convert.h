// Conversions between float and the block dtypes (fp16, bf16) on the host, in plain C++ so the
// CPU-only build has them too. Rounding to fp16/bf16 is to nearest, ties to even (as the GPU's
// __float2half_rn and __float2bfloat16 do).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kvstore/block.h"
#include "lmkv/status.h"

namespace lmkv {

float half_bits_to_float(uint16_t h);
float bf16_bits_to_float(uint16_t b);
uint16_t float_to_half_bits(float x);
uint16_t float_to_bf16_bits(float x);

// n values of `dtype` (2 bytes each) to floats, and back.
Status to_floats(const void* src, DType dtype, size_t n, float* out);
Status from_floats(const float* src, size_t n, DType dtype, void* out);

}  // namespace lmkv
