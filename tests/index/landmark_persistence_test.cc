// Landmarks stored with the blocks: a reopened store rebuilds an index equal to the one it had.
#include "index/landmark_persistence.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <random>

#include "index/faiss_cpu_index.h"
#include "kvstore/key_codec.h"
#include "test_util.h"

namespace lmkv {
namespace {

constexpr uint32_t kDim = 32, kHeads = 3, kBlocks = 40, kK = 5;

std::unique_ptr<LandmarkIndex> flat_index(uint32_t dim = kDim) {
  auto index = make_faiss_cpu_index({FaissCpuKind::kFlat, dim});
  EXPECT_TRUE(index.ok());
  return std::move(index).value();
}

std::unique_ptr<TieredStore> open_store(const std::string& dir) {
  auto store = TieredStore::open(test::test_store_options(dir, 4));
  EXPECT_TRUE(store.ok()) << store.status().to_string();
  return std::move(store).value();
}

// Fills sequences 0 and 1 with landmarks through add_landmarks.
void fill(TieredStore& store, LandmarkIndex& index, std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  for (uint64_t seq = 0; seq < 2; ++seq) {
    for (uint32_t h = 0; h < kHeads; ++h) {
      // Two batches per head, as blocks seal over time.
      for (uint64_t first = 0; first < kBlocks; first += kBlocks / 2) {
        std::vector<uint64_t> blocks;
        std::vector<float> keys(kBlocks / 2 * kDim);
        for (auto& v : keys) v = normal(rng);
        for (uint64_t b = first; b < first + kBlocks / 2; ++b) blocks.push_back(b);
        ASSERT_TRUE(
            add_landmarks(store, index, {seq, 1, h}, blocks.data(), keys.data(), blocks.size())
                .ok());
      }
    }
  }
}

SearchResult search(LandmarkIndex& index, uint64_t seq, const std::vector<float>& queries) {
  SearchResult result;
  const Status s = index.search({seq, 1, kHeads, 2, kK, queries.data()}, &result);
  EXPECT_TRUE(s.ok()) << s.to_string();
  return result;
}

TEST(LandmarkPersistence, AReopenedStoreRebuildsTheSameIndex) {
  test::TempDir dir;
  std::mt19937_64 rng(test::fresh_seed());
  std::vector<float> queries(kHeads * 2 * kDim);
  std::normal_distribution<float> normal;
  for (auto& v : queries) v = normal(rng);
  SearchResult before0, before1;
  {
    auto store = open_store(dir.path());
    auto index = flat_index();
    fill(*store, *index, rng);
    before0 = search(*index, 0, queries);
    before1 = search(*index, 1, queries);
    ASSERT_TRUE(store->erase(1).ok());  // landmarks go with their sequence
    ASSERT_TRUE(store->close().ok());
  }
  auto store = open_store(dir.path());
  auto index = flat_index();
  ASSERT_TRUE(rebuild_index(*store, *index).ok());
  EXPECT_EQ(index->size({0, 1, 2}), kBlocks);
  EXPECT_EQ(index->size({1, 1, 0}), 0u);
  const SearchResult after = search(*index, 0, queries);
  EXPECT_EQ(after.block_nos, before0.block_nos);
  EXPECT_EQ(after.scores, before0.scores);
  SearchResult none;
  EXPECT_EQ(index->search({1, 1, kHeads, 2, kK, queries.data()}, &none).code(),
            StatusCode::kNotFound);
}

TEST(LandmarkPersistence, DimensionMismatchAndCorruptionAreReported) {
  test::TempDir dir;
  std::mt19937_64 rng(test::fresh_seed());
  {
    auto store = open_store(dir.path());
    auto index = flat_index();
    fill(*store, *index, rng);
  }
  {
    auto store = open_store(dir.path());
    auto wrong = flat_index(64);
    const Status s = rebuild_index(*store, *wrong);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("dimension 32, the index 64"), std::string::npos) << s.message();
  }
  // One flipped byte in one stored landmark.
  const BlockKey damaged{1, 1, 2, 7};
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir.path(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string value;
    const std::string key = encode_block_key(damaged, kLandmarkKeyTag);
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), key, &value).ok());
    value[30] ^= 0x04;
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  }
  auto store = open_store(dir.path());
  auto index = flat_index();
  const Status s = rebuild_index(*store, *index);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find(damaged.to_string()), std::string::npos) << s.message();
}

}  // namespace
}  // namespace lmkv
