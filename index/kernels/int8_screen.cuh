// The fused search's screened path for k <= 32: a first pass streams int8 copies of the landmark
// keys (half the bytes of fp16) and lists each chunk's 32 best upper bounds on the exact score; a
// second pass rescores the listed rows with the fp16 keys and proves the result exact, or else
// scans the head's fp16 keys itself. Results are bit for bit those of the unscreened path.
//
// The bound. A row's fp16 key h has codes c and scale s (index/int8_landmarks.h): |h - s c| <= s/2
// elementwise. The query q is split into integers Q = round(q / t), |Q| <= kQueryLevels, with
// t = max |q| / kQueryLevels, so that |q - t Q| <= t/2 and Q . c is exact in integer arithmetic
// (__dp4a on Q's high and low bytes). Then
//   q . h <= s (q . c) + s ||q||_1 / 2 <= s (t (Q . c) + t 127 d / 2 + ||q||_1 / 2).
// kScreenSlack widens each 1/2 to cover fp32 rounding (of the reduction across lanes, the
// scaling, and the exact pass's own sums: each well under 2^-12 of these terms).
//
// The proof: every row not rescored has a bound at most `floor`: the 32nd bound of a chunk's list
// (rows a chunk did not list), or the best bound of a list skipped because it could not beat the
// k-th exact score already found. If the exact k-th best score beats `floor`, no such row can
// enter the top k, ties included. Chunks take their 32-row tiles interleaved, so the best rows of
// one topic (consecutive blocks) spread over all chunks instead of crowding one chunk's list.
#pragma once

#include "index/kernels/landmark_topk.cuh"
#include "index/kernels/warp_dot.cuh"
#include "index/kernels/warp_select.cuh"

namespace lmkv::kernels {

inline constexpr float kScreenSlack = 0.5f + 1.f / 128;
inline constexpr int kQueryLevels = 127 * 256 + 127;  // Q = 256 * high + low, both int8
inline constexpr int kRescoreWarps = 16;              // warps of a pass-2 block
inline constexpr int kMinScreenChunks = 4;            // fewer lists than this prove too little
// Below this many rows in a layer's largest head, the second pass's extra work (about 6 us on an
// H100) costs more than the halved key bytes save. Measured on an H100, 32 heads of d = 128, one
// query each, with the earlier pass 1 that staged codes through shared memory: 28.7 us screened
// against 25.9 unscreened at 4,096 rows, 63 against 79 at 20,971 (52 against 78 now). Not
// remeasured below 8,192 rows since.
inline constexpr int kMinScreenRows = 8192;

// One head's int8 keys as the screening pass sees them.
struct CodeView {
  const int8_t* codes = nullptr;  // whole tiles of 32 rows (code_offset)
  const float* scales = nullptr;  // [n], allocated to whole tiles
  int32_t n = 0;
};
struct CodeViews {
  CodeView heads[kMaxHeadsPerLaunch];
};

// The whole query in integer form, in every lane: the high and low bytes of Q packed four to a
// word in dimension order (like the codes), t, and the bound's slack.
template <int D>
struct IntegerQuery {
  int high[D / 4], low[D / 4];
  float step;   // t
  float slack;  // (t 127 d + ||q||_1) / 2, widened by kScreenSlack
};

// Builds it from each lane's slice q (dims [lane * L, +L), L = D / 32).
template <int D, int L>
__device__ __forceinline__ IntegerQuery<D> integer_query(const float (&q)[L], int lane) {
  float largest = 0.f, l1 = 0.f;
#pragma unroll
  for (int i = 0; i < L; ++i) {
    largest = fmaxf(largest, fabsf(q[i]));
    l1 += fabsf(q[i]);
  }
  largest = warp_max(largest);
  IntegerQuery<D> iq;
  iq.step = largest / kQueryLevels;
  iq.slack = kScreenSlack * (iq.step * 127.f * D + warp_sum(l1));
  // This lane's L bytes of each, packed (two lanes share a word at L = 2).
  constexpr int kWords = L < 4 ? 1 : L / 4;
  uint32_t high[kWords] = {}, low[kWords] = {};
#pragma unroll
  for (int i = 0; i < L; ++i) {
    const int level = iq.step > 0.f ? __float2int_rn(q[i] / iq.step) : 0;
    const int clamped = max(-kQueryLevels, min(kQueryLevels, level));
    const int h = (clamped + 128) >> 8;  // floor: the low byte stays within [-128, 127]
    const int shift = 8 * ((lane * L + i) % 4);
    high[i / 4] |= (static_cast<uint32_t>(h) & 0xFFu) << shift;
    low[i / 4] |= (static_cast<uint32_t>(clamped - 256 * h) & 0xFFu) << shift;
  }
#pragma unroll
  for (int g = 0; g < D / 4; ++g) {
    if constexpr (L == 2) {
      iq.high[g] =
          __shfl_sync(0xffffffffu, high[0], 2 * g) | __shfl_sync(0xffffffffu, high[0], 2 * g + 1);
      iq.low[g] =
          __shfl_sync(0xffffffffu, low[0], 2 * g) | __shfl_sync(0xffffffffu, low[0], 2 * g + 1);
    } else {
      iq.high[g] = __shfl_sync(0xffffffffu, high[g % kWords], g / kWords);
      iq.low[g] = __shfl_sync(0xffffffffu, low[g % kWords], g / kWords);
    }
  }
  return iq;
}

// Codes lie in tiles of 32 rows: piece p (16 bytes, dims [16 p, 16 p + 16)) of row r sits at
// code_offset(r, p). One warp-wide load of a piece of a tile (lane j: row j) is then 512
// contiguous bytes, so each lane streams its own row straight into registers: no staging through
// shared memory, and no cross-lane reduction.
inline constexpr int kCodeTileRows = 32;
template <int D>
__host__ __device__ constexpr size_t code_offset(size_t row, int piece) {
  return row / kCodeTileRows * kCodeTileRows * D + size_t(piece) * 16 * kCodeTileRows +
         row % kCodeTileRows * 16;
}

// Writes `count` row-major rows of D codes as rows [first, first + count) of a tiled array. One
// thread per 16-byte piece.
template <int D>
__global__ void tile_codes_kernel(const int8_t* __restrict__ rows, int count, size_t first,
                                  int8_t* __restrict__ tiled) {
  constexpr int kPieces = D / 16;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(count) * kPieces) return;
  const int64_t row = i / kPieces;
  const int piece = int(i % kPieces);
  *reinterpret_cast<int4*>(tiled + code_offset<D>(first + row, piece)) =
      *reinterpret_cast<const int4*>(rows + row * D + piece * 16);
}

// One tile as a lane sees it: its row's D codes and scale.
template <int D>
struct CodeBatch {
  int4 piece[D / 16];
  float scale;
};

// Loads the tile at `row` (a multiple of 32). Whole tiles of codes and scales are allocated, so
// lanes past the head's last row read memory that exists (their bounds are discarded). Streaming
// loads: a layer's codes are read once per search.
template <int D>
__device__ __forceinline__ void load_batch(CodeBatch<D>& batch, const CodeView& view, int row,
                                           int lane) {
  const int4* tile = reinterpret_cast<const int4*>(view.codes + size_t(row) * D);
#pragma unroll
  for (int p = 0; p < D / 16; ++p) batch.piece[p] = __ldcs(tile + p * kCodeTileRows + lane);
  batch.scale = __ldcs(view.scales + row + lane);
}

// Q . c of one lane's row, exact (an int32 sum); as a float, rounded only past 2^24.
template <int D>
__device__ __forceinline__ float row_code_dot(const IntegerQuery<D>& q, const CodeBatch<D>& b) {
  int high = 0, low = 0;
#pragma unroll
  for (int p = 0; p < D / 16; ++p) {
    const int4 c = b.piece[p];
    high = __dp4a(c.x, q.high[4 * p], high);
    high = __dp4a(c.y, q.high[4 * p + 1], high);
    high = __dp4a(c.z, q.high[4 * p + 2], high);
    high = __dp4a(c.w, q.high[4 * p + 3], high);
    low = __dp4a(c.x, q.low[4 * p], low);
    low = __dp4a(c.y, q.low[4 * p + 1], low);
    low = __dp4a(c.z, q.low[4 * p + 2], low);
    low = __dp4a(c.w, q.low[4 * p + 3], low);
  }
  return static_cast<float>(256 * high + low);
}

// Pass 1, like select_chunk_kernel but over codes: block (chunk, query, head) lists the 32 rows of
// its chunk with the highest bounds, as ascending sort keys of (bound, position). Its chunk is
// every (chunks * kSelectWarps)-th tile, warp w starting at tile chunk * kSelectWarps + w. Up to
// d = 128 each warp loads its next tile before scoring the current one; at d = 256 the query
// alone takes 128 registers, so it relies on the other warps to hide the loads.
template <int D>
__global__ void __launch_bounds__(kSelectWarps * 32)
    screen_chunk_kernel(const __grid_constant__ CodeViews views, const float* __restrict__ queries,
                        int queries_per_head, int chunks, uint64_t* __restrict__ lists) {
  constexpr int L = D / 32;
  constexpr bool kPrefetch = D <= 128;
  const int chunk = blockIdx.x, query = blockIdx.y, head = blockIdx.z;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const CodeView view = views.heads[head];
  __shared__ uint64_t warp_lists[kSelectWarps][32];
  let_dependent_grid_launch();

  const int stride = chunks * kSelectWarps * kCodeTileRows;
  int row = (chunk * kSelectWarps + warp) * kCodeTileRows;
  CodeBatch<D> next;
  if (kPrefetch && row < view.n) load_batch<D>(next, view, row, lane);  // in flight meanwhile

  float q_reg[L];
  load_query_slice<L>(queries, head, queries_per_head, query, lane, q_reg);
  const IntegerQuery<D> iq = integer_query<D, L>(q_reg, lane);
  WarpTopk topk(kSelectK);
  for (; row < view.n; row += stride) {
    CodeBatch<D> batch;
    if constexpr (kPrefetch) {
      batch = next;
      if (row + stride < view.n) load_batch<D>(next, view, row + stride, lane);
    } else {
      load_batch<D>(batch, view, row, lane);
    }
    const float bound = batch.scale * (iq.step * row_code_dot<D>(iq, batch) + iq.slack);
    topk.push(row + lane < view.n ? sort_key(bound, row + lane) : kEmptySlot, lane);
  }
  block_merge<kSelectWarps>(topk, warp_lists, warp, lane);
  if (warp == 0) {
    lists[((static_cast<size_t>(head) * queries_per_head + query) * chunks + chunk) * 32 + lane] =
        topk.best;
  }
}

// The bound of a list's last (32nd) entry, or -inf when the list is not full.
__device__ __forceinline__ float last_bound(uint64_t list) {
  const uint64_t last = __shfl_sync(0xffffffffu, list, 31);
  return last == kEmptySlot ? -INFINITY : score_of(last);
}

// Exact fp16 scores of up to 32 rows of a head at `position` (one per lane, -1 for none), as sort
// keys: the same per-lane sums and reduction as select_chunk_kernel, so the same bits. The head
// has a row 0; -1 reads it, unconditionally, so that all 32 loads are in flight at once.
template <int L>
__device__ __forceinline__ uint64_t rescore(const float (&q)[L], const __half* keys, int position,
                                            int lane) {
  constexpr int D = 32 * L;
  Lanes<__half, L> raw[32];
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    const int row = __shfl_sync(0xffffffffu, position, j);
    raw[j] = *reinterpret_cast<const Lanes<__half, L>*>(
        keys + static_cast<size_t>(max(row, 0)) * D + lane * L);
  }
  float part[32];
  slice_dots<__half, L, 32>(
      q, raw, 0, 32, [](float(&)[L], int) {}, part);
  reduce_scatter<16>(part, lane);
  return position >= 0 ? sort_key(part[0], position) : kEmptySlot;
}

// The exact scan the screened pass falls back on: block-wide top k of all of the head's rows.
template <int L, int kWarps>
__device__ __forceinline__ uint64_t exact_scan(const float (&q)[L], const HeadView& view, int k,
                                               uint64_t (*warp_lists)[32], int warp, int lane) {
  constexpr int D = 32 * L;
  WarpTopk topk(k);
  for (int row = warp * 32; row < view.n; row += kWarps * 32) {
    const int count = min(32, view.n - row);
    const float s = warp_dot32<__half, L, kSharedRowsInFlight>(
        q, view.keys + static_cast<size_t>(row) * D, count, lane, [](float(&)[L], int) {});
    topk.push(lane < count ? sort_key(s, row + lane) : kEmptySlot, lane);
  }
  block_merge<kWarps>(topk, warp_lists, warp, lane);
  return topk.best;  // warp 0's holds the block's
}

// Pass 2. Block (query, head) rescores the rows of the chunks' lists with the fp16 keys (warp w
// takes lists w, w + kRescoreWarps, ...), keeps the exact top k and writes it if the proof holds;
// else it scans the head and counts one fallback. out[(head * queries + query) * k + rank].
// Every listed row is rescored at once, one list per warp: the rows are few (32 per chunk) and
// independent, so the block's critical path is one list load, one row load and a few sorting
// networks, where choosing the best bounds first would chain merges over the lists.
template <int D>
__global__ void __launch_bounds__(kRescoreWarps * 32)
    rescore_merge_kernel(const __grid_constant__ HeadViews views, const float* __restrict__ queries,
                         const uint64_t* __restrict__ lists, int queries_per_head, int chunks,
                         int k, int64_t* __restrict__ out_blocks, float* __restrict__ out_scores,
                         unsigned long long* __restrict__ fallbacks) {
  constexpr int L = D / 32;
  const int query = blockIdx.x, head = blockIdx.y;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const HeadView view = views.heads[head];
  __shared__ uint64_t warp_lists[kRescoreWarps][32];
  __shared__ float warp_floors[kRescoreWarps];
  __shared__ bool proven;
  const size_t at = static_cast<size_t>(head) * queries_per_head + query;
  float q_reg[L];
  load_query_slice<L>(queries, head, queries_per_head, query, lane, q_reg);
  let_dependent_grid_launch();
  wait_for_prerequisite_grid();

  // `floor` bounds every row this warp did not rescore: those past a full list's 32nd entry, and
  // those of a list whose best bound is below the warp's k-th exact score so far (a lower bound
  // on the final k-th: none of them can enter the top k).
  const uint64_t* mine = lists + at * chunks * 32;
  WarpTopk best(k);
  float floor = -INFINITY;
  for (int c = warp; c < chunks; c += kRescoreWarps) {
    const uint64_t list = mine[c * 32 + lane];
    floor = fmaxf(floor, last_bound(list));
    const uint64_t first = __shfl_sync(0xffffffffu, list, 0);
    if (first == kEmptySlot) continue;
    if (best.kth != kEmptySlot && score_of(first) < score_of(best.kth)) {
      floor = fmaxf(floor, score_of(first));
      continue;
    }
    const int position = list == kEmptySlot ? -1 : static_cast<int>(uint32_t(list));
    best.push(rescore<L>(q_reg, view.keys, position, lane), lane);
  }
  // Then a tree: at each level the upper half of the warps hands its list to the lower half.
  for (int half = kRescoreWarps / 2; half > 0; half /= 2) {
    if (warp >= half && warp < 2 * half) {
      warp_lists[warp][lane] = best.best;
      if (lane == 0) warp_floors[warp] = floor;
    }
    __syncthreads();
    if (warp < half) {
      best.merge_sorted(warp_lists[warp + half][lane], lane);
      floor = fmaxf(floor, warp_floors[warp + half]);
    }
  }
  if (warp == 0) {
    const uint64_t kth = __shfl_sync(0xffffffffu, best.best, k - 1);
    const bool nothing_unscored = floor == -INFINITY;
    if (lane == 0) proven = nothing_unscored || (kth != kEmptySlot && score_of(kth) > floor);
  }
  __syncthreads();
  uint64_t result = best.best;
  if (!proven) {
    result = exact_scan<L, kRescoreWarps>(q_reg, view, k, warp_lists, warp, lane);
    if (threadIdx.x == 0) atomicAdd(fallbacks, 1ull);
  }
  if (warp == 0 && lane < k) {
    out_blocks[at * k + lane] = result == kEmptySlot ? -1 : view.block_nos[uint32_t(result)];
    out_scores[at * k + lane] = result == kEmptySlot ? -INFINITY : score_of(result);
  }
}

}  // namespace lmkv::kernels
