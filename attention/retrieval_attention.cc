// Retrieval attention: search -> page table -> batched page-in -> attention (CPU or GPU).
#include "attention/retrieval_attention.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "attention/grouped_softmax.h"
#include "attention/rope.h"
#include "kvstore/block_key_set.h"
#include "kvstore/cuda_util.h"
#include "kvstore/dtype_convert.h"

namespace lmkv {
namespace {

using Clock = std::chrono::steady_clock;

double micros_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

// One retrieved block of one row: its number, its landmark score for the row's query, and its
// place in the step's list of distinct blocks.
struct Entry {
  int64_t block_no = 0;
  float score = 0;
  uint32_t unique = 0;
};

// The step's page table on the host: every row's entries, sorted by block number (also the order
// RoPE remapping places them in).
struct Plan {
  std::vector<std::vector<Entry>> rows;  // [tokens * heads]
};

// Tokens [t0, t1) of the chunk, whose rows' distinct blocks fit the target tier at once, and
// those blocks (Entry::unique indexes them).
struct Wave {
  uint32_t t0 = 0, t1 = 0;
  std::vector<BlockKey> unique;
  uint32_t max_row = 0;
};

Status check(const RetrievalInputs& in, const RetrievalOptions& options, const BlockShape& shape,
             uint32_t index_dim) {
  if (options.top_k == 0) return Status::InvalidArgument("retrieval attention with top_k=0");
  if (in.heads == 0 || in.kv_heads == 0 || in.heads % in.kv_heads != 0) {
    return Status::InvalidArgument(
        fmt::format("heads={} must be a positive multiple of kv_heads={}", in.heads, in.kv_heads));
  }
  if (index_dim != shape.head_dim) {
    return Status::InvalidArgument(
        fmt::format("the index holds keys of dim {}, the store dim {}", index_dim, shape.head_dim));
  }
  if (in.tokens == 0 || in.queries == nullptr) {
    return Status::InvalidArgument(
        fmt::format("retrieval attention with {} tokens or null queries", in.tokens));
  }
  if (in.window_tokens < in.tokens || in.window_keys == nullptr || in.window_values == nullptr) {
    return Status::InvalidArgument(fmt::format(
        "window of {} tokens (null keys or values?) cannot hold the chunk's own {} tokens",
        in.window_tokens, in.tokens));
  }
  if (!(options.scale >= 0 && std::isfinite(options.scale))) {
    return Status::InvalidArgument(fmt::format("attention scale {}", options.scale));
  }
  return Status::Ok();
}

// Index queries are head-major: KV head g's queries are (t, query head of g) pairs.
std::vector<float> head_major_queries(const RetrievalInputs& in, uint32_t dim) {
  const uint32_t group = in.heads / in.kv_heads;
  std::vector<float> out(size_t{in.tokens} * in.heads * dim);
  size_t i = 0;
  for (uint32_t g = 0; g < in.kv_heads; ++g) {
    for (uint32_t t = 0; t < in.tokens; ++t) {
      for (uint32_t hh = 0; hh < group; ++hh) {
        const float* q = in.queries + (size_t{t} * in.heads + g * group + hh) * dim;
        std::copy(q, q + dim, out.begin() + (i++) * dim);
      }
    }
  }
  return out;
}

// Searches the index and fills plan.rows with each row's blocks and scores (unsorted, unique
// indices not yet assigned), and trace->block_nos.
Status search_blocks(LandmarkIndex& index, const RetrievalInputs& in,
                     const RetrievalOptions& options, double scale, Plan* plan,
                     RetrievalTrace* trace) {
  const uint32_t dim = index.dim(), group = in.heads / in.kv_heads;
  plan->rows.assign(size_t{in.tokens} * in.heads, {});
  size_t most = 0, fewest = SIZE_MAX;
  for (uint32_t g = 0; g < in.kv_heads; ++g) {
    const size_t n = index.size({in.sequence, in.layer, g});
    most = std::max(most, n);
    fewest = std::min(fewest, n);
  }
  if (most == 0) return Status::Ok();  // nothing sealed yet: the window alone
  if (fewest == 0) {
    return Status::FailedPrecondition(
        fmt::format("sequence {} layer {}: some KV heads have landmarks and some have none",
                    in.sequence, in.layer));
  }
  const bool per_chunk = options.retrieval == Retrieval::kPerChunk;
  // Offload mode softmaxes every block's score, so it asks for all of them.
  const uint32_t k = per_chunk ? uint32_t(most) : options.top_k;
  const std::vector<float> queries = head_major_queries(in, dim);
  const SearchRequest request{in.sequence,       in.layer, in.kv_heads,
                              in.tokens * group, k,        queries.data()};
  SearchResult result;
  LMKV_RETURN_IF_ERROR(index.search(request, &result));
  auto result_row = [&](uint32_t t, uint32_t h) {
    return (size_t{h / group} * in.tokens * group + size_t{t} * group + h % group) * k;
  };

  if (!per_chunk) {
    for (uint32_t t = 0; t < in.tokens; ++t) {
      for (uint32_t h = 0; h < in.heads; ++h) {
        const size_t r = result_row(t, h);
        auto& row = plan->rows[size_t{t} * in.heads + h];
        row.reserve(k);
        for (uint32_t i = 0; i < k; ++i) {
          if (result.block_nos[r + i] < 0) break;
          row.push_back({result.block_nos[r + i], result.scores[r + i], 0});
        }
      }
    }
  } else {
    // Per query head: a [tokens][blocks] score matrix, then one selection for the chunk.
    for (uint32_t h = 0; h < in.heads; ++h) {
      std::unordered_map<int64_t, size_t> column;
      std::vector<int64_t> blocks;
      for (uint32_t t = 0; t < in.tokens; ++t) {
        for (uint32_t i = 0; i < k; ++i) {
          const int64_t b = result.block_nos[result_row(t, h) + i];
          if (b >= 0 && column.emplace(b, blocks.size()).second) blocks.push_back(b);
        }
      }
      // A block an approximate search did not return for a token has probability 0 there.
      std::vector<double> scores(size_t{in.tokens} * blocks.size(), -INFINITY);
      for (uint32_t t = 0; t < in.tokens; ++t) {
        for (uint32_t i = 0; i < k; ++i) {
          const size_t r = result_row(t, h) + i;
          if (result.block_nos[r] >= 0) {
            scores[t * blocks.size() + column[result.block_nos[r]]] = result.scores[r];
          }
        }
      }
      LMKV_ASSIGN_OR_RETURN(
          std::vector<uint32_t> chosen,
          select_blocks_from_chunk_scores(scores, in.tokens, blocks.size(), options.top_k, scale));
      for (uint32_t t = 0; t < in.tokens; ++t) {
        for (uint32_t c : chosen) {
          const double s = scores[t * blocks.size() + c];
          // Every token scores every selected block; -inf only where an approximate search
          // skipped it, and such a block then carries no weight for that token.
          plan->rows[size_t{t} * in.heads + h].push_back({blocks[c], float(s), 0});
        }
      }
    }
  }
  if (trace != nullptr) {
    trace->k = options.top_k;
    trace->block_nos.assign(plan->rows.size() * options.top_k, -1);
    for (size_t r = 0; r < plan->rows.size(); ++r) {
      for (size_t i = 0; i < plan->rows[r].size() && i < options.top_k; ++i) {
        trace->block_nos[r * options.top_k + i] = plan->rows[r][i].block_no;
      }
    }
  }
  return Status::Ok();
}

// Sorts each row by block number and cuts the chunk into waves of tokens whose distinct
// (KV head, block) pairs fit `capacity` slots, so a chunk larger than a tier still runs.
Result<std::vector<Wave>> make_waves(const RetrievalInputs& in, int32_t capacity, Plan* plan) {
  const uint32_t group = in.heads / in.kv_heads;
  auto key_of = [&](uint32_t h, const Entry& e) {
    return BlockKey{in.sequence, in.layer, h / group, uint64_t(e.block_no)};
  };
  std::vector<Wave> waves;
  size_t first_token_entries = 0;
  for (uint32_t h = 0; h < in.heads && h < plan->rows.size(); ++h) {
    first_token_entries += plan->rows[h].size();
  }
  BlockKeySet wave_blocks(first_token_entries), token_blocks(first_token_entries);
  for (uint32_t t = 0; t < in.tokens; ++t) {
    // This token's distinct blocks, to see whether they fit beside the wave's.
    token_blocks.clear();
    for (uint32_t h = 0; h < in.heads; ++h) {
      auto& row = plan->rows[size_t{t} * in.heads + h];
      std::sort(row.begin(), row.end(),
                [](const Entry& a, const Entry& b) { return a.block_no < b.block_no; });
      for (const Entry& e : row) token_blocks.insert(key_of(h, e));
    }
    if (token_blocks.size() > size_t(capacity)) {
      return Status::ResourceExhausted(fmt::format(
          "token {} of the chunk retrieves {} distinct blocks over its heads; the tiers a "
          "page-in fills hold {}: lower top_k or raise their capacity",
          t, token_blocks.size(), capacity));
    }
    size_t added = 0;
    for (const BlockKey& key : token_blocks.keys()) added += !wave_blocks.contains(key);
    if (waves.empty() || wave_blocks.size() + added > size_t(capacity)) {
      if (!waves.empty()) waves.back().unique = wave_blocks.keys();
      waves.push_back({t, t, {}, 0});
      wave_blocks.clear();
    }
    Wave& wave = waves.back();
    wave.t1 = t + 1;
    for (uint32_t h = 0; h < in.heads; ++h) {
      auto& row = plan->rows[size_t{t} * in.heads + h];
      for (Entry& e : row) e.unique = wave_blocks.insert(key_of(h, e));
      wave.max_row = std::max(wave.max_row, uint32_t(row.size()));
    }
  }
  if (!waves.empty()) waves.back().unique = wave_blocks.keys();
  return waves;
}

// The CPU path: paged-in host blocks and the window as floats (RoPE applied to copies where
// asked), then the double-precision grouped softmax per row.
Status attend_on_cpu(const RetrievalInputs& in, const RetrievalOptions& options,
                     const BlockShape& shape, double scale, const Plan& plan, const Wave& wave,
                     const PageIn& page, float* out) {
  const uint32_t d = shape.head_dim, B = shape.block_tokens, group = in.heads / in.kv_heads;
  const size_t tensor = size_t{B} * d;
  const RopeMode rope = options.rope.mode;
  const double theta = options.rope.theta;
  // Blocks as floats in unique order: keys [unique][B][d], values likewise.
  std::vector<float> keys(wave.unique.size() * tensor), values(keys.size());
  for (size_t u = 0; u < wave.unique.size(); ++u) {
    const char* payload = page.payload(u);
    LMKV_RETURN_IF_ERROR(to_floats(payload, shape.dtype, tensor, keys.data() + u * tensor));
    LMKV_RETURN_IF_ERROR(
        to_floats(payload + shape.tensor_bytes(), shape.dtype, tensor, values.data() + u * tensor));
    if (rope == RopeMode::kStored) {
      for (uint32_t j = 0; j < B; ++j) {
        const int64_t position = int64_t(wave.unique[u].block_no) * B + j;
        LMKV_RETURN_IF_ERROR(apply_rope(keys.data() + u * tensor + j * d, d, position, theta));
      }
    }
  }
  const size_t window = size_t{in.kv_heads} * in.window_tokens * d;
  std::vector<float> wkeys(window), wvalues(window);
  LMKV_RETURN_IF_ERROR(to_floats(in.window_keys, shape.dtype, window, wkeys.data()));
  LMKV_RETURN_IF_ERROR(to_floats(in.window_values, shape.dtype, window, wvalues.data()));
  if (rope != RopeMode::kNone) {
    for (size_t j = 0; j < size_t{in.kv_heads} * in.window_tokens; ++j) {
      LMKV_RETURN_IF_ERROR(apply_rope(wkeys.data() + j * d, d,
                                      in.window_start + int64_t(j % in.window_tokens), theta));
    }
  }

  const size_t first_row = size_t{wave.t0} * in.heads, end_row = size_t{wave.t1} * in.heads;
  std::vector<Status> failures(end_row - first_row);
#pragma omp parallel for schedule(dynamic)
  for (size_t r = first_row; r < end_row; ++r) {
    const uint32_t t = uint32_t(r / in.heads), g = uint32_t(r % in.heads) / group;
    const int64_t own = int64_t(in.window_tokens) - in.tokens + t;
    std::vector<float> q(in.queries + r * d, in.queries + (r + 1) * d);
    const LocalWindow seen{size_t(own + 1), wkeys.data() + size_t{g} * in.window_tokens * d,
                           wvalues.data() + size_t{g} * in.window_tokens * d};
    const auto& row = plan.rows[r];
    std::vector<uint32_t> selected;
    std::vector<double> scores;
    for (const Entry& e : row) {
      selected.push_back(e.unique);
      scores.push_back(e.score);
    }
    HeadBlocks blocks{B, d, wave.unique.size(), keys.data(), values.data(), nullptr};
    std::vector<float> remapped_keys, remapped_values;
    Status& status = failures[r - first_row];
    if (rope != RopeMode::kNone) status = apply_rope(q.data(), d, in.window_start + own, theta);
    if (status.ok() && rope == RopeMode::kRemapped) {
      // This row's blocks sit right before the window, in entry order: rotate copies.
      remapped_keys.resize(row.size() * tensor);
      remapped_values.resize(row.size() * tensor);
      for (size_t i = 0; i < row.size(); ++i) {
        std::copy_n(keys.data() + size_t{row[i].unique} * tensor, tensor,
                    remapped_keys.begin() + i * tensor);
        std::copy_n(values.data() + size_t{row[i].unique} * tensor, tensor,
                    remapped_values.begin() + i * tensor);
        const int64_t first = in.window_start - int64_t(row.size() - i) * B;
        for (uint32_t j = 0; j < B && status.ok(); ++j) {
          status = apply_rope(remapped_keys.data() + i * tensor + j * d, d, first + j, theta);
        }
        selected[i] = uint32_t(i);
      }
      blocks = HeadBlocks{B, d, row.size(), remapped_keys.data(), remapped_values.data(), nullptr};
    }
    if (!status.ok()) continue;
    std::vector<double> o(d);
    status = grouped_softmax_scored(q.data(), seen, blocks, selected, scores, scale, o.data());
    for (uint32_t i = 0; i < d; ++i) out[r * d + i] = float(o[i]);
  }
  for (const Status& s : failures) LMKV_RETURN_IF_ERROR(s);
  return Status::Ok();
}

}  // namespace

#ifdef LMKV_WITH_CUDA
// The GPU path's resources: a stream, the kernels' scratch, and staging for the page table.
struct RetrievalAttention::Gpu {
  CudaStream stream;
  GpuAttention attention;
  DeviceBuffer host_staging{DeviceBuffer::Kind::kPinnedHost};
  DeviceBuffer device_staging;
  DeviceBuffer host_out{DeviceBuffer::Kind::kPinnedHost};
  DeviceBuffer device_out;
};

namespace {

// Lays the step's inputs out in one staging buffer (one copy to the device): sections aligned to
// 256 bytes.
struct Layout {
  size_t bytes = 0;
  size_t add(size_t n) {
    const size_t at = bytes;
    bytes += (n + 255) / 256 * 256;
    return at;
  }
};

Status attend_on_gpu(RetrievalAttention::Gpu& gpu, TieredStore& store, const RetrievalInputs& in,
                     const RetrievalOptions& options, const Plan& plan, const Wave& wave,
                     const PageIn& page, float* out) {
  const BlockShape& shape = store.shape();
  const uint32_t d = shape.head_dim;
  const size_t first_row = size_t{wave.t0} * in.heads;
  const size_t rows = size_t{wave.t1 - wave.t0} * in.heads;
  size_t entries = 0;
  for (size_t r = 0; r < rows; ++r) entries += plan.rows[first_row + r].size();
  const size_t elem = dtype_bytes(shape.dtype);
  const size_t window_bytes = size_t{in.kv_heads} * in.window_tokens * d * elem;
  Layout layout;
  const size_t at_queries = layout.add(rows * d * elem);
  const size_t at_wkeys = layout.add(window_bytes);
  const size_t at_wvalues = layout.add(window_bytes);
  const size_t at_indptr = layout.add((rows + 1) * sizeof(int32_t));
  const size_t at_slots = layout.add(entries * sizeof(int32_t));
  const size_t at_scores = layout.add(entries * sizeof(float));
  const size_t at_blocks = layout.add(entries * sizeof(int64_t));
  LMKV_RETURN_IF_ERROR(gpu.host_staging.reserve(layout.bytes));
  LMKV_RETURN_IF_ERROR(gpu.device_staging.reserve(layout.bytes));
  char* host = static_cast<char*>(gpu.host_staging.get());
  LMKV_RETURN_IF_ERROR(
      from_floats(in.queries + first_row * d, rows * d, shape.dtype, host + at_queries));
  std::memcpy(host + at_wkeys, in.window_keys, window_bytes);
  std::memcpy(host + at_wvalues, in.window_values, window_bytes);
  auto* indptr = reinterpret_cast<int32_t*>(host + at_indptr);
  auto* slots = reinterpret_cast<int32_t*>(host + at_slots);
  auto* scores = reinterpret_cast<float*>(host + at_scores);
  auto* block_nos = reinterpret_cast<int64_t*>(host + at_blocks);
  size_t e = 0;
  indptr[0] = 0;
  for (size_t r = 0; r < rows; ++r) {
    for (const Entry& entry : plan.rows[first_row + r]) {
      slots[e] = page.slot(entry.unique);
      scores[e] = entry.score;
      block_nos[e] = entry.block_no;
      ++e;
    }
    indptr[r + 1] = int32_t(e);
  }
  cudaStream_t stream = gpu.stream.get();
  char* device = static_cast<char*>(gpu.device_staging.get());
  LMKV_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(device, host, layout.bytes, cudaMemcpyHostToDevice, stream));
  const size_t out_bytes = rows * d * sizeof(float);
  LMKV_RETURN_IF_ERROR(gpu.device_out.reserve(out_bytes));
  LMKV_RETURN_IF_ERROR(gpu.host_out.reserve(out_bytes));

  GpuAttentionArgs a;
  // The wave's tokens see the window up to the wave's last token; rows keep the full stride.
  a.tokens = wave.t1 - wave.t0;
  a.heads = in.heads;
  a.kv_heads = in.kv_heads;
  a.dim = d;
  a.block_tokens = shape.block_tokens;
  a.dtype = shape.dtype;
  a.queries = device + at_queries;
  a.window_keys = device + at_wkeys;
  a.window_values = device + at_wvalues;
  a.window_tokens = in.window_tokens - (in.tokens - wave.t1);
  a.window_stride_tokens = in.window_tokens;
  a.window_start = in.window_start;
  a.slot_base = store.gpu_slot_base();
  a.indptr = reinterpret_cast<const int32_t*>(device + at_indptr);
  a.slots = reinterpret_cast<const int32_t*>(device + at_slots);
  a.landmark_scores = reinterpret_cast<const float*>(device + at_scores);
  a.block_nos = reinterpret_cast<const int64_t*>(device + at_blocks);
  a.max_blocks_per_row = wave.max_row;
  a.rows_share_blocks = options.retrieval == Retrieval::kPerChunk;  // sorted alike by make_waves
  a.scale = float(options.scale);
  a.rope = options.rope;
  a.out = static_cast<float*>(gpu.device_out.get());
  LMKV_RETURN_IF_ERROR(gpu.attention.run(a, stream));
  LMKV_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(gpu.host_out.get(), gpu.device_out.get(), out_bytes,
                                            cudaMemcpyDeviceToHost, stream));
  LMKV_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  std::memcpy(out + first_row * d, gpu.host_out.get(), out_bytes);
  return Status::Ok();
}

}  // namespace
#else
struct RetrievalAttention::Gpu {};
#endif  // LMKV_WITH_CUDA

RetrievalAttention::RetrievalAttention(TieredStore& store, LandmarkIndex& index)
    : store_(store), index_(index) {}
RetrievalAttention::~RetrievalAttention() = default;

Status RetrievalAttention::run(const RetrievalInputs& in, const RetrievalOptions& options,
                               float* out, RetrievalTrace* trace) {
  const BlockShape& shape = store_.shape();
  LMKV_RETURN_IF_ERROR(check(in, options, shape, index_.dim()));
  if (out == nullptr) return Status::InvalidArgument("retrieval attention with a null output");
  const double scale = options.scale > 0 ? options.scale : 1.0 / std::sqrt(double(shape.head_dim));
  const bool on_gpu = options.device == AttentionDevice::kGpu;
  if (on_gpu && store_.gpu_slot_count() == 0) {
    return Status::FailedPrecondition("GPU retrieval attention needs a store with a GPU tier");
  }

  auto start = Clock::now();
  Plan plan;
  LMKV_RETURN_IF_ERROR(search_blocks(index_, in, options, scale, &plan, trace));
  // A device page-in stages disk-resident blocks in host slots, so a wave fits both tiers.
  const int32_t capacity = on_gpu ? std::min(store_.gpu_slot_count(), store_.host_slot_count())
                                  : store_.host_slot_count();
  LMKV_ASSIGN_OR_RETURN(std::vector<Wave> waves, make_waves(in, capacity, &plan));
  if (trace != nullptr) {
    trace->search_us = micros_since(start);
    trace->unique_blocks = 0;
    trace->blocks_from_tier = {};
    trace->page_in_us = trace->attention_us = 0;
  }
  CUstream_st* stream = nullptr;
#ifdef LMKV_WITH_CUDA
  if (on_gpu && gpu_ == nullptr) {
    auto gpu = std::make_unique<Gpu>();
    LMKV_RETURN_IF_ERROR(gpu->stream.create());
    gpu_ = std::move(gpu);
  }
  if (on_gpu) stream = gpu_->stream.get();
#endif
  for (const Wave& wave : waves) {
    start = Clock::now();
    LMKV_ASSIGN_OR_RETURN(
        PageIn page,
        store_.page_in(wave.unique, on_gpu ? PageInTarget::kDevice : PageInTarget::kHost, stream));
    if (trace != nullptr) {
      trace->page_in_us += micros_since(start);
      trace->unique_blocks += wave.unique.size();
      for (size_t u = 0; u < page.size(); ++u) ++trace->blocks_from_tier[size_t(page.source(u))];
    }
    start = Clock::now();
    Status status;
    if (on_gpu) {
#ifdef LMKV_WITH_CUDA
      status = attend_on_gpu(*gpu_, store_, in, options, plan, wave, page, out);
#else
      status = Status::FailedPrecondition("GPU retrieval attention needs a CUDA build of lmkv");
#endif
    } else {
      status = attend_on_cpu(in, options, store_.shape(), scale, plan, wave, page, out);
    }
    page.release();
    if (trace != nullptr) trace->attention_us += micros_since(start);
    LMKV_RETURN_IF_ERROR(status);
  }
  return Status::Ok();
}

}  // namespace lmkv
