// A gather that starts before its work is known. The host publishes slot pairs into a list in
// mapped pinned memory while the kernel, launched first, copies each pair as soon as it appears.
// A device page-in plans its blocks one at a time: with this the GPU copies the first blocks while
// the CPU plans the rest, with one launch in all instead of one per batch, and without the idle
// link between batches that the CPU could not launch soon enough. Only built with CUDA.
//
// The kernel runs until the host closes its list. The host must therefore close every list it
// publishes to before it waits for anything on the GPU, or the two could wait for each other.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "kvstore/cuda_util.h"
#include "lmkv/status.h"

namespace lmkv {

// The list the host writes and the kernel reads (over the link). Pair i is 0 until published, then
// (src_slot + 1) << 32 | dst_slot; kClosed once the host has closed the list without it.
struct GatherList {
  static constexpr uint32_t kCapacity = 1024;
  static constexpr uint64_t kClosed = ~uint64_t{0};
  uint64_t pairs[kCapacity];
};

// Pinned, mapped GatherLists for reuse: a list returns to use once the GPU has passed the event
// it was retired with. Not thread safe: the store calls it under its mutex.
class GatherListPool {
 public:
  struct List {
    GatherList* host = nullptr;
    const GatherList* device = nullptr;  // the same memory as the GPU addresses it
    uint32_t max_pairs = 0;              // the kernel's bound: pairs [0, max_pairs) are written
    uint32_t published = 0;
  };
  GatherListPool() = default;
  ~GatherListPool();  // waits for the GPU to finish with retired lists
  GatherListPool(const GatherListPool&) = delete;
  GatherListPool& operator=(const GatherListPool&) = delete;

  // An empty list (allocating more pinned memory when every list is in use).
  Result<List> acquire();
  // Gives `list` back once the GPU passes `done` (at once when null: nothing reads it any more).
  void retire(const List& list, std::shared_ptr<CudaEvent> done);

 private:
  static constexpr int kListsPerAllocation = 16;
  std::vector<void*> allocations_;
  std::vector<List> free_;
  std::deque<std::pair<List, std::shared_ptr<CudaEvent>>> retiring_;
};

// Launches the kernel that copies slot src of `src_base` to slot dst of `dst_base` for each pair
// the host publishes to `list`, at most max_pairs of them (1 to kCapacity; a bound, not a count:
// each pair it may get keeps a thread block waiting). As launch_slot_gather: slot_bytes a multiple
// of 16, and with `overlap_previous` a programmatic dependent of the kernel before it on the
// stream.
Status launch_streamed_gather(const char* src_base, char* dst_base, size_t slot_bytes,
                              const GatherListPool::List& list, cudaStream_t stream,
                              bool overlap_previous);
// Publishes the next pair of `list` (published < max_pairs).
void publish_gather_pair(GatherListPool::List& list, int32_t src_slot, int32_t dst_slot);
// Publishes no more pairs to `list`: the kernel finishes once it has copied those published.
void close_gather_list(const GatherListPool::List& list);

}  // namespace lmkv
