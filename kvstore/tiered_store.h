// TieredStore: sealed K/V blocks in three tiers (a GPU slot arena, a pinned host slot arena, and
// RocksDB on disk), with eviction down the tiers, promotion on use, and batched page-in.
//
// Residency. A put lands in the host tier (and on disk too under write-through). The GPU tier is a
// cache above host and disk: page-in to the device fills it, and evicting from it drops the GPU
// copy, which by construction is never a block's only copy. Evicting from the host tier writes the
// block to disk first when it is not there yet (write-back). So every block always has a copy in
// the host tier or on disk, and eviction never loses one.
//
// Thread safety. Every public method may be called from many threads at once, except close() and
// the destructor, which must not race with other calls (page_in_async calls made before them are
// not a race: they finish first). A PageIn's pointers are valid until it is released; release it
// before closing the store (releasing later is safe but pointless).
//
// Devices. The GPU tier lives on options.cuda_device. Calls that use the GPU make that device
// current on the calling thread while they run and give the thread its own device back, so a
// store may be called from any thread with any device current; a device page-in's stream must
// belong to the store's device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kvstore/block.h"
#include "kvstore/disk_tier.h"
#include "kvstore/eviction.h"
#include "kvstore/store_stats.h"
#include "lmkv/status.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*; declared here so CPU users need no CUDA
                     // headers

namespace lmkv {

namespace detail {
struct StoreCore;
}
class ThreadPool;

enum class WritePolicy {
  kWriteThrough,  // every put goes to disk at once: a sync() makes it durable
  kWriteBack,     // puts stay in the host tier until evicted, synced or closed
};

struct StoreOptions {
  BlockShape shape;               // B, d and dtype of every block (default 50 x 128 fp16)
  size_t gpu_capacity_bytes = 0;  // GPU tier; 0 disables it. Needs a CUDA device.
  size_t host_capacity_bytes = 256ull << 20;  // host tier; at least one block
  std::string disk_path;                      // RocksDB directory (required)
  WritePolicy write_policy = WritePolicy::kWriteThrough;
  EvictionPolicyKind eviction = EvictionPolicyKind::kLru;  // for the GPU and host tiers
  DirectIo direct_io = DirectIo::kAuto;  // disk reads bypass the page cache where possible
  bool disk_blob_files = true;           // see DiskOptions::blob_files
  // Threads reading a page-in's disk blocks (1..256): scattered blocks are dealt into this many
  // MultiGet batches, and runs of neighbours read as batches of their own (disk_read_split.h).
  // Scattered 25.6 KB reads need many in flight:
  // on the GPU machine's disk 32 beat 8 and 16 and matched 64 (a later sweep of 4 to 32 batches
  // found no difference beyond that disk's run-to-run spread).
  int disk_read_threads = 32;
  // Threads running page_in_async calls (1..256): at most this many run at once, and later calls
  // wait their turn in call order. Started on the first call.
  int async_page_in_threads = 4;
  int cuda_device = 0;  // device of the GPU tier
  // Device page-ins time their swap-in latency with a pair of GPU events; recording the first
  // costs about as much as a small copy, so one page-in in this many is timed (1 times all). The
  // others wait on untimed events, which wake a waiting thread about 1 us sooner. Host page-ins
  // are always timed (a clock read).
  int latency_sample_period = 8;
  // Tests wrap the disk tier to inject faults; null opens RocksDB at disk_path.
  std::function<Result<std::unique_ptr<DiskTier>>(const DiskOptions&)> open_disk;
};

enum class PageInTarget {
  kDevice,  // blocks end in GPU slots (needs a GPU tier)
  kHost,    // blocks end in host slots (the CPU attention path)
};

// The outcome of one page-in: for each requested block, the slot that holds it in the target
// tier and the tier it was found in. The slots stay pinned (never evicted) until release() or
// destruction; for a device page-in the pins last until the work queued on the page-in's stream up
// to that point has finished, so a kernel launched on that stream may read them safely.
class PageIn {
 public:
  PageIn() = default;
  PageIn(PageIn&& other) noexcept;
  PageIn& operator=(PageIn&& other) noexcept;
  PageIn(const PageIn&) = delete;
  PageIn& operator=(const PageIn&) = delete;
  ~PageIn();

  size_t size() const { return slots_.size(); }
  PageInTarget target() const { return target_; }
  // Slot of block i in the target tier (duplicates in the request share a slot).
  int32_t slot(size_t i) const { return slots_[i]; }
  const std::vector<int32_t>& slots() const { return slots_; }
  Tier source(size_t i) const { return sources_[i]; }
  // K[B][d] then V[B][d] of block i: a device pointer for kDevice, a host pointer for kHost.
  const char* payload(size_t i) const;
  // Blocks until the data is in place (for kDevice: synchronises the page-in's copies).
  Status wait() const;
  // Gives the pins back (see above). Idempotent. Safe even after the store was closed.
  void release();

 private:
  friend class TieredStore;
  std::shared_ptr<detail::StoreCore> core_;
  PageInTarget target_ = PageInTarget::kHost;
  CUstream_st* stream_ = nullptr;
  std::shared_ptr<void> ready_event_;  // kDevice: recorded after the copies
  std::vector<int32_t> slots_;         // per requested block
  std::vector<Tier> sources_;          // per requested block
  std::vector<int32_t> pinned_slots_;  // unique slots pinned in the target tier
};

struct BlockWrite {
  BlockKey key;
  const void* k = nullptr;  // shape.tensor_bytes(), host or device memory
  const void* v = nullptr;  // shape.tensor_bytes(), host or device memory
};

class TieredStore {
 public:
  // Opens (or creates) a store. An existing store must have been created with the same shape.
  static Result<std::unique_ptr<TieredStore>> open(StoreOptions options);
  ~TieredStore();
  TieredStore(const TieredStore&) = delete;
  TieredStore& operator=(const TieredStore&) = delete;

  // Stores sealed blocks. Blocks are immutable: a key already stored is an AlreadyExists error.
  // k and v may be host or device pointers. A batch is validated whole before anything is stored.
  Status put(const BlockKey& key, const void* k, const void* v);
  Status put(const std::vector<BlockWrite>& blocks);

  // Brings `keys` (any order, duplicates allowed) into the target tier in one batch: hits are
  // pinned, host-resident blocks are gathered by a kernel reading mapped pinned memory that starts
  // copying while the call still plans the rest (streamed_gather.h), disk-resident ones are read
  // with parallel MultiGet into the host tier (promotion) first.
  // For kDevice the copies are enqueued on `stream` and the call returns once they are enqueued;
  // the data is usable by later work on that stream. Unknown or corrupted blocks fail the whole
  // call, naming them, and leave nothing pinned.
  Result<PageIn> page_in(const std::vector<BlockKey>& keys, PageInTarget target,
                         CUstream_st* stream = nullptr);
  // page_in on one of the store's async_page_in_threads workers, for callers that overlap it with
  // other host work. close() (and the destructor) first lets every call made before it finish, so
  // the future always gets its result; a call after close() fails with FailedPrecondition.
  std::future<Result<PageIn>> page_in_async(std::vector<BlockKey> keys, PageInTarget target,
                                            CUstream_st* stream = nullptr);

  // Copies one block's K and V into host buffers (tensor_bytes() each).
  Status read(const BlockKey& key, void* k_out, void* v_out);

  // Whether a block is stored in any tier.
  Result<bool> contains(const BlockKey& key);
  // The fastest tier holding `key` now, or NotFound. For tests and diagnostics.
  Result<Tier> residency(const BlockKey& key);

  // Stores the landmark key (dim floats, row i of `values`) of each block in `keys` beside the
  // blocks on disk, durable like them (sync). Indexes are rebuilt from these after a reopen. Put a
  // block before its landmark: under write-back the landmark then waits for its block and both
  // reach disk in one batch, so a crash never keeps a landmark whose block is lost.
  Status put_landmarks(const std::vector<BlockKey>& keys, const float* values, uint32_t dim);
  // Visits every stored landmark in key order, verifying each; a visitor error stops the scan.
  using LandmarkVisitor =
      std::function<Status(const BlockKey& key, const float* values, uint32_t dim)>;
  Status scan_landmarks(const LandmarkVisitor& visit);

  // Removes every block (and landmark) of a sequence from every tier; other sequences are
  // untouched.
  Status erase(uint64_t sequence);
  // Evicts every block of the GPU or host tier that no live PageIn holds (waiting for the GPU to
  // finish with released ones); write-back blocks go to disk first.
  Status evict_all(Tier tier);
  // Makes every block put so far durable: write-back blocks are written, the WAL is synced.
  Status sync();
  // Compacts the disk tier (after a bulk ingest: reads then touch one sorted file per block range).
  Status compact_disk();
  // Syncs and releases every tier. Later calls fail with FailedPrecondition.
  Status close();

  StoreStatsSnapshot stats() const;
  std::string stats_json() const { return stats().to_json(); }
  void reset_stats();

  const StoreOptions& options() const { return options_; }
  const BlockShape& shape() const { return options_.shape; }
  int32_t gpu_slot_count() const;
  int32_t host_slot_count() const;
  // Base of the GPU arena; slot s starts at gpu_slot_base() + s * shape().payload_bytes().
  const char* gpu_slot_base() const;
  bool disk_direct_reads() const;

 private:
  explicit TieredStore(std::shared_ptr<detail::StoreCore> core);
  Status check_open() const;

  std::shared_ptr<detail::StoreCore> core_;
  StoreOptions options_;
  // The page_in_async workers, apart from the store's lock so that handing off a call never waits
  // for a page-in.
  std::mutex async_mu_;
  std::unique_ptr<ThreadPool> async_pool_;
  bool async_closed_ = false;
};

}  // namespace lmkv
