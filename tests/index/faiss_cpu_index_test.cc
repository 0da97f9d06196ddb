// The FAISS CPU landmark index: exact top-k with the tie rule, recall of the approximate backends
// on clustered keys, k beyond the head's size, erase, and errors.
#include "index/faiss_cpu_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "index/brute_force.h"
#include "index/clustered_keys.h"
#include "index/index_contract.h"
#include "test_util.h"

namespace lmkv {
namespace {

std::unique_ptr<LandmarkIndex> make_index(FaissCpuOptions options) {
  auto index = make_faiss_cpu_index(options);
  EXPECT_TRUE(index.ok()) << index.status().to_string();
  return index.ok() ? std::move(index).value() : nullptr;
}

TEST(FaissCpuIndex, FlatSearchesEveryHeadOfALayerExactly) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  constexpr uint32_t kDim = 32, kHeads = 4, kQueries = 3, kK = 8;
  auto index = make_index({FaissCpuKind::kFlat, kDim});
  ASSERT_TRUE(index);
  std::vector<std::vector<float>> keys(kHeads);
  std::vector<std::vector<int64_t>> blocks(kHeads);
  for (uint32_t h = 0; h < kHeads; ++h) {
    const size_t n = h == 3 ? 5 : 300;  // head 3 ends with 10 blocks, the others with 600
    for (size_t batch = 0; batch < 2; ++batch) {
      std::vector<uint64_t> nos;
      std::vector<float> k(n * kDim);
      for (auto& v : k) v = normal(rng);
      for (size_t i = 0; i < n; ++i) nos.push_back(batch * n + i);
      ASSERT_TRUE(index->add({9, 2, h}, nos.data(), k.data(), n).ok());
      keys[h].insert(keys[h].end(), k.begin(), k.end());
      blocks[h].insert(blocks[h].end(), nos.begin(), nos.end());
    }
  }
  EXPECT_EQ(index->size({9, 2, 0}), 600u);
  std::vector<float> queries(kHeads * kQueries * kDim);
  for (auto& v : queries) v = normal(rng);
  SearchResult result;
  ASSERT_TRUE(index->search({9, 2, kHeads, kQueries, kK, queries.data()}, &result).ok());
  for (uint32_t h = 0; h < kHeads; ++h) {
    for (uint32_t q = 0; q < kQueries; ++q) {
      const size_t at = (h * kQueries + q) * kK;
      const auto want = test::brute_force_topk(
          keys[h], blocks[h], queries.data() + (h * kQueries + q) * kDim, kDim, kK);
      EXPECT_EQ(
          std::vector<int64_t>(result.block_nos.begin() + at, result.block_nos.begin() + at + kK),
          want)
          << "head " << h << " query " << q;
    }
  }
  // Head 3 holds 10 blocks: k = 8 returns 8 of them; k = 16 returns all 10, then -1 and -inf.
  ASSERT_TRUE(index->search({9, 2, kHeads, kQueries, 16, queries.data()}, &result).ok());
  const size_t at = (3 * kQueries) * 16;
  std::set<int64_t> got(result.block_nos.begin() + at, result.block_nos.begin() + at + 10);
  EXPECT_EQ(got.size(), 10u);
  EXPECT_EQ(*got.begin(), 0);
  for (size_t i = 10; i < 16; ++i) {
    EXPECT_EQ(result.block_nos[at + i], -1);
    EXPECT_TRUE(std::isinf(result.scores[at + i]) && result.scores[at + i] < 0);
  }
}

class ApproximateRecall : public ::testing::TestWithParam<FaissCpuKind> {};

TEST_P(ApproximateRecall, ReachesAtLeast95PercentAtDefaults) {
  std::mt19937_64 rng(test::fresh_seed());
  constexpr uint32_t kDim = 64, kHeads = 2, kQueries = 50, kK = 32;
  constexpr size_t kBlocks = 8000;
  FaissCpuOptions options;
  options.kind = GetParam();
  options.dim = kDim;
  auto index = make_index(options);
  auto exact = make_index({FaissCpuKind::kFlat, kDim});
  ASSERT_TRUE(index && exact);
  const double recall =
      test::clustered_recall(*index, *exact, rng, kDim, kHeads, kBlocks, kQueries, kK);
  RecordProperty("recall", std::to_string(recall));
  EXPECT_GE(recall, 0.95) << index->name();
}

INSTANTIATE_TEST_SUITE_P(Backends, ApproximateRecall,
                         ::testing::Values(FaissCpuKind::kIvf, FaissCpuKind::kHnsw));

TEST(FaissCpuIndex, EraseForgetsOneSequence) {
  auto index = make_index({FaissCpuKind::kFlat, 8});
  ASSERT_TRUE(index);
  test::expect_erase_forgets_one_sequence(*index);
}

TEST(FaissCpuIndex, BadInputGetsAClearError) {
  EXPECT_EQ(make_faiss_cpu_index({FaissCpuKind::kFlat, 0}).status().code(),
            StatusCode::kInvalidArgument);
  FaissCpuOptions ivf;
  ivf.kind = FaissCpuKind::kIvf;
  ivf.ivf_nprobe = 0;
  EXPECT_EQ(make_faiss_cpu_index(ivf).status().code(), StatusCode::kInvalidArgument);
  ivf.ivf_nprobe = 16;
  for (double growth : {1.0, 0.5, -2.0, std::nan("")}) {
    ivf.ivf_retrain_growth = growth;
    const Status s = make_faiss_cpu_index(ivf).status();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << growth;
    EXPECT_NE(s.message().find("ivf_retrain_growth"), std::string::npos) << s.message();
  }
  ivf.ivf_retrain_growth = 0;  // never retrain
  EXPECT_TRUE(make_faiss_cpu_index(ivf).ok());
  auto index = make_index({FaissCpuKind::kFlat, 4});
  ASSERT_TRUE(index);
  test::expect_clear_errors(*index);
}

}  // namespace
}  // namespace lmkv
