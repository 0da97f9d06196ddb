// How fast does a batched page-in deliver retrieved blocks to the GPU, from each tier?
// Blocks of B = 50, d = 128, fp16, K and V (25.6 KB), batches of 1, 32, 256 and 1024, each
// iteration timed from the page_in call until its copies have landed (PageIn::wait), beside two
// baselines measured in the same run: one cudaMemcpyAsync per block (what a naive store does) and
// one contiguous copy of the same bytes (the link's ceiling).
//
// Disk benchmarks read a data set 16x larger than the host tier with direct I/O, so they measure
// the disk and not the page cache. LMKV_BENCH_DIR sets where it is written (default
// ./lmkv-bench-data, removed at exit).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <thread>

#include "kvstore/cuda_util.h"
#include "kvstore/tiered_store.h"

#ifdef LMKV_WITH_CUDA
#include <cuda_runtime.h>

#include "kvstore/gpu_tier.h"
#endif

namespace lmkv {
namespace {

const BlockShape kShape{50, 128, DType::kFloat16};
constexpr uint32_t kHeads = 8;
constexpr uint64_t kBlocksPerHead = 4096;  // 32,768 blocks, 839 MB on disk
constexpr int64_t kMaxBatch = 1024;

std::string bench_dir(const std::string& name) {
  const char* base = std::getenv("LMKV_BENCH_DIR");
  return std::string(base && *base ? base : "./lmkv-bench-data") + "/" + name;
}

void set_rate(benchmark::State& state, int64_t blocks) {
  const double bytes = static_cast<double>(blocks) * kShape.payload_bytes();
  state.counters["GB/s"] =
      benchmark::Counter(bytes * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["blocks"] = static_cast<double>(blocks);
}

#define LMKV_BATCHES(bm) \
  BENCHMARK(bm)->Arg(1)->Arg(32)->Arg(256)->Arg(1024)->UseRealTime()->Unit(benchmark::kMicrosecond)
// Disk: batch sizes at 32 read threads, 1024-block batches at 8 and 64 threads, all with blob
// files; then 256 and 1024 blocks with values inside the sorted tables.
#define LMKV_DISK_BATCHES(bm) \
  BENCHMARK(bm)               \
      ->Args({1, 32, 0})      \
      ->Args({32, 32, 0})     \
      ->Args({256, 32, 0})    \
      ->Args({1024, 32, 0})   \
      ->Args({1024, 8, 0})    \
      ->Args({1024, 64, 0})   \
      ->Args({256, 32, 1})    \
      ->Args({1024, 32, 1})   \
      ->UseRealTime()         \
      ->Unit(benchmark::kMicrosecond)

BlockKey key_of(uint64_t index) {
  return {0, 0, static_cast<uint32_t>(index / kBlocksPerHead), index % kBlocksPerHead};
}

// A store filled once per process and reused by every benchmark that asks for the same layout;
// reopened (same files) when a benchmark asks for another number of disk read threads, or for
// empty GPU and host tiers.
struct BenchStore {
  std::unique_ptr<TieredStore> store;
  StoreOptions options;
  uint64_t blocks = 0;
  std::string error;
};

std::map<std::string, BenchStore>& bench_stores() {
  static std::map<std::string, BenchStore> stores;
  return stores;
}

Status fill(TieredStore& store, uint64_t blocks) {
  std::vector<char> payload(kShape.payload_bytes());
  std::mt19937_64 rng(42);
  for (uint64_t i = 0; i < blocks; ++i) {
    for (size_t j = 0; j < payload.size(); j += 8) {
      const uint64_t v = rng();
      std::memcpy(payload.data() + j, &v, 8);
    }
    LMKV_RETURN_IF_ERROR(
        store.put(key_of(i), payload.data(), payload.data() + kShape.tensor_bytes()));
  }
  // Sorted files, then a reopen: blocks are read from SST files with direct I/O, not a memtable.
  LMKV_RETURN_IF_ERROR(store.compact_disk());
  return store.close();
}

BenchStore& bench_store(const std::string& name, size_t gpu_blocks, size_t host_blocks,
                        uint64_t blocks, int read_threads = 32, bool blob_files = true,
                        bool empty_tiers = false) {
  BenchStore& s = bench_stores()[name];
  if (!s.error.empty()) return s;
  if (s.store && s.options.disk_read_threads == read_threads && !empty_tiers) return s;
  if (!s.store) {
    s.options.shape = kShape;
    s.options.disk_path = bench_dir(name);
    s.options.gpu_capacity_bytes = gpu_blocks * kShape.payload_bytes();
    s.options.host_capacity_bytes = host_blocks * kShape.payload_bytes();
    s.options.direct_io = DirectIo::kAuto;
    s.options.disk_blob_files = blob_files;
    std::filesystem::remove_all(s.options.disk_path);
    auto created = TieredStore::open(s.options);
    Status filled = created.ok() ? fill(**created, blocks) : created.status();
    if (!filled.ok()) {
      s.error = filled.to_string();
      return s;
    }
    s.blocks = blocks;
  }
  s.store.reset();
  s.options.disk_read_threads = read_threads;
  auto opened = TieredStore::open(s.options);
  if (!opened.ok()) {
    s.error = opened.status().to_string();
    return s;
  }
  s.store = std::move(opened).value();
  return s;
}

// The disk data set (16x the host tier); arguments: batch, read threads, 1 for blocks inside the
// sorted tables instead of blob files.
BenchStore& disk_store(benchmark::State& state, size_t gpu_blocks) {
  const bool tables = state.range(2) == 1;
  state.counters["blob_files"] = !tables;
  // Reopened on every call, so every run starts with empty GPU and host tiers: Google Benchmark
  // runs a benchmark more than once, and blocks that an earlier run left in the host tier would be
  // paged in without a disk read.
  return bench_store(tables ? "disk-tables" : "disk", gpu_blocks, 2 * kMaxBatch,
                     kHeads * kBlocksPerHead, state.range(1), !tables, /*empty_tiers=*/true);
}

// The blocks of `page` that came from another tier than `expected`.
int64_t blocks_from_other_tiers(const PageIn& page, Tier expected) {
  int64_t other = 0;
  for (size_t i = 0; i < page.size(); ++i) other += page.source(i) != expected;
  return other;
}

// Blocks paged in over a run: iterations times the batch (at least 1, to divide by).
double blocks_paged(const benchmark::State& state, int64_t batch) {
  return std::max(1.0, static_cast<double>(state.iterations() * batch));
}

// Times page_in + wait + release of `batches` in turn, round robin; with `async`, page_in_async
// and the wait for its future instead of page_in.
void run_page_ins(benchmark::State& state, TieredStore& store,
                  const std::vector<std::vector<BlockKey>>& batches, PageInTarget target,
                  CUstream_st* stream, Tier expected_source, bool async = false) {
  size_t next = 0;
  int64_t wrong_source = 0;  // blocks paged in from another tier than the one measured
  double call_ns = 0;        // inside page_in: planning, disk reads, launching copies
  double wait_ns = 0;        // in PageIn::wait, after page_in returned
  double release_ns = 0;     // in PageIn::release
  store.reset_stats();
  using Clock = std::chrono::steady_clock;
  const auto ns_between = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::nano>(b - a).count();
  };
  for (auto _ : state) {
    const auto t0 = Clock::now();
    Result<PageIn> page = async ? store.page_in_async(batches[next], target, stream).get()
                                : store.page_in(batches[next], target, stream);
    const auto t1 = Clock::now();
    if (!page.ok()) {
      state.SkipWithError(page.status().to_string().c_str());
      return;
    }
    if (Status s = page->wait(); !s.ok()) {
      state.SkipWithError(s.to_string().c_str());
      return;
    }
    const auto t2 = Clock::now();
    wrong_source += blocks_from_other_tiers(*page, expected_source);
    const auto t3 = Clock::now();
    page->release();
    call_ns += ns_between(t0, t1);
    wait_ns += ns_between(t1, t2);
    release_ns += ns_between(t3, Clock::now());
    next = (next + 1) % batches.size();
  }
  set_rate(state, state.range(0));
  const double blocks = blocks_paged(state, state.range(0));
  // The share of blocks that came from another tier: 0 when the benchmark measures what it says.
  state.counters["other_source"] = static_cast<double>(wrong_source) / blocks;
  const double per_iteration_us = 1e-3 / std::max<int64_t>(1, state.iterations());
  state.counters["call_us"] = call_ns * per_iteration_us;
  state.counters["wait_us"] = wait_ns * per_iteration_us;
  state.counters["release_us"] = release_ns * per_iteration_us;
  const StoreStatsSnapshot s = store.stats();
  state.counters["p50_us"] = s.latency(expected_source).quantile_ns(0.5) / 1e3;
  state.counters["p99_us"] = s.latency(expected_source).quantile_ns(0.99) / 1e3;
  if (expected_source == Tier::kDisk) {
    // Blocks and table blocks read from files per block paged in, and how many threads were
    // inside file reads on average over the page-ins' wall time (the raw baseline keeps all of
    // its threads reading).
    const double wall_ns = call_ns + wait_ns + release_ns;
    state.counters["file_reads_per_block"] = s.disk_reads.reads / blocks;
    state.counters["threads_reading"] = s.disk_reads.read_ns / std::max(1.0, wall_ns);
  }
}

// Batches cycling through disjoint windows of `order`, so consecutive batches never overlap.
std::vector<std::vector<BlockKey>> windows(const std::vector<uint64_t>& order, int64_t n,
                                           size_t count) {
  std::vector<std::vector<BlockKey>> batches(count);
  for (size_t b = 0; b < count; ++b) {
    for (int64_t i = 0; i < n; ++i) batches[b].push_back(key_of(order[(b * n + i) % order.size()]));
  }
  return batches;
}

// Batches of n consecutive blocks of one head, visited in a shuffled order.
std::vector<std::vector<BlockKey>> neighbour_batches(int64_t n, uint64_t total) {
  std::vector<uint64_t> runs(total / n);
  std::iota(runs.begin(), runs.end(), 0);
  std::shuffle(runs.begin(), runs.end(), std::mt19937_64(13));
  std::vector<uint64_t> order;
  for (uint64_t r : runs) {
    for (int64_t i = 0; i < n; ++i) order.push_back(r * n + i);
  }
  return windows(order, n, runs.size());
}

#ifdef LMKV_WITH_CUDA
struct Stream {
  cudaStream_t s = nullptr;
  Stream() { cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking); }
  ~Stream() { cudaStreamDestroy(s); }
};

bool skip_without_gpu(benchmark::State& state) {
  if (cuda_device_count() > 0) return false;
  state.SkipWithError("no CUDA device");
  return true;
}

// The store whose 4096 blocks all fit its host tier (and half of them its GPU tier).
BenchStore& resident_store() {
  return bench_store("resident", cuda_device_count() > 0 ? 2 * kMaxBatch : 0, 4 * kMaxBatch,
                     4 * kMaxBatch);
}

std::vector<uint64_t> first_blocks(uint64_t n) {
  std::vector<uint64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  return order;
}

// Blocks already in the GPU tier: the cost of the bookkeeping alone.
void BM_PageIn_GpuHit(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t n = state.range(0);
  BenchStore& bs = resident_store();
  if (!bs.store) return state.SkipWithError(bs.error.c_str());
  const std::vector<uint64_t> order = first_blocks(4 * kMaxBatch);
  const auto batches = windows(order, n, 1);
  Stream stream;
  if (!bs.store->page_in(batches[0], PageInTarget::kDevice, stream.s).ok()) {
    return state.SkipWithError("warm-up page-in failed");
  }
  run_page_ins(state, *bs.store, batches, PageInTarget::kDevice, stream.s, Tier::kGpu);
}

// Blocks in pinned host memory, gathered into GPU slots by one kernel. The GPU tier holds one
// batch, so every batch evicts the previous one and misses.
void BM_PageIn_PinnedHost(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t n = state.range(0);
  BenchStore& bs = resident_store();
  if (!bs.store) return state.SkipWithError(bs.error.c_str());
  std::vector<uint64_t> order = first_blocks(4 * kMaxBatch);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(7));  // scattered in the host arena
  // Bring every block into the host tier, then empty the GPU tier.
  for (const auto& batch : windows(order, kMaxBatch, 4)) {
    if (!bs.store->page_in(batch, PageInTarget::kHost).ok()) {
      return state.SkipWithError("filling the host tier failed");
    }
  }
  // Enough distinct batches that the GPU tier (2 x 1024 slots) never holds the next one.
  const auto batches = windows(order, n, std::max<size_t>(3, 4 * kMaxBatch / n));
  Stream stream;
  if (!bs.store->evict_all(Tier::kGpu).ok()) return state.SkipWithError("evict failed");
  run_page_ins(state, *bs.store, batches, PageInTarget::kDevice, stream.s, Tier::kHost);
}

// Blocks on disk: data set 16x the host tier, random blocks of random heads.
void BM_PageIn_DiskScattered(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t n = state.range(0);
  const uint64_t total = kHeads * kBlocksPerHead;
  BenchStore& bs = disk_store(state, kMaxBatch);
  if (!bs.store) return state.SkipWithError(bs.error.c_str());
  std::vector<uint64_t> order(total);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(11));
  Stream stream;
  run_page_ins(state, *bs.store, windows(order, n, total / n), PageInTarget::kDevice, stream.s,
               Tier::kDisk);
  state.counters["direct_io"] = bs.store->disk_direct_reads();
}

// Blocks on disk that are neighbours: consecutive blocks of one head.
void BM_PageIn_DiskNeighbours(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t n = state.range(0);
  const uint64_t total = kHeads * kBlocksPerHead;
  BenchStore& bs = disk_store(state, kMaxBatch);
  if (!bs.store) return state.SkipWithError(bs.error.c_str());
  Stream stream;
  run_page_ins(state, *bs.store, neighbour_batches(n, total), PageInTarget::kDevice, stream.s,
               Tier::kDisk);
  state.counters["direct_io"] = bs.store->disk_direct_reads();
}

// Baselines on the same blocks' layout: scattered 25.6 KB blocks in pinned memory.
struct PinnedBlocks {
  char* host = nullptr;
  char* device = nullptr;
  std::vector<size_t> scattered;  // slot of block i in the host arena
  explicit PinnedBlocks(unsigned flags = cudaHostAllocDefault) {
    const size_t bytes = 4 * kMaxBatch * kShape.payload_bytes();
    cudaHostAlloc(reinterpret_cast<void**>(&host), bytes, flags);
    cudaMalloc(&device, kMaxBatch * kShape.payload_bytes());
    std::memset(host, 1, bytes);
    scattered.resize(4 * kMaxBatch);
    std::iota(scattered.begin(), scattered.end(), 0);
    std::shuffle(scattered.begin(), scattered.end(), std::mt19937_64(7));
  }
  ~PinnedBlocks() {
    cudaFreeHost(host);
    cudaFree(device);
  }
};

// The blocks every copy baseline reads, allocated on first use (on a GPU machine only).
PinnedBlocks& copy_blocks() {
  static PinnedBlocks blocks;
  return blocks;
}

// A copy baseline: each iteration enqueues `copy(stream)` (the copies of the batch's n blocks) and
// synchronises.
template <typename Copy>
void run_copy_baseline(benchmark::State& state, Copy copy) {
  Stream stream;
  for (auto _ : state) {
    const cudaError_t e = copy(stream.s);
    if (e != cudaSuccess || cudaStreamSynchronize(stream.s) != cudaSuccess) {
      return state.SkipWithError(e != cudaSuccess ? cudaGetErrorString(e) : "copy failed");
    }
  }
  set_rate(state, state.range(0));
}

void BM_Baseline_MemcpyPerBlock(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t n = state.range(0);
  const PinnedBlocks& blocks = copy_blocks();
  const size_t bytes = kShape.payload_bytes();
  run_copy_baseline(state, [&](cudaStream_t stream) {
    for (int64_t i = 0; i < n; ++i) {
      const cudaError_t e =
          cudaMemcpyAsync(blocks.device + i * bytes, blocks.host + blocks.scattered[i] * bytes,
                          bytes, cudaMemcpyHostToDevice, stream);
      if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
  });
}

void BM_Baseline_OneContiguousCopy(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t n = state.range(0);
  const PinnedBlocks& blocks = copy_blocks();
  run_copy_baseline(state, [&](cudaStream_t stream) {
    return cudaMemcpyAsync(blocks.device, blocks.host, n * kShape.payload_bytes(),
                           cudaMemcpyHostToDevice, stream);
  });
}

// The copy engine taking all n scattered blocks in one call (cudaMemcpyBatchAsync, CUDA 12.8):
// a candidate for the page-in's host-to-GPU copies. enqueue_us is the host time of the call.
void BM_Baseline_MemcpyBatch(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t n = state.range(0);
  const PinnedBlocks& blocks = copy_blocks();
  const size_t bytes = kShape.payload_bytes();
  std::vector<void*> dsts(n);
  std::vector<const void*> srcs(n);
  std::vector<size_t> sizes(n, bytes);
  for (int64_t i = 0; i < n; ++i) {
    dsts[i] = blocks.device + i * bytes;
    srcs[i] = blocks.host + blocks.scattered[i] * bytes;
  }
  cudaMemcpyAttributes attrs = {};
  attrs.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
  size_t attrs_index = 0;
  double enqueue_us = 0;
  run_copy_baseline(state, [&](cudaStream_t stream) {
    const auto start = std::chrono::steady_clock::now();
    const cudaError_t e = cudaMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(), size_t(n),
                                               &attrs, &attrs_index, 1, stream);
    enqueue_us +=
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    return e;
  });
  state.counters["enqueue_us"] = enqueue_us / double(state.iterations());
}

// Host time to enqueue one gather of n blocks (no wait): what each early copy of a device
// page-in costs the planning thread.
void BM_GatherLaunchCost(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t n = state.range(0);
  static PinnedBlocks blocks(cudaHostAllocMapped);
  const char* view = nullptr;
  cudaHostGetDevicePointer(reinterpret_cast<void**>(const_cast<char**>(&view)), blocks.host, 0);
  std::vector<int32_t> src(n), dst(n);
  std::iota(src.begin(), src.end(), 0);
  std::iota(dst.begin(), dst.end(), 0);
  Stream stream;
  int64_t launched = 0;
  for (auto _ : state) {
    if (!launch_slot_gather(view, blocks.device, kShape.payload_bytes(), src.data(), dst.data(), n,
                            stream.s)
             .ok()) {
      return state.SkipWithError("gather failed");
    }
    if (++launched % 64 == 0) {
      state.PauseTiming();
      cudaStreamSynchronize(stream.s);
      state.ResumeTiming();
    }
  }
  cudaStreamSynchronize(stream.s);
}
BENCHMARK(BM_GatherLaunchCost)->Arg(8)->Arg(128)->Arg(1024)->Unit(benchmark::kMicrosecond);

// The gather kernel alone, per thread-block shape: scattered slots of a mapped pinned arena into
// device slots. Arguments: batch, shape index into kSupportedGatherShapes.
void BM_GatherKernel_MappedPinned(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const int64_t n = state.range(0);
  const GatherShape shape = kSupportedGatherShapes[state.range(1)];
  static PinnedBlocks blocks(cudaHostAllocMapped);
  const char* view = nullptr;
  cudaHostGetDevicePointer(reinterpret_cast<void**>(const_cast<char**>(&view)), blocks.host, 0);
  std::vector<int32_t> src(n), dst(n);
  for (int64_t i = 0; i < n; ++i) {
    src[i] = static_cast<int32_t>(blocks.scattered[i]);
    dst[i] = static_cast<int32_t>(i);
  }
  Stream stream;
  for (auto _ : state) {
    Status s = launch_slot_gather(view, blocks.device, kShape.payload_bytes(), src.data(),
                                  dst.data(), n, stream.s, shape);
    if (!s.ok() || cudaStreamSynchronize(stream.s) != cudaSuccess) {
      return state.SkipWithError("gather failed");
    }
  }
  set_rate(state, n);
  state.counters["threads"] = shape.threads;
  state.counters["loads"] = shape.loads_per_thread;
}

LMKV_BATCHES(BM_Baseline_MemcpyPerBlock);
LMKV_BATCHES(BM_Baseline_OneContiguousCopy);
LMKV_BATCHES(BM_Baseline_MemcpyBatch);
BENCHMARK(BM_GatherKernel_MappedPinned)
    ->ArgsProduct({{1, 8, 256, 1024}, {0, 1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
LMKV_BATCHES(BM_PageIn_GpuHit);
LMKV_BATCHES(BM_PageIn_PinnedHost);
LMKV_DISK_BATCHES(BM_PageIn_DiskScattered);
LMKV_DISK_BATCHES(BM_PageIn_DiskNeighbours);
#endif  // LMKV_WITH_CUDA

// One raw O_DIRECT read. Raw reads, made in the same run, are the disk tier's ceiling.
struct RawRead {
  int fd = -1;
  size_t offset = 0;  // multiples of 512, as direct I/O requires
  size_t bytes = 0;
};

// The shape of the disk tier's blob reads, as strace shows them: 26,112 bytes (51 sectors) at a
// 512-byte-aligned offset, since RocksDB widens a value's range to the disk's logical sectors.
constexpr size_t kBlobReadBytes = 26112;

// Makes `reads` with `threads` threads, thread t taking reads t, t + threads, ...: as many in
// flight as a page-in keeps with as many read threads. False when a read failed or came up short.
bool read_in_threads(const std::vector<RawRead>& reads, int threads) {
  size_t largest = 0;
  for (const RawRead& r : reads) largest = std::max(largest, r.bytes);
  std::atomic<bool> failed{false};
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      void* buf = nullptr;
      if (posix_memalign(&buf, 4096, largest) != 0) {
        failed = true;
        return;
      }
      for (size_t i = t; i < reads.size() && !failed; i += threads) {
        const RawRead& r = reads[i];
        if (::pread(r.fd, buf, r.bytes, static_cast<off_t>(r.offset)) !=
            static_cast<ssize_t>(r.bytes)) {
          failed = true;
        }
      }
      std::free(buf);
    });
  }
  for (auto& w : workers) w.join();
  return !failed;
}

// The disk itself: 1024 blocks' bytes read with O_DIRECT from a 1 GiB file, by `threads` threads.
// Arg 1: 0 reads each block (rounded up to 4 KB) at a random 4 KB-aligned offset, 1 reads the
// blocks back to back one at a time, 2 back to back in reads of 32 blocks, 3 as the disk tier
// reads a blob (kBlobReadBytes at a random 512-byte-aligned offset).
void BM_Baseline_DiskDirectReads(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t mode = state.range(1);
  const bool blob_shaped = mode == 3;
  const size_t blocks_per_read = mode == 2 ? 32 : 1;
  constexpr size_t kFileBytes = 1ull << 30;
  const size_t block_bytes =
      blob_shaped ? kBlobReadBytes : (kShape.payload_bytes() + 4095) / 4096 * 4096;
  const size_t read_bytes = blocks_per_read * block_bytes;
  const std::string path = bench_dir("raw-disk.bin");
  static bool written = false;
  if (!written) {
    std::filesystem::create_directories(bench_dir(""));
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    std::vector<char> chunk(8 << 20, 7);
    for (size_t off = 0; fd >= 0 && off < kFileBytes; off += chunk.size()) {
      if (::write(fd, chunk.data(), chunk.size()) < 0) break;
    }
    if (fd >= 0) ::fsync(fd), ::close(fd);
    written = true;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0) return state.SkipWithError("O_DIRECT open failed (filesystem without direct I/O?)");
  std::mt19937_64 rng(5);
  constexpr size_t kBlocks = 1024;
  const size_t slots = kFileBytes / block_bytes;
  std::vector<RawRead> reads(kBlocks / blocks_per_read, RawRead{fd, 0, read_bytes});
  for (auto _ : state) {
    const size_t first = rng() % (slots - kBlocks);
    for (size_t i = 0; i < reads.size(); ++i) {
      if (blob_shaped) {
        reads[i].offset = rng() % ((kFileBytes - read_bytes) / 512) * 512;
      } else if (mode == 0) {
        reads[i].offset = rng() % slots * block_bytes;
      } else {
        reads[i].offset = (first + i * blocks_per_read) * block_bytes;
      }
    }
    if (!read_in_threads(reads, threads)) {
      ::close(fd);
      return state.SkipWithError("a direct read failed");
    }
  }
  ::close(fd);
  set_rate(state, kBlocks);
  state.counters["threads"] = threads;
  state.counters["read_kb"] = static_cast<double>(read_bytes) / 1024;
}
BENCHMARK(BM_Baseline_DiskDirectReads)
    ->ArgsProduct({{1, 8, 32, 64}, {0}})
    ->Args({32, 1})
    ->Args({32, 3})
    ->Args({8, 2})
    ->Args({32, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// The disk store's blob files, opened for O_DIRECT reads, and blob-shaped raw reads at random
// 512-byte-aligned offsets over them, weighted by file size.
class BlobFiles {
 public:
  explicit BlobFiles(const std::string& dir) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (entry.path().extension() != ".blob" || entry.file_size() < kBlobReadBytes) continue;
      const int fd = ::open(entry.path().c_str(), O_RDONLY | O_DIRECT);
      if (fd < 0) continue;
      fds_.push_back(fd);
      total_ += entry.file_size() / 512 * 512 - kBlobReadBytes;
      ends_.push_back(total_);
    }
  }
  ~BlobFiles() {
    for (int fd : fds_) ::close(fd);
  }
  BlobFiles(const BlobFiles&) = delete;
  BlobFiles& operator=(const BlobFiles&) = delete;

  size_t count() const { return fds_.size(); }
  // Points every read of `reads` at a random offset of a random file.
  void draw(std::mt19937_64& rng, std::vector<RawRead>& reads) const {
    for (RawRead& r : reads) {
      const size_t at = rng() % (total_ / 512) * 512;
      const size_t f = std::upper_bound(ends_.begin(), ends_.end(), at) - ends_.begin();
      r.fd = fds_[f];
      r.offset = at - (f == 0 ? 0 : ends_[f - 1]);
    }
  }

 private:
  std::vector<int> fds_;
  std::vector<size_t> ends_;  // where each file ends in the files' concatenation
  size_t total_ = 0;
};

// The disk store's own blob files, read as its scattered page-ins read them: n blob-shaped reads
// at random 512-byte-aligned offsets over all its blob files, by as many threads as it reads with.
// The ceiling of BM_PageIn_DiskScattered and BM_PageInToHost_DiskScattered on the same files, the
// same disk and in the same process, without RocksDB. Arguments as theirs.
void BM_Baseline_BlobFileReads(benchmark::State& state) {
  const int64_t n = state.range(0);
  BenchStore& bs = disk_store(state, cuda_device_count() > 0 ? kMaxBatch : 0);
  if (!bs.store) return state.SkipWithError(bs.error.c_str());
  const BlobFiles files(bs.options.disk_path);
  if (files.count() == 0) return state.SkipWithError("no blob file to read with O_DIRECT");
  std::mt19937_64 rng(9);
  std::vector<RawRead> reads(n, RawRead{-1, 0, kBlobReadBytes});
  for (auto _ : state) {
    files.draw(rng, reads);
    if (!read_in_threads(reads, static_cast<int>(state.range(1)))) {
      return state.SkipWithError("a direct read failed");
    }
  }
  set_rate(state, n);
  state.counters["files"] = static_cast<double>(files.count());
}
BENCHMARK(BM_Baseline_BlobFileReads)
    ->Args({256, 32, 0})
    ->Args({1024, 32, 0})
    ->Args({1024, 64, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Batches of scattered blocks of the disk data set: random blocks of random heads.
std::vector<std::vector<BlockKey>> scattered_batches(int64_t n) {
  const uint64_t total = kHeads * kBlocksPerHead;
  std::vector<uint64_t> order(total);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(17));
  return windows(order, n, total / n);
}

// Disk to host, for machines without a GPU (the CPU attention path).
void BM_PageInToHost_DiskScattered(benchmark::State& state) {
  const int64_t n = state.range(0);
  BenchStore& bs = disk_store(state, cuda_device_count() > 0 ? kMaxBatch : 0);
  if (!bs.store) return state.SkipWithError(bs.error.c_str());
  run_page_ins(state, *bs.store, scattered_batches(n), PageInTarget::kHost, nullptr, Tier::kDisk);
  state.counters["direct_io"] = bs.store->disk_direct_reads();
}
LMKV_DISK_BATCHES(BM_PageInToHost_DiskScattered);

// BM_PageInToHost_DiskScattered and BM_Baseline_BlobFileReads in turn, batch by batch: the disk's
// rate drifts by up to 2x between benchmarks, and taking turns puts both under the same drift. The
// time and GB/s are the page-ins'; raw_GB/s is the raw reads', and share_of_raw the page-ins' rate
// over theirs. Arguments as the page-in's.
void BM_PageInToHost_DiskScatteredVsRaw(benchmark::State& state) {
  using Clock = std::chrono::steady_clock;
  const int64_t n = state.range(0);
  BenchStore& bs = disk_store(state, cuda_device_count() > 0 ? kMaxBatch : 0);
  if (!bs.store) return state.SkipWithError(bs.error.c_str());
  const BlobFiles files(bs.options.disk_path);
  if (files.count() == 0) return state.SkipWithError("no blob file to read with O_DIRECT");
  const auto batches = scattered_batches(n);
  std::mt19937_64 rng(9);
  std::vector<RawRead> reads(n, RawRead{-1, 0, kBlobReadBytes});
  double page_s = 0, raw_s = 0;
  int64_t wrong_source = 0;
  size_t next = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    Result<PageIn> page = bs.store->page_in(batches[next], PageInTarget::kHost);
    if (!page.ok()) return state.SkipWithError(page.status().to_string().c_str());
    const auto t1 = Clock::now();
    wrong_source += blocks_from_other_tiers(*page, Tier::kDisk);
    page->release();
    files.draw(rng, reads);
    const auto t2 = Clock::now();
    if (!read_in_threads(reads, static_cast<int>(state.range(1)))) {
      return state.SkipWithError("a direct read failed");
    }
    const double page_this = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(page_this);
    page_s += page_this;
    raw_s += std::chrono::duration<double>(Clock::now() - t2).count();
    next = (next + 1) % batches.size();
  }
  set_rate(state, n);
  const double bytes = static_cast<double>(state.iterations() * n * kShape.payload_bytes());
  state.counters["raw_GB/s"] = bytes / std::max(raw_s, 1e-9) / 1e9;
  state.counters["share_of_raw"] = raw_s / std::max(page_s, 1e-9);
  state.counters["other_source"] = static_cast<double>(wrong_source) / blocks_paged(state, n);
}
BENCHMARK(BM_PageInToHost_DiskScatteredVsRaw)
    ->Args({256, 32, 0})
    ->Args({1024, 32, 0})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

void BM_PageInToHost_DiskNeighbours(benchmark::State& state) {
  const int64_t n = state.range(0);
  BenchStore& bs = disk_store(state, cuda_device_count() > 0 ? kMaxBatch : 0);
  if (!bs.store) return state.SkipWithError(bs.error.c_str());
  run_page_ins(state, *bs.store, neighbour_batches(n, kHeads * kBlocksPerHead), PageInTarget::kHost,
               nullptr, Tier::kDisk);
  state.counters["direct_io"] = bs.store->disk_direct_reads();
}
LMKV_DISK_BATCHES(BM_PageInToHost_DiskNeighbours);

// Host-tier hits: the page-in bookkeeping alone, on the CPU path; the second argument 1 calls
// page_in_async and waits for its future, which adds the hand-off to a worker and back.
void BM_PageInToHost_HostHit(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool async = state.range(1) == 1;
  BenchStore& bs = resident_store();
  if (!bs.store) return state.SkipWithError(bs.error.c_str());
  const std::vector<uint64_t> order = first_blocks(4 * kMaxBatch);
  const auto batches = windows(order, n, 1);
  if (!bs.store->page_in(batches[0], PageInTarget::kHost).ok()) {
    return state.SkipWithError("warm-up page-in failed");
  }
  run_page_ins(state, *bs.store, batches, PageInTarget::kHost, nullptr, Tier::kHost, async);
  state.counters["async"] = async;
}
BENCHMARK(BM_PageInToHost_HostHit)
    ->ArgsProduct({{1, 32, 256, 1024}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace lmkv

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  lmkv::bench_stores().clear();  // closes the stores before their files go
  std::error_code ec;
  std::filesystem::remove_all(lmkv::bench_dir(""), ec);
  return 0;
}
