// The fused GPU search against the exact CPU index: equal results (ties included) where float
// arithmetic is exact, equal up to rounding on random keys; device outputs poisoned first.
#include "index/gpu_fused_index.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "index/clustered_keys.h"
#include "index/faiss_cpu_index.h"
#include "kvstore/cuda_util.h"
#include "test_util.h"

#ifdef LMKV_WITH_CUDA
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

namespace lmkv {
namespace {

#ifdef LMKV_WITH_CUDA

class GpuFusedIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

struct Pair {
  std::unique_ptr<GpuFusedIndex> gpu;
  std::unique_ptr<LandmarkIndex> cpu;
};

// The GPU index screens with int8 codes unless `screening` is false.
Pair make_pair(uint32_t dim, bool screening = true) {
  auto gpu = make_gpu_fused_index({dim, 0, screening});
  auto cpu = make_faiss_cpu_index({FaissCpuKind::kFlat, dim});
  EXPECT_TRUE(gpu.ok()) << gpu.status().to_string();
  return {std::move(gpu).value(), std::move(cpu).value()};
}

// Fills heads with keys drawn by `draw`, rounded to fp16 so both indexes see the same values.
template <typename Draw>
void fill(Pair& p, uint32_t dim, const std::vector<size_t>& sizes, Draw draw) {
  for (uint32_t h = 0; h < sizes.size(); ++h) {
    std::vector<float> keys(sizes[h] * dim);
    for (auto& v : keys) v = __half2float(__float2half(draw()));
    std::vector<uint64_t> blocks(sizes[h]);
    for (size_t i = 0; i < sizes[h]; ++i) blocks[i] = 3 * i + h;  // increasing, with gaps
    ASSERT_TRUE(p.gpu->add({5, 1, h}, blocks.data(), keys.data(), sizes[h]).ok());
    ASSERT_TRUE(p.cpu->add({5, 1, h}, blocks.data(), keys.data(), sizes[h]).ok());
  }
}

// Small integers: every product and sum is exact in fp16 and fp32, so the GPU must return exactly
// the CPU's blocks, ties in the same order, with the same scores.
TEST_F(GpuFusedIndexTest, EqualsExactCpuSearchWithTies) {
  std::mt19937_64 rng(test::fresh_seed());
  for (uint32_t dim : {64u, 128u}) {
    Pair p = make_pair(dim);
    // One and several chunks of 1024; 11,000 gives more chunks than merging warps.
    const std::vector<size_t> sizes = {1, 700, 2500, 40, 11000};
    fill(p, dim, sizes, [&] { return float(int(rng() % 5) - 2); });
    for (uint32_t queries : {1u, 7u}) {
      // k <= 32 takes the warp-list path, larger k the sorting path.
      for (uint32_t k : {1u, 4u, 31u, 32u, 33u, 100u}) {
        std::vector<float> q(sizes.size() * queries * dim);
        for (auto& v : q) v = float(int(rng() % 3) - 1);
        const SearchRequest r{5, 1, uint32_t(sizes.size()), queries, k, q.data()};
        SearchResult gpu, cpu;
        ASSERT_TRUE(p.gpu->search(r, &gpu).ok());
        ASSERT_TRUE(p.cpu->search(r, &cpu).ok());
        EXPECT_EQ(gpu.block_nos, cpu.block_nos)
            << "dim " << dim << " queries " << queries << " k " << k;
        EXPECT_EQ(gpu.scores, cpu.scores);
      }
    }
  }
}

TEST_F(GpuFusedIndexTest, MatchesCpuOnRandomKeysUpToRounding) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  constexpr uint32_t kDim = 128, kQueries = 3;
  Pair p = make_pair(kDim);
  const std::vector<size_t> sizes = {3000, 1024, 21000};
  fill(p, kDim, sizes, [&] { return normal(rng); });
  for (uint32_t kK : {4u, 32u, 64u}) {
    std::vector<float> q(sizes.size() * kQueries * kDim);
    for (auto& v : q) v = normal(rng);
    const SearchRequest r{5, 1, uint32_t(sizes.size()), kQueries, kK, q.data()};
    SearchResult gpu, cpu;
    ASSERT_TRUE(p.gpu->search(r, &gpu).ok());
    ASSERT_TRUE(p.cpu->search(r, &cpu).ok());
    // Scores agree to float rounding of a 128-term sum (relative 1e-5 of the magnitude); a block
    // may differ only where its score is that close to the other's.
    for (size_t i = 0; i < gpu.scores.size(); ++i) {
      const float tolerance = 1e-5f * (1.0f + std::fabs(cpu.scores[i])) * 10;
      ASSERT_NEAR(gpu.scores[i], cpu.scores[i], tolerance) << "slot " << i;
      if (gpu.block_nos[i] != cpu.block_nos[i]) {
        EXPECT_NEAR(gpu.scores[i], cpu.scores[i], tolerance) << "different block at slot " << i;
      }
    }
  }
}

// Searches between adds and erases see every change: the layer's cached head views follow heads
// that grow (past their device capacity, which moves their keys) and sequences that go.
TEST_F(GpuFusedIndexTest, SearchesFollowAddsAndErases) {
  std::mt19937_64 rng(test::fresh_seed());
  constexpr uint32_t kDim = 64, kHeads = 3, kK = 8;
  Pair p = make_pair(kDim);
  auto draw = [&] { return float(int(rng() % 5) - 2); };
  std::vector<float> q(kHeads * kDim);
  for (auto& v : q) v = float(int(rng() % 3) - 1);
  const SearchRequest r{5, 1, kHeads, 1, kK, q.data()};
  uint64_t next_block = 0;
  for (size_t batch : {10, 1500, 3000}) {  // 1024, then 2048 and 4096 rows of capacity
    for (uint32_t h = 0; h < kHeads; ++h) {
      std::vector<float> keys(batch * kDim);
      for (auto& v : keys) v = draw();
      std::vector<uint64_t> blocks(batch);
      for (auto& b : blocks) b = next_block++;
      ASSERT_TRUE(p.gpu->add({5, 1, h}, blocks.data(), keys.data(), batch).ok());
      ASSERT_TRUE(p.cpu->add({5, 1, h}, blocks.data(), keys.data(), batch).ok());
    }
    SearchResult gpu, cpu;
    ASSERT_TRUE(p.gpu->search(r, &gpu).ok());
    ASSERT_TRUE(p.cpu->search(r, &cpu).ok());
    EXPECT_EQ(gpu.block_nos, cpu.block_nos) << "after adding " << batch << " per head";
    EXPECT_EQ(gpu.scores, cpu.scores);
  }
  ASSERT_TRUE(p.gpu->erase(5).ok());
  SearchResult gone;
  EXPECT_EQ(p.gpu->search(r, &gone).code(), StatusCode::kNotFound);
  std::vector<float> key(kDim, 1.f);
  const uint64_t block = 7;
  ASSERT_TRUE(p.gpu->add({5, 1, 0}, &block, key.data(), 1).ok());
  SearchResult again;
  ASSERT_TRUE(p.gpu->search(r, &again).ok());
  EXPECT_EQ(again.block_nos[0], 7);
  EXPECT_EQ(again.block_nos[1], -1);
}

TEST_F(GpuFusedIndexTest, DeviceSearchWritesEveryOutput) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  constexpr uint32_t kDim = 64, kHeads = 2, kQueries = 4, kK = 16;
  Pair p = make_pair(kDim);
  fill(p, kDim, {600, 10}, [&] { return normal(rng); });  // head 1 has fewer blocks than k
  std::vector<float> q(kHeads * kQueries * kDim);
  for (auto& v : q) v = normal(rng);
  SearchResult host;
  ASSERT_TRUE(p.gpu->search({5, 1, kHeads, kQueries, kK, q.data()}, &host).ok());
  const size_t outputs = kHeads * kQueries * kK;
  float* d_q = nullptr;
  int64_t* d_blocks = nullptr;
  float* d_scores = nullptr;
  ASSERT_EQ(cudaMalloc(&d_q, q.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_blocks, outputs * sizeof(int64_t)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_scores, outputs * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_q, q.data(), q.size() * sizeof(float), cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemset(d_blocks, 0x7F, outputs * sizeof(int64_t)), cudaSuccess);  // poison
  ASSERT_EQ(cudaMemset(d_scores, 0x7F, outputs * sizeof(float)), cudaSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_TRUE(
      p.gpu->search_on_device({5, 1, kHeads, kQueries, kK, d_q}, d_blocks, d_scores, stream).ok());
  std::vector<int64_t> blocks(outputs);
  std::vector<float> scores(outputs);
  ASSERT_EQ(cudaMemcpyAsync(blocks.data(), d_blocks, outputs * sizeof(int64_t),
                            cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(scores.data(), d_scores, outputs * sizeof(float),
                            cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(blocks, host.block_nos);
  EXPECT_EQ(scores, host.scores);
  for (size_t i = 0; i < kQueries; ++i) {
    const size_t at = (kQueries + i) * kK;  // head 1, query i
    EXPECT_EQ(blocks[at + 10], -1);
    EXPECT_TRUE(std::isinf(scores[at + 10]) && scores[at + 10] < 0);
  }
  cudaStreamDestroy(stream);
  cudaFree(d_q);
  cudaFree(d_blocks);
  cudaFree(d_scores);
}

// Screened and unscreened searches over the same keys, and the fallbacks the screened one counted.
struct ScreenedPair {
  std::unique_ptr<GpuFusedIndex> screened, exact;
};

ScreenedPair make_screened_pair(uint32_t dim) {
  auto screened = make_gpu_fused_index({dim, 0, true});
  auto exact = make_gpu_fused_index({dim, 0, false});
  EXPECT_TRUE(screened.ok() && exact.ok());
  return {std::move(screened).value(), std::move(exact).value()};
}

// Searches both and expects the same bits; returns the fallbacks this search added.
uint64_t expect_same_bits(ScreenedPair& p, const SearchRequest& r, const std::string& what) {
  const uint64_t before = p.screened->screening_fallbacks().value();
  SearchResult screened, exact;
  EXPECT_TRUE(p.screened->search(r, &screened).ok()) << what;
  EXPECT_TRUE(p.exact->search(r, &exact).ok()) << what;
  EXPECT_EQ(screened.block_nos, exact.block_nos) << what;
  EXPECT_EQ(screened.scores, exact.scores) << what;
  return p.screened->screening_fallbacks().value() - before;
}

void add_to_both(ScreenedPair& p, uint32_t head, const std::vector<float>& keys, size_t n,
                 uint32_t dim) {
  std::vector<uint64_t> blocks(n);
  for (size_t i = 0; i < n; ++i) blocks[i] = 2 * i + 1;
  ASSERT_TRUE(p.screened->add({5, 1, head}, blocks.data(), keys.data(), n).ok());
  ASSERT_TRUE(p.exact->add({5, 1, head}, blocks.data(), keys.data(), n).ok());
}

// The screened search returns exactly the unscreened one's blocks and scores: on Gaussian keys
// (where the proof should almost always hold) and on clustered keys with queries near a topic.
TEST_F(GpuFusedIndexTest, ScreenedSearchEqualsUnscreenedBitForBit) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  uint64_t large_fallbacks = 0, large_pairs = 0;
  for (uint32_t dim : {64u, 128u, 256u}) {
    ScreenedPair p = make_screened_pair(dim);
    const std::vector<size_t> sizes = {21000, 3000, 700, 40, 1};
    for (uint32_t h = 0; h < sizes.size(); ++h) {
      std::vector<float> keys(sizes[h] * dim);
      for (auto& v : keys) v = normal(rng);
      add_to_both(p, h, keys, sizes[h], dim);
    }
    for (uint32_t queries : {1u, 5u}) {
      for (uint32_t k : {1u, 4u, 16u, 32u}) {
        std::vector<float> q(sizes.size() * queries * dim);
        for (auto& v : q) v = normal(rng);
        const std::string what = fmt::format("dim {} queries {} k {}", dim, queries, k);
        expect_same_bits(p, {5, 1, uint32_t(sizes.size()), queries, k, q.data()}, what);
        // The three large heads alone, whose fallbacks must be rare.
        large_fallbacks +=
            expect_same_bits(p, {5, 1, 3, queries, k, q.data()}, what + " large heads");
        large_pairs += 3 * queries;
      }
    }
    // A query with one element far above the rest (its integer form is coarse everywhere else).
    std::vector<float> q(sizes.size() * dim);
    for (auto& v : q) v = normal(rng);
    q[5] = 3000.f;
    expect_same_bits(p, {5, 1, uint32_t(sizes.size()), 1, 8, q.data()},
                     fmt::format("dim {}, a query with an outlier", dim));
  }
  std::printf("Gaussian keys: %llu of %llu searches of large heads fell back\n",
              static_cast<unsigned long long>(large_fallbacks),
              static_cast<unsigned long long>(large_pairs));
  EXPECT_LE(large_fallbacks * 10, large_pairs);
  ScreenedPair p = make_screened_pair(128);
  constexpr size_t kBlocks = 20000, kQueries = 8;
  test::Clustered c = test::clustered_keys(rng, 128, kBlocks, kQueries);
  add_to_both(p, 0, c.keys, kBlocks, 128);
  for (uint32_t k : {4u, 32u}) {
    const uint64_t fallbacks = expect_same_bits(p, {5, 1, 1, kQueries, k, c.queries.data()},
                                                fmt::format("clustered k {}", k));
    std::printf("clustered keys, k %u: %llu of %zu searches fell back\n", k,
                static_cast<unsigned long long>(fallbacks), kQueries);
  }
}

// Codes are stored in tiles of 32 rows, scattered into place as rows arrive: adds of uneven sizes
// (single rows, pieces ending mid-tile, pieces crossing capacity doublings) must leave the
// screened search equal to the unscreened one after every add, with fallbacks still rare.
TEST_F(GpuFusedIndexTest, ScreenedHeadsGrowInUnevenPieces) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  constexpr uint32_t kDim = 128, kHeads = 2, kQueries = 3;
  constexpr size_t kScreenedFrom = 8192;  // rows of the largest head (GpuFusedOptions)
  ScreenedPair p = make_screened_pair(kDim);
  uint64_t next_block = 0, fallbacks = 0, pairs = 0;
  size_t rows = 0;
  while (rows < 20000) {
    const size_t piece = rows < 64 ? 1 + rng() % 40 : 1 + rng() % 3000;
    for (uint32_t h = 0; h < kHeads; ++h) {
      std::vector<float> keys(piece * kDim);
      for (auto& v : keys) v = normal(rng);
      std::vector<uint64_t> blocks(piece);
      for (size_t i = 0; i < piece; ++i) blocks[i] = next_block + 2 * i;
      ASSERT_TRUE(p.screened->add({5, 1, h}, blocks.data(), keys.data(), piece).ok());
      ASSERT_TRUE(p.exact->add({5, 1, h}, blocks.data(), keys.data(), piece).ok());
    }
    next_block += 2 * piece;
    rows += piece;
    std::vector<float> q(kHeads * kQueries * kDim);
    for (auto& v : q) v = normal(rng);
    const uint32_t k = rows >= 32 ? 32 : 1;
    fallbacks += expect_same_bits(p, {5, 1, kHeads, kQueries, k, q.data()},
                                  fmt::format("after {} rows per head", rows));
    if (rows >= kScreenedFrom) pairs += kHeads * kQueries;
  }
  std::printf("uneven adds: %llu of %llu screened searches fell back\n",
              static_cast<unsigned long long>(fallbacks), static_cast<unsigned long long>(pairs));
  EXPECT_GT(pairs, 0u);
  EXPECT_LE(fallbacks * 10, pairs);
}

// Where no row stands out (equal keys, so every score ties) the bounds prove nothing: every
// search falls back on the exact scan, which still breaks ties by the lower block.
TEST_F(GpuFusedIndexTest, ScreeningFallsBackWhereItCannotProve) {
  std::mt19937_64 rng(test::fresh_seed());
  constexpr uint32_t kDim = 128, kHeads = 2, kQueries = 3, kK = 8;
  ScreenedPair p = make_screened_pair(kDim);
  std::vector<float> row(kDim);
  for (auto& v : row) v = float(int(rng() % 7) - 3);
  for (uint32_t h = 0; h < kHeads; ++h) {
    std::vector<float> keys;
    for (int i = 0; i < 9000; ++i) keys.insert(keys.end(), row.begin(), row.end());
    add_to_both(p, h, keys, 9000, kDim);
  }
  std::vector<float> q(kHeads * kQueries * kDim);
  for (auto& v : q) v = float(int(rng() % 5) - 2);
  const SearchRequest r{5, 1, kHeads, kQueries, kK, q.data()};
  EXPECT_EQ(expect_same_bits(p, r, "equal keys"), uint64_t{kHeads * kQueries});
  SearchResult result;
  ASSERT_TRUE(p.screened->search(r, &result).ok());
  for (uint32_t i = 0; i < kK; ++i) EXPECT_EQ(result.block_nos[i], 2 * i + 1);
  // A prefill-sized search (more pairs than the device runs blocks at once) takes the unscreened
  // path: one list per pair could prove nothing, so nothing falls back.
  constexpr uint32_t kPrefill = 2048;
  std::vector<float> many(kHeads * kPrefill * kDim);
  for (auto& v : many) v = float(int(rng() % 5) - 2);
  EXPECT_EQ(expect_same_bits(p, {5, 1, kHeads, kPrefill, kK, many.data()}, "prefill"), 0u);
  // So does a layer whose heads are too small for screening to pay.
  ScreenedPair small = make_screened_pair(kDim);
  std::vector<float> keys;
  for (int i = 0; i < 1000; ++i) keys.insert(keys.end(), row.begin(), row.end());
  for (uint32_t h = 0; h < kHeads; ++h) add_to_both(small, h, keys, 1000, kDim);
  EXPECT_EQ(expect_same_bits(small, r, "small heads"), 0u);
}

TEST_F(GpuFusedIndexTest, BadInputGetsAClearError) {
  EXPECT_EQ(make_gpu_fused_index({100, 0}).status().code(), StatusCode::kInvalidArgument);
  Pair p = make_pair(64);
  std::vector<float> keys(2 * 64, 1.0f);
  const uint64_t blocks[] = {4, 2};
  const Status order = p.gpu->add({0, 0, 0}, blocks, keys.data(), 2);
  EXPECT_EQ(order.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(order.message().find("block 2"), std::string::npos) << order.message();
  EXPECT_EQ(p.gpu->size({0, 0, 0}), 0u);
  ASSERT_TRUE(p.gpu->add({0, 0, 0}, blocks, keys.data(), 1).ok());
  std::vector<float> q(64, 0.5f);
  SearchResult result;
  EXPECT_EQ(p.gpu->search({9, 0, 1, 1, 4, q.data()}, &result).code(), StatusCode::kNotFound);
  q[3] = NAN;
  EXPECT_EQ(p.gpu->search({0, 0, 1, 1, 4, q.data()}, &result).code(), StatusCode::kInvalidArgument);
  q[3] = 0;
  EXPECT_EQ(p.gpu->search({0, 0, 1, 1, 2000, q.data()}, &result).code(),
            StatusCode::kInvalidArgument);
}

#endif

TEST(GpuFusedIndexAvailability, ClearErrorWithoutADevice) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a device is present";
  const Status s = make_gpu_fused_index({128, 0}).status();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(s.message().empty());
}

}  // namespace
}  // namespace lmkv
