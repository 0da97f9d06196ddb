// The grouped softmax, evaluated in double with the usual max-subtraction for stability.
#include "attention/grouped_softmax.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace lmkv {
namespace {

double dot(const float* a, const float* b, uint32_t d) {
  double s = 0;
  for (uint32_t i = 0; i < d; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

Status check_inputs(const float* query, const LocalWindow& local, const HeadBlocks& blocks,
                    const std::vector<uint32_t>& selected, bool need_landmarks) {
  if (query == nullptr) return Status::InvalidArgument("grouped softmax with a null query");
  if (blocks.dim == 0) return Status::InvalidArgument("grouped softmax with dim=0");
  if (local.tokens > 0 && (local.keys == nullptr || local.values == nullptr)) {
    return Status::InvalidArgument(
        fmt::format("local window of {} tokens with null keys or values", local.tokens));
  }
  if (local.tokens == 0 && selected.empty()) {
    return Status::InvalidArgument("grouped softmax over nothing: no local tokens, no blocks");
  }
  if (!selected.empty() && (blocks.block_tokens == 0 || blocks.keys == nullptr ||
                            blocks.values == nullptr || (need_landmarks && blocks.landmarks == nullptr))) {
    return Status::InvalidArgument("selected blocks with B=0 or null keys, values or landmarks");
  }
  std::vector<uint32_t> sorted = selected;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (sorted[i] >= blocks.count) {
      return Status::InvalidArgument(
          fmt::format("selected block {} of {} blocks", sorted[i], blocks.count));
    }
    if (i > 0 && sorted[i] == sorted[i - 1]) {
      return Status::InvalidArgument(fmt::format("block {} selected twice", sorted[i]));
    }
  }
  return Status::Ok();
}

// Weights of every value used, with the selected landmarks' unscaled scores given or (null)
// computed from blocks.landmarks.
Status weights(const float* query, const LocalWindow& local, const HeadBlocks& blocks,
               const std::vector<uint32_t>& selected, const std::vector<double>* landmark_scores,
               double scale, std::vector<double>* weights) {
  LMKV_RETURN_IF_ERROR(check_inputs(query, local, blocks, selected, landmark_scores == nullptr));
  if (landmark_scores != nullptr && landmark_scores->size() != selected.size()) {
    return Status::InvalidArgument(fmt::format("{} landmark scores for {} selected blocks",
                                               landmark_scores->size(), selected.size()));
  }
  const uint32_t d = blocks.dim, B = blocks.block_tokens;
  // Main group: local tokens, then the selected landmarks.
  std::vector<double> main(local.tokens + selected.size());
  for (size_t j = 0; j < local.tokens; ++j) main[j] = scale * dot(query, local.keys + j * d, d);
  for (size_t b = 0; b < selected.size(); ++b) {
    main[local.tokens + b] =
        scale * (landmark_scores != nullptr
                     ? (*landmark_scores)[b]
                     : dot(query, blocks.landmarks + size_t(selected[b]) * d, d));
  }
  const double main_max = *std::max_element(main.begin(), main.end());
  double main_sum = 0;
  for (double& s : main) main_sum += (s = std::exp(s - main_max));
  weights->assign(local.tokens + selected.size() * B, 0.0);
  for (size_t j = 0; j < local.tokens; ++j) (*weights)[j] = main[j] / main_sum;
  // Each selected block: its own softmax, gated by its landmark's probability.
  std::vector<double> inner(B);
  for (size_t b = 0; b < selected.size(); ++b) {
    const float* keys = blocks.keys + size_t(selected[b]) * B * d;
    for (uint32_t t = 0; t < B; ++t) inner[t] = scale * dot(query, keys + size_t(t) * d, d);
    const double inner_max = *std::max_element(inner.begin(), inner.end());
    double inner_sum = 0;
    for (double& s : inner) inner_sum += (s = std::exp(s - inner_max));
    const double gate = main[local.tokens + b] / main_sum;
    for (uint32_t t = 0; t < B; ++t) {
      (*weights)[local.tokens + b * B + t] = gate * inner[t] / inner_sum;
    }
  }
  return Status::Ok();
}

// out = sum of weight * value over the local tokens and the selected blocks' tokens.
Status accumulate_values(const LocalWindow& local, const HeadBlocks& blocks,
                         const std::vector<uint32_t>& selected, const std::vector<double>& weights,
                         double* out) {
  const uint32_t d = blocks.dim, B = blocks.block_tokens;
  std::fill(out, out + d, 0.0);
  auto accumulate = [&](double w, const float* v) {
    for (uint32_t i = 0; i < d; ++i) out[i] += w * double(v[i]);
  };
  for (size_t j = 0; j < local.tokens; ++j) accumulate(weights[j], local.values + j * d);
  for (size_t b = 0; b < selected.size(); ++b) {
    const float* values = blocks.values + size_t(selected[b]) * B * d;
    for (uint32_t t = 0; t < B; ++t) {
      accumulate(weights[local.tokens + b * B + t], values + size_t(t) * d);
    }
  }
  return Status::Ok();
}

}  // namespace

Status grouped_softmax_weights(const float* query, const LocalWindow& local,
                               const HeadBlocks& blocks, const std::vector<uint32_t>& selected,
                               double scale, std::vector<double>* out) {
  return weights(query, local, blocks, selected, nullptr, scale, out);
}

Status grouped_softmax_reference(const float* query, const LocalWindow& local,
                                 const HeadBlocks& blocks, const std::vector<uint32_t>& selected,
                                 double scale, double* out) {
  if (out == nullptr) return Status::InvalidArgument("grouped softmax with a null output");
  std::vector<double> w;
  LMKV_RETURN_IF_ERROR(weights(query, local, blocks, selected, nullptr, scale, &w));
  return accumulate_values(local, blocks, selected, w, out);
}

Status grouped_softmax_scored(const float* query, const LocalWindow& local,
                              const HeadBlocks& blocks, const std::vector<uint32_t>& selected,
                              const std::vector<double>& landmark_scores, double scale,
                              double* out) {
  if (out == nullptr) return Status::InvalidArgument("grouped softmax with a null output");
  std::vector<double> w;
  LMKV_RETURN_IF_ERROR(weights(query, local, blocks, selected, &landmark_scores, scale, &w));
  return accumulate_values(local, blocks, selected, w, out);
}

}  // namespace lmkv
