// The CPU reference of landmark attention: the paper's grouped softmax, exact (double
// accumulation). For a query in the current block, the main group holds the current block's tokens
// up to the query and the landmark keys of the selected earlier blocks; each selected block's own
// softmax over its tokens is gated by its landmark's probability in the main group. Landmarks carry
// no value. With every earlier block selected this is the full grouped softmax; with a top-k
// selection it is retrieval attention (unselected landmarks count as -inf).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lmkv/status.h"

namespace lmkv {

// One KV head's earlier (sealed) blocks, as the reference reads them.
struct HeadBlocks {
  uint32_t block_tokens = 0;         // B
  uint32_t dim = 0;                  // d
  size_t count = 0;                  // blocks
  const float* keys = nullptr;       // [count][B][d]
  const float* values = nullptr;     // [count][B][d]
  const float* landmarks = nullptr;  // [count][d]
};

// The current block's tokens the query may see (causal: up to and including the query).
struct LocalWindow {
  size_t tokens = 0;
  const float* keys = nullptr;    // [tokens][d]
  const float* values = nullptr;  // [tokens][d]
};

// out[d] = grouped-softmax attention of `query` (d floats) over `local` and blocks `selected` of
// `blocks`, with scores scaled by `scale` (usually 1/sqrt(d)). Selected block numbers must be
// distinct and below blocks.count.
Status grouped_softmax_reference(const float* query, const LocalWindow& local,
                                 const HeadBlocks& blocks, const std::vector<uint32_t>& selected,
                                 double scale, double* out);

// The same with each selected block's landmark score (q . l, unscaled) given, in `selected` order,
// instead of computed from blocks.landmarks (which may then be null): the scores an index search
// returned.
Status grouped_softmax_scored(const float* query, const LocalWindow& local,
                              const HeadBlocks& blocks, const std::vector<uint32_t>& selected,
                              const std::vector<double>& landmark_scores, double scale,
                              double* out);

// The same, returning the weight of every value it uses instead of the output: the current
// block's tokens first, then each selected block's B tokens in `selected` order. They sum to 1.
Status grouped_softmax_weights(const float* query, const LocalWindow& local,
                               const HeadBlocks& blocks, const std::vector<uint32_t>& selected,
                               double scale, std::vector<double>* weights);

}  // namespace lmkv
