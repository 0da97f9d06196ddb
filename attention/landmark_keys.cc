// Stand-in landmark keys and half-precision reads.
#include "attention/landmark_keys.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace lmkv {
namespace {

float half_bits_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  const uint32_t mantissa = h & 0x3FF;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(float(mantissa), -24);  // subnormal (or zero)
  } else if (exponent == 31) {
    magnitude = mantissa ? NAN : INFINITY;
  } else {
    magnitude = std::ldexp(float(mantissa | 0x400), int(exponent) - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &magnitude, 4);
  bits |= sign;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

float bf16_bits_to_float(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

Status check(const float* keys, size_t tokens, uint32_t dim, const float* out) {
  if (keys == nullptr || out == nullptr || tokens == 0 || dim == 0) {
    return Status::InvalidArgument("landmark of an empty block or with null pointers");
  }
  return Status::Ok();
}

}  // namespace

Status mean_landmark(const float* keys, size_t tokens, uint32_t dim, float* out) {
  LMKV_RETURN_IF_ERROR(check(keys, tokens, dim, out));
  std::vector<double> sum(dim, 0.0);
  for (size_t t = 0; t < tokens; ++t) {
    for (uint32_t i = 0; i < dim; ++i) sum[i] += keys[t * dim + i];
  }
  for (uint32_t i = 0; i < dim; ++i) out[i] = static_cast<float>(sum[i] / double(tokens));
  return Status::Ok();
}

Status representative_landmark(const float* keys, size_t tokens, uint32_t dim, const float* queries,
                               size_t count, float* out) {
  LMKV_RETURN_IF_ERROR(check(keys, tokens, dim, out));
  if (count == 0 || queries == nullptr) return mean_landmark(keys, tokens, dim, out);
  size_t best = 0;
  double best_score = -INFINITY;
  for (size_t t = 0; t < tokens; ++t) {
    double score = 0;
    for (size_t q = 0; q < count; ++q) {
      for (uint32_t i = 0; i < dim; ++i) score += double(keys[t * dim + i]) * queries[q * dim + i];
    }
    if (score > best_score) {
      best_score = score;
      best = t;
    }
  }
  std::memcpy(out, keys + best * dim, dim * sizeof(float));
  return Status::Ok();
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

}  // namespace lmkv
