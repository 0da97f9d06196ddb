// ResidentDecode: pinned blocks and their slot table, and the per-step chain of search, page table
// and attention on one stream.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "attention/kernels/resident_page_table.cuh"
#include "attention/resident_decode.h"
#include "kvstore/cuda_util.h"

namespace lmkv {
namespace {

class ResidentDecodeImpl final : public ResidentDecode {
 public:
  ResidentDecodeImpl(TieredStore& store, GpuFusedIndex& index, ResidentDecodeOptions options)
      : store_(store), index_(index), options_(options) {}

  ~ResidentDecodeImpl() override {
    // The pins must outlive every step that reads the slots.
    if (last_step_.get()) cudaEventSynchronize(last_step_.get());
  }

  Status setup() {
    const uint32_t rows = options_.heads, k = options_.top_k, dim = store_.shape().head_dim;
    LMKV_RETURN_IF_ERROR(pin_stream_.create());
    LMKV_RETURN_IF_ERROR(last_step_.create());
    LMKV_RETURN_IF_ERROR(found_blocks_.reserve(rows * k * sizeof(int64_t)));
    LMKV_RETURN_IF_ERROR(found_scores_.reserve(rows * k * sizeof(float)));
    LMKV_RETURN_IF_ERROR(slots_.reserve(rows * k * sizeof(int32_t)));
    LMKV_RETURN_IF_ERROR(scores_.reserve(rows * k * sizeof(float)));
    LMKV_RETURN_IF_ERROR(block_nos_.reserve(rows * k * sizeof(int64_t)));
    LMKV_RETURN_IF_ERROR(queries_.reserve(size_t{rows} * dim * dtype_bytes(store_.shape().dtype)));
    LMKV_RETURN_IF_ERROR(missing_.reserve(sizeof(unsigned long long)));
    LMKV_CUDA_RETURN_IF_ERROR(cudaMemset(missing_.get(), 0, sizeof(unsigned long long)));
    // Every row has exactly k entries.
    std::vector<int32_t> indptr(rows + 1);
    for (uint32_t r = 0; r <= rows; ++r) indptr[r] = int32_t(r * k);
    LMKV_RETURN_IF_ERROR(indptr_.reserve(indptr.size() * sizeof(int32_t)));
    LMKV_CUDA_RETURN_IF_ERROR(cudaMemcpy(indptr_.get(), indptr.data(),
                                         indptr.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    return grow(options_.blocks_per_head);
  }

  Status grow(uint32_t blocks_per_head) override {
    if (blocks_per_head < pinned_) {
      return Status::InvalidArgument(fmt::format(
          "grow to {} blocks per head, below the {} already pinned", blocks_per_head, pinned_));
    }
    if (blocks_per_head == pinned_) return Status::Ok();
    // The table's rows hold `stride` slots; a larger count regrows it (doubling).
    uint32_t stride = std::max<uint32_t>(stride_, 64);
    while (stride < blocks_per_head) stride *= 2;
    std::vector<int32_t> table(size_t{options_.kv_heads} * stride, -1);
    for (uint32_t g = 0; g < options_.kv_heads; ++g) {
      std::copy(slot_table_.begin() + size_t{g} * stride_,
                slot_table_.begin() + size_t{g} * stride_ + pinned_,
                table.begin() + size_t{g} * stride);
    }
    // Page-ins of at most a host tier's worth of blocks (disk-resident ones are staged there);
    // each keeps its blocks pinned in the GPU tier.
    std::vector<BlockKey> keys;
    std::vector<size_t> at;  // where each key's slot goes in `table`
    for (uint32_t g = 0; g < options_.kv_heads; ++g) {
      for (uint32_t b = pinned_; b < blocks_per_head; ++b) {
        keys.push_back({options_.sequence, options_.layer, g, b});
        at.push_back(size_t{g} * stride + b);
      }
    }
    const size_t wave =
        size_t(std::max(1, std::min(store_.host_slot_count(), store_.gpu_slot_count())));
    std::vector<PageIn> pages;
    for (size_t first = 0; first < keys.size(); first += wave) {
      const size_t n = std::min(wave, keys.size() - first);
      LMKV_ASSIGN_OR_RETURN(PageIn page,
                            store_.page_in({keys.begin() + first, keys.begin() + first + n},
                                           PageInTarget::kDevice, pin_stream_.get()));
      LMKV_RETURN_IF_ERROR(page.wait());
      for (size_t i = 0; i < n; ++i) table[at[first + i]] = page.slot(i);
      pages.push_back(std::move(page));
    }
    DeviceBuffer device_table;
    LMKV_RETURN_IF_ERROR(device_table.reserve(table.size() * sizeof(int32_t)));
    LMKV_CUDA_RETURN_IF_ERROR(cudaMemcpy(device_table.get(), table.data(),
                                         table.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    // The previous table may still be read by a step in flight.
    if (last_step_.get()) LMKV_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(last_step_.get()));
    slot_device_ = std::move(device_table);
    slot_table_ = std::move(table);
    for (PageIn& page : pages) pages_.push_back(std::move(page));
    stride_ = stride;
    pinned_ = blocks_per_head;
    return Status::Ok();
  }

  Status step(const ResidentDecodeInputs& in, CUstream_st* stream) override {
    if (in.queries == nullptr || in.out == nullptr || in.window_keys == nullptr ||
        in.window_values == nullptr || in.window_tokens == 0) {
      return Status::InvalidArgument(fmt::format(
          "resident decode step with a null pointer or a window of {} tokens", in.window_tokens));
    }
    const BlockShape& shape = store_.shape();
    const uint32_t k = options_.top_k, group = options_.heads / options_.kv_heads;
    auto* found_blocks = static_cast<int64_t*>(found_blocks_.get());
    auto* found_scores = static_cast<float*>(found_scores_.get());
    LMKV_RETURN_IF_ERROR(index_.search_on_device(
        {options_.sequence, options_.layer, options_.kv_heads, group, k, in.queries}, found_blocks,
        found_scores, stream));
    // Checked while the search runs: its results stay internal unless the counts agree.
    for (uint32_t g = 0; g < options_.kv_heads; ++g) {
      const size_t indexed = index_.size({options_.sequence, options_.layer, g});
      if (indexed != pinned_) {
        return Status::FailedPrecondition(fmt::format(
            "KV head {} of sequence {} layer {}: the index holds {} blocks, {} are pinned "
            "(grow() after blocks seal)",
            g, options_.sequence, options_.layer, indexed, pinned_));
      }
    }
    // A programmatic dependent of the search's last kernel, as the attention is of this one.
    auto build = [&](auto* queries) {
      using T = std::remove_pointer_t<decltype(queries)>;
      return launch_dependent(
          kernels::resident_page_table_kernel<T>, dim3(options_.heads), dim3(32), 0, stream,
          found_blocks, found_scores, int(k), int(group),
          static_cast<const int32_t*>(slot_device_.get()), int(stride_), int(pinned_), in.queries,
          int(shape.head_dim), queries, static_cast<int32_t*>(slots_.get()),
          static_cast<float*>(scores_.get()), static_cast<int64_t*>(block_nos_.get()),
          static_cast<unsigned long long*>(missing_.get()));
    };
    LMKV_CUDA_RETURN_IF_ERROR(shape.dtype == DType::kBFloat16
                                  ? build(static_cast<__nv_bfloat16*>(queries_.get()))
                                  : build(static_cast<__half*>(queries_.get())));

    GpuAttentionArgs a;
    a.tokens = 1;
    a.heads = options_.heads;
    a.kv_heads = options_.kv_heads;
    a.dim = shape.head_dim;
    a.block_tokens = shape.block_tokens;
    a.dtype = shape.dtype;
    a.queries = queries_.get();
    a.window_keys = in.window_keys;
    a.window_values = in.window_values;
    a.window_tokens = in.window_tokens;
    a.window_start = in.window_start;
    a.slot_base = store_.gpu_slot_base();
    a.indptr = static_cast<const int32_t*>(indptr_.get());
    a.slots = static_cast<const int32_t*>(slots_.get());
    a.landmark_scores = static_cast<const float*>(scores_.get());
    a.block_nos = static_cast<const int64_t*>(block_nos_.get());
    a.max_blocks_per_row = k;
    a.scale = options_.scale;
    a.rope = options_.rope;
    a.out = in.out;
    LMKV_RETURN_IF_ERROR(attention_.run(a, stream));
    LMKV_CUDA_RETURN_IF_ERROR(cudaEventRecord(last_step_.get(), stream));
    return Status::Ok();
  }

  Result<uint64_t> missing_blocks() override {
    unsigned long long count = 0;
    LMKV_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(&count, missing_.get(), sizeof(count), cudaMemcpyDeviceToHost));
    return uint64_t{count};
  }

 private:
  TieredStore& store_;
  GpuFusedIndex& index_;
  ResidentDecodeOptions options_;
  GpuAttention attention_;
  CudaStream pin_stream_;            // page-ins of grow()
  CudaEvent last_step_;              // recorded after each step's kernels
  std::vector<PageIn> pages_;        // the pins
  std::vector<int32_t> slot_table_;  // host copy: [kv_heads][stride_] slots, -1 past pinned_
  DeviceBuffer slot_device_;
  uint32_t stride_ = 0, pinned_ = 0;
  DeviceBuffer found_blocks_, found_scores_, slots_, scores_, block_nos_, queries_, indptr_,
      missing_;
};

}  // namespace

Result<std::unique_ptr<ResidentDecode>> ResidentDecode::open(TieredStore& store,
                                                             GpuFusedIndex& index,
                                                             const ResidentDecodeOptions& options) {
  if (options.heads == 0 || options.kv_heads == 0 || options.heads % options.kv_heads != 0) {
    return Status::InvalidArgument(fmt::format(
        "heads={} must be a positive multiple of kv_heads={}", options.heads, options.kv_heads));
  }
  if (options.top_k == 0 || options.top_k > 32 || options.top_k > options.blocks_per_head) {
    return Status::InvalidArgument(
        fmt::format("resident decode takes top_k in [1, min(32, blocks_per_head={})], not {}",
                    options.blocks_per_head, options.top_k));
  }
  if (index.dim() != store.shape().head_dim) {
    return Status::InvalidArgument(fmt::format("the index holds keys of dim {}, the store dim {}",
                                               index.dim(), store.shape().head_dim));
  }
  if (!(options.scale >= 0 && std::isfinite(options.scale))) {
    return Status::InvalidArgument(fmt::format("attention scale {}", options.scale));
  }
  if (store.gpu_slot_count() == 0) {
    return Status::FailedPrecondition("resident decode needs a store with a GPU tier");
  }
  auto decode = std::make_unique<ResidentDecodeImpl>(store, index, options);
  LMKV_RETURN_IF_ERROR(decode->setup());
  return std::unique_ptr<ResidentDecode>(std::move(decode));
}

}  // namespace lmkv
