// Landmark attention for a prefill chunk whose tokens share their retrieved blocks (the paper's
// offload mode, Retrieval::kPerChunk): a thread block takes kStagedTokens consecutive tokens of one
// query head (one warp each), copies each shared block into shared memory once (cp.async,
// double-buffered) and lets every token's warp read it from there, so a block leaves HBM or L2
// once per group of tokens instead of once per token.
//
// With kTensorScores (no RoPE, 16 <= B <= kMaxTensorBlockTokens), the group's key scores for a
// block come from tensor cores: S[16 tokens][B keys] = Q K^T with fp16/bf16 inputs and fp32
// accumulation (WMMA), left in shared memory for each token's block softmax. Otherwise each warp
// scores the keys itself, as landmark_attention_parts does.
//
// Sharing is a speed hint, never a correctness assumption: the blocks staged are those of the
// group's first row, and any row whose entry differs (another slot, or entries past the first
// row's) reads that block from global memory and scores it itself.
#pragma once

#include <cuda_pipeline.h>
#include <mma.h>

#include "attention/kernels/landmark_attention.cuh"

namespace lmkv {
namespace kernels {

inline constexpr int kStagedTokens = 16;  // tokens per thread block (one warp each): one WMMA tile
inline constexpr int kMaxTensorBlockTokens = 256;

// Layout of the staged kernel's dynamic shared memory: two block payloads, then (tensor scores)
// the group's scores S[16][score_ld] in fp32 and its queries Q[16][D].
struct StagedLayout {
  int score_ld = 0;  // floats per S row: B rounded up to 16, plus 4 against bank conflicts
  int64_t scores_at = 0, queries_at = 0, bytes = 0;

  __host__ __device__ StagedLayout(int64_t payload, int block_tokens, int dim, int value_bytes,
                                   bool tensor) {
    scores_at = 2 * payload;
    if (!tensor) {
      queries_at = bytes = scores_at;
      return;
    }
    score_ld = (block_tokens + 15) / 16 * 16 + 4;
    queries_at = scores_at + int64_t(kStagedTokens) * score_ld * 4;
    bytes = queries_at + int64_t(kStagedTokens) * dim * value_bytes;
  }
};

// The group's scores of staged keys: S[token][key] = q_token . k_key (unscaled), for every key of
// a block of B, by 16-key tiles spread over the warps. Keys past B read the staged buffer's
// following rows: valid shared memory whose scores are never used.
template <typename T, int D>
__device__ __forceinline__ void tensor_scores(const T* queries, const T* keys, float* scores,
                                              int score_ld, int block_tokens, int warp) {
  using namespace nvcuda;
  const int tiles = (block_tokens + 15) / 16;
  for (int tile = warp; tile < tiles; tile += kStagedTokens) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> s;
    wmma::fill_fragment(s, 0.f);
#pragma unroll
    for (int d = 0; d < D; d += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> q;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> k;  // K^T
      wmma::load_matrix_sync(q, queries + d, D);
      wmma::load_matrix_sync(k, keys + tile * 16 * D + d, D);
      wmma::mma_sync(s, q, k, s);
    }
    wmma::store_matrix_sync(scores + tile * 16, s, score_ld, wmma::mem_row_major);
  }
}

// Block (token group, head). Requires payload_bytes % 32 == 0 and a 16-byte aligned slot base.
template <typename T, int D, bool kTensorScores>
__global__ void __launch_bounds__(kStagedTokens * 32, 1)
    landmark_attention_staged(const __grid_constant__ AttentionParams p) {
  constexpr int L = D / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int h = blockIdx.y, g = h / p.group;
  const int t = blockIdx.x * kStagedTokens + warp;
  const bool active = t < p.tokens;
  const int row = t * p.heads + h;
  const int leader = int(blockIdx.x) * kStagedTokens * p.heads + h;
  const int staged_first = p.indptr[leader];
  const int staged = p.indptr[leader + 1] - staged_first;

  extern __shared__ __align__(128) unsigned char staging[];
  const StagedLayout layout(p.payload_bytes, p.block_tokens, D, sizeof(T), kTensorScores);
  auto buffer = [&](int i) { return staging + (i % 2) * p.payload_bytes; };
  float* scores = reinterpret_cast<float*>(staging + layout.scores_at);
  T* queries = reinterpret_cast<T*>(staging + layout.queries_at);
  // Every thread copies its 16-byte pieces of the group's entry i into buffer(i).
  auto stage = [&](int i) {
    const char* src = slot_payload<char>(p, p.slots[staged_first + i]);
    unsigned char* dst = buffer(i);
    for (int64_t at = int64_t(threadIdx.x) * 16; at < p.payload_bytes; at += blockDim.x * 16) {
      __pipeline_memcpy_async(dst + at, src + at, 16);
    }
    __pipeline_commit();
  };

  const int own = p.window_tokens - p.tokens + t;
  const Rope<L> rotary(p.rope_theta, lane, p.rope != kRopeNone);
  float q[L] = {};
  int first = 0, blocks = 0;
  if (active) {
    load_query<T, L>(p, row, own, rotary, lane, q);
    first = p.indptr[row];
    blocks = p.indptr[row + 1] - first;
  }
  if constexpr (kTensorScores) {
    // The group's queries as given (fp16/bf16, unscaled), zero past the chunk's last token.
    using Row = Lanes<T, L>;
    Row r{};
    if (active)
      r = *reinterpret_cast<const Row*>(static_cast<const T*>(p.queries) + int64_t(row) * D +
                                        lane * L);
    *reinterpret_cast<Row*>(queries + warp * D + lane * L) = r;
  }

  Softmax<L> main;
  // Few rows in flight: most blocks come from shared memory (rare global fallbacks pay for it).
  auto add = [&](int item, const T* k) {
    add_entry<T, L, kSharedRowsInFlight>(main, p, q, k, first, item, blocks, rotary, lane);
  };

  if (staged > 0) stage(0);
  for (int i = 0; i < staged; ++i) {
    if (i + 1 < staged) {
      stage(i + 1);
      __pipeline_wait_prior(1);  // entry i has landed; i + 1 may still be in flight
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    const T* k = reinterpret_cast<const T*>(buffer(i));
    if constexpr (kTensorScores) {
      tensor_scores<T, D>(queries, k, scores, layout.score_ld, p.block_tokens, warp);
      __syncthreads();
    }
    if (i < blocks) {
      const int e = first + i;
      if (p.slots[e] != p.slots[staged_first + i]) {
        add(i, slot_payload<T>(p, p.slots[e]));
      } else if constexpr (kTensorScores) {
        const float* mine = scores + warp * layout.score_ld;
        add_scored_block<T, L, kSharedRowsInFlight>(
            main, p, k + int64_t(p.block_tokens) * D, p.landmark_scores[e], lane,
            [&](int j, int count) { return lane < count ? mine[j + lane] * p.scale : -INFINITY; });
      } else {
        add(i, k);
      }
    }
    __syncthreads();  // every warp is done with buffer(i) (and S) before they are overwritten
  }
  if (!active) return;
  for (int i = staged; i < blocks; ++i) add(i, slot_payload<T>(p, p.slots[first + i]));
  const int visible = own + 1;
  for (int j0 = 0; j0 < visible; j0 += p.local_chunk) {
    // The group's warps read the same window rows, mostly from L1: few rows in flight too.
    add_window<T, L, kSharedRowsInFlight>(main, p, q, g, j0, min(visible, j0 + p.local_chunk),
                                          rotary, lane);
  }
  store_row<L>(p, row, main, lane);
}

}  // namespace kernels
}  // namespace lmkv
