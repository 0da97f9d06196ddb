// Stored-value format: round trips and detection of every kind of damage.
#include "kvstore/value_codec.h"

#include <gtest/gtest.h>

#include <random>

#include "fuzz/fuzz_shapes.h"
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

// Found by the landmark decoder fuzzer: a header that claims dim 0 with a checksum that matches.
// Refused as damage (no landmark has zero values), not decoded into an empty key.
TEST(LandmarkCodec, ZeroDimensionIsCorruptionEvenWithAMatchingChecksum) {
  const unsigned char bytes[] = {0x4c, 0x4d, 0x4b, 0x4c, 0x01, 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0xc0,
                                 0x4a, 0x8d, 0x33, 0xae, 0x45, 0xae, 0xa5, 0x73};
  const std::string_view stored(reinterpret_cast<const char*>(bytes), sizeof(bytes));
  Result<std::vector<float>> values = decode_landmark_value({3, 1, 2, 99}, stored);
  EXPECT_EQ(values.status().code(), StatusCode::kCorruption);
}

// Found by the landmark decoder fuzzer: reserved header bytes set, under a matching checksum (the
// checksum is checked first, so reaching "reserved" proves it matched). Refused: a decoder must
// accept only what the encoder writes.
TEST(LandmarkCodec, NonZeroReservedBytesAreCorruptionEvenWithAMatchingChecksum) {
  const unsigned char bytes[] = {
      0x4c, 0x4d, 0x4b, 0x4c, 0x01, 0x00, 0x00, 0x02, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x31,
      0x47, 0xc6, 0x9e, 0x51, 0xb0, 0x04, 0x14, 0xb4, 0x4d, 0x4c, 0x4b, 0xf0, 0x00, 0x00, 0x00, 0xc0,
      0x00, 0x00, 0x80, 0xff, 0xff, 0x54, 0x6a, 0x5f, 0x55, 0x3d, 0x80, 0x3e, 0x00, 0x00, 0x00, 0x41};
  const std::string_view stored(reinterpret_cast<const char*>(bytes), sizeof(bytes));
  const Status s = decode_landmark_value(fuzz::kKey, stored).status();
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("reserved"), std::string::npos) << s.message();
}

TEST(LandmarkCodec, RoundTripsAndDetectsFlips) {
  const BlockKey key{8, 2, 1, 5};
  const std::vector<float> landmark = {0.5f, -1.25f, 3.0f, 1e-3f, -7.0f, 2.0f, 0.0f, 9.5f};
  std::string stored;
  encode_landmark_value(key, landmark.data(), 8, &stored);
  Result<std::vector<float>> back = decode_landmark_value(key, stored);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, landmark);
  for (size_t i = 0; i < stored.size(); ++i) {
    std::string damaged = stored;
    damaged[i] ^= 0x20;
    EXPECT_EQ(decode_landmark_value(key, damaged).status().code(), StatusCode::kCorruption) << i;
  }
  EXPECT_EQ(decode_landmark_value({8, 2, 1, 6}, stored).status().code(), StatusCode::kCorruption);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ValueCodec,
                         ::testing::Values(BlockShape{50, 128, DType::kFloat16},
                                           BlockShape{50, 128, DType::kBFloat16},
                                           BlockShape{16, 64, DType::kFloat16},
                                           BlockShape{1, 256, DType::kBFloat16}));

}  // namespace
}  // namespace lmkv
