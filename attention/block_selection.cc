// Top-k block selection for the CPU reference.
#include "attention/block_selection.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace lmkv {
namespace {

Status check(const HeadBlocks& blocks, uint32_t k) {
  if (k == 0) return Status::InvalidArgument("block selection with k=0");
  if (blocks.count > 0 && blocks.landmarks == nullptr) {
    return Status::InvalidArgument("block selection with null landmarks");
  }
  if (blocks.dim == 0) return Status::InvalidArgument("block selection with dim=0");
  return Status::Ok();
}

double landmark_score(const float* query, const HeadBlocks& blocks, size_t b) {
  double s = 0;
  const float* l = blocks.landmarks + b * blocks.dim;
  for (uint32_t i = 0; i < blocks.dim; ++i) s += double(query[i]) * double(l[i]);
  return s;
}

// The k best of `rank` (higher first, ties to the lower block).
std::vector<uint32_t> top_k(const std::vector<double>& rank, uint32_t k) {
  std::vector<uint32_t> order(rank.size());
  std::iota(order.begin(), order.end(), 0u);
  const size_t keep = std::min<size_t>(k, order.size());
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), [&](uint32_t a, uint32_t b) {
    return rank[a] > rank[b] || (rank[a] == rank[b] && a < b);
  });
  order.resize(keep);
  return order;
}

}  // namespace

Result<std::vector<uint32_t>> select_blocks_per_token(const float* query, const HeadBlocks& blocks,
                                                      uint32_t k) {
  LMKV_RETURN_IF_ERROR(check(blocks, k));
  if (query == nullptr) return Status::InvalidArgument("block selection with a null query");
  std::vector<double> rank(blocks.count);
  for (size_t b = 0; b < blocks.count; ++b) rank[b] = landmark_score(query, blocks, b);
  return top_k(rank, k);
}

Result<std::vector<uint32_t>> select_blocks_from_chunk_scores(const std::vector<double>& scores,
                                                              size_t count, size_t n, uint32_t k,
                                                              double scale) {
  if (k == 0) return Status::InvalidArgument("block selection with k=0");
  if (count == 0 || scores.size() != count * n) {
    return Status::InvalidArgument(
        fmt::format("chunk block selection with {} scores for {} queries x {} blocks",
                    scores.size(), count, n));
  }
  // A block ranks by the largest probability any query's softmax over all blocks gives it.
  std::vector<double> rank(n, 0.0), probs(n);
  for (size_t q = 0; q < count; ++q) {
    for (size_t b = 0; b < n; ++b) probs[b] = scale * scores[q * n + b];
    const double top = n ? *std::max_element(probs.begin(), probs.end()) : 0.0;
    double sum = 0;
    for (double& p : probs) sum += (p = std::exp(p - top));
    for (size_t b = 0; b < n; ++b) rank[b] = std::max(rank[b], probs[b] / sum);
  }
  return top_k(rank, k);
}

Result<std::vector<uint32_t>> select_blocks_per_chunk(const float* queries, size_t count,
                                                      const HeadBlocks& blocks, uint32_t k,
                                                      double scale) {
  LMKV_RETURN_IF_ERROR(check(blocks, k));
  if (queries == nullptr || count == 0) {
    return Status::InvalidArgument("chunk block selection with no queries");
  }
  std::vector<double> scores(count * blocks.count);
  for (size_t q = 0; q < count; ++q) {
    for (size_t b = 0; b < blocks.count; ++b) {
      scores[q * blocks.count + b] = landmark_score(queries + q * blocks.dim, blocks, b);
    }
  }
  return select_blocks_from_chunk_scores(scores, count, blocks.count, k, scale);
}

}  // namespace lmkv
