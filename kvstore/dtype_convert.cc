#include "kvstore/dtype_convert.h"

#include <cmath>
#include <cstring>

namespace lmkv {
namespace {

uint32_t float_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  return bits;
}

float bits_float(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}

}  // namespace

float half_bits_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  const uint32_t mantissa = h & 0x3FF;
  if (exponent != 0 && exponent != 31) {
    // Normal: rebias the exponent (15 -> 127) and widen the mantissa (10 -> 23 bits).
    return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
  }
  const float magnitude = exponent == 0 ? std::ldexp(float(mantissa), -24)  // subnormal or zero
                          : mantissa    ? NAN
                                        : INFINITY;
  return bits_float(float_bits(magnitude) | sign);
}

float bf16_bits_to_float(uint16_t b) { return bits_float(uint32_t(b) << 16); }

uint16_t float_to_half_bits(float x) {
  const uint32_t bits = float_bits(x);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  const float a = std::fabs(x);
  if (std::isnan(x)) return uint16_t(sign | 0x7E00);
  if (a >= 65520.f) return uint16_t(sign | 0x7C00);    // rounds to infinity
  constexpr float kSmallestNormal = 6.103515625e-05f;  // 2^-14
  if (a < kSmallestNormal) {
    // Subnormal: a multiple of 2^-24; nearbyint rounds half to even in the default mode.
    return uint16_t(sign | uint16_t(std::nearbyint(std::ldexp(a, 24))));
  }
  // Normal: drop 13 mantissa bits with round to nearest, ties to even; a carry into the
  // exponent is the correct result.
  const uint32_t abits = float_bits(a);
  const uint32_t rounded = abits + 0xFFF + ((abits >> 13) & 1);
  return uint16_t(sign | (((rounded >> 13) - (112u << 10)) & 0x7FFF));
}

uint16_t float_to_bf16_bits(float x) {
  const uint32_t bits = float_bits(x);
  if (std::isnan(x)) return uint16_t((bits >> 16) | 0x40);
  return uint16_t((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

Status to_floats(const void* src, DType dtype, size_t n, float* out) {
  if (src == nullptr || out == nullptr) return Status::InvalidArgument("to_floats with null");
  const auto* bits = static_cast<const uint16_t*>(src);
  switch (dtype) {
    case DType::kFloat16:
      for (size_t i = 0; i < n; ++i) out[i] = half_bits_to_float(bits[i]);
      return Status::Ok();
    case DType::kBFloat16:
      for (size_t i = 0; i < n; ++i) out[i] = bf16_bits_to_float(bits[i]);
      return Status::Ok();
  }
  return Status::InvalidArgument("to_floats with an unknown dtype");
}

Status from_floats(const float* src, size_t n, DType dtype, void* out) {
  if (src == nullptr || out == nullptr) return Status::InvalidArgument("from_floats with null");
  auto* bits = static_cast<uint16_t*>(out);
  switch (dtype) {
    case DType::kFloat16:
      for (size_t i = 0; i < n; ++i) bits[i] = float_to_half_bits(src[i]);
      return Status::Ok();
    case DType::kBFloat16:
      for (size_t i = 0; i < n; ++i) bits[i] = float_to_bf16_bits(src[i]);
      return Status::Ok();
  }
  return Status::InvalidArgument("from_floats with an unknown dtype");
}

}  // namespace lmkv
