// The experiment: validate, ingest, decode, compare against exact attention, report.
#include "experiment/experiment.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "experiment/synthetic_context.h"
#include "index/landmark_persistence.h"
#include "kvstore/cuda_util.h"
#include "kvstore/dtype_convert.h"

namespace lmkv {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kSequence = 0;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Status flag_error(const std::string& flag, const std::string& why) {
  return Status::InvalidArgument(fmt::format("{}: {}", flag, why));
}

Status check_writable_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return flag_error("--data-dir " + dir, ec.message());
  const std::string probe = dir + "/.lmkv-write-probe";
  {
    std::ofstream out(probe);
    if (!(out << "x")) return flag_error("--data-dir " + dir, "not writable");
  }
  std::filesystem::remove(probe, ec);
  return Status::Ok();
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t i = std::min(values.size() - 1, size_t(q * double(values.size() - 1) + 0.5));
  return values[i];
}

// Exact grouped softmax of the query heads of one KV head over every sealed block (streamed from
// the store in batches, each block read once for the whole group) plus the window, in double.
class ExactAttention {
 public:
  ExactAttention(TieredStore& store, const ExperimentConfig& c, uint64_t blocks)
      : store_(store), c_(c), blocks_(blocks) {}

  // queries [group][d], window [window_tokens][d], out [group][d].
  Status run(uint32_t layer, uint32_t kv_head, const float* queries, uint32_t group,
             const float* landmarks, const float* window_keys, const float* window_values,
             uint32_t window_tokens, double* out) {
    const uint32_t d = c_.head_dim, B = c_.block_tokens;
    const double scale = 1.0 / std::sqrt(double(d));
    // Per query head, online softmax over the main group's items: window tokens, and blocks
    // (whose value is their own softmax-weighted mean o_b).
    std::vector<double> m(group, -INFINITY), z(group, 0.0), acc(size_t{group} * d, 0.0);
    auto add = [&](uint32_t h, double score, const double* value) {
      double* a = &acc[size_t{h} * d];
      if (score > m[h]) {
        const double c = std::exp(m[h] - score);
        z[h] = z[h] * c + 1;
        for (uint32_t i = 0; i < d; ++i) a[i] = a[i] * c + value[i];
        m[h] = score;
      } else {
        const double p = std::exp(score - m[h]);
        z[h] += p;
        for (uint32_t i = 0; i < d; ++i) a[i] += p * value[i];
      }
    };
    std::vector<double> value(d);
    for (uint32_t h = 0; h < group; ++h) {
      for (uint32_t j = 0; j < window_tokens; ++j) {
        double s = 0;
        for (uint32_t i = 0; i < d; ++i) {
          s += double(queries[h * d + i]) * window_keys[j * d + i];
          value[i] = window_values[j * d + i];
        }
        add(h, scale * s, value.data());
      }
    }
    const size_t batch = std::clamp<size_t>(size_t(store_.host_slot_count()) / 2, 1, 4096);
    const size_t tensor = size_t{B} * d;
    // Per block of the batch and query head: the landmark logit and o_b, computed in parallel,
    // then added in block order.
    std::vector<double> logits(batch * group), values(batch * group * d);
    for (uint64_t first = 0; first < blocks_; first += batch) {
      std::vector<BlockKey> wanted;
      for (uint64_t b = first; b < std::min<uint64_t>(blocks_, first + batch); ++b) {
        wanted.push_back({kSequence, layer, kv_head, b});
      }
      LMKV_ASSIGN_OR_RETURN(PageIn page, store_.page_in(wanted, PageInTarget::kHost));
      std::vector<Status> failures(wanted.size());
#pragma omp parallel for schedule(static)
      for (size_t u = 0; u < wanted.size(); ++u) {
        std::vector<float> k(tensor), v(tensor);
        std::vector<double> inner(B);
        failures[u] = to_floats(page.payload(u), DType::kFloat16, tensor, k.data());
        if (failures[u].ok()) {
          failures[u] = to_floats(page.payload(u) + tensor * 2, DType::kFloat16, tensor, v.data());
        }
        if (!failures[u].ok()) continue;
        const float* l = landmarks + wanted[u].block_no * d;
        for (uint32_t h = 0; h < group; ++h) {
          const float* q = queries + size_t{h} * d;
          double inner_max = -INFINITY, landmark = 0;
          for (uint32_t t = 0; t < B; ++t) {
            double s = 0;
            for (uint32_t i = 0; i < d; ++i) s += double(q[i]) * k[t * d + i];
            inner[t] = scale * s;
            inner_max = std::max(inner_max, inner[t]);
          }
          double* o = &values[(u * group + h) * d];
          std::fill(o, o + d, 0.0);
          double inner_sum = 0;
          for (uint32_t t = 0; t < B; ++t) {
            const double p = std::exp(inner[t] - inner_max);
            inner_sum += p;
            for (uint32_t i = 0; i < d; ++i) o[i] += p * v[t * d + i];
          }
          for (uint32_t i = 0; i < d; ++i) o[i] /= inner_sum;
          for (uint32_t i = 0; i < d; ++i) landmark += double(q[i]) * l[i];
          logits[u * group + h] = scale * landmark;
        }
      }
      for (const Status& s : failures) LMKV_RETURN_IF_ERROR(s);
      for (size_t u = 0; u < wanted.size(); ++u) {
        for (uint32_t h = 0; h < group; ++h) {
          add(h, logits[u * group + h], &values[(u * group + h) * d]);
        }
      }
    }
    for (uint32_t h = 0; h < group; ++h) {
      for (uint32_t i = 0; i < d; ++i) out[size_t{h} * d + i] = acc[size_t{h} * d + i] / z[h];
    }
    return Status::Ok();
  }

 private:
  TieredStore& store_;
  const ExperimentConfig& c_;
  uint64_t blocks_;
};

void track_peaks(const StoreStatsSnapshot& s, size_t payload, ExperimentReport* report) {
  for (int t = 0; t < kTierCount; ++t) {
    report->peak_bytes[t] =
        std::max<uint64_t>(report->peak_bytes[t], s.tiers[t].resident_blocks * payload);
  }
}

}  // namespace

Status validate_experiment_config(const ExperimentConfig& c, bool check_data_dir) {
  if (c.tokens == 0) return flag_error("--tokens 0", "the context needs at least one block");
  if (c.block_tokens == 0 || c.block_tokens > kMaxBlockTokens) {
    return flag_error(fmt::format("--block {}", c.block_tokens),
                      fmt::format("must be 1..{}", kMaxBlockTokens));
  }
  if (c.block_tokens > c.tokens) {
    return flag_error(fmt::format("--block {}", c.block_tokens),
                      fmt::format("larger than the context of {} tokens", c.tokens));
  }
  if (c.layers == 0) return flag_error("--layers 0", "at least one layer");
  if (c.kv_heads == 0 || c.heads == 0 || c.heads % c.kv_heads != 0) {
    return flag_error(fmt::format("--heads {} --kv-heads {}", c.heads, c.kv_heads),
                      "heads must be a positive multiple of kv-heads");
  }
  if (c.head_dim == 0 || c.head_dim % 8 != 0 || c.head_dim > kMaxHeadDim) {
    return flag_error(fmt::format("--head-dim {}", c.head_dim),
                      fmt::format("must be a multiple of 8 up to {}", kMaxHeadDim));
  }
  if (c.device == AttentionDevice::kGpu && c.head_dim != 64 && c.head_dim != 128 &&
      c.head_dim != 256) {
    return flag_error(fmt::format("--head-dim {}", c.head_dim),
                      "the GPU kernels take 64, 128 or 256");
  }
  if (c.top_k == 0) return flag_error("--top-k 0", "retrieve at least one block");
  if (c.chunk_tokens == 0) return flag_error("--chunk 0", "ingest at least one token per chunk");
  if (c.queries == 0) return flag_error("--queries 0", "decode at least one query");
  const size_t payload = size_t{2} * c.block_tokens * c.head_dim * 2;
  if (c.host_capacity_bytes < payload) {
    return flag_error(fmt::format("--host-capacity {}", c.host_capacity_bytes),
                      fmt::format("below one block ({} bytes)", payload));
  }
  if (c.device == AttentionDevice::kGpu && c.gpu_capacity_bytes < payload) {
    return flag_error(fmt::format("--gpu-capacity {}", c.gpu_capacity_bytes),
                      fmt::format("below one block ({} bytes)", payload));
  }
  for (double depth : c.needle_depths) {
    if (!(depth >= 0 && depth <= 1)) {
      return flag_error(fmt::format("--needle-depths {}", depth), "depths are fractions in [0, 1]");
    }
  }
  return check_data_dir ? check_writable_dir(c.data_dir) : Status::Ok();
}

Result<ExperimentReport> run_experiment(const ExperimentConfig& c, const ProgressFn& progress) {
  LMKV_RETURN_IF_ERROR(validate_experiment_config(c));
  const auto started = Clock::now();
  ExperimentReport report;
  report.config = c;
  report.device = c.device == AttentionDevice::kGpu ? "gpu" : "cpu";
  const uint32_t d = c.head_dim, B = c.block_tokens, group = c.heads / c.kv_heads;
  const uint64_t blocks = c.tokens / B;
  const uint32_t open_tokens = uint32_t(c.tokens % B);
  report.blocks_per_head = blocks;

  StoreOptions store_options;
  store_options.shape = {B, d, DType::kFloat16};
  store_options.disk_path = c.data_dir;
  store_options.host_capacity_bytes = c.host_capacity_bytes;
  store_options.gpu_capacity_bytes = c.device == AttentionDevice::kGpu ? c.gpu_capacity_bytes : 0;
  // The experiment reports swap-in latency: time every device page-in, not one in eight.
  store_options.latency_sample_period = 1;
  LMKV_ASSIGN_OR_RETURN(std::unique_ptr<TieredStore> store, TieredStore::open(store_options));
  LMKV_RETURN_IF_ERROR(store->erase(kSequence));  // a fresh run each time
  IndexOptions index_options;
  index_options.backend = c.backend;
  index_options.gpu_int8_screening = c.int8_screening;
  index_options.dim = d;
  LMKV_ASSIGN_OR_RETURN(std::unique_ptr<LandmarkIndex> index, make_landmark_index(index_options));
  report.index_backend = index->name();

  SyntheticOptions synthetic;
  synthetic.dim = d;
  synthetic.block_tokens = B;
  synthetic.blocks = blocks;
  synthetic.seed = c.seed;
  synthetic.needle_depths = c.needle_depths;
  const SyntheticContext context(synthetic);
  const size_t payload = store_options.shape.payload_bytes();

  // Ingest: chunk by chunk, every (layer, KV head) seals its blocks, then their landmarks.
  // Landmarks are also kept here (small: d floats a block) for the exact reference.
  std::vector<std::vector<float>> landmarks(size_t{c.layers} * c.kv_heads,
                                            std::vector<float>(blocks * d));
  const uint64_t blocks_per_chunk = std::max<uint64_t>(1, c.chunk_tokens / B);
  const size_t tensor = size_t{B} * d;
  // Reused across chunks: fresh multi-megabyte buffers would cost a page fault per 4 KiB.
  std::vector<float> keys(blocks_per_chunk * tensor), values(keys.size());
  std::vector<uint16_t> k16(keys.size()), v16(keys.size());
  auto ingest_start = Clock::now();
  for (uint64_t first = 0; first < blocks; first += blocks_per_chunk) {
    const uint64_t end = std::min(blocks, first + blocks_per_chunk);
    const size_t n = end - first;
    for (uint32_t layer = 0; layer < c.layers; ++layer) {
      for (uint32_t g = 0; g < c.kv_heads; ++g) {
        float* head_landmarks = landmarks[size_t{layer} * c.kv_heads + g].data();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; ++i) {
          const uint64_t b = first + i;
          context.block(layer, g, b, keys.data() + i * tensor, values.data() + i * tensor);
          (void)from_floats(keys.data() + i * tensor, tensor, DType::kFloat16, &k16[i * tensor]);
          (void)from_floats(values.data() + i * tensor, tensor, DType::kFloat16, &v16[i * tensor]);
          // Landmarks from what is stored (the fp16 keys), as an engine would compute them.
          (void)to_floats(&k16[i * tensor], DType::kFloat16, tensor, keys.data() + i * tensor);
          float* l = head_landmarks + b * d;
          if (c.landmark == LandmarkSource::kGiven) {
            context.given_landmark(layer, g, b, l);
          } else {
            (void)sealed_block_landmark(c.landmark, keys.data() + i * tensor, B, d, l);
          }
        }
        std::vector<BlockWrite> writes(n);
        std::vector<uint64_t> numbers(n);
        for (size_t i = 0; i < n; ++i) {
          numbers[i] = first + i;
          writes[i] = {{kSequence, layer, g, first + i}, &k16[i * tensor], &v16[i * tensor]};
        }
        LMKV_RETURN_IF_ERROR(store->put(writes));
        LMKV_RETURN_IF_ERROR(add_landmarks(*store, *index, {kSequence, layer, g}, numbers.data(),
                                           head_landmarks + first * d, n));
      }
    }
    track_peaks(store->stats(), payload, &report);
    if (progress) progress("ingest", end * B, blocks * B);
  }
  LMKV_RETURN_IF_ERROR(store->sync());
  report.ingest_seconds = seconds_since(ingest_start);
  report.ingest_tokens_per_s = double(blocks * B) / std::max(report.ingest_seconds, 1e-9);

  // The local window: the open block's tokens plus the query's own token, per layer.
  const uint32_t window_tokens = open_tokens + 1;
  std::vector<std::vector<float>> window_keys(c.layers), window_values(c.layers);
  std::vector<std::vector<uint16_t>> window_k16(c.layers), window_v16(c.layers);
  for (uint32_t layer = 0; layer < c.layers; ++layer) {
    const size_t n = size_t{c.kv_heads} * window_tokens * d;
    window_keys[layer].resize(n);
    window_values[layer].resize(n);
    for (uint32_t g = 0; g < c.kv_heads; ++g) {
      context.window(layer, g, window_tokens, window_keys[layer].data() + g * window_tokens * d,
                     window_values[layer].data() + g * window_tokens * d);
    }
    window_k16[layer].resize(n);
    window_v16[layer].resize(n);
    LMKV_RETURN_IF_ERROR(
        from_floats(window_keys[layer].data(), n, DType::kFloat16, window_k16[layer].data()));
    LMKV_RETURN_IF_ERROR(
        from_floats(window_values[layer].data(), n, DType::kFloat16, window_v16[layer].data()));
    // The reference reads the window as stored.
    LMKV_RETURN_IF_ERROR(
        to_floats(window_k16[layer].data(), DType::kFloat16, n, window_keys[layer].data()));
    LMKV_RETURN_IF_ERROR(
        to_floats(window_v16[layer].data(), DType::kFloat16, n, window_values[layer].data()));
  }

  // Decode: query q looks for needle q (while needles last), then for topics.
  RetrievalAttention attention(*store, *index);
  RetrievalOptions options;
  options.top_k = c.top_k;
  options.device = c.device;
  const size_t needles = c.needle_depths.size();
  std::vector<size_t> found(needles, 0), asked(needles, 0);
  std::vector<std::vector<float>> outputs(c.exact_queries);
  std::vector<std::vector<float>> exact_query_vectors(c.exact_queries);
  std::vector<double> steps;
  for (uint32_t q = 0; q < c.queries; ++q) {
    QueryRecord record;
    record.query = q;
    record.needle = q < needles ? int(q) : -1;
    if (record.needle >= 0) record.depth = c.needle_depths[q];
    const bool exact = q < c.exact_queries;
    std::vector<float> all_layers_out;
    std::vector<float> all_layers_query;
    size_t hits = 0;
    const auto step_start = Clock::now();
    for (uint32_t layer = 0; layer < c.layers; ++layer) {
      std::vector<float> query(size_t{c.heads} * d);
      for (uint32_t h = 0; h < c.heads; ++h) {
        const uint64_t salt = (uint64_t(q) << 20) ^ (uint64_t(layer) << 8) ^ h;
        if (record.needle >= 0) {
          context.needle_query(layer, h / group, size_t(record.needle), salt, &query[h * d]);
        } else {
          context.topic_query(layer, h / group, salt, &query[h * d]);
        }
      }
      RetrievalInputs in;
      in.sequence = kSequence;
      in.layer = layer;
      in.heads = c.heads;
      in.kv_heads = c.kv_heads;
      in.tokens = 1;
      in.queries = query.data();
      in.window_tokens = window_tokens;
      in.window_keys = window_k16[layer].data();
      in.window_values = window_v16[layer].data();
      std::vector<float> out(size_t{c.heads} * d);
      RetrievalTrace trace;
      LMKV_RETURN_IF_ERROR(attention.run(in, options, out.data(), &trace));
      record.search_us += trace.search_us;
      record.page_in_us += trace.page_in_us;
      record.attention_us += trace.attention_us;
      record.blocks_paged += trace.unique_blocks;
      if (record.needle >= 0) {
        const int64_t target = int64_t(context.needle_block(size_t(record.needle)));
        for (uint32_t h = 0; h < c.heads; ++h) {
          for (uint32_t i = 0; i < trace.k; ++i) {
            if (trace.block_nos[size_t{h} * trace.k + i] == target) {
              ++hits;
              break;
            }
          }
        }
      }
      if (exact) {
        all_layers_out.insert(all_layers_out.end(), out.begin(), out.end());
        all_layers_query.insert(all_layers_query.end(), query.begin(), query.end());
      }
    }
    record.step_us = std::chrono::duration<double, std::micro>(Clock::now() - step_start).count();
    steps.push_back(record.step_us);
    if (record.needle >= 0) {
      record.needle_recall = double(hits) / (double(c.layers) * c.heads);
      found[size_t(record.needle)] += hits;
      asked[size_t(record.needle)] += size_t{c.layers} * c.heads;
    }
    if (exact) {
      outputs[q] = std::move(all_layers_out);
      exact_query_vectors[q] = std::move(all_layers_query);
    }
    report.queries.push_back(record);
    track_peaks(store->stats(), payload, &report);
    if (progress) progress("decode", q + 1, c.queries);
  }
  report.store = store->stats();
  report.step_p50_us = percentile(steps, 0.50);
  report.step_p99_us = percentile(steps, 0.99);
  for (size_t i = 0; i < needles; ++i) {
    if (asked[i] == 0) continue;
    report.needle_depths.push_back(c.needle_depths[i]);
    report.needle_recall.push_back(double(found[i]) / double(asked[i]));
  }

  // Exact attention over every block for the sampled queries (streams the whole context).
  ExactAttention exact(*store, c, blocks);
  double error_sum = 0;
  size_t error_count = 0;
  for (uint32_t q = 0; q < std::min(c.exact_queries, c.queries); ++q) {
    double diff = 0, norm = 0;
    for (uint32_t layer = 0; layer < c.layers; ++layer) {
      for (uint32_t g = 0; g < c.kv_heads; ++g) {
        // Query heads g * group .. are consecutive rows of this layer's output.
        const size_t row = size_t{layer} * c.heads + size_t{g} * group;
        std::vector<double> want(size_t{group} * d);
        const size_t window_offset = size_t{g} * window_tokens * d;
        LMKV_RETURN_IF_ERROR(exact.run(layer, g, exact_query_vectors[q].data() + row * d, group,
                                       landmarks[size_t{layer} * c.kv_heads + g].data(),
                                       window_keys[layer].data() + window_offset,
                                       window_values[layer].data() + window_offset, window_tokens,
                                       want.data()));
        for (size_t i = 0; i < want.size(); ++i) {
          const double got = outputs[q][row * d + i];
          diff += (got - want[i]) * (got - want[i]);
          norm += want[i] * want[i];
        }
      }
    }
    const double error = std::sqrt(diff / std::max(norm, 1e-300));
    report.queries[q].relative_error = error;
    report.max_relative_error = std::max(report.max_relative_error, error);
    error_sum += error;
    ++error_count;
    if (progress) progress("exact", q + 1, std::min(c.exact_queries, c.queries));
  }
  if (error_count > 0) report.mean_relative_error = error_sum / double(error_count);

  if (!c.keep_data) LMKV_RETURN_IF_ERROR(store->erase(kSequence));
  LMKV_RETURN_IF_ERROR(store->close());
  report.total_seconds = seconds_since(started);
  return report;
}

}  // namespace lmkv
