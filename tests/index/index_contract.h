// What every LandmarkIndex backend promises about erase and bad input, checked the same way for
// each (the backends' own tests call these on a fresh index).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "index/landmark_index.h"

namespace lmkv::test {

// `index` is empty, of dim 8.
inline void expect_erase_forgets_one_sequence(LandmarkIndex& index) {
  std::vector<float> key(8, 1.0f);
  for (uint64_t seq : {1, 2}) {
    const uint64_t block = 0;
    ASSERT_TRUE(index.add({seq, 0, 0}, &block, key.data(), 1).ok());
  }
  ASSERT_TRUE(index.erase(1).ok());
  EXPECT_EQ(index.size({1, 0, 0}), 0u);
  EXPECT_EQ(index.size({2, 0, 0}), 1u);
  SearchResult result;
  EXPECT_EQ(index.search({1, 0, 1, 1, 1, key.data()}, &result).code(), StatusCode::kNotFound);
  EXPECT_TRUE(index.search({2, 0, 1, 1, 1, key.data()}, &result).ok());
}

// `index` is empty, of dim 4: a block added twice, a NaN key, an infinite query, k = 0 and an
// unknown sequence are errors naming what is wrong, and leave the index working.
inline void expect_clear_errors(LandmarkIndex& index) {
  const std::vector<float> keys = {1, 2, 3, 4, 5, 6, 7, 8};
  const uint64_t blocks[] = {3, 4};
  ASSERT_TRUE(index.add({0, 0, 0}, blocks, keys.data(), 2).ok());
  const Status twice = index.add({0, 0, 0}, blocks + 1, keys.data(), 1);
  EXPECT_EQ(twice.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(twice.message().find("block 4"), std::string::npos) << twice.message();
  std::vector<float> bad_key = {1, NAN, 0, 0};
  const uint64_t five = 5;
  EXPECT_EQ(index.add({0, 0, 0}, &five, bad_key.data(), 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index.size({0, 0, 0}), 2u);
  SearchResult result;
  std::vector<float> query = {1, 0, INFINITY, 0};
  const Status inf = index.search({0, 0, 1, 1, 2, query.data()}, &result);
  EXPECT_EQ(inf.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(inf.message().find("dimension 2"), std::string::npos) << inf.message();
  query[2] = 0;
  EXPECT_EQ(index.search({0, 0, 1, 1, 0, query.data()}, &result).code(),
            StatusCode::kInvalidArgument);
  const Status unknown = index.search({7, 0, 1, 1, 2, query.data()}, &result);
  EXPECT_EQ(unknown.code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.message().find("sequence 7"), std::string::npos) << unknown.message();
  ASSERT_TRUE(index.search({0, 0, 1, 1, 2, query.data()}, &result).ok());
  EXPECT_EQ(result.block_nos[0], 4);  // <(1,0,0,0), (5,6,7,8)> = 5 beats 1
}

}  // namespace lmkv::test
