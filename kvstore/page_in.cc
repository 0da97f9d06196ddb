// Batched page-in: resolve each requested block to its tier, read disk-resident ones with parallel
// MultiGet into host slots, gather host slots into GPU slots with one kernel, and pin the results.
//
// Concurrent page-ins may want the same block. Whoever reserves its slot fills it; the others pin
// the slot and wait. A page-in fills everything it reserved before it waits for anyone else's
// slots, so no two page-ins can wait for each other.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "kvstore/block_key_set.h"
#include "kvstore/disk_read_split.h"
#include "kvstore/store_core.h"
#include "kvstore/thread_pool.h"
#include "kvstore/tiered_store.h"
#include "kvstore/value_codec.h"

namespace lmkv {

using detail::BlockEntry;
using detail::StoreCore;

namespace {

uint64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One distinct block of a page-in request and what this page-in does for it.
struct PlannedBlock {
  BlockKey key;
  Tier source = Tier::kDisk;
  int32_t gpu_slot = -1;    // pinned by this page-in (kDevice)
  int32_t host_slot = -1;   // pinned by this page-in
  bool read_disk = false;   // this page-in fills host_slot from disk
  bool gather = false;      // this page-in fills gpu_slot from host_slot
  bool launched = false;    // ... and has enqueued that copy
  bool await_host = false;  // another page-in is filling host_slot
  bool await_gpu = false;   // another page-in is filling gpu_slot
  Status status;
};

// Releases everything a failed page-in holds: its pins, and the slots it was to fill.
void abandon(StoreCore& c, std::vector<PlannedBlock>& plan) {
  for (PlannedBlock& b : plan) {
    if (b.gpu_slot >= 0) {
      if (b.gather) c.fail_slot(Tier::kGpu, b.gpu_slot);
      c.unpin(Tier::kGpu, b.gpu_slot);
    }
    if (b.host_slot >= 0) {
      if (b.read_disk && c.host_slots.state(b.host_slot) == SlotState::kFilling) {
        c.fail_slot(Tier::kHost, b.host_slot);
      }
      c.unpin(Tier::kHost, b.host_slot);
    }
    b.gpu_slot = b.host_slot = -1;
  }
  c.cv.notify_all();
}

Status first_failures(const std::vector<PlannedBlock>& plan) {
  Status first;
  size_t failed = 0;
  for (const PlannedBlock& b : plan) {
    if (b.status.ok()) continue;
    if (failed++ == 0) first = b.status;
  }
  if (failed <= 1) return first;
  return Status(first.code(),
                fmt::format("{} (and {} more blocks failed)", first.message(), failed - 1));
}

Status concurrent_failure(const PlannedBlock& b) {
  return Status::Corruption(
      fmt::format("block {} failed to load in a concurrent page-in", b.key.to_string()));
}

// Which tiers this page-in's blocks came from.
std::array<bool, kTierCount> source_tiers(const std::vector<PlannedBlock>& plan) {
  std::array<bool, kTierCount> sources{};
  for (const PlannedBlock& b : plan) sources[static_cast<int>(b.source)] = true;
  return sources;
}

// Hit, miss and byte counters of one page-in, under one lock.
void count_page_in(StoreCore& c, const std::vector<PlannedBlock>& plan, bool device) {
  uint64_t disk = 0, host = 0, gpu = 0;
  for (const PlannedBlock& b : plan) {
    disk += b.source == Tier::kDisk;
    host += b.source == Tier::kHost;
    gpu += b.source == Tier::kGpu;
  }
  const uint64_t bytes = c.slot_bytes;
  c.stats.update([&](StoreStatsSnapshot& s) {
    if (device) {
      s.tier(Tier::kGpu).hits += gpu;
      s.tier(Tier::kGpu).misses += host + disk;
      s.tier(Tier::kGpu).bytes_in += (host + disk) * bytes;
    }
    s.tier(Tier::kHost).hits += host;
    s.tier(Tier::kHost).misses += disk;
    s.tier(Tier::kHost).bytes_in += disk * bytes;
    s.tier(Tier::kHost).bytes_out += (host + disk) * bytes;
    s.tier(Tier::kDisk).hits += disk;
    s.tier(Tier::kDisk).bytes_out += disk * bytes;
    ++s.page_ins;
  });
}

// Pins a copy the block already has in `tier`; true when another page-in is still filling it.
bool pin_copy(StoreCore& c, Tier tier, int32_t slot) {
  SlotPool& slots = c.pool(tier);
  slots.pin(slot);
  slots.touch(slot);
  return slots.state(slot) == SlotState::kFilling;
}

// Reserves and pins a slot of `tier` that this page-in will fill with `key`.
Result<int32_t> reserve_copy(StoreCore& c, Tier tier, const BlockKey& key) {
  Result<int32_t> slot = c.allocate_slot(tier, key);
  if (slot.ok()) c.pool(tier).pin(*slot);
  return slot;
}

// Pins the block's host copy or reserves a host slot to read it from disk into.
Status plan_host_copy(StoreCore& c, PlannedBlock& b, BlockEntry& entry) {
  if (entry.host_slot >= 0) {
    b.host_slot = entry.host_slot;
    b.await_host = pin_copy(c, Tier::kHost, b.host_slot);
    b.source = Tier::kHost;
    return Status::Ok();
  }
  Result<int32_t> slot = reserve_copy(c, Tier::kHost, b.key);
  if (!slot.ok()) return slot.status().with_context("reading " + b.key.to_string() + " from disk");
  b.host_slot = entry.host_slot = *slot;
  b.read_disk = true;
  b.source = Tier::kDisk;
  entry.on_disk = true;  // a block with no host copy is on disk (or unknown: the read tells)
  return Status::Ok();
}

// Pins the block's GPU copy, or plans its host copy and reserves a GPU slot to gather it into.
Status plan_gpu_copy(StoreCore& c, PlannedBlock& b, BlockEntry& entry) {
  if (entry.gpu_slot >= 0) {
    b.gpu_slot = entry.gpu_slot;
    b.await_gpu = pin_copy(c, Tier::kGpu, b.gpu_slot);
    b.source = Tier::kGpu;
    return Status::Ok();
  }
  LMKV_RETURN_IF_ERROR(plan_host_copy(c, b, entry));
  // Allocating the GPU slot may evict GPU blocks, never the host copy just pinned.
  Result<int32_t> slot = reserve_copy(c, Tier::kGpu, b.key);
  if (!slot.ok()) return slot.status().with_context("paging " + b.key.to_string() + " in");
  b.gpu_slot = entry.gpu_slot = *slot;
  b.gather = true;
  return Status::Ok();
}

// Plans one block with a single table lookup. Evictions during planning erase other entries
// only (a victim always has a copy in the tier being allocated, which this block lacks), and
// unordered_map erasures and insertions keep references to other elements valid.
Status plan_block(StoreCore& c, PlannedBlock& b, bool device) {
  auto it = c.table.try_emplace(b.key).first;
  Status planned = device ? plan_gpu_copy(c, b, it->second) : plan_host_copy(c, b, it->second);
  if (!planned.ok() && it->second.gpu_slot < 0 && it->second.host_slot < 0) c.table.erase(it);
  return planned;
}

// Reads every planned disk block into its host slot, verifying each, in parallel batches.
void read_from_disk(StoreCore& c, std::vector<PlannedBlock>& plan) {
  std::vector<size_t> reads;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].read_disk) reads.push_back(i);
  }
  if (reads.empty()) return;
  // Sorted keys make neighbouring blocks of a head adjacent reads in RocksDB.
  std::sort(reads.begin(), reads.end(),
            [&](size_t a, size_t b) { return plan[a].key < plan[b].key; });
  std::vector<BlockKey> keys;
  keys.reserve(reads.size());
  for (size_t i : reads) keys.push_back(plan[i].key);
  const std::vector<std::vector<size_t>> batches =
      split_disk_reads(keys, static_cast<size_t>(c.io_pool->size()));
  auto read_batch = [&c, &plan, &reads, &keys](const std::vector<size_t>& batch) {
    std::vector<BlockKey> batch_keys;
    batch_keys.reserve(batch.size());
    for (size_t k : batch) batch_keys.push_back(keys[k]);
    c.disk->multi_get(batch_keys, [&](size_t i, const Status& s, std::string_view value) {
      PlannedBlock& b = plan[reads[batch[i]]];
      b.status = s.ok() ? decode_block_value(b.key, c.options.shape, value,
                                             c.host_arena->slot(b.host_slot))
                        : s;
    });
  };
  std::vector<std::future<void>> pending;
  for (size_t i = 1; i < batches.size(); ++i) {
    pending.push_back(c.io_pool->submit([&read_batch, &batch = batches[i]] { read_batch(batch); }));
  }
  read_batch(batches[0]);  // the calling thread takes the first batch
  for (auto& f : pending) f.get();
}

#ifdef LMKV_WITH_CUDA
// A device page-in's copies run on the caller's stream, which must belong to the store's device.
Status check_stream_device(cudaStream_t stream, int store_device) {
  int device = -1;
  LMKV_CUDA_RETURN_IF_ERROR(cudaStreamGetDevice(stream, &device));
  if (device == store_device) return Status::Ok();
  return Status::InvalidArgument(fmt::format(
      "page_in to the device on a stream of device {}, but the store's GPU tier is on device {}",
      device, store_device));
}

// A page-in of up to this many blocks goes by the copy engine (a launch costs more than a copy of
// one block); more go by gather kernels reading mapped pinned memory.
constexpr size_t kCopyEngineMaxBlocks = 2;

// Enqueues the host-to-GPU copies of plan[i] for i in `indices`; `follows_gather` when the kernel
// before it on the stream is this page-in's own earlier gather.
Status launch_copies(StoreCore& c, std::vector<PlannedBlock>& plan,
                     const std::vector<size_t>& indices, cudaStream_t stream, bool follows_gather) {
  if (indices.empty()) return Status::Ok();
  // Once this page-in's gathers run, the last few blocks join their chain as one more gather: a
  // copy-engine copy would only start after all of them.
  if (indices.size() <= kCopyEngineMaxBlocks && !follows_gather) {
    for (size_t i : indices) {
      LMKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(c.gpu_arena->slot(plan[i].gpu_slot),
                                                c.host_arena->slot(plan[i].host_slot), c.slot_bytes,
                                                cudaMemcpyHostToDevice, stream));
      plan[i].launched = true;
    }
    return Status::Ok();
  }
  std::vector<int32_t> src, dst;
  src.reserve(indices.size());
  dst.reserve(indices.size());
  for (size_t i : indices) {
    src.push_back(plan[i].host_slot);
    dst.push_back(plan[i].gpu_slot);
  }
  LMKV_RETURN_IF_ERROR(launch_slot_gather(c.host_arena->device_view(), c.gpu_arena->base(),
                                          c.slot_bytes, src.data(), dst.data(), src.size(), stream,
                                          {}, follows_gather));
  for (size_t i : indices) plan[i].launched = true;
  return Status::Ok();
}

// Copies host-resident blocks to the GPU while planning goes on. The first such block launches a
// streamed gather (streamed_gather.h) and every one is published to it as soon as it is planned,
// so the GPU copies from the first block on. A full list is closed and the next one launched as
// its programmatic dependent. The open list is closed at the end of planning, and before planning
// waits for the GPU or the disk (StoreCore::before_long_wait); blocks after that go to a new list.
class StreamedCopies {
 public:
  StreamedCopies(StoreCore& c, std::vector<PlannedBlock>& plan, cudaStream_t stream)
      : c_(c), plan_(plan), stream_(stream) {}
  // After a failed page-in: lets the copies finish and gives the lists back. Needs c.mu free, and
  // the lists closed (ClosedWhenPlanningEnds).
  ~StreamedCopies() {
    if (lists_.empty()) return;
    settle();
    std::lock_guard<std::mutex> lock(c_.mu);
    retire(nullptr);
  }
  StreamedCopies(const StreamedCopies&) = delete;
  StreamedCopies& operator=(const StreamedCopies&) = delete;

  // Publishes plan[i] when the GPU copy is this page-in's to make from a ready host copy; at most
  // `blocks_left` blocks, this one included, remain to plan. Needs c.mu.
  Status add(size_t i, size_t blocks_left) {
    PlannedBlock& b = plan_[i];
    if (!b.gather || b.read_disk || b.await_host) return Status::Ok();
    if (!open_ || lists_.back().published == lists_.back().max_pairs) {
      close();
      lists_.reserve(lists_.size() + 1);  // once its kernel runs, the list must not be lost
      LMKV_ASSIGN_OR_RETURN(GatherListPool::List list, c_.gather_lists.acquire());
      list.max_pairs = static_cast<uint32_t>(std::min<size_t>(blocks_left, GatherList::kCapacity));
      Status launched =
          launch_streamed_gather(c_.host_arena->device_view(), c_.gpu_arena->base(), c_.slot_bytes,
                                 list, stream_, /*overlap_previous=*/started());
      if (!launched.ok()) {
        c_.gather_lists.retire(list, nullptr);
        return launched;
      }
      lists_.push_back(list);
      open_ = true;
      c_.close_streamed_gather = [this] { close(); };
    }
    publish_gather_pair(lists_.back(), b.host_slot, b.gpu_slot);
    b.launched = true;
    return Status::Ok();
  }
  // Publishes no more: the kernel finishes once it has copied what was published. Needs c.mu.
  void close() {
    if (!open_) return;
    close_gather_list(lists_.back());
    open_ = false;
    c_.close_streamed_gather = nullptr;
  }
  // Closes and waits for the copies under way, before their slots are given up.
  void settle() {
    close();
    if (started()) cudaStreamSynchronize(stream_);
  }
  // Whether a gather of this page-in was launched (the last kernel on the stream is one).
  bool started() const { return !lists_.empty(); }
  // Gives the lists back, for reuse once the GPU passes `done` (null: the stream is idle). Needs
  // c.mu.
  void retire(const std::shared_ptr<CudaEvent>& done) {
    for (const GatherListPool::List& list : lists_) c_.gather_lists.retire(list, done);
    lists_.clear();
  }

 private:
  StoreCore& c_;
  std::vector<PlannedBlock>& plan_;
  cudaStream_t stream_;
  std::vector<GatherListPool::List> lists_;
  bool open_ = false;
};

// Closes the streamed gather when planning ends, however it ends, while c.mu is still held.
struct ClosedWhenPlanningEnds {
  StreamedCopies& copies;
  ~ClosedWhenPlanningEnds() { copies.close(); }
};

// Makes `stream` wait for GPU slots that other page-ins are filling. Needs c.mu held by `lock`.
Status await_concurrent_fills(StoreCore& c, const std::vector<PlannedBlock>& plan,
                              cudaStream_t stream, std::unique_lock<std::mutex>& lock) {
  for (const PlannedBlock& b : plan) {
    if (!b.await_gpu) continue;
    c.cv.wait(lock, [&] { return c.gpu_slots.state(b.gpu_slot) != SlotState::kFilling; });
    if (c.gpu_slots.state(b.gpu_slot) == SlotState::kFailed) return concurrent_failure(b);
    if (const auto& filled = c.gpu_fill_event[b.gpu_slot]) {
      LMKV_CUDA_RETURN_IF_ERROR(
          cudaStreamWaitEvent(stream, static_cast<CudaEvent*>(filled.get())->get(), 0));
    }
  }
  return Status::Ok();
}

// Enqueues the copies not launched yet (blocks read from disk, awaited or left over), waits for
// concurrent fills, and hands the pins of the host sources to the deferred list with the event
// that ends the page-in (none when every block was already on the GPU and nothing is timed).
// On failure releases everything.
Status finish_device_page_in(StoreCore& c, std::vector<PlannedBlock>& plan,
                             std::shared_ptr<CudaEvent> start, cudaStream_t stream,
                             StreamedCopies& early, std::shared_ptr<void>* ready_event,
                             std::vector<int32_t>* pinned) {
  // Only a timed page-in (one in latency_sample_period) pays for timed events.
  const EventTiming timing = start ? EventTiming::kTimed : EventTiming::kUntimed;
  std::vector<size_t> rest;
  bool any_gather = false;
  for (size_t i = 0; i < plan.size(); ++i) {
    any_gather |= plan[i].gather;
    if (plan[i].gather && !plan[i].launched) rest.push_back(i);
  }
  Status status = launch_copies(c, plan, rest, stream, early.started());
  std::shared_ptr<CudaEvent> gathered;
  if (status.ok() && any_gather) {
    auto recorded = c.events.record(stream, timing);
    status = recorded.status();
    if (recorded.ok()) gathered = *recorded;
  }
  std::unique_lock<std::mutex> lock(c.mu);
  std::shared_ptr<CudaEvent> done = gathered;
  if (status.ok() && gathered) {
    for (const PlannedBlock& b : plan) {
      if (!b.gather) continue;
      c.gpu_slots.set_state(b.gpu_slot, SlotState::kReady);
      c.gpu_fill_event[b.gpu_slot] = gathered;
    }
    c.cv.notify_all();
  }
  const bool awaits =
      std::any_of(plan.begin(), plan.end(), [](const PlannedBlock& b) { return b.await_gpu; });
  if (status.ok() && (awaits || (start && !done))) {
    if (awaits) status = await_concurrent_fills(c, plan, stream, lock);
    if (status.ok()) {
      auto recorded = c.events.record(stream, timing);
      status = recorded.status();
      if (recorded.ok()) done = *recorded;
    }
  }
  if (!status.ok()) {
    // Copies may be in flight into and out of these slots: let them land before freeing any.
    cudaStreamSynchronize(stream);
    abandon(c, plan);
    return status;
  }
  early.retire(gathered);
  for (const PlannedBlock& b : plan) pinned->push_back(b.gpu_slot);
  if (!done) return Status::Ok();  // GPU hits only: nothing to wait for
  // Host copies stay pinned until the copies have read them; the same entry times the page-in.
  detail::DeferredUnpin completion{done, Tier::kHost, {}, std::move(start), source_tiers(plan)};
  for (const PlannedBlock& b : plan) {
    if (b.host_slot >= 0) completion.slots.push_back(b.host_slot);
  }
  c.deferred.push_back(std::move(completion));
  *ready_event = done;
  return Status::Ok();
}
#endif

}  // namespace

Result<PageIn> TieredStore::page_in(const std::vector<BlockKey>& keys, PageInTarget target,
                                    CUstream_st* stream) {
  StoreCore& c = *core_;
  const uint64_t start_ns = now_ns();
  const bool device = target == PageInTarget::kDevice;
  if (device && c.gpu_slots.capacity() == 0) {
    return Status::FailedPrecondition(
        "page_in to the device needs a GPU tier (gpu_capacity_bytes)");
  }
  const ScopedCudaDevice on_device(device ? c.call_device() : -1);
  LMKV_RETURN_IF_ERROR(on_device.status());
#ifdef LMKV_WITH_CUDA
  if (device) LMKV_RETURN_IF_ERROR(check_stream_device(stream, c.options.cuda_device));
#endif
  BlockKeySet distinct(keys.size());  // numbers blocks in first-seen order, as `plan` holds them
  const SlotPool& target_pool = device ? c.gpu_slots : c.host_slots;
  if (static_cast<int64_t>(keys.size()) > target_pool.capacity()) {
    // Only a request of more keys than slots can be too big: count its blocks up front, so that
    // it is refused before it evicts anything. Planning below numbers them the same way.
    for (const BlockKey& key : keys) distinct.insert(key);
    if (static_cast<int64_t>(distinct.size()) > target_pool.capacity()) {
      return Status::ResourceExhausted(
          fmt::format("page_in of {} distinct blocks exceeds the {} tier's {} slots",
                      distinct.size(), device ? "GPU" : "host", target_pool.capacity()));
    }
  }
  std::vector<PlannedBlock> plan;  // the distinct blocks, in first-seen order
  plan.reserve(keys.size());
  std::vector<int32_t> which(keys.size());  // each key's block in `plan`
#ifdef LMKV_WITH_CUDA
  std::shared_ptr<CudaEvent> start_event;
  if (device && c.device_page_ins++ % c.options.latency_sample_period == 0) {
    LMKV_ASSIGN_OR_RETURN(start_event, c.events.record(stream, EventTiming::kTimed));
  }
  StreamedCopies early(c, plan, stream);
#endif

  // 1. Resolve every block to its tier; pin hits, reserve slots for the rest, and start copying
  // host-resident blocks to the GPU while planning goes on. Blocks are planned as they are first
  // seen, so that the GPU starts as early as it can, and earlier page-ins' finished pins are
  // released after planning, when the copies under way leave the CPU time to spare (allocation
  // releases them sooner if it runs out of slots).
  {
    std::lock_guard<std::mutex> lock(c.mu);
#ifdef LMKV_WITH_CUDA
    const ClosedWhenPlanningEnds close_gather{early};
#endif
    LMKV_RETURN_IF_ERROR(check_open());
    for (size_t k = 0; k < keys.size(); ++k) {
      which[k] = static_cast<int32_t>(distinct.insert(keys[k]));
      // A block's number is the count of blocks first seen before it: below plan.size(), a repeat.
      if (static_cast<size_t>(which[k]) < plan.size()) continue;
      plan.emplace_back();
      plan.back().key = keys[k];
      const size_t i = plan.size() - 1;
      Status planned = plan_block(c, plan[i], device);
#ifdef LMKV_WITH_CUDA
      if (planned.ok() && device && keys.size() > kCopyEngineMaxBlocks) {
        planned = early.add(i, keys.size() - k);
      }
      if (!planned.ok()) early.settle();
#endif
      if (!planned.ok()) {
        abandon(c, plan);
        return planned;
      }
    }
    c.reap_deferred(/*block=*/false);
  }

  // 2. This page-in's own disk reads, outside the lock.
  read_from_disk(c, plan);
  {
    std::unique_lock<std::mutex> lock(c.mu);
    for (PlannedBlock& b : plan) {
      if (b.read_disk && b.status.ok()) c.host_slots.set_state(b.host_slot, SlotState::kReady);
    }
    c.cv.notify_all();
    count_page_in(c, plan, device);
    // 3. Host copies that concurrent page-ins are reading from disk right now.
    for (PlannedBlock& b : plan) {
      if (!b.await_host) continue;
      c.cv.wait(lock, [&] { return c.host_slots.state(b.host_slot) != SlotState::kFilling; });
      if (c.host_slots.state(b.host_slot) == SlotState::kFailed) b.status = concurrent_failure(b);
    }
    Status failed = first_failures(plan);
    if (!failed.ok()) {
#ifdef LMKV_WITH_CUDA
      early.settle();  // copies of other blocks may be under way into and out of these slots
#endif
      abandon(c, plan);
      return failed.with_context("page_in");
    }
  }

  PageIn result;
  result.core_ = core_;
  result.target_ = target;
  result.stream_ = stream;
  result.slots_.resize(keys.size());
  result.sources_.resize(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const PlannedBlock& b = plan[which[i]];
    result.slots_[i] = device ? b.gpu_slot : b.host_slot;
    result.sources_[i] = b.source;
  }
  if (!device) {
    for (const PlannedBlock& b : plan) result.pinned_slots_.push_back(b.host_slot);
    const uint64_t elapsed = now_ns() - start_ns;
    const auto sources = source_tiers(plan);
    c.stats.update([&](StoreStatsSnapshot& s) {
      for (int t = 0; t < kTierCount; ++t) {
        if (sources[t]) s.swap_in_latency[t].record_ns(elapsed);
      }
    });
    return result;
  }
#ifdef LMKV_WITH_CUDA
  // 4. One gather for every block that was not on the GPU yet.
  Status finished = finish_device_page_in(c, plan, std::move(start_event), stream, early,
                                          &result.ready_event_, &result.pinned_slots_);
  if (!finished.ok()) {
    result.core_.reset();  // nothing is pinned any more
    return finished.with_context("page_in");
  }
#endif
  return result;
}

std::future<Result<PageIn>> TieredStore::page_in_async(std::vector<BlockKey> keys,
                                                       PageInTarget target, CUstream_st* stream) {
  // A pool instead of a thread per call: with a new thread, a call for one host-tier hit took
  // 185 us on the development machine, and 94 us through the pool (0.8 us for page_in itself).
  auto task = std::make_shared<std::packaged_task<Result<PageIn>()>>(
      [this, keys = std::move(keys), target, stream] { return page_in(keys, target, stream); });
  std::future<Result<PageIn>> result = task->get_future();
  {
    std::lock_guard<std::mutex> lock(async_mu_);
    if (!async_closed_) {
      if (!async_pool_) async_pool_ = std::make_unique<ThreadPool>(options_.async_page_in_threads);
      async_pool_->submit([task] { (*task)(); });
      return result;
    }
  }
  (*task)();  // closed: page_in says so
  return result;
}

// --- PageIn ---

PageIn::PageIn(PageIn&& other) noexcept { *this = std::move(other); }

PageIn& PageIn::operator=(PageIn&& other) noexcept {
  if (this == &other) return *this;
  release();
  core_ = std::move(other.core_);
  target_ = other.target_;
  stream_ = other.stream_;
  ready_event_ = std::move(other.ready_event_);
  slots_ = std::move(other.slots_);
  sources_ = std::move(other.sources_);
  pinned_slots_ = std::move(other.pinned_slots_);
  other.core_.reset();
  return *this;
}

PageIn::~PageIn() { release(); }

const char* PageIn::payload(size_t i) const {
  if (target_ == PageInTarget::kHost) return core_->host_arena->slot(slots_[i]);
#ifdef LMKV_WITH_CUDA
  return core_->gpu_arena->slot(slots_[i]);
#else
  return nullptr;
#endif
}

Status PageIn::wait() const {
#ifdef LMKV_WITH_CUDA
  if (ready_event_) {
    LMKV_CUDA_RETURN_IF_ERROR(
        cudaEventSynchronize(static_cast<CudaEvent*>(ready_event_.get())->get()));
  }
#endif
  return Status::Ok();
}

void PageIn::release() {
  if (!core_) return;
  StoreCore& c = *core_;
  const Tier tier = target_ == PageInTarget::kDevice ? Tier::kGpu : Tier::kHost;
#ifdef LMKV_WITH_CUDA
  // An idle stream has finished every kernel that read the slots (any other error than NotReady
  // means the device is unusable and nothing reads them either): unpin at once. Otherwise
  // kernels queued after the page-in may still read them: unpin after them.
  if (tier == Tier::kGpu && cudaStreamQuery(stream_) == cudaErrorNotReady) {
    const ScopedCudaDevice on_device(c.call_device());  // an event of the stream's device
    Result<std::shared_ptr<CudaEvent>> after = c.events.record(stream_);
    std::lock_guard<std::mutex> lock(c.mu);
    if (after.ok()) {
      c.deferred.push_back({*after, tier, std::move(pinned_slots_), nullptr, {}});
    } else {
      cudaStreamSynchronize(stream_);  // no event to wait on: wait for the stream itself
      for (int32_t slot : pinned_slots_) c.unpin(tier, slot);
    }
    core_.reset();
    return;
  }
#endif
  std::lock_guard<std::mutex> lock(c.mu);
  for (int32_t slot : pinned_slots_) c.unpin(tier, slot);
  core_.reset();
}

}  // namespace lmkv
