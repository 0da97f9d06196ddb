// How long does one layer of landmark attention take on the GPU? 32 heads x 128, fp16, B = 50,
// k = 32, contexts of 32k, 128k and 1M tokens: decode (one query per head) and a 512-query
// prefill chunk over blocks resident in HBM (page table given), beside a dense attention over the
// whole KV cache in the same run (the same kernels with every token in the local window, so no
// retrieval). The end-to-end step (search, page-in through the store, attention) is measured with
// blocks in the GPU tier and with blocks in pinned host memory once the retrieved set is warm.
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <memory>
#include <random>

#include "attention/gpu_attention.h"
#include "attention/resident_decode.h"
#include "attention/retrieval_attention.h"
#include "index/gpu_fused_index.h"
#include "kvstore/cuda_util.h"
#include "kvstore/dtype_convert.h"

#ifdef LMKV_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace lmkv {
namespace {

#ifdef LMKV_WITH_CUDA

constexpr uint32_t kHeads = 32, kDim = 128, kB = 50, kTopK = 32, kLocal = 25;
constexpr size_t kPayloadBytes = size_t{2} * kB * kDim * 2;

// One device arena big enough for every block of every head of the largest context, filled with
// small finite fp16 values (the kernels' time does not depend on them). Reused as the dense
// baseline's K and V.
struct Arena {
  DeviceBuffer memory;
  size_t bytes = 0;
};

Arena* arena(size_t bytes, std::string* error) {
  static Arena a;
  if (a.bytes < bytes) {
    a.memory = DeviceBuffer();
    Status s = a.memory.reserve(bytes);
    if (s.ok() && cudaMemset(a.memory.get(), 0x11, bytes) != cudaSuccess) {
      s = Status::CudaError("cudaMemset of the arena");
    }
    if (!s.ok()) {
      *error = s.to_string();
      return nullptr;
    }
    a.bytes = bytes;
  }
  return &a;
}

// A page table of k distinct random blocks per row (of `blocks` per head), on the device; with
// `shared`, every row of a head has its head's blocks (offload mode: one retrieval per chunk).
struct PageTable {
  DeviceBuffer indptr, slots, scores;
};

PageTable random_page_table(size_t rows, uint32_t heads, size_t blocks, uint32_t k, bool shared) {
  std::mt19937_64 rng(rows * 31 + blocks);
  std::vector<int32_t> indptr{0}, slots;
  std::vector<float> scores;
  std::uniform_int_distribution<size_t> pick(0, blocks - 1);
  std::vector<std::vector<size_t>> head_blocks(heads);
  for (size_t r = 0; r < rows; ++r) {
    const size_t head = r % heads;
    std::vector<size_t> chosen;
    if (shared) chosen = head_blocks[head];
    while (chosen.size() < std::min<size_t>(k, blocks)) {
      const size_t b = pick(rng);
      if (std::find(chosen.begin(), chosen.end(), b) == chosen.end()) chosen.push_back(b);
    }
    std::sort(chosen.begin(), chosen.end());
    head_blocks[head] = chosen;
    for (size_t b : chosen) {
      slots.push_back(int32_t(head * blocks + b));
      scores.push_back(float(rng() % 1000) / 100.f);
    }
    indptr.push_back(int32_t(slots.size()));
  }
  PageTable t;
  auto up = [](DeviceBuffer& d, const void* src, size_t bytes) {
    (void)d.reserve(bytes);
    (void)cudaMemcpy(d.get(), src, bytes, cudaMemcpyHostToDevice);
  };
  up(t.indptr, indptr.data(), indptr.size() * 4);
  up(t.slots, slots.data(), slots.size() * 4);
  up(t.scores, scores.data(), scores.size() * 4);
  return t;
}

// The kernels alone: retrieval over HBM-resident blocks (dense = false; `shared`: offload mode) or
// dense attention over all `context` tokens as the window (dense = true).
void run_kernels(benchmark::State& state, bool dense, bool shared = false) {
  const size_t context = size_t(state.range(0));
  const uint32_t tokens = uint32_t(state.range(1));
  const size_t blocks = context / kB;
  const size_t arena_bytes = size_t{kHeads} * blocks * kPayloadBytes;
  std::string error;
  Arena* a = arena(arena_bytes, &error);
  if (a == nullptr) return state.SkipWithError(error.c_str());
  const size_t rows = size_t{tokens} * kHeads;
  PageTable table = random_page_table(rows, kHeads, blocks, dense ? 0 : kTopK, shared);
  DeviceBuffer queries, window_k, window_v, out;
  const uint32_t window = dense ? uint32_t(blocks * kB) : kLocal + tokens;
  if (!queries.reserve(rows * kDim * 2).ok() || !out.reserve(rows * kDim * 4).ok()) {
    return state.SkipWithError("allocation");
  }
  (void)cudaMemset(queries.get(), 0x11, rows * kDim * 2);
  const char* base = static_cast<const char*>(a->memory.get());
  GpuAttentionArgs args;
  args.tokens = tokens;
  args.heads = args.kv_heads = kHeads;
  args.dim = kDim;
  args.block_tokens = kB;
  args.queries = queries.get();
  // Dense: the arena's first and second halves as K and V [heads][context][d].
  args.window_keys = base;
  args.window_values = dense ? base + arena_bytes / 2 : base;
  args.window_tokens = window;
  args.slot_base = base;
  args.indptr = static_cast<const int32_t*>(table.indptr.get());
  args.slots = static_cast<const int32_t*>(table.slots.get());
  args.landmark_scores = static_cast<const float*>(table.scores.get());
  args.max_blocks_per_row = dense ? 0 : kTopK;
  args.rows_share_blocks = shared;
  args.out = static_cast<float*>(out.get());
  GpuAttention attention;
  CudaStream stream;
  if (!stream.create().ok()) return state.SkipWithError("stream");
  CudaEvent begin, end;
  if (!begin.create().ok() || !end.create().ok()) return state.SkipWithError("events");
  for (auto _ : state) {
    cudaEventRecord(begin.get(), stream.get());
    if (Status s = attention.run(args, stream.get()); !s.ok()) {
      return state.SkipWithError(s.to_string().c_str());
    }
    cudaEventRecord(end.get(), stream.get());
    if (cudaEventSynchronize(end.get()) != cudaSuccess) return state.SkipWithError("sync");
    float ms = 0;
    cudaEventElapsedTime(&ms, begin.get(), end.get());
    state.SetIterationTime(ms / 1e3);
  }
  // Bytes the step must read: retrieved blocks (or the whole cache); shared blocks count once.
  const double read = dense    ? double(kHeads) * context * kDim * 2 * 2
                      : shared ? double(kHeads) * kTopK * kPayloadBytes
                               : double(rows) * kTopK * kPayloadBytes;
  state.counters["GB/s"] =
      benchmark::Counter(read * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["context"] = double(context);
  state.counters["queries"] = double(tokens);
}

void BM_LandmarkAttentionKernels(benchmark::State& state) { run_kernels(state, false); }
void BM_DenseAttentionBaseline(benchmark::State& state) { run_kernels(state, true); }
// Prefill in the paper's offload mode: a chunk's tokens share each head's k blocks.
void BM_LandmarkAttentionOffloadPrefill(benchmark::State& state) {
  run_kernels(state, false, true);
}

void context_args(benchmark::internal::Benchmark* b) {
  for (int64_t context : {32'768, 131'072, 1'048'576}) {
    for (int64_t tokens : {1, 512}) b->Args({context, tokens});
  }
}
BENCHMARK(BM_LandmarkAttentionKernels)
    ->Apply(context_args)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_LandmarkAttentionOffloadPrefill)
    ->Args({32'768, 512})
    ->Args({131'072, 512})
    ->Args({1'048'576, 512})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DenseAttentionBaseline)
    ->Apply(context_args)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(5);

// End to end through RetrievalAttention: the fused GPU index, a store whose GPU tier holds every
// block (resident = GPU) or only a step's worth above a host tier holding them all (resident =
// host; repeated decode of one query keeps its retrieved set warm in the GPU tier).
struct Layer {
  std::unique_ptr<TieredStore> store;
  std::unique_ptr<GpuFusedIndex> index;
  std::string dir;
};

Layer* layer(size_t context, bool gpu_resident, std::string* error) {
  static std::map<std::pair<size_t, bool>, std::unique_ptr<Layer>> cache;
  const std::pair<size_t, bool> key{context, gpu_resident};
  if (auto it = cache.find(key); it != cache.end()) return it->second.get();
  cache.clear();  // one at a time: free the previous tiers
  auto l = std::make_unique<Layer>();
  const size_t blocks = context / kB;
  char dir[] = "/tmp/lmkv-attention-bench-XXXXXX";
  l->dir = mkdtemp(dir);
  StoreOptions options;
  options.disk_path = l->dir;
  options.write_policy = WritePolicy::kWriteBack;  // the bench needs no disk copy
  options.host_capacity_bytes = (kHeads * blocks + 64) * kPayloadBytes;
  options.gpu_capacity_bytes =
      gpu_resident ? options.host_capacity_bytes : size_t{4} * kHeads * kTopK * kPayloadBytes;
  auto store = TieredStore::open(options);
  auto index = make_gpu_fused_index({kDim, 0});
  if (!store.ok() || !index.ok()) {
    *error = !store.ok() ? store.status().to_string() : index.status().to_string();
    return nullptr;
  }
  l->store = std::move(store).value();
  l->index = std::move(index).value();
  std::mt19937_64 rng(context);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  std::vector<uint16_t> payload(kPayloadBytes / 2);
  for (auto& x : payload) x = float_to_half_bits(uniform(rng));
  std::vector<float> landmarks(blocks * kDim);
  std::vector<uint64_t> numbers(blocks);
  for (uint32_t h = 0; h < kHeads; ++h) {
    std::vector<BlockWrite> writes;
    for (size_t b = 0; b < blocks; ++b) {
      writes.push_back({{0, 0, h, b}, payload.data(), payload.data() + payload.size() / 2});
      numbers[b] = b;
    }
    for (auto& x : landmarks) x = uniform(rng);
    Status s = l->store->put(writes);
    if (s.ok()) s = l->index->add({0, 0, h}, numbers.data(), landmarks.data(), blocks);
    if (!s.ok()) {
      *error = s.to_string();
      return nullptr;
    }
  }
  Layer* made = l.get();
  cache[key] = std::move(l);
  return made;
}

void BM_RetrievalDecodeEndToEnd(benchmark::State& state) {
  const size_t context = size_t(state.range(0));
  // 1: every block in the GPU tier; 0: in pinned host, retrieved set warm in the GPU tier after
  // the first step; 2: in pinned host, the GPU tier emptied before every step (cold).
  const bool gpu_resident = state.range(1) == 1, cold = state.range(1) == 2;
  std::string error;
  Layer* l = layer(context, gpu_resident, &error);
  if (l == nullptr) return state.SkipWithError(error.c_str());
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  std::vector<float> queries(kHeads * kDim), out(kHeads * kDim);
  for (auto& x : queries) x = uniform(rng);
  std::vector<uint16_t> window(size_t{kHeads} * kLocal * kDim, float_to_half_bits(0.1f));
  RetrievalInputs in;
  in.heads = in.kv_heads = kHeads;
  in.tokens = 1;
  in.queries = queries.data();
  in.window_tokens = kLocal;
  in.window_keys = in.window_values = window.data();
  RetrievalOptions options;
  options.top_k = kTopK;
  options.device = AttentionDevice::kGpu;
  RetrievalAttention attention(*l->store, *l->index);
  RetrievalTrace trace;
  double search = 0, page_in = 0, attend = 0;
  // Warm-up step: brings the retrieved set into the GPU tier.
  if (Status s = attention.run(in, options, out.data(), &trace); !s.ok()) {
    return state.SkipWithError(s.to_string().c_str());
  }
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      if (Status s = l->store->evict_all(Tier::kGpu); !s.ok()) {
        return state.SkipWithError(s.to_string().c_str());
      }
      state.ResumeTiming();
    }
    if (Status s = attention.run(in, options, out.data(), &trace); !s.ok()) {
      return state.SkipWithError(s.to_string().c_str());
    }
    search += trace.search_us;
    page_in += trace.page_in_us;
    attend += trace.attention_us;
  }
  const double n = double(state.iterations());
  state.counters["search_us"] = search / n;
  state.counters["page_in_us"] = page_in / n;
  state.counters["attention_us"] = attend / n;
  state.counters["blocks"] = double(trace.unique_blocks);
  state.counters["context"] = double(context);
}
BENCHMARK(BM_RetrievalDecodeEndToEnd)
    ->ArgsProduct({{32'768, 131'072}, {1, 0, 2}})
    ->ArgNames({"context", "resident"})
    ->Unit(benchmark::kMicrosecond);

// Decode with every block pinned in the GPU tier (ResidentDecode): the fused search, the page
// table and the attention kernels on one stream, queries, window and output on the device. The
// setup both benches share: the decode over the cached layer, `steps` random queries (one per
// step), the window and the outputs.
struct ResidentSetup {
  std::unique_ptr<ResidentDecode> decode;
  DeviceBuffer queries, window, out;
  CudaStream stream;
  std::string error;

  ResidentDecodeInputs inputs(int step) const {
    ResidentDecodeInputs in;
    in.queries = static_cast<const float*>(queries.get()) + size_t(step) * kHeads * kDim;
    in.window_tokens = kLocal;
    in.window_keys = in.window_values = window.get();
    in.out = static_cast<float*>(out.get()) + size_t(step) * kHeads * kDim;
    return in;
  }
};

std::unique_ptr<ResidentSetup> make_resident(size_t context, int steps) {
  auto r = std::make_unique<ResidentSetup>();
  Layer* l = layer(context, /*gpu_resident=*/true, &r->error);
  if (l == nullptr) return r;
  ResidentDecodeOptions options;
  options.heads = options.kv_heads = kHeads;
  options.blocks_per_head = uint32_t(context / kB);
  options.top_k = kTopK;
  auto decode = ResidentDecode::open(*l->store, *l->index, options);
  if (!decode.ok()) {
    r->error = decode.status().to_string();
    return r;
  }
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  std::vector<float> queries(size_t(steps) * kHeads * kDim);
  for (auto& x : queries) x = uniform(rng);
  const std::vector<uint16_t> window(size_t{kHeads} * kLocal * kDim, float_to_half_bits(0.1f));
  if (!r->queries.reserve(queries.size() * sizeof(float)).ok() ||
      !r->window.reserve(window.size() * 2).ok() ||
      !r->out.reserve(queries.size() * sizeof(float)).ok() || !r->stream.create().ok() ||
      cudaMemcpy(r->queries.get(), queries.data(), queries.size() * sizeof(float),
                 cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaMemcpy(r->window.get(), window.data(), window.size() * 2, cudaMemcpyHostToDevice) !=
          cudaSuccess) {
    r->error = "device buffers";
    return r;
  }
  r->decode = std::move(decode).value();
  return r;
}

// One step's latency, launch to synchronisation; device_us is the stream time.
void BM_ResidentDecode(benchmark::State& state) {
  auto r = make_resident(size_t(state.range(0)), 1);
  if (!r->decode) return state.SkipWithError(r->error.c_str());
  CudaEvent begin, end;
  if (!begin.create().ok() || !end.create().ok()) return state.SkipWithError("events");
  const ResidentDecodeInputs in = r->inputs(0);
  double device_ms = 0, enqueue_us = 0;
  for (auto _ : state) {
    cudaEventRecord(begin.get(), r->stream.get());
    const auto enqueue = std::chrono::steady_clock::now();
    Status s = r->decode->step(in, r->stream.get());
    enqueue_us +=
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - enqueue)
            .count();
    cudaEventRecord(end.get(), r->stream.get());
    if (!s.ok() || cudaStreamSynchronize(r->stream.get()) != cudaSuccess) {
      return state.SkipWithError(s.ok() ? "CUDA error" : s.to_string().c_str());
    }
    float ms = 0;
    cudaEventElapsedTime(&ms, begin.get(), end.get());
    device_ms += ms;
  }
  state.counters["device_us"] = device_ms * 1e3 / double(state.iterations());
  // Host time to enqueue the step's launches.
  state.counters["enqueue_us"] = enqueue_us / double(state.iterations());
  state.counters["context"] = double(state.range(0));
  state.counters["missing_blocks"] = double(r->decode->missing_blocks().value());
}

// Steps as a forward pass runs them, one per layer: kPipelinedSteps steps enqueued back to back
// (each with its own query, so each retrieves its own blocks) and one synchronisation. The time
// is per step.
constexpr int kPipelinedSteps = 32;
void BM_ResidentDecodePipelined(benchmark::State& state) {
  auto r = make_resident(size_t(state.range(0)), kPipelinedSteps);
  if (!r->decode) return state.SkipWithError(r->error.c_str());
  double total_us = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kPipelinedSteps; ++i) {
      Status s = r->decode->step(r->inputs(i), r->stream.get());
      if (!s.ok()) return state.SkipWithError(s.to_string().c_str());
    }
    if (cudaStreamSynchronize(r->stream.get()) != cudaSuccess) {
      return state.SkipWithError("CUDA error");
    }
    total_us +=
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  }
  state.counters["us_per_step"] = total_us / double(state.iterations() * kPipelinedSteps);
  state.counters["context"] = double(state.range(0));
  state.counters["missing_blocks"] = double(r->decode->missing_blocks().value());
}
void resident_contexts(benchmark::internal::Benchmark* b) {
  for (int64_t context : {32'768, 131'072, 1'048'576}) b->Arg(context);
  b->ArgNames({"context"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_ResidentDecode)->Apply(resident_contexts);
BENCHMARK(BM_ResidentDecodePipelined)->Apply(resident_contexts);

#endif  // LMKV_WITH_CUDA

}  // namespace
}  // namespace lmkv

BENCHMARK_MAIN();
