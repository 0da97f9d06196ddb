// Landmark attention kernels: the paper's grouped softmax over retrieved blocks plus the causal
// local window, for every (query token, query head) row of a layer at once. Decode (one token) and
// chunked prefill (many) are the same kernels; only the row count differs.
//
// The grouped softmax factors into a flat online softmax over "items": a local-window token is an
// item with score s*q.k and value v; a retrieved block is an item with score s*q.l (its landmark)
// and value o_b, the block's own softmax-weighted mean of its values. One warp evaluates items one
// after another with online softmax (nothing materialised), scoring 32 keys at a time (one per
// lane); a row's items are spread over `parts` warps, and the last of them to finish merges their
// partial states.
// Heads of d = 64, 128 or 256: each lane holds d/32 consecutive dimensions, so a key row is one
// coalesced warp load.
//
// Free of allocation and I/O: the host side (attention/gpu_attention.cu) owns memory and dispatch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cuda/atomic>

#include "index/kernels/warp_dot.cuh"
#include "kvstore/dependent_launch.cuh"

namespace lmkv {
namespace kernels {

enum RopeKind : int32_t { kRopeNone = 0, kRopeStored = 1, kRopeRemapped = 2 };

struct AttentionParams {
  int32_t rows = 0;   // tokens * heads; row = token * heads + head
  int32_t heads = 0;  // query heads
  int32_t group = 1;  // query heads per KV head
  int32_t tokens = 0;
  int32_t block_tokens = 0;                // B
  int32_t window_tokens = 0;               // per KV head; the last `tokens` are the chunk's own
  int32_t window_stride = 0;               // window row stride in tokens (>= window_tokens)
  int32_t local_chunk = 0;                 // window tokens per item
  const void* queries = nullptr;           // [tokens][heads][d]
  const void* window_keys = nullptr;       // [kv_heads][window_stride][d]
  const void* window_values = nullptr;     // [kv_heads][window_stride][d]
  const char* slot_base = nullptr;         // block payload of slot s: slot_base + s * payload_bytes
  int64_t payload_bytes = 0;               // K[B][d] then V[B][d]
  const int32_t* indptr = nullptr;         // [rows + 1]: row r's blocks are entries indptr[r]..
  const int32_t* slots = nullptr;          // [entries]
  const float* landmark_scores = nullptr;  // [entries]: q.l, unscaled
  const int64_t* block_nos = nullptr;      // [entries]: for stored-position RoPE
  float scale = 0;
  int32_t rope = kRopeNone;
  float rope_theta = 10000.f;
  int64_t window_start = 0;       // position of window token 0
  int32_t parts = 1;              // warps per row
  float* partial = nullptr;       // [rows][parts][d + 8] when parts > 1: acc[d], m, z (pad)
  int32_t* parts_done = nullptr;  // [rows] when parts > 1: zero between launches
  float* out = nullptr;           // [tokens][heads][d]
};

// Rotary encoding (rotate-half pairing: dimension i with i + d/2, frequency theta^(-2i/d)).
// Lane l holds dims [l*L, l*L+L); its partners live in lane l ^ 16. Angles are reduced in double:
// at a million positions a float angle would be off by whole hundredths of a radian.
template <int L>
struct Rope {
  double inv_freq[L];
  bool low;

  // The frequencies only where RoPE is on: double exp and log cost hundreds of instructions on
  // a decode warp's critical path.
  __device__ Rope(float theta, int lane, bool used) : low(lane < 16) {
    constexpr int kDim = 32 * L;
#pragma unroll
    for (int i = 0; i < L; ++i) {
      const int pair = (lane % 16) * L + i;  // index within the first half
      inv_freq[i] = used ? exp(-2.0 * pair / kDim * log(double(theta))) : 0.0;
    }
  }

  __device__ __forceinline__ void rotate(float (&x)[L], int64_t position) const {
#pragma unroll
    for (int i = 0; i < L; ++i) {
      const float partner = __shfl_xor_sync(0xffffffffu, x[i], 16);
      // Reduced to [-pi, pi), where the fast intrinsic is accurate to 2^-21.
      double angle = double(position) * inv_freq[i];
      angle -= floor(angle * (0.5 / M_PI) + 0.5) * (2.0 * M_PI);
      float s, c;
      __sincosf(float(angle), &s, &c);
      x[i] = low ? x[i] * c - partner * s : x[i] * c + partner * s;
    }
  }
};

// Online softmax state: running max m, sum z of exp(score - m), and acc of exp(score - m) * value.
template <int L>
struct Softmax {
  float m = -INFINITY;
  float z = 0;
  float acc[L] = {};

  __device__ __forceinline__ void add(float score, const float (&value)[L]) {
    if (score == -INFINITY) return;  // weighs nothing (exp(-inf - -inf) would be NaN)
    if (score > m) {
      const float c = __expf(m - score);
      z = z * c + 1.f;
#pragma unroll
      for (int i = 0; i < L; ++i) acc[i] = fmaf(acc[i], c, value[i]);
      m = score;
    } else {
      const float p = __expf(score - m);
      z += p;
#pragma unroll
      for (int i = 0; i < L; ++i) acc[i] = fmaf(p, value[i], acc[i]);
    }
  }
};

constexpr int kTile = 32;  // tokens a warp scores at once, one per lane

// Scores of up to 32 consecutive key rows against q (warp_dot32): lane j ends with row j's dot
// product (-inf past `count`). With kRotate, row j is first rotated to position position0 + j (a
// template flag: the rotation's body would keep the plain loop from unrolling, and the partial
// sums from staying in registers).
template <typename T, int L, bool kRotate, int N = kRowsInFlight<L>>
__device__ __forceinline__ float tile_scores(const float (&q)[L], const T* keys, int count,
                                             int lane, const Rope<L>& rope, int64_t position0) {
  return warp_dot32<T, L, N>(q, keys, count, lane, [&](float(&k)[L], int j) {
    if (kRotate) rope.rotate(k, position0 + j);
  });
}

// Adds a tile's rows (lane j holding row j's score, `values` its value rows, N loaded at a time)
// to `state`.
template <typename T, int L, int N = kRowsInFlight<L>>
__device__ __forceinline__ void tile_accumulate(Softmax<L>& state, float score, const T* values,
                                                int count, int lane) {
  const float m = fmaxf(state.m, warp_max(score));
  const float p = lane < count ? __expf(score - m) : 0.f;
  const float p_sum = warp_sum(p);
  const float c = __expf(state.m - m);  // 0 while the state is empty (m = -inf)
  state.z = state.z * c + p_sum;
#pragma unroll
  for (int i = 0; i < L; ++i) state.acc[i] *= c;
  state.m = m;
#pragma unroll
  for (int first = 0; first < kTile; first += N) {
    Lanes<T, L> raw[N];
    load_row_slices<T, L, N>(values, first, count, lane, raw);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, first + j);
      if (first + j < count) {
        float v[L];
        to_floats(raw[j], v);
#pragma unroll
        for (int i = 0; i < L; ++i) state.acc[i] = fmaf(pj, v[i], state.acc[i]);
      }
    }
  }
}

// Row `row`'s query, rotated to its own position when RoPE is on and scaled, in this lane's slice.
template <typename T, int L>
__device__ __forceinline__ void load_query(const AttentionParams& p, int row, int64_t own,
                                           const Rope<L>& rotary, int lane, float (&q)[L]) {
  load_lanes<T, L>(static_cast<const T*>(p.queries) + int64_t(row) * 32 * L + lane * L, q);
  if (p.rope != kRopeNone) rotary.rotate(q, p.window_start + own);
#pragma unroll
  for (int i = 0; i < L; ++i) q[i] *= p.scale;
}

// Position of the first token of a row's retrieved block `item` (of `blocks`), entry e: its stored
// position, or remapped, in entry order, right before the window.
__device__ __forceinline__ int64_t block_position(const AttentionParams& p, int e, int item,
                                                  int blocks) {
  return p.rope == kRopeStored ? p.block_nos[e] * p.block_tokens
                               : p.window_start - int64_t(blocks - item) * p.block_tokens;
}

// Adds one retrieved block to the main group: the block's own softmax over its B tokens gives
// o_b, which enters with the landmark's score. tile_score(j, count) returns this lane's score of
// key j + lane (-inf at or past count); the values `v` (global or shared memory) are loaded N rows
// at a time.
template <typename T, int L, int N, typename TileScore>
__device__ __forceinline__ void add_scored_block(Softmax<L>& main, const AttentionParams& p,
                                                 const T* v, float landmark_score, int lane,
                                                 TileScore tile_score) {
  constexpr int D = 32 * L;
  Softmax<L> inner;
  for (int j = 0; j < p.block_tokens; j += kTile) {
    const int count = min(kTile, p.block_tokens - j);
    tile_accumulate<T, L, N>(inner, tile_score(j, count), v + int64_t(j) * D, count, lane);
  }
  float block_value[L];
#pragma unroll
  for (int i = 0; i < L; ++i) block_value[i] = inner.acc[i] / inner.z;
  main.add(landmark_score * p.scale, block_value);
}

// add_scored_block with keys `k` scored against q here (rotated first when RoPE is on).
template <typename T, int L, int N = kRowsInFlight<L>>
__device__ __forceinline__ void add_block(Softmax<L>& main, const AttentionParams& p,
                                          const float (&q)[L], const T* k, const T* v,
                                          float landmark_score, const Rope<L>& rotary,
                                          int64_t position0, int lane) {
  constexpr int D = 32 * L;
  const bool rope = p.rope != kRopeNone;
  add_scored_block<T, L, N>(main, p, v, landmark_score, lane, [&](int j, int count) {
    const T* keys = k + int64_t(j) * D;
    return rope ? tile_scores<T, L, true, N>(q, keys, count, lane, rotary, position0 + j)
                : tile_scores<T, L, false, N>(q, keys, count, lane, rotary, position0 + j);
  });
}

// Slot s's payload, K[B][D] then V[B][D], in the GPU tier.
template <typename T>
__device__ __forceinline__ const T* slot_payload(const AttentionParams& p, int32_t slot) {
  return reinterpret_cast<const T*>(p.slot_base + int64_t(slot) * p.payload_bytes);
}

// Adds a row's retrieved block `item` of `blocks` (page-table entry first + item) whose payload is
// at `k` (global or shared memory), N rows loaded at a time.
template <typename T, int L, int N = kRowsInFlight<L>>
__device__ __forceinline__ void add_entry(Softmax<L>& main, const AttentionParams& p,
                                          const float (&q)[L], const T* k, int first, int item,
                                          int blocks, const Rope<L>& rotary, int lane) {
  const int e = first + item;
  add_block<T, L, N>(main, p, q, k, k + int64_t(p.block_tokens) * 32 * L, p.landmark_scores[e],
                     rotary, block_position(p, e, item, blocks), lane);
}

// Adds window tokens [j0, j1) of KV head g to the main group directly (N rows loaded at a time).
template <typename T, int L, int N = kRowsInFlight<L>>
__device__ __forceinline__ void add_window(Softmax<L>& main, const AttentionParams& p,
                                           const float (&q)[L], int g, int j0, int j1,
                                           const Rope<L>& rotary, int lane) {
  constexpr int D = 32 * L;
  const T* keys =
      static_cast<const T*>(p.window_keys) + int64_t(g) * p.window_stride * D + int64_t(j0) * D;
  const T* values =
      static_cast<const T*>(p.window_values) + int64_t(g) * p.window_stride * D + int64_t(j0) * D;
  const int64_t position0 = p.window_start + j0;
  const float score = p.rope != kRopeNone
                          ? tile_scores<T, L, true, N>(q, keys, j1 - j0, lane, rotary, position0)
                          : tile_scores<T, L, false, N>(q, keys, j1 - j0, lane, rotary, position0);
  tile_accumulate<T, L, N>(main, score, values, j1 - j0, lane);
}

// Writes a finished row's output (this lane's slice).
template <int L>
__device__ __forceinline__ void store_row(const AttentionParams& p, int row, const Softmax<L>& s,
                                          int lane) {
  float* out = p.out + int64_t(row) * 32 * L + lane * L;
#pragma unroll
  for (int i = 0; i < L; ++i) out[i] = s.acc[i] / s.z;
}

// Floats per partial state: acc[D], m, z, and padding that keeps every slice of acc aligned for
// vector loads (L floats per lane, up to 32 bytes).
inline constexpr int kPartialPad = 8;
template <int D>
inline constexpr int kPartialStride = D + kPartialPad;

// A lane's L floats of a partial state, through L2 (see merge_parts).
template <int L>
__device__ __forceinline__ void load_slice_cg(const float* at, float (&v)[L]) {
  if constexpr (L == 2) {
    const float2 x = __ldcg(reinterpret_cast<const float2*>(at));
    v[0] = x.x;
    v[1] = x.y;
  } else {
#pragma unroll
    for (int k = 0; k < L / 4; ++k) {
      const float4 x = __ldcg(reinterpret_cast<const float4*>(at) + k);
      v[4 * k] = x.x;
      v[4 * k + 1] = x.y;
      v[4 * k + 2] = x.z;
      v[4 * k + 3] = x.w;
    }
  }
}

// Parts whose partial states a merging lane loads at once: one memory round trip per batch.
template <int L>
inline constexpr int kMergeBatch = L <= 4 ? 16 : 8;

// Merges row `row`'s partial states into its output, in one warp (this lane's slice of the
// dimensions). Parts without items hold m = -inf, z = 0 and weigh nothing. The partial states
// were written by other blocks of this launch: read through L2 (__ldcg), never a stale L1 line.
// Batches of parts are folded in with a running maximum, so a batch's (m, z) pairs and its
// slices of acc are all in flight at once.
template <int L>
__device__ __noinline__ void merge_parts(const AttentionParams& p, int row, int lane) {
  constexpr int D = 32 * L, kStride = kPartialStride<D>, kBatch = kMergeBatch<L>;
  const float* partial = p.partial + int64_t(row) * p.parts * kStride;
  float m = -INFINITY, z = 0, acc[L] = {};
  for (int base = 0; base < p.parts; base += kBatch) {
    const int count = min(kBatch, p.parts - base);
    // Lane j < count holds part base + j's (m, z); every lane loads its slice of each part.
    const float2 mz =
        lane < count
            ? __ldcg(reinterpret_cast<const float2*>(partial + (base + lane) * kStride + D))
            : make_float2(-INFINITY, 0.f);
    float slice[kBatch][L];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      if (j < count) load_slice_cg<L>(partial + (base + j) * kStride + lane * L, slice[j]);
    }
    const float batch_m = warp_max(mz.y == 0.f ? -INFINITY : mz.x);
    const float new_m = fmaxf(m, batch_m);
    if (new_m == -INFINITY) continue;   // every part so far is empty
    const float c = __expf(m - new_m);  // 0 while nothing was merged (m = -inf)
    const float w = mz.y == 0.f ? 0.f : __expf(mz.x - new_m);
    z = z * c + warp_sum(mz.y * w);
#pragma unroll
    for (int i = 0; i < L; ++i) acc[i] *= c;
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const float wj = __shfl_sync(0xffffffffu, w, j);
      if (j < count) {
#pragma unroll
        for (int i = 0; i < L; ++i) acc[i] = fmaf(slice[j][i], wj, acc[i]);
      }
    }
    m = new_m;
  }
  float* out = p.out + int64_t(row) * D + lane * L;
#pragma unroll
  for (int i = 0; i < L; ++i) out[i] = acc[i] / z;
}

// Warps per block of landmark_attention_parts.
inline constexpr int kPartsWarps = 4;

// One warp per (row, part): the part's items of the row, then its partial state (or, with one
// part, the row's output). The last of a row's warps to finish merges the row: no second launch,
// whose latency a decode step would wait on.
template <typename T, int D>
__global__ void __launch_bounds__(kPartsWarps * 32)
    landmark_attention_parts(const __grid_constant__ AttentionParams p) {
  constexpr int L = D / 32;
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  let_dependent_grid_launch();
  wait_for_prerequisite_grid();
  if (warp >= int64_t(p.rows) * p.parts) return;
  const int row = int(warp / p.parts), part = int(warp % p.parts);
  const int t = row / p.heads, h = row % p.heads, g = h / p.group;

  // Query t is window token (window_tokens - tokens + t) and sees the window up to itself.
  const int own = p.window_tokens - p.tokens + t;
  const Rope<L> rotary(p.rope_theta, lane, p.rope != kRopeNone);
  float q[L];
  load_query<T, L>(p, row, own, rotary, lane, q);

  const int first = p.indptr[row];
  const int blocks = p.indptr[row + 1] - first;
  const int visible = own + 1;
  const int items = blocks + (visible + p.local_chunk - 1) / p.local_chunk;

  Softmax<L> main;
  for (int item = part; item < items; item += p.parts) {
    if (item < blocks) {
      add_entry<T, L>(main, p, q, slot_payload<T>(p, p.slots[first + item]), first, item, blocks,
                      rotary, lane);
    } else {
      const int j0 = (item - blocks) * p.local_chunk;
      add_window<T, L>(main, p, q, g, j0, min(visible, j0 + p.local_chunk), rotary, lane);
    }
  }

  if (p.parts == 1) return store_row<L>(p, row, main, lane);
  float* partial = p.partial + warp * kPartialStride<D>;
  if (lane == 0) {
    partial[D] = main.m;
    partial[D + 1] = main.z;
  }
#pragma unroll
  for (int i = 0; i < L; ++i) partial[lane * L + i] = main.acc[i];
  // Publish this part, then count it: the warp barrier orders every lane's writes before lane
  // 0's release fence and count; the warp that counts last acquires, and its barrier passes that
  // on to every lane before they read the other parts.
  __syncwarp();
  int done = 0;
  if (lane == 0) {
    cuda::atomic_thread_fence(cuda::memory_order_release, cuda::thread_scope_device);
    done = atomicAdd(p.parts_done + row, 1);
  }
  done = __shfl_sync(0xffffffffu, done, 0);
  if (done != p.parts - 1) return;
  if (lane == 0) cuda::atomic_thread_fence(cuda::memory_order_acquire, cuda::thread_scope_device);
  __syncwarp();
  merge_parts<L>(p, row, lane);
  if (lane == 0) p.parts_done[row] = 0;  // ready for the next launch
}

}  // namespace kernels
}  // namespace lmkv
