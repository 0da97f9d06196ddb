// Writing landmarks through the store, and rebuilding an index from it.
#include "index/landmark_persistence.h"

#include <fmt/format.h>

namespace lmkv {

Status add_landmarks(TieredStore& store, LandmarkIndex& index, const HeadKey& head,
                     const uint64_t* block_nos, const float* keys, size_t n) {
  if (n == 0) return Status::Ok();
  // Checked before anything is stored: a key the index would refuse never reaches disk.
  LMKV_RETURN_IF_ERROR(validate_add(head, block_nos, keys, n, index.dim()));
  std::vector<BlockKey> block_keys(n);
  for (size_t i = 0; i < n; ++i) {
    block_keys[i] = {head.sequence, head.layer, head.kv_head, block_nos[i]};
  }
  LMKV_RETURN_IF_ERROR(store.put_landmarks(block_keys, keys, index.dim()));
  return index.add(head, block_nos, keys, n);
}

Status rebuild_index(TieredStore& store, LandmarkIndex& index) {
  // The scan runs in key order, so each head's landmarks arrive together: gather one head, add it.
  HeadKey current;
  std::vector<uint64_t> blocks;
  std::vector<float> keys;
  auto flush = [&]() -> Status {
    Status s = index.add(current, blocks.data(), keys.data(), blocks.size());
    blocks.clear();
    keys.clear();
    return s;
  };
  Status scanned =
      store.scan_landmarks([&](const BlockKey& key, const float* values, uint32_t dim) -> Status {
        if (dim != index.dim()) {
          return Status::InvalidArgument(
              fmt::format("the landmark of block {} has dimension {}, the index {}",
                          key.to_string(), dim, index.dim()));
        }
        const HeadKey head{key.sequence, key.layer, key.kv_head};
        if (!blocks.empty() && !(head == current)) LMKV_RETURN_IF_ERROR(flush());
        current = head;
        blocks.push_back(key.block_no);
        keys.insert(keys.end(), values, values + dim);
        return Status::Ok();
      });
  LMKV_RETURN_IF_ERROR(scanned.with_context("rebuilding the landmark index"));
  return blocks.empty() ? Status::Ok() : flush();
}

}  // namespace lmkv
