// Stand-in landmark keys and half-precision reads.
#include "attention/landmark_keys.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace lmkv {
namespace {

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

}  // namespace lmkv
