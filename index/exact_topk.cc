// Exact inner-product top-k: BLAS scores in chunks of queries, then a bounded selection.
#include "index/exact_topk.h"

#include <algorithm>
#include <limits>
#include <vector>

extern "C" {
// Fortran BLAS (OpenBLAS through FAISS's link interface).
int sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
           const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
           const float* beta, float* c, const int* ldc);
}

namespace lmkv {
namespace {

struct Candidate {
  float score;
  int64_t block;
};

// Strictly better: higher score, then lower block number.
bool better(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.block < b.block);
}

}  // namespace

void select_topk(const float* scores, const int64_t* block_nos, size_t n, uint32_t k,
                 int64_t* out_blocks, float* out_scores) {
  // A heap of the best k so far, worst on top: most candidates lose one comparison against it.
  std::vector<Candidate> heap;
  heap.reserve(k);
  for (size_t i = 0; i < n; ++i) {
    const Candidate c{scores[i], block_nos[i]};
    if (heap.size() < k) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(c, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = c;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort_heap(heap.begin(), heap.end(), better);
  for (uint32_t j = 0; j < k; ++j) {
    out_blocks[j] = j < heap.size() ? heap[j].block : -1;
    out_scores[j] = j < heap.size() ? heap[j].score : -std::numeric_limits<float>::infinity();
  }
}

void select_topk_of_rows(const float* scores, const int64_t* rows, size_t nq, size_t found,
                         const int64_t* block_nos, uint32_t k, int64_t* out_blocks,
                         float* out_scores) {
  std::vector<int64_t> ids(found);
  std::vector<float> kept(found);
  for (size_t q = 0; q < nq; ++q) {
    size_t valid = 0;
    for (size_t j = 0; j < found; ++j) {
      const int64_t row = rows[q * found + j];
      if (row < 0) continue;
      ids[valid] = block_nos[row];
      kept[valid++] = scores[q * found + j];
    }
    select_topk(kept.data(), ids.data(), valid, k, out_blocks + q * k, out_scores + q * k);
  }
}

namespace {

// scores[q * n + i] = <query q, key i> for a few queries: each key is read once for all of them.
void loop_scores(const float* queries, size_t nq, const float* keys, size_t n, uint32_t dim,
                 float* scores) {
  for (size_t i = 0; i < n; ++i) {
    const float* key = keys + i * dim;
    for (size_t q = 0; q < nq; ++q) {
      const float* query = queries + q * dim;
      float s = 0;
#pragma omp simd reduction(+ : s)
      for (uint32_t d = 0; d < dim; ++d) s += key[d] * query[d];
      scores[q * n + i] = s;
    }
  }
}

}  // namespace

void exact_topk(const float* queries, size_t nq, const float* keys, const int64_t* block_nos,
                size_t n, uint32_t dim, uint32_t k, int64_t* out_blocks, float* out_scores) {
  // The loop also serves a head with no keys, which BLAS would be handed as an empty matrix.
  if (n == 0 || nq <= kExactLoopMaxQueries) {
    std::vector<float> scores(nq * n);
    loop_scores(queries, nq, keys, n, dim, scores.data());
    for (size_t q = 0; q < nq; ++q) {
      select_topk(scores.data() + q * n, block_nos, n, k, out_blocks + q * k, out_scores + q * k);
    }
    return;
  }
  // Chunks of queries keep the score matrix small (at most 64 x n floats).
  constexpr size_t kChunk = 64;
  std::vector<float> scores(std::min(nq, kChunk) * n);
  for (size_t first = 0; first < nq; first += kChunk) {
    const int rows = static_cast<int>(n), cols = static_cast<int>(std::min(kChunk, nq - first));
    const int depth = static_cast<int>(dim);
    const float one = 1.0f, zero = 0.0f;
    // Column-major: scores(n x cols) = keys^T(n x d) * queries(d x cols), i.e. row-major
    // scores[q][i] = <query q, key i>.
    sgemm_("T", "N", &rows, &cols, &depth, &one, keys, &depth, queries + first * dim, &depth, &zero,
           scores.data(), &rows);
    for (int q = 0; q < cols; ++q) {
      select_topk(scores.data() + size_t(q) * n, block_nos, n, k, out_blocks + (first + q) * k,
                  out_scores + (first + q) * k);
    }
  }
}

}  // namespace lmkv
