// Big-endian key encoding for the disk tier.
#include "kvstore/key_codec.h"

#include <fmt/format.h>

namespace lmkv {
namespace {

void put_be(std::string* out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

uint64_t get_be(std::string_view in, size_t offset, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value = value << 8 | static_cast<uint8_t>(in[offset + i]);
  return value;
}

}  // namespace

std::string encode_block_key(const BlockKey& key, char tag) {
  std::string out;
  out.reserve(kEncodedBlockKeyBytes);
  out.push_back(tag);
  put_be(&out, key.sequence, 8);
  put_be(&out, key.layer, 4);
  put_be(&out, key.kv_head, 4);
  put_be(&out, key.block_no, 8);
  return out;
}

Result<BlockKey> decode_block_key(std::string_view encoded, char tag) {
  if (encoded.size() != kEncodedBlockKeyBytes) {
    return Status::Corruption(
        fmt::format("block key has {} bytes, expected {}", encoded.size(), kEncodedBlockKeyBytes));
  }
  if (encoded[0] != tag) {
    return Status::Corruption(fmt::format("block key tag is 0x{:02x}, expected '{}'",
                                          static_cast<uint8_t>(encoded[0]), tag));
  }
  BlockKey key;
  key.sequence = get_be(encoded, 1, 8);
  key.layer = static_cast<uint32_t>(get_be(encoded, 9, 4));
  key.kv_head = static_cast<uint32_t>(get_be(encoded, 13, 4));
  key.block_no = get_be(encoded, 17, 8);
  return key;
}

std::pair<std::string, std::string> sequence_key_range(uint64_t sequence, char tag) {
  std::string begin(1, tag);
  put_be(&begin, sequence, 8);
  if (sequence == UINT64_MAX) return {begin, tag_key_range(tag).second};
  std::string end(1, tag);
  put_be(&end, sequence + 1, 8);
  return {begin, end};
}

std::pair<std::string, std::string> tag_key_range(char tag) {
  return {std::string(1, tag), std::string(1, static_cast<char>(tag + 1))};
}

std::string shape_metadata_key() { return std::string(1, kMetadataKeyTag) + "shape"; }

}  // namespace lmkv
