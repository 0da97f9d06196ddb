// The state behind a TieredStore and the locked helpers that keep its tiers consistent: the block
// table, each tier's slots, the disk tier, deferred unpins. Internal to kvstore/. PageIns share
// ownership of it so that releasing one after the store closed stays safe.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kvstore/block.h"
#include "kvstore/cuda_util.h"
#include "kvstore/disk_tier.h"
#include "kvstore/host_tier.h"
#include "kvstore/slot_pool.h"
#include "kvstore/store_stats.h"
#include "kvstore/thread_pool.h"
#include "kvstore/tiered_store.h"

#ifdef LMKV_WITH_CUDA
#include "kvstore/gpu_tier.h"
#include "kvstore/streamed_gather.h"
#endif

namespace lmkv::detail {

// Where a block's copies are. Blocks with no GPU or host copy have no entry: they live on disk.
struct BlockEntry {
  int32_t gpu_slot = -1;
  int32_t host_slot = -1;
  bool on_disk = false;  // false only for write-back blocks not yet written
  // The encoded landmark of a write-back block not yet written: it goes to disk in the same batch
  // as the block, so a crash never leaves a landmark whose block is missing.
  std::string pending_landmark;
};

// Slots whose pins are given back once the GPU has passed `event` (work that reads them). When
// `start` is set, the time between the two events is a device page-in's swap-in latency, recorded
// for each tier in `sources` once the GPU got there.
struct DeferredUnpin {
  std::shared_ptr<void> event;  // CudaEvent
  Tier tier = Tier::kGpu;
  std::vector<int32_t> slots;
  std::shared_ptr<void> start;  // CudaEvent recorded when the page-in began
  std::array<bool, kTierCount> sources{};
};

struct StoreCore {
  StoreCore(const StoreOptions& options, int32_t gpu_slots, int32_t host_slots);
  // Makes the store's device current for the members' teardown, on whichever thread drops the
  // last reference (a PageIn released after the store closed, say).
  ~StoreCore();
  StoreCore(const StoreCore&) = delete;
  StoreCore& operator=(const StoreCore&) = delete;

  // First, so that it is destroyed last: gives the destroying thread its own device back once the
  // members below have freed their GPU memory, events and pinned memory.
  std::optional<ScopedCudaDevice> teardown_device;
#ifdef LMKV_WITH_CUDA
  EventPool events;             // first, so that it outlives every event the members below hold
  GatherListPool gather_lists;  // guarded by `mu`
#endif

  StoreOptions options;
  size_t slot_bytes = 0;
  int cuda_devices = 0;  // usable devices when the store opened
  std::unique_ptr<DiskTier> disk;
  std::unique_ptr<HostArena> host_arena;
#ifdef LMKV_WITH_CUDA
  std::unique_ptr<GpuArena> gpu_arena;
  // Per GPU slot: the event after which it holds its block (set when the fill is enqueued).
  std::vector<std::shared_ptr<void>> gpu_fill_event;
#endif
  std::unique_ptr<ThreadPool> io_pool;  // parallel disk reads
  StoreStats stats;

  std::mutex mu;               // guards everything below
  std::condition_variable cv;  // a slot left kFilling
  SlotPool gpu_slots;
  SlotPool host_slots;
  std::unordered_map<BlockKey, BlockEntry, BlockKeyHash> table;
  std::unordered_set<BlockKey, BlockKeyHash> puts_in_flight;
  std::deque<DeferredUnpin> deferred;
  // Evictions per tier, kept here rather than in `stats` because they happen under `mu` on the
  // page-in hot path; stats() merges them.
  std::array<uint64_t, kTierCount> evictions{};
  // The disk tier counts its reads from open; stats() reports them from the last reset_stats().
  DiskReadCounters disk_reads_at_reset;
  bool closed = false;
  std::atomic<uint64_t> device_page_ins{0};  // picks the page-ins whose latency is timed
  // Set while a page-in publishes to a streamed gather: closes it. Called (once, through
  // before_long_wait) before a blocking reap, since the GPU may not finish the work waited for
  // while that kernel waits for the host, and before a write-back eviction, so that the kernel does
  // not poll the link through a disk write.
  std::function<void()> close_streamed_gather;

  SlotPool& pool(Tier tier) { return tier == Tier::kGpu ? gpu_slots : host_slots; }
  // The device that calls using the GPU make current (ScopedCudaDevice); -1 without devices.
  int call_device() const { return cuda_devices > 0 ? options.cuda_device : -1; }

  // Every write of block values to the disk tier goes through here (one batch), so that the
  // ThreadSanitizer suppression for RocksDB's write groups (tests/tsan.supp) can name it.
  Status write_to_disk(const std::vector<DiskRecord>& records);

  // --- The helpers below need `mu` held. ---

  // A slot of `tier` reserved for `owner` (state kFilling, unpinned), evicting if none is free.
  Result<int32_t> allocate_slot(Tier tier, const BlockKey& owner);
  // Evicts the ready, unpinned block in `slot`, writing it to disk first if that is its only copy.
  Status evict_slot(Tier tier, int32_t slot);
  // Drops one pin; frees the slot when it was orphaned or failed and no pins remain.
  void unpin(Tier tier, int32_t slot);
  // Unpins deferred slots whose event has completed, recording their latency; with `block`,
  // waits for the oldest first.
  void reap_deferred(bool block);
  // Marks a slot whose fill failed: detached from its entry, freed once unpinned.
  void fail_slot(Tier tier, int32_t slot);
  // Closes a page-in's open streamed gather, if any, before the caller waits for long.
  void before_long_wait();
  // Writes host-resident blocks that are not on disk yet (write-back) in one batch.
  Status write_back(const std::vector<int32_t>& host_slots);
};

}  // namespace lmkv::detail
