// Disk-tier key encoding. Keys are a one-byte namespace tag followed by big-endian fields, so that
// RocksDB's bytewise order is (sequence, layer, kv_head, block_no) order: a sequence is one
// contiguous key range (erase is a range delete) and a head's neighbouring blocks sit together.
#pragma once

#include <string>
#include <string_view>

#include "kvstore/block.h"
#include "lmkv/status.h"

namespace lmkv {

inline constexpr char kBlockKeyTag = 'B';     // block payloads
inline constexpr char kMetadataKeyTag = 'M';  // store-wide metadata (the block shape)
inline constexpr size_t kEncodedBlockKeyBytes = 1 + 8 + 4 + 4 + 8;

std::string encode_block_key(const BlockKey& key);
Result<BlockKey> decode_block_key(std::string_view encoded);

// [begin, end) covering every block of `sequence`.
std::pair<std::string, std::string> sequence_key_range(uint64_t sequence);

// The key under which the store's block shape is recorded.
std::string shape_metadata_key();

}  // namespace lmkv
