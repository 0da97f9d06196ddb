// Batched page-in: resolve each requested block to its tier, read disk-resident ones with parallel
// MultiGet into host slots, gather host slots into GPU slots with one kernel, and pin the results.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <unordered_map>

#include "kvstore/store_core.h"
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
  int32_t gpu_slot = -1;   // pinned by this page-in (kDevice)
  int32_t host_slot = -1;  // pinned by this page-in
  bool read_disk = false;  // this page-in fills host_slot from disk
  bool gather = false;     // this page-in fills gpu_slot from host_slot
  bool await_host = false; // another page-in is filling host_slot
  bool await_gpu = false;  // another page-in is filling gpu_slot
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

// Hit, miss and byte counters of one page-in.
void count_page_in(StoreCore& c, const std::vector<PlannedBlock>& plan, bool device) {
  size_t disk = 0, host = 0, gpu = 0;
  for (const PlannedBlock& b : plan) {
    disk += b.source == Tier::kDisk;
    host += b.source == Tier::kHost;
    gpu += b.source == Tier::kGpu;
  }
  const uint64_t bytes = c.slot_bytes;
  if (device) {
    c.stats.add(Tier::kGpu, &TierCounters::hits, gpu);
    c.stats.add(Tier::kGpu, &TierCounters::misses, host + disk);
    c.stats.add(Tier::kGpu, &TierCounters::bytes_in, (host + disk) * bytes);
  }
  c.stats.add(Tier::kHost, &TierCounters::hits, host);
  c.stats.add(Tier::kHost, &TierCounters::misses, disk);
  c.stats.add(Tier::kHost, &TierCounters::bytes_in, disk * bytes);
  c.stats.add(Tier::kHost, &TierCounters::bytes_out, (host + disk) * bytes);
  c.stats.add(Tier::kDisk, &TierCounters::hits, disk);
  c.stats.add(Tier::kDisk, &TierCounters::bytes_out, disk * bytes);
  c.stats.count_page_in();
}

// Pins the block's host copy or reserves a host slot to read it from disk into.
Status plan_host_copy(StoreCore& c, PlannedBlock& b) {
  auto it = c.table.find(b.key);
  if (it != c.table.end() && it->second.host_slot >= 0) {
    b.host_slot = it->second.host_slot;
    c.host_slots.pin(b.host_slot);
    c.host_slots.touch(b.host_slot);
    b.await_host = c.host_slots.state(b.host_slot) == SlotState::kFilling;
    b.source = Tier::kHost;
    return Status::Ok();
  }
  Result<int32_t> slot = c.allocate_slot(Tier::kHost, b.key);
  if (!slot.ok()) return slot.status().with_context("reading " + b.key.to_string() + " from disk");
  b.host_slot = *slot;
  c.host_slots.pin(b.host_slot);
  b.read_disk = true;
  b.source = Tier::kDisk;
  BlockEntry& entry = c.table[b.key];
  entry.host_slot = b.host_slot;
  entry.on_disk = true;
  return Status::Ok();
}

Status plan_gpu_copy(StoreCore& c, PlannedBlock& b) {
  auto it = c.table.find(b.key);
  if (it != c.table.end() && it->second.gpu_slot >= 0) {
    b.gpu_slot = it->second.gpu_slot;
    c.gpu_slots.pin(b.gpu_slot);
    c.gpu_slots.touch(b.gpu_slot);
    b.await_gpu = c.gpu_slots.state(b.gpu_slot) == SlotState::kFilling;
    b.source = Tier::kGpu;
    return Status::Ok();
  }
  LMKV_RETURN_IF_ERROR(plan_host_copy(c, b));
  // Allocating the GPU slot may evict GPU blocks, never the host copy just pinned.
  Result<int32_t> slot = c.allocate_slot(Tier::kGpu, b.key);
  if (!slot.ok()) return slot.status().with_context("paging " + b.key.to_string() + " in");
  b.gpu_slot = *slot;
  c.gpu_slots.pin(b.gpu_slot);
  b.gather = true;
  c.table[b.key].gpu_slot = b.gpu_slot;
  return Status::Ok();
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
  constexpr size_t kMinBatch = 4;
  const size_t batches = std::max<size_t>(
      1, std::min<size_t>(c.io_pool->size(), (reads.size() + kMinBatch - 1) / kMinBatch));
  const size_t per_batch = (reads.size() + batches - 1) / batches;
  auto read_batch = [&c, &plan, &reads](size_t first, size_t last) {
    std::vector<BlockKey> keys;
    for (size_t r = first; r < last; ++r) keys.push_back(plan[reads[r]].key);
    c.disk->multi_get(keys, [&](size_t i, const Status& s, std::string_view value) {
      PlannedBlock& b = plan[reads[first + i]];
      b.status = s.ok() ? decode_block_value(b.key, c.options.shape, value,
                                             c.host_arena->slot(b.host_slot))
                        : s;
    });
  };
  std::vector<std::future<void>> pending;
  for (size_t first = per_batch; first < reads.size(); first += per_batch) {
    pending.push_back(
        c.io_pool->submit([=] { read_batch(first, std::min(reads.size(), first + per_batch)); }));
  }
  read_batch(0, std::min(reads.size(), per_batch));  // the calling thread takes the first batch
  for (auto& f : pending) f.get();
}

#ifdef LMKV_WITH_CUDA
struct LatencyCallback {
  StoreCore* core;
  uint64_t start_ns;
  std::array<bool, kTierCount> sources;
};

// Runs on a CUDA driver thread once the stream passed the page-in's copies. No CUDA calls here.
void CUDART_CB record_device_latency(void* data) {
  auto* cb = static_cast<LatencyCallback*>(data);
  const uint64_t elapsed = now_ns() - cb->start_ns;
  for (int t = 0; t < kTierCount; ++t) {
    if (cb->sources[t]) cb->core->stats.record_swap_in(static_cast<Tier>(t), elapsed);
  }
  StoreCore* core = cb->core;
  delete cb;
  std::lock_guard<std::mutex> lock(core->callbacks_mu);
  --core->callbacks_pending;
  core->callbacks_cv.notify_all();
}

Result<std::shared_ptr<CudaEvent>> record_event(cudaStream_t stream) {
  auto event = std::make_shared<CudaEvent>();
  LMKV_RETURN_IF_ERROR(event->create());
  LMKV_CUDA_RETURN_IF_ERROR(cudaEventRecord(event->get(), stream));
  return event;
}

// Enqueues the gather of host slots into the GPU slots this page-in reserved.
Status launch_gather(StoreCore& c, const std::vector<PlannedBlock>& plan, cudaStream_t stream) {
  std::vector<int32_t> src, dst;
  for (const PlannedBlock& b : plan) {
    if (!b.gather) continue;
    src.push_back(b.host_slot);
    dst.push_back(b.gpu_slot);
  }
  if (src.empty()) return Status::Ok();
  return launch_slot_gather(c.host_arena->device_view(), c.gpu_arena->base(), c.slot_bytes,
                            src.data(), dst.data(), src.size(), stream);
}

Result<std::shared_ptr<CudaEvent>> enqueue_gather(StoreCore& c,
                                                  const std::vector<PlannedBlock>& plan,
                                                  cudaStream_t stream) {
  LMKV_RETURN_IF_ERROR(launch_gather(c, plan, stream));
  return record_event(stream);
}

// Makes `stream` wait for GPU slots that other page-ins are filling; returns the event that marks
// the end of this page-in's work (`gathered` when there was nothing to wait for). Needs c.mu held
// through `lock`.
Result<std::shared_ptr<CudaEvent>> await_concurrent_fills(StoreCore& c,
                                                          const std::vector<PlannedBlock>& plan,
                                                          cudaStream_t stream,
                                                          std::shared_ptr<CudaEvent> gathered,
                                                          std::unique_lock<std::mutex>& lock) {
  bool waited = false;
  for (const PlannedBlock& b : plan) {
    if (!b.await_gpu) continue;
    c.cv.wait(lock, [&] { return c.gpu_slots.state(b.gpu_slot) != SlotState::kFilling; });
    if (c.gpu_slots.state(b.gpu_slot) == SlotState::kFailed) return concurrent_failure(b);
    if (const auto& filled = c.gpu_fill_event[b.gpu_slot]) {
      LMKV_CUDA_RETURN_IF_ERROR(
          cudaStreamWaitEvent(stream, static_cast<CudaEvent*>(filled.get())->get(), 0));
      waited = true;
    }
  }
  if (!waited) return gathered;
  return record_event(stream);
}

// Records the swap-in latency once the stream has passed the page-in, without blocking the host.
void record_latency_on_stream(StoreCore& c, uint64_t start, std::array<bool, kTierCount> sources,
                              cudaStream_t stream) {
  {
    std::lock_guard<std::mutex> lock(c.callbacks_mu);
    ++c.callbacks_pending;
  }
  auto* callback = new LatencyCallback{&c, start, sources};
  if (cudaLaunchHostFunc(stream, record_device_latency, callback) != cudaSuccess) {
    cudaGetLastError();
    delete callback;
    std::lock_guard<std::mutex> lock(c.callbacks_mu);
    --c.callbacks_pending;
    // The data is in flight and pinned correctly; only its latency sample is lost.
  }
}
#endif

}  // namespace

Result<PageIn> TieredStore::page_in(const std::vector<BlockKey>& keys, PageInTarget target,
                                    CUstream_st* stream) {
  StoreCore& c = *core_;
  const uint64_t start = now_ns();
  const bool device = target == PageInTarget::kDevice;
  if (device && c.gpu_slots.capacity() == 0) {
    return Status::FailedPrecondition("page_in to the device needs a GPU tier (gpu_capacity_bytes)");
  }
#ifdef LMKV_WITH_CUDA
  if (device && !c.host_arena->pinned()) {
    return Status::Internal("the host tier is not pinned although a GPU tier exists");
  }
#endif

  // Distinct blocks, and for each requested one the index of its distinct block.
  std::vector<PlannedBlock> plan;
  std::vector<size_t> which(keys.size());
  {
    std::unordered_map<BlockKey, size_t, BlockKeyHash> seen;
    seen.reserve(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      auto [it, inserted] = seen.emplace(keys[i], plan.size());
      if (inserted) {
        plan.emplace_back();
        plan.back().key = keys[i];
      }
      which[i] = it->second;
    }
  }
  const SlotPool& target_pool = device ? c.gpu_slots : c.host_slots;
  if (static_cast<int64_t>(plan.size()) > target_pool.capacity()) {
    return Status::ResourceExhausted(fmt::format(
        "page_in of {} distinct blocks exceeds the {} tier's {} slots", plan.size(),
        device ? "GPU" : "host", target_pool.capacity()));
  }

  // 1. Resolve every block to its tier; pin hits, reserve slots for the rest.
  {
    std::unique_lock<std::mutex> lock(c.mu);
    LMKV_RETURN_IF_ERROR(check_open());
    for (PlannedBlock& b : plan) {
      Status planned = device ? plan_gpu_copy(c, b) : plan_host_copy(c, b);
      if (!planned.ok()) {
        abandon(c, plan);
        return planned;
      }
    }
  }

  // 2. This page-in's own disk reads, outside the lock. They wait for nothing, so other page-ins
  // waiting on these slots always make progress.
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
  std::array<bool, kTierCount> sources{};
  for (const PlannedBlock& b : plan) sources[static_cast<int>(b.source)] = true;

  if (!device) {
    for (const PlannedBlock& b : plan) result.pinned_slots_.push_back(b.host_slot);
    const uint64_t elapsed = now_ns() - start;
    for (int t = 0; t < kTierCount; ++t) {
      if (sources[t]) c.stats.record_swap_in(static_cast<Tier>(t), elapsed);
    }
    return result;
  }

#ifdef LMKV_WITH_CUDA
  // 4. One gather for every block that was not on the GPU yet, then the fills of GPU slots that
  // concurrent page-ins enqueued (they reach that point without waiting on anyone).
  Result<std::shared_ptr<CudaEvent>> copied = enqueue_gather(c, plan, stream);
  std::unique_lock<std::mutex> lock(c.mu);
  if (copied.ok()) {
    for (const PlannedBlock& b : plan) {
      if (!b.gather) continue;
      c.gpu_slots.set_state(b.gpu_slot, SlotState::kReady);
      c.gpu_fill_event[b.gpu_slot] = *copied;
    }
    c.cv.notify_all();
    copied = await_concurrent_fills(c, plan, stream, *copied, lock);
  }
  if (!copied.ok()) {
    // Copies may be in flight into and out of these slots: let them land before freeing any.
    cudaStreamSynchronize(stream);
    abandon(c, plan);
    return copied.status().with_context("page_in");
  }
  detail::DeferredUnpin host_sources{*copied, Tier::kHost, {}};
  for (const PlannedBlock& b : plan) {
    // The host copies stay pinned until the gather has read them.
    if (b.host_slot >= 0) host_sources.slots.push_back(b.host_slot);
    result.pinned_slots_.push_back(b.gpu_slot);
  }
  if (!host_sources.slots.empty()) c.deferred.push_back(std::move(host_sources));
  result.ready_event_ = *copied;
  lock.unlock();
  record_latency_on_stream(c, start, sources, stream);
#endif
  return result;
}

std::future<Result<PageIn>> TieredStore::page_in_async(std::vector<BlockKey> keys,
                                                       PageInTarget target, CUstream_st* stream) {
  return std::async(std::launch::async, [this, keys = std::move(keys), target, stream] {
    return page_in(keys, target, stream);
  });
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
  const size_t offset = static_cast<size_t>(slots_[i]) * core_->slot_bytes;
  if (target_ == PageInTarget::kHost) return core_->host_arena->slot(slots_[i]);
#ifdef LMKV_WITH_CUDA
  return core_->gpu_arena->base() + offset;
#else
  (void)offset;
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
  if (tier == Tier::kGpu) {
    // Kernels queued on the stream after the page-in may still read the slots: unpin after them.
    Result<std::shared_ptr<CudaEvent>> after = record_event(stream_);
    std::lock_guard<std::mutex> lock(c.mu);
    if (after.ok()) {
      c.deferred.push_back({*after, tier, std::move(pinned_slots_)});
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
