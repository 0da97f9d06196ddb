// One layer of landmark attention on the CPU, over the grouped-softmax reference.
#include "attention/cpu_attention.h"

#include <fmt/format.h>

#include <cmath>

namespace lmkv {
namespace {

Status check(const LayerAttentionInputs& in) {
  if (in.heads == 0 || in.kv_heads == 0 || in.heads % in.kv_heads != 0) {
    return Status::InvalidArgument(
        fmt::format("heads={} must be a positive multiple of kv_heads={}", in.heads, in.kv_heads));
  }
  if (in.dim == 0 || in.tokens == 0 || in.queries == nullptr) {
    return Status::InvalidArgument(
        fmt::format("layer attention with dim={}, tokens={} or null "
                    "queries",
                    in.dim, in.tokens));
  }
  if (in.blocks.size() != in.kv_heads || in.windows.size() != in.kv_heads) {
    return Status::InvalidArgument(fmt::format("{} block sets and {} windows for {} KV heads",
                                               in.blocks.size(), in.windows.size(), in.kv_heads));
  }
  for (uint32_t g = 0; g < in.kv_heads; ++g) {
    if (in.blocks[g].dim != in.dim) {
      return Status::InvalidArgument(
          fmt::format("KV head {} has dim {}, the queries {}", g, in.blocks[g].dim, in.dim));
    }
    if (in.windows[g].tokens < in.tokens) {
      return Status::InvalidArgument(
          fmt::format("KV head {}'s window has {} tokens, fewer than the chunk's {}", g,
                      in.windows[g].tokens, in.tokens));
    }
  }
  return Status::Ok();
}

}  // namespace

Status cpu_layer_attention(const LayerAttentionInputs& in, const LayerAttentionOptions& options,
                           std::vector<double>* out) {
  LMKV_RETURN_IF_ERROR(check(in));
  if (options.top_k == 0) return Status::InvalidArgument("layer attention with top_k=0");
  const double scale = options.scale > 0 ? options.scale : 1.0 / std::sqrt(double(in.dim));
  const uint32_t group = in.heads / in.kv_heads;
  out->assign(in.tokens * in.heads * in.dim, 0.0);

  // Offload mode: one selection per query head for the whole chunk.
  std::vector<std::vector<uint32_t>> chunk_selection(in.heads);
  if (options.retrieval == Retrieval::kPerChunk) {
    std::vector<float> head_queries(in.tokens * in.dim);
    for (uint32_t h = 0; h < in.heads; ++h) {
      for (size_t t = 0; t < in.tokens; ++t) {
        const float* q = in.queries + (t * in.heads + h) * in.dim;
        std::copy(q, q + in.dim, head_queries.begin() + t * in.dim);
      }
      LMKV_ASSIGN_OR_RETURN(chunk_selection[h],
                            select_blocks_per_chunk(head_queries.data(), in.tokens,
                                                    in.blocks[h / group], options.top_k, scale));
    }
  }

  std::vector<Status> failures(in.heads * in.tokens);
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (uint32_t h = 0; h < in.heads; ++h) {
    for (size_t t = 0; t < in.tokens; ++t) {
      const uint32_t g = h / group;
      const float* q = in.queries + (t * in.heads + h) * in.dim;
      const LocalWindow& window = in.windows[g];
      // Causal: the window up to and including this token.
      const LocalWindow seen{window.tokens - in.tokens + t + 1, window.keys, window.values};
      std::vector<uint32_t> selected;
      Status& status = failures[h * in.tokens + t];
      if (options.retrieval == Retrieval::kPerChunk) {
        selected = chunk_selection[h];
      } else {
        Result<std::vector<uint32_t>> chosen =
            select_blocks_per_token(q, in.blocks[g], options.top_k);
        if (!chosen.ok()) {
          status = chosen.status();
          continue;
        }
        selected = std::move(chosen).value();
      }
      status = grouped_softmax_reference(q, seen, in.blocks[g], selected, scale,
                                         out->data() + (t * in.heads + h) * in.dim);
    }
  }
  for (const Status& s : failures) LMKV_RETURN_IF_ERROR(s);
  return Status::Ok();
}

}  // namespace lmkv
