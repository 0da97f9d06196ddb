// Slot allocation, eviction and pin bookkeeping for the tiered store.
#include "kvstore/store_core.h"

#include <fmt/format.h>

#include "kvstore/value_codec.h"

namespace lmkv::detail {

StoreCore::StoreCore(const StoreOptions& opts, int32_t gpu_slot_count, int32_t host_slot_count)
    : options(opts),
      slot_bytes(opts.shape.payload_bytes()),
      gpu_slots(gpu_slot_count, opts.eviction),
      host_slots(host_slot_count, opts.eviction) {
#ifdef LMKV_WITH_CUDA
  gpu_fill_event.resize(gpu_slot_count);
#endif
}

StoreCore::~StoreCore() { teardown_device.emplace(call_device()); }

__attribute__((noinline)) Status StoreCore::write_to_disk(const std::vector<DiskRecord>& records) {
  LMKV_RETURN_IF_ERROR(disk->put(records));
  uint64_t bytes = 0;
  for (const DiskRecord& r : records) bytes += r.landmark ? 0 : slot_bytes;
  stats.add(Tier::kDisk, &TierCounters::bytes_in, bytes);
  return Status::Ok();
}

Result<int32_t> StoreCore::allocate_slot(Tier tier, const BlockKey& owner) {
  SlotPool& slots = pool(tier);
  if (slots.capacity() == 0) {
    return Status::ResourceExhausted(fmt::format("the {} tier has no slots", tier_name(tier)));
  }
  for (;;) {
    if (auto slot = slots.take(owner)) return *slot;
    if (auto victim = slots.victim()) {
      LMKV_RETURN_IF_ERROR(evict_slot(tier, *victim));
      continue;
    }
    if (deferred.empty()) {
      return Status::ResourceExhausted(fmt::format(
          "all {} slots of the {} tier are pinned or being filled by running page-ins; release "
          "page-ins or raise its capacity",
          slots.capacity(), tier_name(tier)));
    }
    reap_deferred(/*block=*/true);
  }
}

Status StoreCore::evict_slot(Tier tier, int32_t slot) {
  SlotPool& slots = pool(tier);
  const BlockKey key = slots.owner(slot);
  auto it = table.find(key);
  if (it == table.end()) {
    return Status::Internal(fmt::format("{} slot {} holds {} but no entry points at it",
                                        tier_name(tier), slot, key.to_string()));
  }
  BlockEntry& entry = it->second;
  if (tier == Tier::kHost && !entry.on_disk) {
    before_long_wait();
    LMKV_RETURN_IF_ERROR(write_back({slot}).with_context("evicting " + key.to_string()));
  }
  if (tier == Tier::kGpu && entry.host_slot < 0 && !entry.on_disk) {
    return Status::Internal("GPU copy of " + key.to_string() + " is its only copy");
  }
  slots.release(slot);
  (tier == Tier::kGpu ? entry.gpu_slot : entry.host_slot) = -1;
  ++evictions[static_cast<int>(tier)];
  if (entry.gpu_slot < 0 && entry.host_slot < 0) table.erase(it);
  return Status::Ok();
}

void StoreCore::unpin(Tier tier, int32_t slot) {
  SlotPool& slots = pool(tier);
  if (slots.unpin(slot) > 0) return;
  if (slots.orphaned(slot) || slots.state(slot) == SlotState::kFailed) slots.release(slot);
}

void StoreCore::reap_deferred(bool block) {
#ifdef LMKV_WITH_CUDA
  if (block && !deferred.empty()) before_long_wait();
  bool first = true;
  while (!deferred.empty()) {
    cudaEvent_t event = static_cast<CudaEvent*>(deferred.front().event.get())->get();
    // A failed query or sync means the device is unusable; the pins are released regardless
    // since nothing will read the slots again.
    const cudaError_t done = (block && first) ? cudaEventSynchronize(event) : cudaEventQuery(event);
    if (done == cudaErrorNotReady) return;
    if (done != cudaSuccess) cudaGetLastError();
    first = false;
    const DeferredUnpin& done_entry = deferred.front();
    for (int32_t slot : done_entry.slots) unpin(done_entry.tier, slot);
    float elapsed_ms = 0;
    if (done == cudaSuccess && done_entry.start &&
        cudaEventElapsedTime(&elapsed_ms, static_cast<CudaEvent*>(done_entry.start.get())->get(),
                             event) == cudaSuccess) {
      stats.update([&](StoreStatsSnapshot& d) {
        for (int t = 0; t < kTierCount; ++t) {
          if (done_entry.sources[t]) {
            d.swap_in_latency[t].record_ns(static_cast<uint64_t>(elapsed_ms * 1e6));
          }
        }
      });
    }
    deferred.pop_front();
  }
#else
  (void)block;
#endif
}

void StoreCore::before_long_wait() {
  if (!close_streamed_gather) return;
  std::function<void()> close = std::move(close_streamed_gather);
  close_streamed_gather = nullptr;
  close();
}

void StoreCore::fail_slot(Tier tier, int32_t slot) {
  SlotPool& slots = pool(tier);
  if (!slots.orphaned(slot)) {
    auto it = table.find(slots.owner(slot));
    if (it != table.end()) {
      int32_t& field = tier == Tier::kGpu ? it->second.gpu_slot : it->second.host_slot;
      if (field == slot) field = -1;
      if (it->second.gpu_slot < 0 && it->second.host_slot < 0) table.erase(it);
    }
  }
  slots.set_state(slot, SlotState::kFailed);
  if (slots.pins(slot) == 0) slots.release(slot);
}

Status StoreCore::write_back(const std::vector<int32_t>& slots) {
  if (slots.empty()) return Status::Ok();
  std::vector<std::string> values(slots.size());
  std::vector<DiskRecord> records;
  records.reserve(2 * slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    const BlockKey& key = host_slots.owner(slots[i]);
    encode_block_value(key, options.shape, host_arena->slot(slots[i]), &values[i]);
    records.push_back({key, values[i]});
    const std::string& landmark = table[key].pending_landmark;
    if (!landmark.empty()) records.push_back({key, landmark, /*landmark=*/true});
  }
  LMKV_RETURN_IF_ERROR(write_to_disk(records));
  for (int32_t slot : slots) {
    BlockEntry& entry = table[host_slots.owner(slot)];
    entry.on_disk = true;
    entry.pending_landmark.clear();
    entry.pending_landmark.shrink_to_fit();
  }
  stats.add(Tier::kHost, &TierCounters::bytes_out, slots.size() * slot_bytes);
  return Status::Ok();
}

}  // namespace lmkv::detail
