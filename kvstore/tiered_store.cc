// TieredStore: opening, writing, erasing, syncing and closing. Page-in lives in page_in.cc.
#include "kvstore/tiered_store.h"

#include <fmt/format.h>

#include <cstring>

#include "kvstore/cuda_util.h"
#include "kvstore/key_codec.h"
#include "kvstore/store_core.h"
#include "kvstore/value_codec.h"

namespace lmkv {

using detail::BlockEntry;
using detail::StoreCore;

namespace {

Status validate_options(const StoreOptions& o) {
  LMKV_RETURN_IF_ERROR(o.shape.validate());
  if (o.disk_path.empty()) return Status::InvalidArgument("disk_path is empty");
  const size_t block = o.shape.payload_bytes();
  if (o.host_capacity_bytes < block) {
    return Status::InvalidArgument(
        fmt::format("host_capacity_bytes={} is below one block of {} bytes ({})",
                    o.host_capacity_bytes, block, o.shape.to_string()));
  }
  if (o.gpu_capacity_bytes != 0 && o.gpu_capacity_bytes < block) {
    return Status::InvalidArgument(
        fmt::format("gpu_capacity_bytes={} is below one block of {} bytes ({}); use 0 for no GPU "
                    "tier",
                    o.gpu_capacity_bytes, block, o.shape.to_string()));
  }
  constexpr size_t kMaxSlots = INT32_MAX;
  if (o.host_capacity_bytes / block > kMaxSlots || o.gpu_capacity_bytes / block > kMaxSlots) {
    return Status::InvalidArgument("a tier capacity exceeds 2^31 blocks");
  }
  if (o.cuda_device < 0) {
    return Status::InvalidArgument(fmt::format("cuda_device={} is negative", o.cuda_device));
  }
  if (o.latency_sample_period < 1) {
    return Status::InvalidArgument(
        fmt::format("latency_sample_period={} must be at least 1", o.latency_sample_period));
  }
  if (o.disk_read_threads < 1 || o.disk_read_threads > 256) {
    return Status::InvalidArgument(
        fmt::format("disk_read_threads={} is out of range [1, 256]", o.disk_read_threads));
  }
  if (o.async_page_in_threads < 1 || o.async_page_in_threads > 256) {
    return Status::InvalidArgument(
        fmt::format("async_page_in_threads={} is out of range [1, 256]", o.async_page_in_threads));
  }
  return Status::Ok();
}

std::string encode_shape(const BlockShape& s) {
  return fmt::format("{} {} {}", s.block_tokens, s.head_dim, static_cast<int>(s.dtype));
}

// Stages k and v into one contiguous host payload when either lives on the GPU; returns the
// payload pointers to encode from.
Status host_copy_of(const StoreCore& c, const void* k, const void* v, std::string* staging,
                    const void** k_host, const void** v_host) {
  *k_host = k;
  *v_host = v;
#ifdef LMKV_WITH_CUDA
  if (c.cuda_devices == 0 || (!is_device_pointer(k) && !is_device_pointer(v))) return Status::Ok();
  const ScopedCudaDevice on_device(c.call_device());
  LMKV_RETURN_IF_ERROR(on_device.status());
  const size_t tensor = c.options.shape.tensor_bytes();
  staging->resize(2 * tensor);
  LMKV_CUDA_RETURN_IF_ERROR(cudaMemcpy(staging->data(), k, tensor, cudaMemcpyDefault));
  LMKV_CUDA_RETURN_IF_ERROR(cudaMemcpy(staging->data() + tensor, v, tensor, cudaMemcpyDefault));
  *k_host = staging->data();
  *v_host = staging->data() + tensor;
#else
  (void)c;
  (void)staging;
#endif
  return Status::Ok();
}

}  // namespace

TieredStore::TieredStore(std::shared_ptr<StoreCore> core)
    : core_(std::move(core)), options_(core_->options) {}

TieredStore::~TieredStore() { (void)close(); }

Result<std::unique_ptr<TieredStore>> TieredStore::open(StoreOptions options) {
  LMKV_RETURN_IF_ERROR(validate_options(options));
  const size_t block = options.shape.payload_bytes();
  const int devices = cuda_device_count();
  if (options.gpu_capacity_bytes > 0 && devices == 0) {
    return Status::FailedPrecondition(fmt::format(
        "gpu_capacity_bytes={} asks for a GPU tier, but no CUDA device is usable{}",
        options.gpu_capacity_bytes,
#ifdef LMKV_WITH_CUDA
        ""
#else
        " (lmkv was built without CUDA)"
#endif
        ));
  }
  if (devices > 0 && options.cuda_device >= devices) {
    return Status::InvalidArgument(
        fmt::format("cuda_device={} but {} device(s) are present", options.cuda_device, devices));
  }
  // Everything the store allocates on the GPU or pins belongs to its device.
  const ScopedCudaDevice on_device(devices > 0 ? options.cuda_device : -1);
  LMKV_RETURN_IF_ERROR(on_device.status());
  const auto gpu_slots = static_cast<int32_t>(options.gpu_capacity_bytes / block);
  const auto host_slots = static_cast<int32_t>(options.host_capacity_bytes / block);
  // The arenas first: an impossible capacity fails there, before the per-slot bookkeeping.
#ifdef LMKV_WITH_CUDA
  std::unique_ptr<GpuArena> gpu_arena;
  if (gpu_slots > 0) {
    LMKV_ASSIGN_OR_RETURN(gpu_arena, GpuArena::allocate(gpu_slots, block));
  }
#endif
  LMKV_ASSIGN_OR_RETURN(std::unique_ptr<HostArena> host_arena,
                        HostArena::allocate(host_slots, block, /*pinned=*/devices > 0));
  std::shared_ptr<StoreCore> core;
  try {
    core = std::make_shared<StoreCore>(options, gpu_slots, host_slots);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted(fmt::format(
        "cannot allocate the bookkeeping of {} GPU and {} host slots", gpu_slots, host_slots));
  }
  core->cuda_devices = devices;
#ifdef LMKV_WITH_CUDA
  core->gpu_arena = std::move(gpu_arena);
#endif
  core->host_arena = std::move(host_arena);

  DiskOptions disk_options;
  disk_options.path = options.disk_path;
  disk_options.direct_io = options.direct_io;
  disk_options.blob_files = options.disk_blob_files;
  auto opened =
      options.open_disk ? options.open_disk(disk_options) : open_rocksdb_disk_tier(disk_options);
  if (!opened.ok()) return opened.status();
  core->disk = std::move(opened).value();

  // A store keeps one shape for life: reopening with another would misread every block.
  LMKV_ASSIGN_OR_RETURN(auto stored_shape, core->disk->get_metadata("shape"));
  if (!stored_shape) {
    LMKV_RETURN_IF_ERROR(core->disk->put_metadata("shape", encode_shape(options.shape)));
  } else if (*stored_shape != encode_shape(options.shape)) {
    return Status::InvalidArgument(fmt::format(
        "the store at '{}' holds blocks of shape '{}' (B d dtype), but options ask for {}",
        options.disk_path, *stored_shape, options.shape.to_string()));
  }
  core->io_pool = std::make_unique<ThreadPool>(options.disk_read_threads);
  return std::unique_ptr<TieredStore>(new TieredStore(std::move(core)));
}

Status TieredStore::check_open() const {
  if (core_->closed) return Status::FailedPrecondition("the store is closed");
  return Status::Ok();
}

Status TieredStore::put(const BlockKey& key, const void* k, const void* v) {
  return put(std::vector<BlockWrite>{{key, k, v}});
}

Status TieredStore::put(const std::vector<BlockWrite>& blocks) {
  StoreCore& c = *core_;
  for (const BlockWrite& b : blocks) {
    if (b.k == nullptr || b.v == nullptr) {
      return Status::InvalidArgument("put of " + b.key.to_string() + " has a null K or V pointer");
    }
  }
  // Reserve the keys so that concurrent puts of the same block cannot both succeed.
  {
    std::lock_guard<std::mutex> lock(c.mu);
    LMKV_RETURN_IF_ERROR(check_open());
    for (size_t i = 0; i < blocks.size(); ++i) {
      const BlockKey& key = blocks[i].key;
      if (c.table.count(key) || c.puts_in_flight.count(key)) {
        for (size_t j = 0; j < i; ++j) c.puts_in_flight.erase(blocks[j].key);
        return Status::AlreadyExists(fmt::format(
            "block {} is already stored (or listed twice); blocks are immutable", key.to_string()));
      }
      c.puts_in_flight.insert(key);
    }
  }
  auto unreserve = [&] {
    std::lock_guard<std::mutex> lock(c.mu);
    for (const BlockWrite& b : blocks) c.puts_in_flight.erase(b.key);
  };
  auto fail = [&](Status s) {
    unreserve();
    return s;
  };

  std::vector<std::string> values(blocks.size());
  std::vector<DiskRecord> records(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    Result<bool> exists = c.disk->contains(blocks[i].key);
    if (!exists.ok()) return fail(exists.status());
    if (*exists) {
      return fail(Status::AlreadyExists(fmt::format(
          "block {} is already stored on disk; blocks are immutable", blocks[i].key.to_string())));
    }
    std::string staging;
    const void *k = nullptr, *v = nullptr;
    Status copied = host_copy_of(c, blocks[i].k, blocks[i].v, &staging, &k, &v);
    if (!copied.ok()) return fail(copied.with_context("put of " + blocks[i].key.to_string()));
    encode_block_value(blocks[i].key, c.options.shape, k, v, &values[i]);
    records[i] = {blocks[i].key, values[i]};
  }
  const bool write_through = c.options.write_policy == WritePolicy::kWriteThrough;
  if (write_through) {
    Status written = c.write_to_disk(records);
    if (!written.ok()) return fail(written);
  }

  std::lock_guard<std::mutex> lock(c.mu);
  for (const BlockWrite& b : blocks) c.puts_in_flight.erase(b.key);
  c.reap_deferred(/*block=*/false);
  std::vector<DiskRecord> unplaced;  // write-back blocks the host tier had no room for
  for (size_t i = 0; i < blocks.size(); ++i) {
    Result<int32_t> slot = c.allocate_slot(Tier::kHost, blocks[i].key);
    if (!slot.ok()) {
      // Write-through: on disk already, just not cached. Write-back: goes to disk below.
      if (!write_through) unplaced.push_back(records[i]);
      continue;
    }
    std::memcpy(c.host_arena->slot(*slot), values[i].data() + kValueHeaderBytes, c.slot_bytes);
    c.host_slots.set_state(*slot, SlotState::kReady);
    BlockEntry& entry = c.table[blocks[i].key];
    entry.host_slot = *slot;
    entry.on_disk = write_through;
    c.stats.add(Tier::kHost, &TierCounters::bytes_in, c.slot_bytes);
  }
  if (!unplaced.empty()) {
    Status direct = c.write_to_disk(unplaced);
    if (!direct.ok()) {
      return direct.with_context(fmt::format(
          "put: the host tier had no room for {} of {} blocks (first {}) and writing them to "
          "disk failed; the other blocks are stored",
          unplaced.size(), blocks.size(), unplaced.front().key.to_string()));
    }
  }
  c.stats.update([&](StoreStatsSnapshot& s) { s.puts += blocks.size(); });
  return Status::Ok();
}

Status TieredStore::read(const BlockKey& key, void* k_out, void* v_out) {
  if (k_out == nullptr || v_out == nullptr) {
    return Status::InvalidArgument("read of " + key.to_string() + " has a null output pointer");
  }
  LMKV_ASSIGN_OR_RETURN(PageIn page, page_in({key}, PageInTarget::kHost));
  const size_t tensor = shape().tensor_bytes();
  std::memcpy(k_out, page.payload(0), tensor);
  std::memcpy(v_out, page.payload(0) + tensor, tensor);
  return Status::Ok();
}

Result<bool> TieredStore::contains(const BlockKey& key) {
  {
    std::lock_guard<std::mutex> lock(core_->mu);
    LMKV_RETURN_IF_ERROR(check_open());
    if (core_->table.count(key)) return true;
  }
  return core_->disk->contains(key);
}

Result<Tier> TieredStore::residency(const BlockKey& key) {
  {
    std::lock_guard<std::mutex> lock(core_->mu);
    LMKV_RETURN_IF_ERROR(check_open());
    auto it = core_->table.find(key);
    if (it != core_->table.end()) {
      if (it->second.gpu_slot >= 0) return Tier::kGpu;
      if (it->second.host_slot >= 0) return Tier::kHost;
    }
  }
  LMKV_ASSIGN_OR_RETURN(bool on_disk, core_->disk->contains(key));
  if (!on_disk) return Status::NotFound("block " + key.to_string() + " is not stored");
  return Tier::kDisk;
}

Status TieredStore::put_landmarks(const std::vector<BlockKey>& keys, const float* values,
                                  uint32_t dim) {
  if (!keys.empty() && (values == nullptr || dim == 0)) {
    return Status::InvalidArgument(
        fmt::format("put_landmarks of {} blocks with null values or dim={}", keys.size(), dim));
  }
  StoreCore& c = *core_;
  std::vector<std::string> encoded(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    encode_landmark_value(keys[i], values + i * dim, dim, &encoded[i]);
  }
  std::lock_guard<std::mutex> lock(c.mu);
  LMKV_RETURN_IF_ERROR(check_open());
  // A write-back block not on disk yet keeps its landmark until both are written together;
  // landmarks of blocks already on disk are written now. Under the store lock, so a write-back
  // cannot slip between the check and either path.
  std::vector<DiskRecord> now;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto it = c.table.find(keys[i]);
    if (it != c.table.end() && !it->second.on_disk) {
      it->second.pending_landmark = std::move(encoded[i]);
    } else {
      now.push_back({keys[i], encoded[i], /*landmark=*/true});
    }
  }
  return now.empty() ? Status::Ok() : c.write_to_disk(now);
}

Status TieredStore::scan_landmarks(const LandmarkVisitor& visit) {
  LMKV_RETURN_IF_ERROR(check_open());
  return core_->disk->scan_landmarks([&](const BlockKey& key, std::string_view value) -> Status {
    LMKV_ASSIGN_OR_RETURN(std::vector<float> values, decode_landmark_value(key, value));
    return visit(key, values.data(), static_cast<uint32_t>(values.size()));
  });
}

Status TieredStore::erase(uint64_t sequence) {
  StoreCore& c = *core_;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    LMKV_RETURN_IF_ERROR(check_open());
    for (auto it = c.table.begin(); it != c.table.end();) {
      if (it->first.sequence != sequence) {
        ++it;
        continue;
      }
      for (Tier tier : {Tier::kGpu, Tier::kHost}) {
        const int32_t slot = tier == Tier::kGpu ? it->second.gpu_slot : it->second.host_slot;
        if (slot < 0) continue;
        SlotPool& slots = c.pool(tier);
        if (slots.pins(slot) == 0) {
          slots.release(slot);
        } else {
          slots.set_orphaned(slot, true);  // freed when its page-in lets go
        }
      }
      it = c.table.erase(it);
    }
  }
  return c.disk->erase_sequence(sequence);
}

Status TieredStore::evict_all(Tier tier) {
  if (tier == Tier::kDisk) return Status::InvalidArgument("the disk tier cannot be evicted");
  StoreCore& c = *core_;
  std::lock_guard<std::mutex> lock(c.mu);
  LMKV_RETURN_IF_ERROR(check_open());
  // Released page-ins hold their pins until the GPU passes them: wait, then evict everything.
  while (!c.deferred.empty()) c.reap_deferred(/*block=*/true);
  SlotPool& slots = c.pool(tier);
  std::vector<int32_t> dirty;
  if (tier == Tier::kHost) {
    for (int32_t s = 0; s < slots.capacity(); ++s) {
      if (slots.state(s) == SlotState::kReady && slots.pins(s) == 0 &&
          !c.table[slots.owner(s)].on_disk) {
        dirty.push_back(s);
      }
    }
    LMKV_RETURN_IF_ERROR(c.write_back(dirty));  // one batch instead of one write per block
  }
  for (int32_t s = 0; s < slots.capacity(); ++s) {
    if (slots.state(s) == SlotState::kReady && slots.pins(s) == 0) {
      LMKV_RETURN_IF_ERROR(c.evict_slot(tier, s));
    }
  }
  return Status::Ok();
}

Status TieredStore::sync() {
  StoreCore& c = *core_;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    LMKV_RETURN_IF_ERROR(check_open());
    std::vector<int32_t> dirty;
    for (const auto& [key, entry] : c.table) {
      if (!entry.on_disk && entry.host_slot >= 0) dirty.push_back(entry.host_slot);
    }
    LMKV_RETURN_IF_ERROR(c.write_back(dirty));
  }
  return c.disk->sync();
}

Status TieredStore::compact_disk() {
  LMKV_RETURN_IF_ERROR(sync());
  return core_->disk->compact();
}

Status TieredStore::close() {
  StoreCore& c = *core_;
  // page_in_async calls already made run to the end (the pool drains its queue before its
  // workers exit), outside the lock, so that a call made now fails at once instead of waiting.
  std::unique_ptr<ThreadPool> async;
  {
    std::lock_guard<std::mutex> lock(async_mu_);
    async_closed_ = true;
    async = std::move(async_pool_);
  }
  async.reset();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.closed) return Status::Ok();
  }
  {
    // Let the GPU finish with every released page-in, recording their latencies.
    std::lock_guard<std::mutex> lock(c.mu);
    while (!c.deferred.empty()) c.reap_deferred(/*block=*/true);
  }
  Status s = sync();
  Status closed = c.disk->close();
  std::lock_guard<std::mutex> lock(c.mu);
  c.closed = true;
  return s.ok() ? closed : s;
}

StoreStatsSnapshot TieredStore::stats() const {
  std::lock_guard<std::mutex> lock(core_->mu);
  core_->reap_deferred(/*block=*/false);  // latencies of page-ins the GPU has finished
  StoreStatsSnapshot snapshot = core_->stats.snapshot();
  for (Tier tier : {Tier::kGpu, Tier::kHost}) {
    TierCounters& t = snapshot.tiers[static_cast<int>(tier)];
    t.evictions = core_->evictions[static_cast<int>(tier)];
    t.resident_blocks = core_->pool(tier).used();
    t.capacity_blocks = core_->pool(tier).capacity();
  }
  snapshot.disk_reads = core_->disk->read_counters() - core_->disk_reads_at_reset;
  return snapshot;
}

void TieredStore::reset_stats() {
  std::lock_guard<std::mutex> lock(core_->mu);
  core_->stats.reset();
  core_->evictions = {};
  core_->disk_reads_at_reset = core_->disk->read_counters();
}

int32_t TieredStore::gpu_slot_count() const { return core_->gpu_slots.capacity(); }
int32_t TieredStore::host_slot_count() const { return core_->host_slots.capacity(); }

const char* TieredStore::gpu_slot_base() const {
#ifdef LMKV_WITH_CUDA
  if (core_->gpu_arena) return core_->gpu_arena->base();
#endif
  return nullptr;
}

bool TieredStore::disk_direct_reads() const { return core_->disk->direct_reads(); }

}  // namespace lmkv
