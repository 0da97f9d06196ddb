// The FAISS GPU landmark index against the exact CPU index: equal results (ties included) where
// float arithmetic is exact, equal up to rounding on random keys; IVF recall on clustered keys;
// k beyond a head's size; erase; a store reopen; errors. Skipped without FAISS GPU or a device.
#include "index/faiss_gpu_index.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "index/clustered_keys.h"
#include "index/faiss_cpu_index.h"
#include "index/index_contract.h"
#include "index/landmark_persistence.h"
#include "kvstore/cuda_util.h"
#include "test_util.h"

namespace lmkv {
namespace {

class FaissGpuIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!faiss_gpu_available()) GTEST_SKIP() << "this FAISS has no GPU support";
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }

  static std::unique_ptr<LandmarkIndex> make(FaissGpuKind kind, uint32_t dim) {
    FaissGpuOptions options;
    options.kind = kind;
    options.dim = dim;
    auto index = make_faiss_gpu_index(options);
    EXPECT_TRUE(index.ok()) << index.status().to_string();
    return index.ok() ? std::move(index).value() : nullptr;
  }
  static std::unique_ptr<LandmarkIndex> make_exact(uint32_t dim) {
    return std::move(make_faiss_cpu_index({FaissCpuKind::kFlat, dim})).value();
  }
};

// Adds the same keys to both indexes, head h's blocks numbered 3 * i + h.
template <typename Draw>
void fill_both(LandmarkIndex& a, LandmarkIndex& b, uint32_t dim, const std::vector<size_t>& sizes,
               Draw draw) {
  for (uint32_t h = 0; h < sizes.size(); ++h) {
    std::vector<float> keys(sizes[h] * dim);
    for (auto& v : keys) v = draw();
    std::vector<uint64_t> blocks(sizes[h]);
    for (size_t i = 0; i < sizes[h]; ++i) blocks[i] = 3 * i + h;
    ASSERT_TRUE(a.add({5, 1, h}, blocks.data(), keys.data(), sizes[h]).ok());
    ASSERT_TRUE(b.add({5, 1, h}, blocks.data(), keys.data(), sizes[h]).ok());
  }
}

// Small integers: every product and sum is exact in float, so the flat GPU index must return
// exactly the CPU's blocks, ties in block order, with the same scores.
TEST_F(FaissGpuIndexTest, FlatEqualsExactCpuSearchWithTies) {
  std::mt19937_64 rng(test::fresh_seed());
  constexpr uint32_t kDim = 64;
  auto gpu = make(FaissGpuKind::kFlat, kDim);
  auto cpu = make_exact(kDim);
  ASSERT_TRUE(gpu);
  const std::vector<size_t> sizes = {1, 700, 2500, 40};
  fill_both(*gpu, *cpu, kDim, sizes, [&] { return float(int(rng() % 5) - 2); });
  for (uint32_t queries : {1u, 7u}) {
    for (uint32_t k : {1u, 4u, 32u, 100u}) {
      std::vector<float> q(sizes.size() * queries * kDim);
      for (auto& v : q) v = float(int(rng() % 3) - 1);
      const SearchRequest r{5, 1, uint32_t(sizes.size()), queries, k, q.data()};
      SearchResult g, c;
      ASSERT_TRUE(gpu->search(r, &g).ok());
      ASSERT_TRUE(cpu->search(r, &c).ok());
      EXPECT_EQ(g.block_nos, c.block_nos) << "queries " << queries << " k " << k;
      EXPECT_EQ(g.scores, c.scores);
    }
  }
}

TEST_F(FaissGpuIndexTest, FlatMatchesCpuOnRandomKeysUpToRounding) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  constexpr uint32_t kDim = 128, kQueries = 3, kK = 32;
  auto gpu = make(FaissGpuKind::kFlat, kDim);
  auto cpu = make_exact(kDim);
  ASSERT_TRUE(gpu);
  const std::vector<size_t> sizes = {3000, 1024, 5000};
  fill_both(*gpu, *cpu, kDim, sizes, [&] { return normal(rng); });
  std::vector<float> q(sizes.size() * kQueries * kDim);
  for (auto& v : q) v = normal(rng);
  const SearchRequest r{5, 1, uint32_t(sizes.size()), kQueries, kK, q.data()};
  SearchResult g, c;
  ASSERT_TRUE(gpu->search(r, &g).ok());
  ASSERT_TRUE(cpu->search(r, &c).ok());
  // Scores agree to float rounding of a 128-term sum (relative 1e-5 of the magnitude, times ten
  // for cuBLAS's different summation order); a block may differ only where its score is that
  // close to the other's.
  for (size_t i = 0; i < g.scores.size(); ++i) {
    const float tolerance = 1e-4f * (1.0f + std::fabs(c.scores[i]));
    ASSERT_NEAR(g.scores[i], c.scores[i], tolerance) << "slot " << i;
  }
}

TEST_F(FaissGpuIndexTest, IvfReachesAtLeast95PercentRecallAtDefaults) {
  std::mt19937_64 rng(test::fresh_seed());
  constexpr uint32_t kDim = 64, kHeads = 2, kQueries = 50, kK = 32;
  constexpr size_t kBlocks = 8000;
  auto ivf = make(FaissGpuKind::kIvf, kDim);
  auto exact = make_exact(kDim);
  ASSERT_TRUE(ivf);
  const double recall =
      test::clustered_recall(*ivf, *exact, rng, kDim, kHeads, kBlocks, kQueries, kK);
  RecordProperty("recall", std::to_string(recall));
  EXPECT_GE(recall, 0.95);
}

// k above a head's size returns all its blocks, then -1 and -inf; both before and after IVF
// training (a small head is searched exactly on the host).
TEST_F(FaissGpuIndexTest, KBeyondTheHeadReturnsEveryBlock) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  constexpr uint32_t kDim = 32, kK = 16;
  for (FaissGpuKind kind : {FaissGpuKind::kFlat, FaissGpuKind::kIvf}) {
    auto index = make(kind, kDim);
    ASSERT_TRUE(index);
    std::vector<float> keys(10 * kDim);
    for (auto& v : keys) v = normal(rng);
    std::vector<uint64_t> blocks(10);
    for (uint64_t i = 0; i < 10; ++i) blocks[i] = 100 + i;
    ASSERT_TRUE(index->add({0, 0, 0}, blocks.data(), keys.data(), 10).ok());
    std::vector<float> q(kDim);
    for (auto& v : q) v = normal(rng);
    SearchResult result;
    ASSERT_TRUE(index->search({0, 0, 1, 1, kK, q.data()}, &result).ok());
    std::set<int64_t> got(result.block_nos.begin(), result.block_nos.begin() + 10);
    EXPECT_EQ(got.size(), 10u) << index->name();
    EXPECT_EQ(*got.begin(), 100);
    for (size_t i = 10; i < kK; ++i) {
      EXPECT_EQ(result.block_nos[i], -1);
      EXPECT_TRUE(std::isinf(result.scores[i]) && result.scores[i] < 0);
    }
  }
}

TEST_F(FaissGpuIndexTest, EraseForgetsOneSequence) {
  auto index = make(FaissGpuKind::kFlat, 8);
  ASSERT_TRUE(index);
  test::expect_erase_forgets_one_sequence(*index);
}

TEST_F(FaissGpuIndexTest, AReopenedStoreRebuildsTheIndex) {
  test::TempDir dir;
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  constexpr uint32_t kDim = 32, kHeads = 2, kBlocks = 30, kK = 5;
  std::vector<float> queries(kHeads * kDim);
  for (auto& v : queries) v = normal(rng);
  const SearchRequest r{3, 0, kHeads, 1, kK, queries.data()};
  SearchResult before, after;
  {
    auto store = TieredStore::open(test::test_store_options(dir.path(), 4));
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    auto index = make(FaissGpuKind::kFlat, kDim);
    ASSERT_TRUE(index);
    for (uint32_t h = 0; h < kHeads; ++h) {
      std::vector<uint64_t> blocks(kBlocks);
      std::vector<float> keys(kBlocks * kDim);
      for (uint32_t b = 0; b < kBlocks; ++b) blocks[b] = b;
      for (auto& v : keys) v = normal(rng);
      ASSERT_TRUE(
          add_landmarks(**store, *index, {3, 0, h}, blocks.data(), keys.data(), kBlocks).ok());
    }
    ASSERT_TRUE(index->search(r, &before).ok());
    ASSERT_TRUE((*store)->close().ok());
  }
  auto store = TieredStore::open(test::test_store_options(dir.path(), 4));
  ASSERT_TRUE(store.ok());
  auto index = make(FaissGpuKind::kFlat, kDim);
  ASSERT_TRUE(index);
  ASSERT_TRUE(rebuild_index(**store, *index).ok());
  EXPECT_EQ(index->size({3, 0, 1}), kBlocks);
  ASSERT_TRUE(index->search(r, &after).ok());
  EXPECT_EQ(after.block_nos, before.block_nos);
  EXPECT_EQ(after.scores, before.scores);
}

TEST_F(FaissGpuIndexTest, BadInputGetsAClearError) {
  FaissGpuOptions bad;
  bad.dim = 0;
  EXPECT_EQ(make_faiss_gpu_index(bad).status().code(), StatusCode::kInvalidArgument);
  bad.dim = 16;
  bad.kind = FaissGpuKind::kIvf;
  bad.ivf_nprobe = 0;
  EXPECT_EQ(make_faiss_gpu_index(bad).status().code(), StatusCode::kInvalidArgument);
  bad.ivf_nprobe = 16;
  bad.ivf_retrain_growth = 1.0;  // would train again on every add
  EXPECT_EQ(make_faiss_gpu_index(bad).status().code(), StatusCode::kInvalidArgument);
  bad.ivf_retrain_growth = 2.0;
  bad.cuda_device = cuda_device_count();
  EXPECT_EQ(make_faiss_gpu_index(bad).status().code(), StatusCode::kFailedPrecondition);

  auto index = make(FaissGpuKind::kFlat, 4);
  ASSERT_TRUE(index);
  test::expect_clear_errors(*index);
  const std::vector<float> query = {1, 0, 0, 0};
  SearchResult result;
  const Status big_k = index->search({0, 0, 1, 1, 5000, query.data()}, &result);
  EXPECT_EQ(big_k.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(big_k.message().find("k=5000"), std::string::npos) << big_k.message();
}

TEST(FaissGpuAvailability, ClearErrorWithoutFaissGpuOrADevice) {
  if (faiss_gpu_available() && cuda_device_count() > 0) GTEST_SKIP() << "FAISS GPU is usable";
  const Status s = make_faiss_gpu_index({}).status();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(s.message().empty());
}

}  // namespace
}  // namespace lmkv
