#include "index/int8_landmarks.h"

#include <algorithm>
#include <cmath>

namespace lmkv {

void quantize_landmark_rows(const float* keys, size_t n, uint32_t dim, int8_t* codes,
                            float* scales) {
  for (size_t r = 0; r < n; ++r) {
    const float* row = keys + r * dim;
    float largest = 0.f;
    for (uint32_t j = 0; j < dim; ++j) largest = std::max(largest, std::fabs(row[j]));
    const float scale = largest / 127.f;
    scales[r] = scale;
    for (uint32_t j = 0; j < dim; ++j) {
      // |row[j] / scale| <= 127 up to one rounding; the clamp keeps that rounding from reaching
      // 128.
      const float code = scale > 0.f ? std::nearbyint(row[j] / scale) : 0.f;
      codes[r * dim + j] = static_cast<int8_t>(std::clamp(code, -127.f, 127.f));
    }
  }
}

}  // namespace lmkv
