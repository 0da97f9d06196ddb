#include "kvstore/disk_read_split.h"

#include <algorithm>

namespace lmkv {
namespace {

bool neighbours(const BlockKey& a, const BlockKey& b) {
  return a.sequence == b.sequence && a.layer == b.layer && a.kv_head == b.kv_head &&
         a.block_no + 1 == b.block_no;
}

}  // namespace

std::vector<std::vector<size_t>> split_disk_reads(const std::vector<BlockKey>& sorted_keys,
                                                  size_t threads) {
  std::vector<std::vector<size_t>> batches;
  std::vector<size_t> scattered;
  for (size_t i = 0; i < sorted_keys.size();) {
    size_t end = i + 1;
    while (end < sorted_keys.size() && end - i < kMaxRunBlocks &&
           neighbours(sorted_keys[end - 1], sorted_keys[end])) {
      ++end;
    }
    if (end - i < kMinRunBlocks) {
      for (size_t k = i; k < end; ++k) scattered.push_back(k);
    } else {
      batches.emplace_back();
      for (size_t k = i; k < end; ++k) batches.back().push_back(k);
    }
    i = end;
  }
  if (scattered.empty()) return batches;
  const size_t count = std::max<size_t>(
      1, std::min(threads, (scattered.size() + kMinScatteredBatch - 1) / kMinScatteredBatch));
  // Contiguous slices in key order, their sizes differing by one at most.
  for (size_t b = 0; b < count; ++b) {
    const size_t first = scattered.size() * b / count;
    const size_t last = scattered.size() * (b + 1) / count;
    batches.emplace_back(scattered.begin() + static_cast<std::ptrdiff_t>(first),
                         scattered.begin() + static_cast<std::ptrdiff_t>(last));
  }
  return batches;
}

}  // namespace lmkv
