// Exact top-k: equal to brute force, ties included.
#include "index/exact_topk.h"

#include <gtest/gtest.h>

#include <random>

#include "index/brute_force.h"
#include "test_util.h"

namespace lmkv {
namespace {

// Small integer coordinates make every float dot product exact, so ties are real and frequent.
TEST(ExactTopK, EqualsBruteForceWithTiesByLowerBlock) {
  std::mt19937_64 rng(test::fresh_seed());
  constexpr uint32_t kDim = 16, kK = 20;
  for (size_t n : {size_t{1}, size_t{7}, size_t{500}}) {
    std::vector<float> keys(n * kDim);
    for (auto& v : keys) v = static_cast<float>(int(rng() % 5) - 2);
    std::vector<int64_t> blocks(n);
    for (size_t i = 0; i < n; ++i) blocks[i] = static_cast<int64_t>((i * 7919) % 1000003);
    std::vector<float> queries(10 * kDim);
    for (auto& v : queries) v = static_cast<float>(int(rng() % 3) - 1);
    std::vector<int64_t> got(10 * kK);
    std::vector<float> scores(10 * kK);
    exact_topk(queries.data(), 10, keys.data(), blocks.data(), n, kDim, kK, got.data(),
               scores.data());
    for (size_t q = 0; q < 10; ++q) {
      const auto want = test::brute_force_topk(keys, blocks, queries.data() + q * kDim, kDim, kK);
      EXPECT_EQ(std::vector<int64_t>(got.begin() + q * kK, got.begin() + (q + 1) * kK), want)
          << "n=" << n << " query " << q;
    }
  }
}

}  // namespace
}  // namespace lmkv
