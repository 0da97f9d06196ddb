// Stored-value format: round trips and detection of every kind of damage.
#include "kvstore/value_codec.h"

#include <gtest/gtest.h>

#include <random>

#include "test_util.h"

namespace lmkv {
namespace {

class ValueCodec : public ::testing::TestWithParam<BlockShape> {};

TEST_P(ValueCodec, RoundTripsBitExact) {
  const BlockShape shape = GetParam();
  const BlockKey key{3, 1, 2, 99};
  const uint64_t seed = test::fresh_seed();
  const std::vector<char> payload = test::block_payload(shape, key, seed);
  std::string stored;
  encode_block_value(key, shape, payload.data(), payload.data() + shape.tensor_bytes(), &stored);
  EXPECT_EQ(stored.size(), kValueHeaderBytes + shape.payload_bytes());
  std::vector<char> out(shape.payload_bytes(), 0x5A);
  ASSERT_TRUE(decode_block_value(key, shape, stored, out.data()).ok());
  EXPECT_EQ(out, payload);
}

TEST_P(ValueCodec, EveryFlippedByteIsCorruption) {
  const BlockShape shape = GetParam();
  const BlockKey key{3, 1, 2, 99};
  const uint64_t seed = test::fresh_seed();
  std::mt19937_64 rng(seed);
  const std::vector<char> payload = test::block_payload(shape, key, seed);
  std::string stored;
  encode_block_value(key, shape, payload.data(), &stored);
  // Every header byte, and a sample of payload bytes, each with a random non-zero bit mask.
  std::vector<size_t> positions;
  for (size_t i = 0; i < kValueHeaderBytes; ++i) positions.push_back(i);
  for (int i = 0; i < 200; ++i) positions.push_back(rng() % stored.size());
  for (size_t pos : positions) {
    std::string damaged = stored;
    damaged[pos] = static_cast<char>(damaged[pos] ^ (1 + rng() % 255));
    std::vector<char> out(shape.payload_bytes(), 0x5A);
    const Status s = decode_block_value(key, shape, damaged, out.data());
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << "byte " << pos;
    EXPECT_NE(s.message().find(key.to_string()), std::string::npos) << s.message();
    EXPECT_EQ(out, std::vector<char>(shape.payload_bytes(), 0x5A))
        << "output written, byte " << pos;
  }
}

TEST_P(ValueCodec, TruncatedOrExtendedIsCorruption) {
  const BlockShape shape = GetParam();
  const BlockKey key{0, 0, 0, 0};
  const std::vector<char> payload = test::block_payload(shape, key, test::fresh_seed());
  std::string stored;
  encode_block_value(key, shape, payload.data(), &stored);
  std::vector<char> out(shape.payload_bytes());
  for (size_t keep : {size_t{0}, size_t{5}, kValueHeaderBytes, stored.size() - 1}) {
    const Status s = decode_block_value(key, shape, stored.substr(0, keep), out.data());
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << keep;
    EXPECT_NE(s.message().find("truncated"), std::string::npos) << s.message();
  }
  EXPECT_EQ(decode_block_value(key, shape, stored + "x", out.data()).code(),
            StatusCode::kCorruption);
}

TEST_P(ValueCodec, ValueUnderAnotherKeyOrShapeIsCorruption) {
  const BlockShape shape = GetParam();
  const BlockKey key{5, 0, 1, 2};
  const std::vector<char> payload = test::block_payload(shape, key, test::fresh_seed());
  std::string stored;
  encode_block_value(key, shape, payload.data(), &stored);
  std::vector<char> out(shape.payload_bytes());
  EXPECT_EQ(decode_block_value({5, 0, 1, 3}, shape, stored, out.data()).code(),
            StatusCode::kCorruption);
  BlockShape other = shape;
  other.dtype = shape.dtype == DType::kFloat16 ? DType::kBFloat16 : DType::kFloat16;
  const Status s = decode_block_value(key, other, stored, out.data());
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("shape"), std::string::npos) << s.message();
}

INSTANTIATE_TEST_SUITE_P(Shapes, ValueCodec,
                         ::testing::Values(BlockShape{50, 128, DType::kFloat16},
                                           BlockShape{50, 128, DType::kBFloat16},
                                           BlockShape{16, 64, DType::kFloat16},
                                           BlockShape{1, 256, DType::kBFloat16}));

}  // namespace
}  // namespace lmkv
