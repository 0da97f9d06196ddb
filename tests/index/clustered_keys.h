// Landmark keys in drifting topics, with queries near the topics: the data on which approximate
// index backends must reach their recall.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
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

// Fills heads 0..heads-1 of (sequence 1, layer 0) of both indexes with clustered keys, added in
// chunks of 1000 as blocks seal (an approximate index is trained or built part way through),
// searches both with `queries` queries per head, and returns the recall@k of `approx` against
// `exact`; -1 (and a test failure) when an index call fails.
inline double clustered_recall(LandmarkIndex& approx, LandmarkIndex& exact, std::mt19937_64& rng,
                               uint32_t dim, uint32_t heads, size_t blocks, uint32_t queries,
                               uint32_t k) {
  std::vector<float> all_queries;
  for (uint32_t h = 0; h < heads; ++h) {
    Clustered c = clustered_keys(rng, dim, blocks, queries);
    for (size_t first = 0; first < blocks; first += 1000) {
      const size_t n = std::min<size_t>(1000, blocks - first);
      for (LandmarkIndex* index : {&approx, &exact}) {
        const Status s =
            index->add({1, 0, h}, c.blocks.data() + first, c.keys.data() + first * dim, n);
        if (!s.ok()) {
          ADD_FAILURE() << index->name() << ": " << s.to_string();
          return -1;
        }
      }
    }
    all_queries.insert(all_queries.end(), c.queries.begin(), c.queries.end());
  }
  SearchResult found, truth;
  const SearchRequest request{1, 0, heads, queries, k, all_queries.data()};
  if (!approx.search(request, &found).ok() || !exact.search(request, &truth).ok()) {
    ADD_FAILURE() << "search failed";
    return -1;
  }
  size_t hits = 0;
  for (size_t q = 0; q < size_t{heads} * queries; ++q) {
    std::set<int64_t> want(truth.block_nos.begin() + q * k, truth.block_nos.begin() + (q + 1) * k);
    for (uint32_t j = 0; j < k; ++j) hits += want.count(found.block_nos[q * k + j]);
  }
  const double recall = double(hits) / double(size_t{heads} * queries * k);
  std::printf("[ recall   ] %s recall@%u = %.4f\n", approx.name().c_str(), k, recall);
  return recall;
}

}  // namespace lmkv::test
