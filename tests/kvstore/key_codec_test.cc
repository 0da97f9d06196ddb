// Disk-key encoding: round trips, order, sequence ranges and malformed keys.
#include "kvstore/key_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "test_util.h"

namespace lmkv {
namespace {

BlockKey random_key(std::mt19937_64& rng) {
  // Mix small and extreme values so every byte position of each field is exercised.
  auto pick = [&](uint64_t max) { return rng() % 4 == 0 ? max - rng() % 3 : rng() % 1000; };
  return {pick(UINT64_MAX), static_cast<uint32_t>(pick(UINT32_MAX)),
          static_cast<uint32_t>(pick(UINT32_MAX)), pick(UINT64_MAX)};
}

TEST(KeyCodec, RoundTripsEveryField) {
  std::mt19937_64 rng(test::fresh_seed());
  for (int i = 0; i < 1000; ++i) {
    const BlockKey key = random_key(rng);
    const std::string encoded = encode_block_key(key);
    ASSERT_EQ(encoded.size(), kEncodedBlockKeyBytes);
    Result<BlockKey> decoded = decode_block_key(encoded);
    ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
    EXPECT_EQ(*decoded, key) << key.to_string();
  }
}

TEST(KeyCodec, BytewiseOrderIsSequenceMajorOrder) {
  std::mt19937_64 rng(test::fresh_seed());
  std::vector<BlockKey> keys(500);
  for (auto& k : keys) k = random_key(rng);
  std::vector<BlockKey> by_bytes = keys;
  std::sort(by_bytes.begin(), by_bytes.end(), [](const BlockKey& a, const BlockKey& b) {
    return encode_block_key(a) < encode_block_key(b);
  });
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, by_bytes);
}

TEST(KeyCodec, SequenceRangeHoldsExactlyThatSequence) {
  for (uint64_t seq : {uint64_t{0}, uint64_t{7}, UINT64_MAX - 1, UINT64_MAX}) {
    const auto [begin, end] = sequence_key_range(seq);
    const std::string first = encode_block_key({seq, 0, 0, 0});
    const std::string last = encode_block_key({seq, UINT32_MAX, UINT32_MAX, UINT64_MAX});
    EXPECT_LE(begin, first);
    EXPECT_LT(last, end);
    if (seq > 0) EXPECT_LT(encode_block_key({seq - 1, UINT32_MAX, UINT32_MAX, UINT64_MAX}), begin);
    if (seq < UINT64_MAX) EXPECT_GE(encode_block_key({seq + 1, 0, 0, 0}), end);
    EXPECT_LT(end, shape_metadata_key() + "\xff");  // metadata sorts after every block
  }
}

TEST(KeyCodec, MalformedKeysAreCorruption) {
  std::string encoded = encode_block_key({1, 2, 3, 4});
  Result<BlockKey> short_key = decode_block_key(encoded.substr(0, 10));
  EXPECT_EQ(short_key.status().code(), StatusCode::kCorruption);
  EXPECT_NE(short_key.status().message().find("10 bytes"), std::string::npos);
  encoded[0] = 'X';
  EXPECT_EQ(decode_block_key(encoded).status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace lmkv
