// Landmark attention of one layer on the CPU: the reference the CUDA kernels are checked against,
// and the CPU attention path. A chunk of query tokens, grouped-query heads, each query (or the
// chunk, in offload mode) retrieving its own top-k blocks per head; OpenMP over heads and tokens.
#pragma once

#include <vector>

#include "attention/block_selection.h"
#include "attention/grouped_softmax.h"

namespace lmkv {

struct LayerAttentionInputs {
  uint32_t heads = 0;     // query heads
  uint32_t kv_heads = 0;  // KV heads; query head h reads KV head h / (heads / kv_heads)
  uint32_t dim = 0;
  size_t tokens = 0;               // queries in the chunk
  const float* queries = nullptr;  // [tokens][heads][dim]
  // Per KV head: its earlier blocks, and its current-block window whose last `tokens` entries are
  // the chunk's own tokens (query t sees the window up to and including its own token).
  std::vector<HeadBlocks> blocks;
  std::vector<LocalWindow> windows;
};

struct LayerAttentionOptions {
  uint32_t top_k = 32;  // blocks retrieved per head (per token or per chunk); all when larger
  Retrieval retrieval = Retrieval::kPerToken;
  double scale = 0;  // 0: 1/sqrt(dim)
};

// out[(t * heads + h) * dim + i], in double.
Status cpu_layer_attention(const LayerAttentionInputs& in, const LayerAttentionOptions& options,
                           std::vector<double>* out);

}  // namespace lmkv
