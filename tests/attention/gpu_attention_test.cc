// The landmark attention kernels against the CPU grouped-softmax reference (double), on fresh
// random inputs, outputs poisoned with NaN before every run.
//
// Error bounds, as ||gpu - ref|| / ||ref|| over the whole output:
// - against the reference fed the same fp16/bf16-rounded inputs: 1e-4 (what fp32 accumulation
//   and fast exp cost; a dropped token or block costs 1e-2 or more);
// - against the reference fed the unrounded float inputs: 1e-2 for fp16, 6e-2 for bf16 (the
//   rounding of inputs to 11 and 8 significant bits).
#include "attention/gpu_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "attention/block_selection.h"
#include "attention/grouped_softmax.h"
#include "attention/rope.h"
#include "kvstore/cuda_util.h"
#include "test_util.h"

#ifdef LMKV_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

namespace lmkv {
namespace {

#ifdef LMKV_WITH_CUDA

constexpr double kKernelBound = 1e-4;

float round_to(DType dtype, float x) {
  return dtype == DType::kFloat16 ? __half2float(__float2half(x))
                                  : __bfloat162float(__float2bfloat16(x));
}

// Float values to device memory in `dtype`.
DeviceBuffer upload(const std::vector<float>& values, DType dtype) {
  std::vector<uint16_t> raw(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kFloat16) {
      const __half h = __float2half(values[i]);
      std::memcpy(&raw[i], &h, 2);
    } else {
      const __nv_bfloat16 b = __float2bfloat16(values[i]);
      std::memcpy(&raw[i], &b, 2);
    }
  }
  DeviceBuffer buffer;
  EXPECT_TRUE(buffer.reserve(std::max<size_t>(raw.size() * 2, 16)).ok());
  EXPECT_EQ(cudaMemcpy(buffer.get(), raw.data(), raw.size() * 2, cudaMemcpyHostToDevice),
            cudaSuccess);
  return buffer;
}

template <typename T>
DeviceBuffer upload_plain(const std::vector<T>& values) {
  DeviceBuffer buffer;
  EXPECT_TRUE(buffer.reserve(std::max<size_t>(values.size() * sizeof(T), 16)).ok());
  EXPECT_EQ(
      cudaMemcpy(buffer.get(), values.data(), values.size() * sizeof(T), cudaMemcpyHostToDevice),
      cudaSuccess);
  return buffer;
}

double relative_error(const std::vector<float>& got, const std::vector<double>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return std::sqrt(diff / norm);
}

struct Shape {
  DType dtype = DType::kFloat16;
  uint32_t dim = 128, B = 16, heads = 4, kv_heads = 2;
  uint32_t tokens = 1, window = 9;
  size_t blocks = 12;  // per KV head
  uint32_t k = 4;      // per row; >= blocks means all
  RopeOptions rope;
  int64_t window_start = 0;
  // kPerChunk: every row of a query head gets the blocks chosen for the whole chunk (offload mode).
  Retrieval retrieval = Retrieval::kPerToken;
  bool uneven = false;  // row r keeps only its first r % (k + 1) entries
  bool first_unseen =
      false;  // each row's first entry scores -inf (an approximate search missed it)
};

// A layer's inputs in float: queries [tokens][heads][d], window K/V [kv_heads][window][d], blocks
// K/V [kv_heads][blocks][B][d], landmarks [kv_heads][blocks][d].
struct Inputs {
  std::vector<float> queries, wkeys, wvalues, keys, values, landmarks;
};

Inputs random_inputs(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  auto fill = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = normal(rng);
    return v;
  };
  Inputs in;
  in.queries = fill(size_t{s.tokens} * s.heads * s.dim);
  in.wkeys = fill(size_t{s.kv_heads} * s.window * s.dim);
  in.wvalues = fill(in.wkeys.size());
  in.keys = fill(s.kv_heads * s.blocks * s.B * s.dim);
  in.values = fill(in.keys.size());
  in.landmarks = fill(s.kv_heads * s.blocks * s.dim);
  return in;
}

// A layer's inputs (kept in float, and rounded to the dtype), its page table with the top-k
// blocks of every row, and the kernels' output.
class Case {
 public:
  Case(const Shape& s, uint64_t seed) : Case(s, random_inputs(s, seed)) {}
  Case(const Shape& s, Inputs in) : s_(s), original_(std::move(in)) {
    const Inputs& o = original_;
    for (const auto* v : {&o.queries, &o.wkeys, &o.wvalues, &o.keys, &o.values, &o.landmarks}) {
      std::vector<float> r = *v;
      for (auto& x : r) x = round_to(s.dtype, x);
      rounded_.push_back(std::move(r));
    }
    select();
  }

  // The same layer with every query head given its own copy of its KV head's data.
  Case expanded() const {
    Shape e = s_;
    e.kv_heads = s_.heads;
    const uint32_t group = s_.heads / s_.kv_heads;
    Inputs in;
    in.queries = original_.queries;
    auto copy_per_head = [&](const std::vector<float>& from, std::vector<float>& to) {
      const size_t per_head = from.size() / s_.kv_heads;
      for (uint32_t h = 0; h < s_.heads; ++h) {
        to.insert(to.end(), from.begin() + (h / group) * per_head,
                  from.begin() + (h / group + 1) * per_head);
      }
    };
    copy_per_head(original_.wkeys, in.wkeys);
    copy_per_head(original_.wvalues, in.wvalues);
    copy_per_head(original_.keys, in.keys);
    copy_per_head(original_.values, in.values);
    copy_per_head(original_.landmarks, in.landmarks);
    return Case(e, std::move(in));
  }

  // Decode of the chunk's token t alone: one query, the window cut right after its token.
  Case decode_step(uint32_t t) const {
    Shape d = s_;
    d.tokens = 1;
    d.window = s_.window - s_.tokens + t + 1;
    const size_t row = size_t{s_.heads} * s_.dim;
    Inputs in = original_;
    in.queries.assign(original_.queries.begin() + t * row,
                      original_.queries.begin() + (t + 1) * row);
    in.wkeys.clear();
    in.wvalues.clear();
    for (uint32_t g = 0; g < s_.kv_heads; ++g) {
      const size_t from = size_t{g} * s_.window * s_.dim;
      in.wkeys.insert(in.wkeys.end(), original_.wkeys.begin() + from,
                      original_.wkeys.begin() + from + d.window * s_.dim);
      in.wvalues.insert(in.wvalues.end(), original_.wvalues.begin() + from,
                        original_.wvalues.begin() + from + d.window * s_.dim);
    }
    return Case(d, std::move(in));
  }

  // Runs the kernels on the rounded inputs, output poisoned first; rows_share_blocks is the
  // attention's staging hint.
  std::vector<float> run_gpu(bool rows_share_blocks = false) {
    const auto& r = rounded_;
    // Slot g * blocks + b holds KV head g's block b: K[B][d] then V[B][d].
    std::vector<float> arena;
    const size_t tensor = size_t{s_.B} * s_.dim;
    for (size_t slot = 0; slot < s_.kv_heads * s_.blocks; ++slot) {
      arena.insert(arena.end(), r[3].begin() + slot * tensor, r[3].begin() + (slot + 1) * tensor);
      arena.insert(arena.end(), r[4].begin() + slot * tensor, r[4].begin() + (slot + 1) * tensor);
    }
    DeviceBuffer q = upload(r[0], s_.dtype), wk = upload(r[1], s_.dtype),
                 wv = upload(r[2], s_.dtype), slots_arena = upload(arena, s_.dtype);
    DeviceBuffer indptr = upload_plain(indptr_), slots = upload_plain(slots_),
                 scores = upload_plain(scores_), block_nos = upload_plain(block_nos_);
    const size_t n_out = size_t{s_.tokens} * s_.heads * s_.dim;
    DeviceBuffer out;
    EXPECT_TRUE(out.reserve(n_out * sizeof(float)).ok());
    EXPECT_EQ(cudaMemset(out.get(), 0xFF, n_out * sizeof(float)), cudaSuccess);  // NaN

    GpuAttentionArgs a;
    a.tokens = s_.tokens;
    a.heads = s_.heads;
    a.kv_heads = s_.kv_heads;
    a.dim = s_.dim;
    a.block_tokens = s_.B;
    a.dtype = s_.dtype;
    a.queries = q.get();
    a.window_keys = wk.get();
    a.window_values = wv.get();
    a.window_tokens = s_.window;
    a.window_start = s_.window_start;
    a.slot_base = static_cast<const char*>(slots_arena.get());
    a.indptr = static_cast<const int32_t*>(indptr.get());
    a.slots = static_cast<const int32_t*>(slots.get());
    a.landmark_scores = static_cast<const float*>(scores.get());
    a.block_nos = static_cast<const int64_t*>(block_nos.get());
    a.max_blocks_per_row = max_row_;
    a.rows_share_blocks = rows_share_blocks;
    a.rope = s_.rope;
    a.out = static_cast<float*>(out.get());
    Status st = attention_.run(a, nullptr);
    EXPECT_TRUE(st.ok()) << st.to_string();
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<float> got(n_out);
    EXPECT_EQ(cudaMemcpy(got.data(), out.get(), n_out * sizeof(float), cudaMemcpyDeviceToHost),
              cudaSuccess);
    for (size_t i = 0; i < n_out; ++i) {
      if (!std::isfinite(got[i])) {
        ADD_FAILURE() << "output " << i << " left unwritten or not finite: " << got[i];
        break;
      }
    }
    return got;
  }

  // The grouped-softmax reference of every row over the same selection, on the rounded inputs or
  // the original ones, with RoPE applied to copies at the positions the kernels use.
  std::vector<double> reference(bool rounded) const {
    const Inputs& o = original_;
    const auto& in =
        rounded ? rounded_ : std::vector<std::vector<float>>{o.queries, o.wkeys,  o.wvalues,
                                                             o.keys,    o.values, o.landmarks};
    const uint32_t d = s_.dim, B = s_.B, group = s_.heads / s_.kv_heads;
    const double scale = 1.0 / std::sqrt(double(d));
    std::vector<double> out(size_t{s_.tokens} * s_.heads * d);
    for (uint32_t t = 0; t < s_.tokens; ++t) {
      for (uint32_t h = 0; h < s_.heads; ++h) {
        const uint32_t g = h / group, row = t * s_.heads + h;
        const int64_t own = s_.window - s_.tokens + t;
        std::vector<float> q(in[0].begin() + size_t{row} * d, in[0].begin() + size_t{row + 1} * d);
        std::vector<float> wk(in[1].begin() + size_t{g} * s_.window * d,
                              in[1].begin() + (size_t{g} * s_.window + own + 1) * d);
        const LocalWindow seen{size_t(own + 1), wk.data(),
                               in[2].data() + size_t{g} * s_.window * d};
        // This row's blocks, compacted in entry order so each can carry its own positions; an
        // entry scoring -inf weighs nothing and is left out.
        const int n = indptr_[row + 1] - indptr_[row];
        std::vector<int> kept;
        for (int i = 0; i < n; ++i) {
          if (scores_[indptr_[row] + i] != -INFINITY) kept.push_back(i);
        }
        std::vector<float> bk, bv, bl;
        std::vector<uint32_t> order;
        for (int i : kept) {
          const size_t slot = slots_[indptr_[row] + i];
          bk.insert(bk.end(), in[3].begin() + slot * B * d, in[3].begin() + (slot + 1) * B * d);
          bv.insert(bv.end(), in[4].begin() + slot * B * d, in[4].begin() + (slot + 1) * B * d);
          bl.insert(bl.end(), in[5].begin() + slot * d, in[5].begin() + (slot + 1) * d);
          order.push_back(uint32_t(order.size()));
        }
        if (s_.rope.mode != RopeMode::kNone) {
          const double theta = s_.rope.theta;
          EXPECT_TRUE(apply_rope(q.data(), d, s_.window_start + own, theta).ok());
          for (int64_t j = 0; j <= own; ++j) {
            EXPECT_TRUE(apply_rope(wk.data() + j * d, d, s_.window_start + j, theta).ok());
          }
          for (size_t c = 0; c < kept.size(); ++c) {
            const int i = kept[c];  // positions follow the entry's place among all n
            const int64_t first = s_.rope.mode == RopeMode::kStored
                                      ? block_nos_[indptr_[row] + i] * B
                                      : s_.window_start - int64_t(n - i) * B;
            for (uint32_t j = 0; j < B; ++j) {
              EXPECT_TRUE(apply_rope(bk.data() + (c * B + j) * d, d, first + j, theta).ok());
            }
          }
        }
        const HeadBlocks blocks{B, d, kept.size(), bk.data(), bv.data(), bl.data()};
        std::vector<double> o(d);
        EXPECT_TRUE(reference_row(q.data(), seen, blocks, order, kept, scale, row, o.data()).ok());
        std::copy(o.begin(), o.end(), out.begin() + size_t{row} * d);
      }
    }
    return out;
  }

  const Shape& shape() const { return s_; }

 private:
  // Per row: the top-k blocks of its KV head by the (rounded) query's landmark scores, or (offload
  // mode) the blocks chosen for its query head's whole chunk; then the uneven and unseen edits.
  void select() {
    const uint32_t d = s_.dim, group = s_.heads / s_.kv_heads;
    auto head_blocks = [&](uint32_t g) {
      return HeadBlocks{s_.B,
                        d,
                        s_.blocks,
                        rounded_[3].data() + size_t{g} * s_.blocks * s_.B * d,
                        rounded_[4].data() + size_t{g} * s_.blocks * s_.B * d,
                        rounded_[5].data() + size_t{g} * s_.blocks * d};
    };
    std::vector<std::vector<uint32_t>> chunk_blocks(s_.heads);
    if (s_.retrieval == Retrieval::kPerChunk) {
      for (uint32_t h = 0; h < s_.heads; ++h) {
        std::vector<float> queries;  // [tokens][d] of head h
        for (uint32_t t = 0; t < s_.tokens; ++t) {
          const float* q = rounded_[0].data() + (size_t{t} * s_.heads + h) * d;
          queries.insert(queries.end(), q, q + d);
        }
        auto chosen = select_blocks_per_chunk(queries.data(), s_.tokens, head_blocks(h / group),
                                              s_.k, 1.0 / std::sqrt(double(d)));
        ASSERT_TRUE(chosen.ok());
        chunk_blocks[h] = std::move(chosen).value();
      }
    }
    indptr_.push_back(0);
    for (uint32_t t = 0; t < s_.tokens; ++t) {
      for (uint32_t h = 0; h < s_.heads; ++h) {
        const uint32_t g = h / group, row = t * s_.heads + h;
        const HeadBlocks head = head_blocks(g);
        const float* q = rounded_[0].data() + size_t{row} * d;
        std::vector<uint32_t> blocks = chunk_blocks[h];
        if (s_.retrieval == Retrieval::kPerToken) {
          auto chosen = select_blocks_per_token(q, head, s_.k);
          ASSERT_TRUE(chosen.ok());
          blocks = std::move(chosen).value();
        }
        std::sort(blocks.begin(), blocks.end());  // entry order = block order (RoPE remapping)
        if (s_.uneven) blocks.resize(std::min<size_t>(blocks.size(), row % (s_.k + 1)));
        for (uint32_t b : blocks) {
          slots_.push_back(int32_t(g * s_.blocks + b));
          block_nos_.push_back(b);
          double score = 0;
          for (uint32_t i = 0; i < d; ++i) score += double(q[i]) * head.landmarks[b * d + i];
          const bool unseen = s_.first_unseen && b == blocks.front();
          scores_.push_back(unseen ? -INFINITY : float(score));
        }
        indptr_.push_back(int32_t(slots_.size()));
        max_row_ = std::max<uint32_t>(max_row_, uint32_t(blocks.size()));
      }
    }
  }

  // grouped_softmax_reference, with each landmark's main-group score taken from the page table
  // (the kernels' input, as an index computes it from the unrotated query) rather than from the
  // rotated query: the reference gets stand-in landmarks l = q * score / |q|^2, so q.l = score.
  Status reference_row(const float* q, const LocalWindow& seen, const HeadBlocks& blocks,
                       const std::vector<uint32_t>& order, const std::vector<int>& kept,
                       double scale, uint32_t row, double* out) const {
    // A landmark reproducing the stored score for query q: l = q * score / |q|^2.
    double qq = 0;
    for (uint32_t i = 0; i < s_.dim; ++i) qq += double(q[i]) * q[i];
    std::vector<float> landmarks(blocks.count * s_.dim);
    for (size_t b = 0; b < blocks.count; ++b) {
      const double score = scores_[indptr_[row] + kept[b]];
      for (uint32_t i = 0; i < s_.dim; ++i) {
        landmarks[b * s_.dim + i] = float(double(q[i]) * score / qq);
      }
    }
    HeadBlocks with_scores = blocks;
    with_scores.landmarks = landmarks.data();
    return grouped_softmax_reference(q, seen, with_scores, order, scale, out);
  }

  Shape s_;
  Inputs original_;
  std::vector<std::vector<float>> rounded_;
  std::vector<int32_t> indptr_, slots_;
  std::vector<float> scores_;
  std::vector<int64_t> block_nos_;
  uint32_t max_row_ = 0;
  GpuAttention attention_;
};

class GpuAttentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

std::string describe(const Shape& s) {
  return std::string(dtype_name(s.dtype)) + " d=" + std::to_string(s.dim) +
         " tokens=" + std::to_string(s.tokens) + " k=" + std::to_string(s.k) +
         " B=" + std::to_string(s.B);
}

TEST_F(GpuAttentionTest, AllBlocksEqualTheFullGroupedSoftmax) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    for (uint32_t dim : {64u, 128u, 256u}) {
      for (uint32_t tokens : {1u, 23u}) {
        Shape s;
        s.dtype = dtype;
        s.dim = dim;
        s.tokens = tokens;
        s.window = tokens + 7;
        s.k = uint32_t(s.blocks);  // every block: the full grouped softmax
        Case c(s, test::fresh_seed());
        const std::vector<float> got = c.run_gpu();
        EXPECT_LE(relative_error(got, c.reference(true)), kKernelBound) << describe(s);
        const double input_bound = dtype == DType::kFloat16 ? 1e-2 : 6e-2;
        EXPECT_LE(relative_error(got, c.reference(false)), input_bound) << describe(s);
      }
    }
  }
}

TEST_F(GpuAttentionTest, TopKEqualsTheReferenceOverTheSameBlocks) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    for (uint32_t k : {1u, 5u}) {
      Shape s;
      s.dtype = dtype;
      s.B = 50;
      s.blocks = 40;
      s.k = k;
      s.tokens = 9;
      s.window = 60;
      Case c(s, test::fresh_seed());
      EXPECT_LE(relative_error(c.run_gpu(), c.reference(true)), kKernelBound) << describe(s);
    }
  }
}

// Decode over many blocks and heads: rows split over many warps (34 parts at most), merged by
// each row's last warp in several batches of parts; uneven rows leave whole batches empty.
TEST_F(GpuAttentionTest, DecodeSplitOverWarpsEqualsTheReference) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    for (uint32_t dim : {64u, 128u, 256u}) {
      for (bool uneven : {false, true}) {
        Shape s;
        s.dtype = dtype;
        s.dim = dim;
        s.heads = 32;
        s.kv_heads = 8;
        s.B = 50;
        s.blocks = 300;
        s.k = 32;
        s.window = 33;
        s.uneven = uneven;
        Case c(s, test::fresh_seed());
        EXPECT_LE(relative_error(c.run_gpu(), c.reference(true)), kKernelBound)
            << describe(s) << (uneven ? " uneven" : "");
      }
    }
  }
}

// A KV head with no sealed blocks yet: rows attend to their window alone.
TEST_F(GpuAttentionTest, RowsWithoutBlocksAttendToTheirWindow) {
  Shape s;
  s.blocks = 0;
  s.k = 4;
  s.tokens = 5;
  s.window = 5;
  Case c(s, test::fresh_seed());
  EXPECT_LE(relative_error(c.run_gpu(), c.reference(true)), kKernelBound);
}

TEST_F(GpuAttentionTest, RopeWithStoredAndRemappedPositionsEqualsTheRotatedReference) {
  for (RopeMode mode : {RopeMode::kStored, RopeMode::kRemapped}) {
    for (uint32_t dim : {64u, 128u}) {
      Shape s;
      s.dim = dim;
      s.B = 20;
      s.blocks = 30;
      s.k = 6;
      s.tokens = 4;
      s.window = 15;
      s.rope = {mode, 10000.f};
      s.window_start = 999'985;  // positions near a million, where float angles would fail
      Case c(s, test::fresh_seed());
      EXPECT_LE(relative_error(c.run_gpu(), c.reference(true)), kKernelBound)
          << describe(s) << " rope mode " << int(mode);
    }
  }
}

TEST_F(GpuAttentionTest, GroupedQueryHeadsEqualTheExpandedMultiHeadLayer) {
  // 8 query heads over 2 KV heads, against 8 KV heads holding copies: every row does the same
  // arithmetic in the same order, so the outputs agree bit for bit.
  Shape s;
  s.heads = 8;
  s.kv_heads = 2;
  s.tokens = 3;
  s.window = 10;
  s.blocks = 10;
  s.k = 3;
  Case gqa(s, test::fresh_seed());
  const std::vector<float> got = gqa.run_gpu();
  EXPECT_LE(relative_error(got, gqa.reference(true)), kKernelBound);
  EXPECT_EQ(got, gqa.expanded().run_gpu());
}

// A chunk of T queries equals T decode steps, each seeing the window up to its own token (the
// split of rows over warps differs, so agreement is to float rounding).
TEST_F(GpuAttentionTest, ChunkedPrefillEqualsTokenByTokenDecode) {
  Shape chunk;
  chunk.B = 50;
  chunk.tokens = 12;
  chunk.window = 70;
  chunk.blocks = 25;
  chunk.k = 4;
  Case c(chunk, test::fresh_seed());
  const std::vector<float> whole = c.run_gpu();
  const size_t row = size_t{chunk.heads} * chunk.dim;
  for (uint32_t t = 0; t < chunk.tokens; ++t) {
    const std::vector<float> step = c.decode_step(t).run_gpu();
    const std::vector<double> step_double(step.begin(), step.end());
    const std::vector<float> chunk_row(whole.begin() + t * row, whole.begin() + (t + 1) * row);
    EXPECT_LE(relative_error(chunk_row, step_double), 1e-5) << "token " << t;
  }
}

// Offload mode: a chunk's rows share their blocks, which the kernels stage in shared memory once
// per group of tokens and score on tensor cores (no RoPE, B >= 16) or per warp; outputs equal the
// reference (and the unstaged kernels, to rounding).
TEST_F(GpuAttentionTest, OffloadModeStagedBlocksEqualTheReference) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    for (uint32_t dim : {64u, 128u, 256u}) {
      for (uint32_t tokens : {2u, 16u, 37u}) {
        Shape s;
        s.dtype = dtype;
        s.dim = dim;
        s.B = tokens == 16 ? 8 : 50;  // tensor-core scores from B = 16 up, warp scores below
        s.blocks = 30;
        s.k = 5;
        s.tokens = tokens;
        s.window = tokens + 40;
        s.retrieval = Retrieval::kPerChunk;
        Case c(s, test::fresh_seed());
        const std::vector<float> staged = c.run_gpu(true);
        EXPECT_LE(relative_error(staged, c.reference(true)), kKernelBound) << describe(s);
        const std::vector<float> plain = c.run_gpu(false);
        EXPECT_LE(relative_error(staged, std::vector<double>(plain.begin(), plain.end())), 1e-5)
            << describe(s);
      }
    }
  }
  for (RopeMode mode : {RopeMode::kStored, RopeMode::kRemapped}) {
    Shape s;
    s.B = 20;
    s.blocks = 30;
    s.k = 6;
    s.tokens = 11;
    s.window = 30;
    s.rope = {mode, 10000.f};
    s.window_start = 999'970;
    s.retrieval = Retrieval::kPerChunk;
    Case c(s, test::fresh_seed());
    EXPECT_LE(relative_error(c.run_gpu(true), c.reference(true)), kKernelBound)
        << "rope mode " << int(mode);
  }
}

// The staging hint is only a hint: rows whose blocks differ from their group's first row (other
// blocks, fewer or more entries, a first entry scoring -inf) are still computed exactly.
TEST_F(GpuAttentionTest, StagingHintOverRowsThatDifferStaysExact) {
  for (Retrieval retrieval : {Retrieval::kPerToken, Retrieval::kPerChunk}) {
    for (bool first_unseen : {false, true}) {
      Shape s;
      s.B = 50;
      s.blocks = 40;
      s.k = 7;
      s.tokens = 19;
      s.window = 50;
      s.retrieval = retrieval;
      s.uneven = true;
      s.first_unseen = first_unseen;
      Case c(s, test::fresh_seed());
      const std::vector<double> want = c.reference(true);
      EXPECT_LE(relative_error(c.run_gpu(true), want), kKernelBound)
          << "per chunk " << (retrieval == Retrieval::kPerChunk) << " unseen " << first_unseen;
      EXPECT_LE(relative_error(c.run_gpu(false), want), kKernelBound)
          << "per chunk " << (retrieval == Retrieval::kPerChunk) << " unseen " << first_unseen;
    }
  }
}

#endif  // LMKV_WITH_CUDA

}  // namespace
}  // namespace lmkv
