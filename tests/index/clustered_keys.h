// Landmark keys in drifting topics, with queries near the topics: the data on which approximate
// index backends must reach their recall.
#pragma once

#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "index/landmark_index.h"

namespace lmkv::test {

// Keys in drifting topics: clusters with spread, as blocks of one topic would have.
struct Clustered {
  std::vector<float> keys, queries;
  std::vector<uint64_t> blocks;
};

inline Clustered clustered_keys(std::mt19937_64& rng, uint32_t dim, size_t n, size_t nq) {
  std::normal_distribution<float> normal;
  constexpr int kClusters = 48;
  std::vector<float> centres(kClusters * dim);
  for (auto& v : centres) v = normal(rng);
  Clustered c;
  c.keys.resize(n * dim);
  for (size_t i = 0; i < n; ++i) {
    const size_t cluster = (i * kClusters / n + rng() % 3) % kClusters;  // topics drift over blocks
    for (uint32_t d = 0; d < dim; ++d)
      c.keys[i * dim + d] = centres[cluster * dim + d] + 0.5f * normal(rng);
    c.blocks.push_back(i);
  }
  c.queries.resize(nq * dim);
  for (size_t q = 0; q < nq; ++q) {
    const size_t cluster = rng() % kClusters;
    for (uint32_t d = 0; d < dim; ++d)
      c.queries[q * dim + d] = centres[cluster * dim + d] + 0.5f * normal(rng);
  }
  return c;
}

// The share of the true top k (of `queries` queries) that an approximate search found.
inline double recall_at_k(const SearchResult& approx, const SearchResult& truth, size_t queries,
                          uint32_t k) {
  size_t hits = 0;
  for (size_t q = 0; q < queries; ++q) {
    std::set<int64_t> want(truth.block_nos.begin() + q * k, truth.block_nos.begin() + (q + 1) * k);
    for (uint32_t j = 0; j < k; ++j) hits += want.count(approx.block_nos[q * k + j]);
  }
  return double(hits) / double(queries * k);
}

}  // namespace lmkv::test
