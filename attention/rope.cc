#include "attention/rope.h"

#include <fmt/format.h>

#include <cmath>

namespace lmkv {

Status apply_rope(float* x, uint32_t dim, int64_t position, double theta) {
  if (x == nullptr || dim == 0 || dim % 2 != 0) {
    return Status::InvalidArgument(fmt::format("RoPE of dim {} (must be even and non-zero)", dim));
  }
  if (!(theta > 1 && std::isfinite(theta))) {
    return Status::InvalidArgument(fmt::format("RoPE theta {}", theta));
  }
  const uint32_t half = dim / 2;
  for (uint32_t i = 0; i < half; ++i) {
    const double angle = double(position) * std::pow(theta, -2.0 * i / dim);
    const double c = std::cos(angle), s = std::sin(angle);
    const double a = x[i], b = x[i + half];
    x[i] = float(a * c - b * s);
    x[i + half] = float(b * c + a * s);
  }
  return Status::Ok();
}

}  // namespace lmkv
