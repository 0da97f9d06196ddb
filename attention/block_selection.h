// Which earlier blocks enter a query's main group: the top k by landmark score, chosen per query
// token (the paper's default) or once for a whole chunk (the paper's offload mode, where one
// page-in serves every token of the chunk).
#pragma once

#include <cstdint>
#include <vector>

#include "attention/grouped_softmax.h"

namespace lmkv {

enum class Retrieval {
  kPerToken,  // each query token and head retrieves its own top-k blocks
  kPerChunk,  // per head, shared by a chunk's tokens
};

// The k blocks with the highest <query, landmark> (ties: lower block number), best first; every
// block when k exceeds their count.
Result<std::vector<uint32_t>> select_blocks_per_token(const float* query, const HeadBlocks& blocks,
                                                      uint32_t k);

// Offload mode: each of the `count` queries softmaxes its scaled landmark scores over all blocks;
// a block ranks by the largest probability any query of the chunk gives it. Top k, best first.
Result<std::vector<uint32_t>> select_blocks_per_chunk(const float* queries, size_t count,
                                                      const HeadBlocks& blocks, uint32_t k,
                                                      double scale);

// Offload mode from scores already computed: scores[q * n + b] is query q's unscaled landmark
// score of block b (n blocks). Same ranking as select_blocks_per_chunk; block numbers are 0..n-1.
Result<std::vector<uint32_t>> select_blocks_from_chunk_scores(const std::vector<double>& scores,
                                                              size_t count, size_t n, uint32_t k,
                                                              double scale);

}  // namespace lmkv
