// The index tests' reference: top-k by brute force in double precision, ordered by higher score
// and then lower block number, as the index promises.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace lmkv::test {

inline std::vector<int64_t> brute_force_topk(const std::vector<float>& keys,
                                             const std::vector<int64_t>& blocks, const float* query,
                                             uint32_t dim, uint32_t k) {
  std::vector<std::pair<double, int64_t>> all;
  for (size_t i = 0; i < blocks.size(); ++i) {
    double s = 0;
    for (uint32_t d = 0; d < dim; ++d) s += double(keys[i * dim + d]) * query[d];
    all.push_back({-s, blocks[i]});
  }
  std::sort(all.begin(), all.end());
  std::vector<int64_t> top;
  for (size_t i = 0; i < k; ++i) top.push_back(i < all.size() ? all[i].second : -1);
  return top;
}

}  // namespace lmkv::test
