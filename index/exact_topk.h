// Exact top-k over inner products, with the index's tie rule (higher score first, then lower block
// number): the reference every approximate backend is measured against, and the flat backend.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lmkv {

// Up to this many queries exact_topk computes scores with a plain loop, memory-bound like a BLAS
// matrix-vector product but free of BLAS's own threads: OpenBLAS's pthread build (Debian's
// default) starts them in every call, and called from the index's OpenMP loop over heads they
// oversubscribed the cores (a 32-head decode search at 1M tokens ran 7x slower than its CPU time).
// Above, BLAS computes the scores (set OPENBLAS_NUM_THREADS=1 for prefill-sized searches).
inline constexpr size_t kExactLoopMaxQueries = 8;

// For each of `nq` queries (dim floats each), the top k of the n keys (dim floats each, row i
// belonging to block block_nos[i]): out_blocks/out_scores[q * k + j]. Slots beyond n hold -1 and
// -inf. Scores are float32.
void exact_topk(const float* queries, size_t nq, const float* keys, const int64_t* block_nos,
                size_t n, uint32_t dim, uint32_t k, int64_t* out_blocks, float* out_scores);

// Selects the top k of n given scores with the same rule (used on scores computed elsewhere).
void select_topk(const float* scores, const int64_t* block_nos, size_t n, uint32_t k,
                 int64_t* out_blocks, float* out_scores);

// Ranks a FAISS result with the same rule: for each of nq queries, `found` scores and row numbers
// (rows[q * found + j], -1 for none) into block_nos, reduced to the top k per query.
void select_topk_of_rows(const float* scores, const int64_t* rows, size_t nq, size_t found,
                         const int64_t* block_nos, uint32_t k, int64_t* out_blocks,
                         float* out_scores);

}  // namespace lmkv
