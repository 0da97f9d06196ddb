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
inline constexpr char kLandmarkKeyTag = 'L';  // landmark keys, one per block
inline constexpr char kMetadataKeyTag = 'M';  // store-wide metadata (the block shape)
inline constexpr size_t kEncodedBlockKeyBytes = 1 + 8 + 4 + 4 + 8;

// The key of block `key`'s payload (tag 'B') or of its landmark (tag 'L').
std::string encode_block_key(const BlockKey& key, char tag = kBlockKeyTag);
Result<BlockKey> decode_block_key(std::string_view encoded, char tag = kBlockKeyTag);

// [begin, end) covering every key of `sequence` under `tag`.
std::pair<std::string, std::string> sequence_key_range(uint64_t sequence, char tag = kBlockKeyTag);
// [begin, end) covering every key under `tag`.
std::pair<std::string, std::string> tag_key_range(char tag);

// The key under which the store's block shape is recorded.
std::string shape_metadata_key();

}  // namespace lmkv
