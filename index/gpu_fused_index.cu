// Host side of the fused GPU landmark search: device storage per head, launches, copies.
#include <cuda_fp16.h>
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "index/gpu_fused_index.h"
#include "index/int8_landmarks.h"
#include "index/kernels/int8_screen.cuh"
#include "index/kernels/landmark_topk.cuh"
#include "index/kernels/warp_select.cuh"
#include "kvstore/cuda_util.h"
#include "kvstore/dependent_launch.cuh"

namespace lmkv {
namespace {

// Calls f with the head dim (64, 128 or 256) as a compile-time constant.
template <typename F>
auto with_dim(uint32_t dim, F&& f) {
  switch (dim) {
    case 64:
      return f(std::integral_constant<int, 64>{});
    case 128:
      return f(std::integral_constant<int, 128>{});
    default:
      return f(std::integral_constant<int, 256>{});
  }
}

// One head's keys (fp16, and int8 codes in tiles of 32 rows with row scales when screening) and
// block numbers on the device, grown by doubling (capacity stays a multiple of 32).
struct DeviceHead {
  DeviceBuffer keys, block_nos, codes, scales;
  int32_t n = 0;
  int32_t capacity = 0;
  int64_t last_block = -1;
};

// Copies `bytes` at offset `at` of `to` from host memory.
Status copy_in(DeviceBuffer& to, size_t at, const void* from, size_t bytes) {
  LMKV_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(static_cast<char*>(to.get()) + at, from, bytes, cudaMemcpyHostToDevice));
  return Status::Ok();
}

// Replaces `buffer` by one of `bytes`, keeping its first `kept` bytes; the rest reads as zeros
// (the screening pass reads whole tiles, past a head's last row).
Status regrow(DeviceBuffer& buffer, size_t bytes, size_t kept) {
  DeviceBuffer bigger;
  LMKV_RETURN_IF_ERROR(bigger.reserve(bytes));
  if (kept > 0) {
    LMKV_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(bigger.get(), buffer.get(), kept, cudaMemcpyDeviceToDevice));
  }
  LMKV_CUDA_RETURN_IF_ERROR(cudaMemset(static_cast<char*>(bigger.get()) + kept, 0, bytes - kept));
  buffer = std::move(bigger);
  return Status::Ok();
}

// How pass 1 cuts the rows of each (head, query): `chunks` thread blocks of kSelectWarps warps,
// each warp `keys_per_warp` (a multiple of 32) consecutive rows. A warp's rows are a serial chain
// of 32-row steps, so the work is cut into as many warps as the device holds at once: one full
// wave, no second wave nearly empty. A search with more (head, query) pairs than that (prefill)
// gives each block a whole head. (The screening pass takes only `chunks`: its warps interleave
// their 32-row batches.)
struct RowSplit {
  int chunks = 1;
  int keys_per_warp = 32;
};
RowSplit split_rows(int64_t resident_blocks, int64_t pairs, int32_t most) {
  const int64_t blocks_per_pair = std::max<int64_t>(1, resident_blocks / pairs);
  const int64_t warps_per_pair = blocks_per_pair * kernels::kSelectWarps;
  RowSplit split;
  split.keys_per_warp = static_cast<int>(
      std::max<int64_t>(1, (most + 32 * warps_per_pair - 1) / (32 * warps_per_pair)) * 32);
  const int keys_per_block = split.keys_per_warp * kernels::kSelectWarps;
  split.chunks = std::max(1, (most + keys_per_block - 1) / keys_per_block);
  return split;
}

// Opts a pass-1 kernel in to `stage_bytes` of dynamic shared memory (above 48 KB at d = 256) and
// returns how many of its blocks the device holds at once.
template <typename Kernel>
Result<int64_t> resident_blocks(Kernel kernel, int stage_bytes, int device) {
  int per_sm = 0, sms = 0;
  LMKV_CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, stage_bytes));
  LMKV_CUDA_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, kernel, kernels::kSelectWarps * 32, stage_bytes));
  LMKV_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return std::max<int64_t>(1, int64_t{per_sm} * sms);
}

class GpuFusedIndexImpl final : public GpuFusedIndex {
 public:
  explicit GpuFusedIndexImpl(GpuFusedOptions options) : options_(options) {}

  uint32_t dim() const override { return options_.dim; }
  std::string name() const override { return "gpu-fused"; }

  Status add(const HeadKey& key, const uint64_t* block_nos, const float* keys, size_t n) override {
    if (n == 0) return Status::Ok();
    LMKV_RETURN_IF_ERROR(validate_add(key, block_nos, keys, n, options_.dim));
    std::vector<__half> halves(n * options_.dim);
    for (size_t i = 0; i < halves.size(); ++i) halves[i] = __float2half(keys[i]);
    std::vector<int8_t> codes;
    std::vector<float> scales;
    if (options_.int8_screening) {
      std::vector<float> rounded(halves.size());
      for (size_t i = 0; i < halves.size(); ++i) rounded[i] = __half2float(halves[i]);
      codes.resize(halves.size());
      scales.resize(n);
      quantize_landmark_rows(rounded.data(), n, options_.dim, codes.data(), scales.data());
    }
    std::lock_guard<std::mutex> lock(mu_);
    LMKV_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.cuda_device));
    auto found = heads_.find(key);
    int64_t previous = found == heads_.end() ? -1 : found->second.last_block;
    for (size_t i = 0; i < n; ++i) {
      if (static_cast<int64_t>(block_nos[i]) <= previous) {
        return Status::InvalidArgument(fmt::format(
            "block {} of {} comes after block {}: the GPU index takes blocks in increasing "
            "order (an equal number is a block indexed twice)",
            block_nos[i], key.to_string(), previous));
      }
      previous = static_cast<int64_t>(block_nos[i]);
    }
    DeviceHead& head = heads_[key];
    if (head.n + n > static_cast<size_t>(INT32_MAX)) {
      return Status::ResourceExhausted("more than 2^31 landmarks in " + key.to_string());
    }
    LMKV_RETURN_IF_ERROR(grow(head, head.n + n));
    const size_t row_bytes = options_.dim * sizeof(__half);
    LMKV_RETURN_IF_ERROR(copy_in(head.keys, head.n * row_bytes, halves.data(), n * row_bytes));
    LMKV_RETURN_IF_ERROR(
        copy_in(head.block_nos, head.n * sizeof(int64_t), block_nos, n * sizeof(int64_t)));
    if (options_.int8_screening) {
      LMKV_RETURN_IF_ERROR(add_codes(head, codes, n));
      LMKV_RETURN_IF_ERROR(copy_in(head.scales, head.n * sizeof(float), scales.data(),
                                   scales.size() * sizeof(float)));
    }
    head.n += static_cast<int32_t>(n);
    head.last_block = previous;
    return Status::Ok();
  }

  Status search(const SearchRequest& r, SearchResult* result) override {
    LMKV_RETURN_IF_ERROR(validate_search(r, options_.dim));
    if (result == nullptr) return Status::InvalidArgument("search with a null result");
    std::lock_guard<std::mutex> lock(mu_);
    LMKV_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.cuda_device));
    const size_t query_floats = size_t{r.heads} * r.queries_per_head * options_.dim;
    const size_t outputs = size_t{r.heads} * r.queries_per_head * r.k;
    LMKV_RETURN_IF_ERROR(host_io_.reserve(query_floats * sizeof(float) +
                                          outputs * (sizeof(int64_t) + sizeof(float))));
    auto* d_blocks = static_cast<int64_t*>(host_io_.get());
    auto* d_scores = reinterpret_cast<float*>(d_blocks + outputs);
    auto* d_queries = d_scores + outputs;
    LMKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d_queries, r.queries, query_floats * sizeof(float),
                                              cudaMemcpyHostToDevice, nullptr));
    SearchRequest on_device = r;
    on_device.queries = d_queries;
    LMKV_RETURN_IF_ERROR(search_locked(on_device, d_blocks, d_scores, nullptr));
    // Block numbers and scores lie side by side: one copy brings both back.
    host_results_.resize(outputs * (sizeof(int64_t) + sizeof(float)));
    LMKV_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(host_results_.data(), d_blocks, host_results_.size(), cudaMemcpyDeviceToHost));
    result->k = r.k;
    result->block_nos.resize(outputs);
    result->scores.resize(outputs);
    std::memcpy(result->block_nos.data(), host_results_.data(), outputs * sizeof(int64_t));
    std::memcpy(result->scores.data(), host_results_.data() + outputs * sizeof(int64_t),
                outputs * sizeof(float));
    return Status::Ok();
  }

  Status search_on_device(const SearchRequest& r, int64_t* block_nos, float* scores,
                          CUstream_st* stream) override {
    if (r.heads == 0 || r.queries_per_head == 0 || r.k == 0 || r.queries == nullptr ||
        block_nos == nullptr || scores == nullptr) {
      return Status::InvalidArgument(
          fmt::format("search_on_device with heads={} queries_per_head={} k={} or a null pointer",
                      r.heads, r.queries_per_head, r.k));
    }
    std::lock_guard<std::mutex> lock(mu_);
    LMKV_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.cuda_device));
    return search_locked(r, block_nos, scores, stream);
  }

  Status erase(uint64_t sequence) override {
    std::lock_guard<std::mutex> lock(mu_);
    erase_heads_of(heads_, sequence);
    return Status::Ok();
  }

  Result<uint64_t> screening_fallbacks() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!fallbacks_.get()) return uint64_t{0};
    LMKV_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.cuda_device));
    uint64_t count = 0;
    LMKV_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(&count, fallbacks_.get(), sizeof(count), cudaMemcpyDeviceToHost));
    return count;
  }

  size_t size(const HeadKey& key) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = heads_.find(key);
    return it == heads_.end() ? 0 : it->second.n;
  }

 private:
  // Grows the head's device arrays to hold `rows`, keeping their contents.
  Status grow(DeviceHead& head, size_t rows) {
    if (rows <= static_cast<size_t>(head.capacity)) return Status::Ok();
    size_t capacity = std::max<size_t>(1024, head.capacity);
    while (capacity < rows) capacity *= 2;
    const size_t n = head.n, dim = options_.dim;
    LMKV_RETURN_IF_ERROR(
        regrow(head.keys, capacity * dim * sizeof(__half), n * dim * sizeof(__half)));
    LMKV_RETURN_IF_ERROR(regrow(head.block_nos, capacity * sizeof(int64_t), n * sizeof(int64_t)));
    if (options_.int8_screening) {
      const size_t whole_tiles = (n + kernels::kCodeTileRows - 1) / kernels::kCodeTileRows;
      LMKV_RETURN_IF_ERROR(
          regrow(head.codes, capacity * dim, whole_tiles * kernels::kCodeTileRows * dim));
      LMKV_RETURN_IF_ERROR(regrow(head.scales, capacity * sizeof(float), n * sizeof(float)));
    }
    head.capacity = static_cast<int32_t>(capacity);
    return Status::Ok();
  }

  // Writes n row-major rows of codes after the head's last row, in tiles (kernels::code_offset):
  // copied in, then scattered by a kernel.
  Status add_codes(DeviceHead& head, const std::vector<int8_t>& codes, size_t n) {
    LMKV_RETURN_IF_ERROR(add_staging_.reserve(codes.size()));
    LMKV_RETURN_IF_ERROR(copy_in(add_staging_, 0, codes.data(), codes.size()));
    constexpr int kThreads = 256;
    const size_t pieces = n * options_.dim / 16;
    const auto blocks = static_cast<unsigned>((pieces + kThreads - 1) / kThreads);
    with_dim(options_.dim, [&](auto dim) {
      kernels::tile_codes_kernel<decltype(dim)::value><<<blocks, kThreads>>>(
          static_cast<const int8_t*>(add_staging_.get()), static_cast<int>(n),
          static_cast<size_t>(head.n), static_cast<int8_t*>(head.codes.get()));
    });
    LMKV_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    // The staging buffer is reused by the next add: wait for the scatter (adds are synchronous).
    LMKV_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(nullptr));
    return Status::Ok();
  }

  // k <= 32: warps keep running top-32 lists in registers (index/kernels/warp_select.cuh).
  Status launch_warp_select(const SearchRequest& r, const kernels::HeadViews& views, int32_t most,
                            int64_t* block_nos, float* scores, cudaStream_t stream) {
    const int k = static_cast<int>(r.k), queries = static_cast<int>(r.queries_per_head);
    return with_dim(options_.dim, [&](auto dim) -> Status {
      constexpr int D = decltype(dim)::value;
      constexpr int kStage = kernels::kSelectStageBytes<D>;
      LMKV_ASSIGN_OR_RETURN(const RowSplit split,
                            plan_pass_one(kernels::select_chunk_kernel<D>, kStage, r, most));
      const dim3 pass1(split.chunks, r.queries_per_head, r.heads);
      kernels::select_chunk_kernel<D><<<pass1, kernels::kSelectWarps * 32, kStage, stream>>>(
          views, r.queries, queries, split.chunks, split.keys_per_warp, k, lists());
      LMKV_CUDA_RETURN_IF_ERROR(cudaGetLastError());
      LMKV_CUDA_RETURN_IF_ERROR(launch_dependent(
          kernels::merge_lists_kernel, dim3(r.queries_per_head, r.heads), kernels::kMergeWarps * 32,
          0, stream, views, static_cast<const uint64_t*>(lists()), queries, split.chunks, k,
          block_nos, scores));
      return Status::Ok();
    });
  }

  // k <= 32 with screening: pass 1 lists the best bounds from the int8 codes, pass 2 rescores and
  // proves (index/kernels/int8_screen.cuh).
  Status launch_screened(const SearchRequest& r, const kernels::HeadViews& views,
                         const kernels::CodeViews& codes, int32_t most, int64_t* block_nos,
                         float* scores, cudaStream_t stream) {
    if (!fallbacks_.get()) {
      LMKV_RETURN_IF_ERROR(fallbacks_.reserve(sizeof(unsigned long long)));
      LMKV_CUDA_RETURN_IF_ERROR(cudaMemset(fallbacks_.get(), 0, sizeof(unsigned long long)));
    }
    const int k = static_cast<int>(r.k), queries = static_cast<int>(r.queries_per_head);
    auto* fallbacks = static_cast<unsigned long long*>(fallbacks_.get());
    return with_dim(options_.dim, [&](auto dim) -> Status {
      constexpr int D = decltype(dim)::value;
      LMKV_ASSIGN_OR_RETURN(const RowSplit split,
                            plan_pass_one(kernels::screen_chunk_kernel<D>, 0, r, most));
      // Few lists per (head, query) (prefill: one) leave the proof too little to stand on.
      if (split.chunks < kernels::kMinScreenChunks) {
        return launch_warp_select(r, views, most, block_nos, scores, stream);
      }
      const dim3 pass1(split.chunks, r.queries_per_head, r.heads);
      kernels::screen_chunk_kernel<D><<<pass1, kernels::kSelectWarps * 32, 0, stream>>>(
          codes, r.queries, queries, split.chunks, lists());
      LMKV_CUDA_RETURN_IF_ERROR(cudaGetLastError());
      LMKV_CUDA_RETURN_IF_ERROR(
          launch_dependent(kernels::rescore_merge_kernel<D>, dim3(r.queries_per_head, r.heads),
                           kernels::kRescoreWarps * 32, 0, stream, views, r.queries,
                           static_cast<const uint64_t*>(lists()), queries, split.chunks, k,
                           block_nos, scores, fallbacks));
      return Status::Ok();
    });
  }

  // Cuts the rows for a pass-1 kernel (counting the blocks of it the device holds at once on its
  // first use) and makes room for the lists it writes: 32 sort keys per chunk of each pair.
  template <typename Kernel>
  Result<RowSplit> plan_pass_one(Kernel kernel, int stage_bytes, const SearchRequest& r,
                                 int32_t most) {
    const void* id = reinterpret_cast<const void*>(kernel);
    auto it = resident_blocks_.find(id);
    if (it == resident_blocks_.end()) {
      LMKV_ASSIGN_OR_RETURN(const int64_t blocks,
                            resident_blocks(kernel, stage_bytes, options_.cuda_device));
      it = resident_blocks_.emplace(id, blocks).first;
    }
    const RowSplit split = split_rows(it->second, int64_t{r.heads} * r.queries_per_head, most);
    LMKV_RETURN_IF_ERROR(partial_.reserve(size_t{r.heads} * r.queries_per_head * split.chunks *
                                          kernels::kSelectK * sizeof(uint64_t)));
    return split;
  }
  uint64_t* lists() const { return static_cast<uint64_t*>(partial_.get()); }

  // Larger k: each tile of 1024 landmarks is radix-sorted (index/kernels/landmark_topk.cuh).
  Status launch_sorting_select(const SearchRequest& r, const kernels::HeadViews& views,
                               int32_t most, int64_t* block_nos, float* scores,
                               cudaStream_t stream) {
    const int tiles = std::max(1, (most + kernels::kTileKeys - 1) / kernels::kTileKeys);
    LMKV_RETURN_IF_ERROR(
        partial_.reserve(size_t{r.heads} * r.queries_per_head * tiles * r.k * sizeof(uint64_t)));
    auto* partial = static_cast<uint64_t*>(partial_.get());
    const dim3 pass1(tiles, r.queries_per_head, r.heads);
    const int k = static_cast<int>(r.k), queries = static_cast<int>(r.queries_per_head);
    with_dim(options_.dim, [&](auto dim) {
      kernels::tile_topk_kernel<decltype(dim)::value><<<pass1, kernels::kTopkThreads, 0, stream>>>(
          views, r.queries, queries, tiles, k, partial);
    });
    LMKV_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    LMKV_CUDA_RETURN_IF_ERROR(launch_dependent(
        kernels::merge_topk_kernel, dim3(r.queries_per_head, r.heads), kernels::kTopkThreads, 0,
        stream, views, static_cast<const uint64_t*>(partial), queries, tiles, k, block_nos,
        scores));
    return Status::Ok();
  }

  Status search_locked(const SearchRequest& r, int64_t* block_nos, float* scores,
                       cudaStream_t stream) {
    if (r.heads > static_cast<uint32_t>(kernels::kMaxHeadsPerLaunch)) {
      return Status::InvalidArgument(fmt::format("search of {} heads; at most {} per call", r.heads,
                                                 kernels::kMaxHeadsPerLaunch));
    }
    if (r.k >= static_cast<uint32_t>(kernels::kTileKeys)) {
      return Status::InvalidArgument(
          fmt::format("k={} is too large for the GPU index (below {})", r.k, kernels::kTileKeys));
    }
    kernels::HeadViews views;
    kernels::CodeViews codes;
    int32_t most = 0;
    bool any = false;
    for (uint32_t h = 0; h < r.heads; ++h) {
      auto it = heads_.find({r.sequence, r.layer, h});
      if (it == heads_.end()) continue;
      any = true;
      const DeviceHead& head = it->second;
      views.heads[h] = {static_cast<const __half*>(head.keys.get()),
                        static_cast<const int64_t*>(head.block_nos.get()), head.n};
      codes.heads[h] = {static_cast<const int8_t*>(head.codes.get()),
                        static_cast<const float*>(head.scales.get()), head.n};
      most = std::max(most, it->second.n);
    }
    if (!any) {
      return Status::NotFound(
          fmt::format("sequence {} layer {} has no landmarks", r.sequence, r.layer));
    }
    // The scratch buffer is shared: this search waits for the previous one (any stream) to finish
    // with it.
    if (!scratch_free_.get()) LMKV_RETURN_IF_ERROR(scratch_free_.create());
    LMKV_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, scratch_free_.get(), 0));
    if (r.k <= static_cast<uint32_t>(kernels::kSelectK)) {
      if (options_.int8_screening && most >= kernels::kMinScreenRows) {
        LMKV_RETURN_IF_ERROR(launch_screened(r, views, codes, most, block_nos, scores, stream));
      } else {
        LMKV_RETURN_IF_ERROR(launch_warp_select(r, views, most, block_nos, scores, stream));
      }
    } else {
      LMKV_RETURN_IF_ERROR(launch_sorting_select(r, views, most, block_nos, scores, stream));
    }
    LMKV_CUDA_RETURN_IF_ERROR(cudaEventRecord(scratch_free_.get(), stream));
    return Status::Ok();
  }

  GpuFusedOptions options_;
  mutable std::mutex mu_;  // one search or add at a time: they share the scratch buffers
  std::unordered_map<HeadKey, DeviceHead, HeadKeyHash> heads_;
  DeviceBuffer partial_;                                      // pass 1 output
  std::unordered_map<const void*, int64_t> resident_blocks_;  // per pass-1 kernel
  DeviceBuffer fallbacks_;          // screened pairs answered by an exact scan (unsigned long long)
  CudaEvent scratch_free_;          // recorded after the last search's pass 2
  DeviceBuffer host_io_;            // queries and results of search()
  DeviceBuffer add_staging_;        // an add's row-major codes, before tiling
  std::vector<char> host_results_;  // search()'s results, copied back in one piece
};

}  // namespace

Result<std::unique_ptr<GpuFusedIndex>> make_gpu_fused_index(const GpuFusedOptions& options) {
  if (options.dim != 64 && options.dim != 128 && options.dim != 256) {
    return Status::InvalidArgument(
        fmt::format("the GPU index supports dim 64, 128 or 256, not {}", options.dim));
  }
  const int devices = cuda_device_count();
  if (options.cuda_device < 0 || options.cuda_device >= devices) {
    return Status::FailedPrecondition(
        fmt::format("the GPU index needs CUDA device {}, but {} device(s) are usable",
                    options.cuda_device, devices));
  }
  return std::unique_ptr<GpuFusedIndex>(new GpuFusedIndexImpl(options));
}

}  // namespace lmkv
