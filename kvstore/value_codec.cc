// Encoding and verification of stored block values.
#include "kvstore/value_codec.h"

#include <fmt/format.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

#include "kvstore/key_codec.h"

namespace lmkv {
namespace {

constexpr char kMagic[4] = {'L', 'M', 'K', 'B'};
constexpr size_t kChecksumOffset = kValueHeaderBytes - 8;

void put_le(char* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
}

uint64_t get_le(const char* in, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = value << 8 | static_cast<uint8_t>(in[i]);
  return value;
}

uint64_t value_checksum(const std::string& encoded_key, const char* header, const char* k,
                        const char* v, size_t tensor_bytes) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, encoded_key.data(), encoded_key.size());
  XXH3_64bits_update(&state, header, kChecksumOffset);
  XXH3_64bits_update(&state, k, tensor_bytes);
  XXH3_64bits_update(&state, v, tensor_bytes);
  return XXH3_64bits_digest(&state);
}

}  // namespace

void encode_block_value(const BlockKey& key, const BlockShape& shape, const void* k, const void* v,
                        std::string* out) {
  const size_t tensor = shape.tensor_bytes();
  out->assign(kValueHeaderBytes + 2 * tensor, '\0');
  char* h = out->data();
  std::memcpy(h, kMagic, 4);
  put_le(h + 4, kValueFormatVersion, 2);
  put_le(h + 6, static_cast<uint8_t>(shape.dtype), 1);
  put_le(h + 8, shape.block_tokens, 4);
  put_le(h + 12, shape.head_dim, 4);
  put_le(h + 16, shape.payload_bytes(), 8);
  char* payload = h + kValueHeaderBytes;
  std::memcpy(payload, k, tensor);
  std::memcpy(payload + tensor, v, tensor);
  put_le(h + kChecksumOffset,
         value_checksum(encode_block_key(key), h, payload, payload + tensor, tensor), 8);
}

void encode_block_value(const BlockKey& key, const BlockShape& shape, const void* payload,
                        std::string* out) {
  const char* p = static_cast<const char*>(payload);
  encode_block_value(key, shape, p, p + shape.tensor_bytes(), out);
}

Status decode_block_value(const BlockKey& key, const BlockShape& shape, std::string_view stored,
                          void* payload_out) {
  auto where = [&key] { return key.to_string(); };  // formatted only for an error
  const size_t expected = kValueHeaderBytes + shape.payload_bytes();
  if (stored.size() != expected) {
    return Status::Corruption(fmt::format("block {} on disk has {} bytes, expected {} (truncated?)",
                                          where(), stored.size(), expected));
  }
  const char* h = stored.data();
  if (std::memcmp(h, kMagic, 4) != 0) {
    return Status::Corruption(fmt::format("block {} on disk has a bad magic number", where()));
  }
  const uint64_t version = get_le(h + 4, 2);
  if (version != kValueFormatVersion) {
    return Status::Corruption(fmt::format("block {} on disk has format version {}, expected {}",
                                          where(), version, kValueFormatVersion));
  }
  const BlockShape stored_shape{static_cast<uint32_t>(get_le(h + 8, 4)),
                                static_cast<uint32_t>(get_le(h + 12, 4)),
                                static_cast<DType>(get_le(h + 6, 1))};
  if (!(stored_shape == shape) || get_le(h + 16, 8) != shape.payload_bytes()) {
    return Status::Corruption(fmt::format("block {} on disk has shape {}, the store uses {}",
                                          where(), stored_shape.to_string(), shape.to_string()));
  }
  const size_t tensor = shape.tensor_bytes();
  const char* payload = h + kValueHeaderBytes;
  const uint64_t want = get_le(h + kChecksumOffset, 8);
  const uint64_t got = value_checksum(encode_block_key(key), h, payload, payload + tensor, tensor);
  if (want != got) {
    return Status::Corruption(
        fmt::format("block {} on disk failed its checksum (stored {:016x}, computed {:016x})",
                    where(), want, got));
  }
  // Reserved header bytes (7, and 24 up to the checksum) are written as zero, as in landmarks.
  if (get_le(h + 7, 1) != 0 || get_le(h + 24, int(kChecksumOffset - 24)) != 0) {
    return Status::Corruption(
        fmt::format("block {} on disk has non-zero reserved header bytes", where()));
  }
  std::memcpy(payload_out, payload, 2 * tensor);
  return Status::Ok();
}

namespace {

constexpr char kLandmarkMagic[4] = {'L', 'M', 'K', 'L'};
constexpr size_t kLandmarkChecksumOffset = kLandmarkHeaderBytes - 8;

uint64_t landmark_checksum(const BlockKey& key, const char* header, const char* values,
                           size_t bytes) {
  const std::string encoded_key = encode_block_key(key, kLandmarkKeyTag);
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, encoded_key.data(), encoded_key.size());
  XXH3_64bits_update(&state, header, kLandmarkChecksumOffset);
  XXH3_64bits_update(&state, values, bytes);
  return XXH3_64bits_digest(&state);
}

}  // namespace

void encode_landmark_value(const BlockKey& key, const float* values, uint32_t dim,
                           std::string* out) {
  const size_t bytes = size_t{dim} * sizeof(float);
  out->assign(kLandmarkHeaderBytes + bytes, '\0');
  char* h = out->data();
  std::memcpy(h, kLandmarkMagic, 4);
  put_le(h + 4, kValueFormatVersion, 2);
  put_le(h + 8, dim, 4);
  std::memcpy(h + kLandmarkHeaderBytes, values, bytes);
  put_le(h + kLandmarkChecksumOffset, landmark_checksum(key, h, h + kLandmarkHeaderBytes, bytes),
         8);
}

Result<std::vector<float>> decode_landmark_value(const BlockKey& key, std::string_view stored) {
  auto where = [&key] { return key.to_string(); };
  if (stored.size() < kLandmarkHeaderBytes || std::memcmp(stored.data(), kLandmarkMagic, 4) != 0) {
    return Status::Corruption(
        fmt::format("landmark of block {} on disk has no valid header "
                    "({} bytes)",
                    where(), stored.size()));
  }
  const char* h = stored.data();
  const uint64_t version = get_le(h + 4, 2);
  const uint64_t dim = get_le(h + 8, 4);
  const size_t bytes = dim * sizeof(float);
  // dim 0 is never written (a landmark has values), so a stored 0 is damage however it checksums.
  if (version != kValueFormatVersion || dim == 0 || stored.size() != kLandmarkHeaderBytes + bytes) {
    return Status::Corruption(fmt::format(
        "landmark of block {} on disk has version {} and {} bytes for dim {} (truncated?)", where(),
        version, stored.size(), dim));
  }
  const uint64_t want = get_le(h + kLandmarkChecksumOffset, 8);
  if (want != landmark_checksum(key, h, h + kLandmarkHeaderBytes, bytes)) {
    return Status::Corruption(
        fmt::format("landmark of block {} on disk failed its checksum", where()));
  }
  // Reserved header bytes (6-7, 12-15) are written as zero: anything else is no value this
  // encoder wrote, even one whose checksum matches (found by the fuzzer).
  if (get_le(h + 6, 2) != 0 || get_le(h + 12, 4) != 0) {
    return Status::Corruption(
        fmt::format("landmark of block {} on disk has non-zero reserved header bytes", where()));
  }
  std::vector<float> values(dim);
  std::memcpy(values.data(), h + kLandmarkHeaderBytes, bytes);
  return values;
}

}  // namespace lmkv
