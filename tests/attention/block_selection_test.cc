// Top-k block selection per token and per chunk.
#include "attention/block_selection.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "test_util.h"

namespace lmkv {
namespace {

TEST(BlockSelection, PerTokenIsTheTopKWithTiesToTheLowerBlock) {
  std::mt19937_64 rng(test::fresh_seed());
  constexpr uint32_t kDim = 8;
  // Integer landmarks and query: exact scores, many ties.
  std::vector<float> landmarks(40 * kDim), query(kDim);
  for (auto& v : landmarks) v = float(int(rng() % 3) - 1);
  for (auto& v : query) v = float(int(rng() % 3) - 1);
  const HeadBlocks blocks{1, kDim, 40, nullptr, nullptr, landmarks.data()};
  std::vector<std::pair<double, uint32_t>> all;
  for (uint32_t b = 0; b < 40; ++b) {
    double s = 0;
    for (uint32_t i = 0; i < kDim; ++i) s += landmarks[b * kDim + i] * query[i];
    all.push_back({-s, b});
  }
  std::sort(all.begin(), all.end());
  for (uint32_t k : {1u, 7u, 40u, 100u}) {
    auto got = select_blocks_per_token(query.data(), blocks, k);
    ASSERT_TRUE(got.ok());
    ASSERT_EQ(got->size(), std::min<size_t>(k, 40));
    for (size_t i = 0; i < got->size(); ++i) EXPECT_EQ((*got)[i], all[i].second) << "k " << k;
  }
}

TEST(BlockSelection, AChunkOfOneRanksLikeItsToken) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  constexpr uint32_t kDim = 16;
  std::vector<float> landmarks(100 * kDim), query(kDim);
  for (auto& v : landmarks) v = normal(rng);
  for (auto& v : query) v = normal(rng);
  const HeadBlocks blocks{1, kDim, 100, nullptr, nullptr, landmarks.data()};
  auto token = select_blocks_per_token(query.data(), blocks, 10);
  auto chunk = select_blocks_per_chunk(query.data(), 1, blocks, 10, 0.25);
  ASSERT_TRUE(token.ok() && chunk.ok());
  EXPECT_EQ(*token, *chunk);  // softmax keeps the order
}

TEST(BlockSelection, AChunkKeepsEachTokensFavourite) {
  // Query 0 strongly prefers block 3, query 1 block 1; the others are lukewarm for both.
  const float landmarks[] = {0.1f, 0.1f, 0, 5, 0.2f, 0.2f, 5, 0};
  const float queries[] = {1, 0, 0, 1};
  const HeadBlocks blocks{1, 2, 4, nullptr, nullptr, landmarks};
  auto chunk = select_blocks_per_chunk(queries, 2, blocks, 2, 1.0);
  ASSERT_TRUE(chunk.ok());
  EXPECT_EQ(*chunk, (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(select_blocks_per_chunk(queries, 2, blocks, 0, 1.0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(select_blocks_per_token(queries, blocks, 0).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lmkv
