// BlockKeySet against std::map on random keys with many repeats, across growth and clear.
#include "kvstore/block_key_set.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "test_util.h"

namespace lmkv {
namespace {

TEST(BlockKeySet, NumbersKeysInFirstSeenOrderLikeAMap) {
  std::mt19937_64 rng(test::fresh_seed());
  BlockKeySet set(4);  // small, so that it grows several times
  for (int round = 0; round < 3; ++round) {
    std::map<BlockKey, uint32_t> reference;
    std::vector<BlockKey> order;
    for (int i = 0; i < 5000; ++i) {
      // Few distinct values per field: many repeats, and keys that differ in one field only.
      const BlockKey key{rng() % 3, uint32_t(rng() % 2), uint32_t(rng() % 4), rng() % 300};
      auto [it, fresh] = reference.emplace(key, uint32_t(order.size()));
      if (fresh) order.push_back(key);
      ASSERT_EQ(set.insert(key), it->second) << key.to_string();
      ASSERT_TRUE(set.contains(key));
    }
    EXPECT_EQ(set.size(), reference.size());
    EXPECT_EQ(set.keys(), order);
    EXPECT_FALSE(set.contains({99, 0, 0, 0}));
    set.clear();
    EXPECT_EQ(set.size(), 0u);
    EXPECT_FALSE(set.contains(order.front()));
  }
}

}  // namespace
}  // namespace lmkv
