// How long does the top-k landmark search of one layer take? 32 heads x {655, 20,971, 209,715}
// landmarks (32k, 1M and 10M tokens at B = 50), d = 128, k in {4, 32}, one query per head (decode)
// and 512 (a prefill chunk): the fused GPU search beside FAISS GPU head by head (one search call
// per head, as FAISS offers it) and FAISS CPU, in one run.
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>

#include "index/faiss_cpu_index.h"
#include "index/faiss_gpu_index.h"
#include "index/gpu_fused_index.h"
#include "kvstore/cuda_util.h"

#ifdef LMKV_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace lmkv {
namespace {

constexpr uint32_t kHeads = 32, kDim = 128;

// Uniform values in [-1, 1) from xorshift: fast enough for 860 million of them.
struct Xorshift {
  uint64_t s;
  float next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<float>(s >> 40) / float(1 << 23) - 1.0f;
  }
};

std::vector<float> random_floats(size_t n, uint64_t seed) {
  Xorshift x{seed * 0x9E3779B97F4A7C15ull + 1};
  std::vector<float> out(n);
  for (auto& v : out) v = x.next();
  return out;
}

// Fills `index` with n landmarks per head (the same keys for every backend).
Status fill(LandmarkIndex& index, int64_t n) {
  std::vector<uint64_t> blocks(n);
  for (int64_t i = 0; i < n; ++i) blocks[i] = i;
  for (uint32_t h = 0; h < kHeads; ++h) {
    const std::vector<float> keys = random_floats(size_t(n) * kDim, h + 1);
    LMKV_RETURN_IF_ERROR(index.add({0, 0, h}, blocks.data(), keys.data(), n));
  }
  return Status::Ok();
}

template <typename Index>
Index* cached(std::map<int64_t, std::unique_ptr<Index>>& cache, int64_t n,
              Result<std::unique_ptr<Index>> (*make)(), std::string* error) {
  auto& slot = cache[n];
  if (!slot) {
    auto made = make();
    if (!made.ok()) {
      *error = made.status().to_string();
      return nullptr;
    }
    if (Status s = fill(**made, n); !s.ok()) {
      *error = s.to_string();
      return nullptr;
    }
    slot = std::move(made).value();
  }
  return slot.get();
}

void set_counters(benchmark::State& state, int64_t n) {
  // Bytes of fp16 landmark keys one query per head reads: the decode floor at 3.1 TB/s.
  const double key_bytes = double(kHeads) * n * kDim * 2;
  state.counters["landmarks"] = double(n);
  state.counters["k"] = double(state.range(1));
  state.counters["queries"] = double(state.range(2));
  state.counters["key_GB/s"] =
      benchmark::Counter(key_bytes * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

Result<std::unique_ptr<LandmarkIndex>> make_flat() {
  return make_faiss_cpu_index({FaissCpuKind::kFlat, kDim});
}

Result<std::unique_ptr<LandmarkIndex>> make_faiss_gpu_flat() {
  return make_faiss_gpu_index({FaissGpuKind::kFlat, kDim});
}
Result<std::unique_ptr<LandmarkIndex>> make_faiss_gpu_ivf() {
  return make_faiss_gpu_index({FaissGpuKind::kIvf, kDim});
}

// Host queries and results, through the LandmarkIndex interface.
void search_host(benchmark::State& state, Result<std::unique_ptr<LandmarkIndex>> (*make)(),
                 std::map<int64_t, std::unique_ptr<LandmarkIndex>>& cache) {
  const int64_t n = state.range(0);
  const uint32_t k = static_cast<uint32_t>(state.range(1));
  const uint32_t queries = static_cast<uint32_t>(state.range(2));
  std::string error;
  LandmarkIndex* index = cached(cache, n, make, &error);
  if (!index) return state.SkipWithError(error.c_str());
  const std::vector<float> q = random_floats(size_t(kHeads) * queries * kDim, 99);
  SearchResult result;
  for (auto _ : state) {
    if (!index->search({0, 0, kHeads, queries, k, q.data()}, &result).ok()) {
      return state.SkipWithError("search failed");
    }
  }
  set_counters(state, n);
}

void BM_Search_FaissCpuFlat(benchmark::State& state) {
  static std::map<int64_t, std::unique_ptr<LandmarkIndex>> cache;
  search_host(state, &make_flat, cache);
}

// FAISS GPU, flat and IVF-Flat (nlist = sqrt(n), nprobe = 16), one search call per head.
void BM_Search_FaissGpuFlatHeadByHead(benchmark::State& state) {
  if (!faiss_gpu_available()) return state.SkipWithError("built without FAISS GPU");
  static std::map<int64_t, std::unique_ptr<LandmarkIndex>> cache;
  search_host(state, &make_faiss_gpu_flat, cache);
}
void BM_Search_FaissGpuIvfHeadByHead(benchmark::State& state) {
  if (!faiss_gpu_available()) return state.SkipWithError("built without FAISS GPU");
  static std::map<int64_t, std::unique_ptr<LandmarkIndex>> cache;
  search_host(state, &make_faiss_gpu_ivf, cache);
}

#ifdef LMKV_WITH_CUDA
Result<std::unique_ptr<GpuFusedIndex>> make_screened() {
  return make_gpu_fused_index({kDim, 0, true});
}
Result<std::unique_ptr<GpuFusedIndex>> make_unscreened() {
  return make_gpu_fused_index({kDim, 0, false});
}

// The fused search with queries and results on the device, as attention uses it.
void search_fused(benchmark::State& state, Result<std::unique_ptr<GpuFusedIndex>> (*make)(),
                  std::map<int64_t, std::unique_ptr<GpuFusedIndex>>& cache) {
  if (cuda_device_count() == 0) return state.SkipWithError("no CUDA device");
  const int64_t n = state.range(0);
  const uint32_t k = static_cast<uint32_t>(state.range(1));
  const uint32_t queries = static_cast<uint32_t>(state.range(2));
  std::string error;
  GpuFusedIndex* index = cached(cache, n, make, &error);
  if (!index) return state.SkipWithError(error.c_str());
  const std::vector<float> q = random_floats(size_t(kHeads) * queries * kDim, 99);
  DeviceBuffer d_q, d_blocks, d_scores;
  const size_t outputs = size_t(kHeads) * queries * k;
  if (!d_q.reserve(q.size() * sizeof(float)).ok() ||
      !d_blocks.reserve(outputs * sizeof(int64_t)).ok() ||
      !d_scores.reserve(outputs * sizeof(float)).ok()) {
    return state.SkipWithError("device allocation failed");
  }
  cudaMemcpy(d_q.get(), q.data(), q.size() * sizeof(float), cudaMemcpyHostToDevice);
  CudaStream stream;
  if (!stream.create().ok()) return state.SkipWithError("stream");
  CudaEvent begin, end;
  if (!begin.create().ok() || !end.create().ok()) return state.SkipWithError("events");
  const SearchRequest r{0, 0, kHeads, queries, k, static_cast<const float*>(d_q.get())};
  double device_ms = 0;
  const uint64_t fallbacks_before = index->screening_fallbacks().value();
  for (auto _ : state) {
    cudaEventRecord(begin.get(), stream.get());
    Status s = index->search_on_device(r, static_cast<int64_t*>(d_blocks.get()),
                                       static_cast<float*>(d_scores.get()), stream.get());
    cudaEventRecord(end.get(), stream.get());
    if (!s.ok() || cudaStreamSynchronize(stream.get()) != cudaSuccess) {
      return state.SkipWithError("search failed");
    }
    float ms = 0;
    cudaEventElapsedTime(&ms, begin.get(), end.get());
    device_ms += ms;
  }
  set_counters(state, n);
  // Stream time from the search's first launch to its last kernel's end, without the host's
  // launch and synchronisation costs that the real time includes.
  state.counters["device_us"] = device_ms * 1e3 / double(state.iterations());
  // Share of (head, query) searches the screening could not prove and answered by an exact scan.
  state.counters["fallback_share"] =
      double(index->screening_fallbacks().value() - fallbacks_before) /
      (double(state.iterations()) * kHeads * queries);
}

// int8 screening, then an exact rescoring (the default).
void BM_Search_GpuFused(benchmark::State& state) {
  static std::map<int64_t, std::unique_ptr<GpuFusedIndex>> cache;
  search_fused(state, &make_screened, cache);
}
// Every fp16 key scored exactly: the screening's baseline.
void BM_Search_GpuFusedUnscreened(benchmark::State& state) {
  static std::map<int64_t, std::unique_ptr<GpuFusedIndex>> cache;
  search_fused(state, &make_unscreened, cache);
}

// 2,048 and 4,096 landmarks (100k and 200k tokens) show where screening starts to pay.
BENCHMARK(BM_Search_GpuFused)
    ->ArgsProduct({{655, 20971, 209715}, {4, 32}, {1, 512}})
    ->ArgsProduct({{2048, 4096}, {4, 32}, {1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Search_GpuFusedUnscreened)
    ->ArgsProduct({{655, 20971, 209715}, {4, 32}, {1, 512}})
    ->ArgsProduct({{2048, 4096}, {4, 32}, {1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
#endif

BENCHMARK(BM_Search_FaissGpuFlatHeadByHead)
    ->ArgsProduct({{655, 20971, 209715}, {4, 32}, {1, 512}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Search_FaissGpuIvfHeadByHead)
    ->ArgsProduct({{20971, 209715}, {4, 32}, {1, 512}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// FAISS CPU at 209,715 landmarks and 512 queries would take seconds an iteration: left out.
BENCHMARK(BM_Search_FaissCpuFlat)
    ->ArgsProduct({{655, 20971}, {4, 32}, {1, 512}})
    ->Args({209715, 4, 1})
    ->Args({209715, 32, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace lmkv

BENCHMARK_MAIN();
