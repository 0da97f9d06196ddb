// A set of block keys that numbers them in first-seen order: insert returns a key's number, new or
// existing. Open addressing over flat arrays, so a batch of thousands of keys costs no allocation
// per key; page-ins and retrieval attention dedupe every step's blocks with it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kvstore/block.h"

namespace lmkv {

class BlockKeySet {
 public:
  // Room for `expected` keys before the table first grows.
  explicit BlockKeySet(size_t expected = 16);

  // The key's number: its position in keys(), added at the end when new.
  uint32_t insert(const BlockKey& key);
  bool contains(const BlockKey& key) const;
  // Distinct keys, in first-seen order.
  const std::vector<BlockKey>& keys() const { return keys_; }
  size_t size() const { return keys_.size(); }
  // Empties the set, keeping its memory.
  void clear();

 private:
  size_t find_slot(const BlockKey& key) const;  // the key's slot, or the empty one it would take
  void grow();

  std::vector<int32_t> table_;  // number of the key in each slot, -1 for empty
  std::vector<BlockKey> keys_;
  size_t mask_ = 0;
};

}  // namespace lmkv
