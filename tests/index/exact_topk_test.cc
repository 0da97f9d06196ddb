// Exact top-k: equal to brute force, ties included.
#include "index/exact_topk.h"

#include <gtest/gtest.h>

#include <random>

#include "index/brute_force.h"
#include "test_util.h"

namespace lmkv {
namespace {

// Small integer coordinates make every float dot product exact, so ties are real and frequent.
// One query takes the plain scoring loop, ten take BLAS; no keys at all gives every slot -1.
TEST(ExactTopK, EqualsBruteForceWithTiesByLowerBlock) {
  std::mt19937_64 rng(test::fresh_seed());
  constexpr uint32_t kDim = 16, kK = 20;
  for (size_t nq : {size_t{1}, size_t{10}}) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{500}}) {
      std::vector<float> keys(n * kDim);
      for (auto& v : keys) v = static_cast<float>(int(rng() % 5) - 2);
      std::vector<int64_t> blocks(n);
      for (size_t i = 0; i < n; ++i) blocks[i] = static_cast<int64_t>((i * 7919) % 1000003);
      std::vector<float> queries(nq * kDim);
      for (auto& v : queries) v = static_cast<float>(int(rng() % 3) - 1);
      std::vector<int64_t> got(nq * kK);
      std::vector<float> scores(nq * kK);
      exact_topk(queries.data(), nq, keys.data(), blocks.data(), n, kDim, kK, got.data(),
                 scores.data());
      for (size_t q = 0; q < nq; ++q) {
        const auto want = test::brute_force_topk(keys, blocks, queries.data() + q * kDim, kDim, kK);
        EXPECT_EQ(std::vector<int64_t>(got.begin() + q * kK, got.begin() + (q + 1) * kK), want)
            << "n=" << n << " queries " << nq << " query " << q;
      }
    }
  }
}

}  // namespace
}  // namespace lmkv
