// Disk-tier value format: a 40-byte header, then the payload (K then V).
//   magic "LMKB" | format version u16 | dtype u8 | reserved u8 | block_tokens u32 | head_dim u32 |
//   payload_bytes u64 | reserved u64 | checksum u64
// (little-endian). The checksum is XXH3-64 over the encoded key, the header up to the checksum and
// the payload, so a value that is truncated, bit-flipped or stored under another key is detected on
// every read and never returned as data.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kvstore/block.h"
#include "lmkv/status.h"

namespace lmkv {

inline constexpr uint16_t kValueFormatVersion = 1;
inline constexpr size_t kValueHeaderBytes = 40;

// Appends header and payload to *out (cleared first). k and v are shape.tensor_bytes() each.
void encode_block_value(const BlockKey& key, const BlockShape& shape, const void* k, const void* v,
                        std::string* out);

// Same, with the payload already contiguous (K then V).
void encode_block_value(const BlockKey& key, const BlockShape& shape, const void* payload,
                        std::string* out);

// Verifies `stored` against key and shape and copies its payload to `payload_out`
// (shape.payload_bytes()). Nothing is written to payload_out unless the value is intact.
Status decode_block_value(const BlockKey& key, const BlockShape& shape, std::string_view stored,
                          void* payload_out);

// Landmark values: a 24-byte header, then `dim` float32 values (little-endian).
//   magic "LMKL" | format version u16 | reserved u16 | dim u32 | reserved u32 | checksum u64
// with the checksum (XXH3-64) over the landmark's encoded key, the header before it and the values.
inline constexpr size_t kLandmarkHeaderBytes = 24;

void encode_landmark_value(const BlockKey& key, const float* values, uint32_t dim,
                           std::string* out);

// Verifies `stored` and returns its values; nothing is returned unless the value is intact.
Result<std::vector<float>> decode_landmark_value(const BlockKey& key, std::string_view stored);

}  // namespace lmkv
