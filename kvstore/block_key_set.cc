// Open-addressing set of block keys with linear probing, kept at most half full.
#include "kvstore/block_key_set.h"

#include <algorithm>

namespace lmkv {

BlockKeySet::BlockKeySet(size_t expected) {
  size_t capacity = 16;
  while (capacity < 2 * expected) capacity *= 2;
  table_.assign(capacity, -1);
  mask_ = capacity - 1;
  keys_.reserve(expected);
}

size_t BlockKeySet::find_slot(const BlockKey& key) const {
  size_t slot = BlockKeyHash()(key) & mask_;
  while (table_[slot] >= 0 && keys_[table_[slot]] != key) slot = (slot + 1) & mask_;
  return slot;
}

uint32_t BlockKeySet::insert(const BlockKey& key) {
  size_t slot = find_slot(key);
  if (table_[slot] >= 0) return static_cast<uint32_t>(table_[slot]);
  if (2 * (keys_.size() + 1) > table_.size()) {
    grow();
    slot = find_slot(key);
  }
  table_[slot] = static_cast<int32_t>(keys_.size());
  keys_.push_back(key);
  return static_cast<uint32_t>(keys_.size() - 1);
}

bool BlockKeySet::contains(const BlockKey& key) const { return table_[find_slot(key)] >= 0; }

void BlockKeySet::clear() {
  std::fill(table_.begin(), table_.end(), -1);
  keys_.clear();
}

void BlockKeySet::grow() {
  table_.assign(2 * table_.size(), -1);
  mask_ = table_.size() - 1;
  for (size_t i = 0; i < keys_.size(); ++i) table_[find_slot(keys_[i])] = static_cast<int32_t>(i);
}

}  // namespace lmkv
