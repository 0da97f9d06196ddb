// split_disk_reads: every read in exactly one batch, runs of neighbours kept whole (up to the cap),
// other blocks dealt evenly over the read threads.
#include "kvstore/disk_read_split.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "test_util.h"

namespace lmkv {
namespace {

std::vector<BlockKey> run_of(uint32_t head, uint64_t first, size_t n) {
  std::vector<BlockKey> keys;
  for (size_t i = 0; i < n; ++i) keys.push_back({0, 0, head, first + i});
  return keys;
}

// Positions 0..n-1 each once, ascending within each batch.
void expect_partition(const std::vector<std::vector<size_t>>& batches, size_t n) {
  std::vector<int> seen(n, 0);
  for (const auto& batch : batches) {
    ASSERT_FALSE(batch.empty());
    EXPECT_TRUE(std::is_sorted(batch.begin(), batch.end()));
    for (size_t p : batch) {
      ASSERT_LT(p, n);
      ++seen[p];
    }
  }
  for (size_t p = 0; p < n; ++p) EXPECT_EQ(seen[p], 1) << "position " << p;
}

bool is_one_run(const std::vector<BlockKey>& keys, const std::vector<size_t>& batch) {
  for (size_t i = 1; i < batch.size(); ++i) {
    const BlockKey& a = keys[batch[i - 1]];
    const BlockKey& b = keys[batch[i]];
    if (a.kv_head != b.kv_head || a.block_no + 1 != b.block_no) return false;
  }
  return true;
}

TEST(DiskReadSplit, LongRunsAreReadInBatchesOfTheCap) {
  const std::vector<BlockKey> keys = run_of(3, 100, 8 * kMaxRunBlocks + 4);
  const auto batches = split_disk_reads(keys, 32);
  ASSERT_NO_FATAL_FAILURE(expect_partition(batches, keys.size()));
  // Eight full runs; the last four neighbours are too few for a run and go as one scattered batch.
  ASSERT_EQ(batches.size(), 9u);
  for (size_t b = 0; b < 8; ++b) {
    EXPECT_EQ(batches[b].size(), kMaxRunBlocks);
    EXPECT_TRUE(is_one_run(keys, batches[b]));
  }
  EXPECT_EQ(batches[8].size(), 4u);
}

TEST(DiskReadSplit, ScatteredBlocksAreDealtOverTheThreads) {
  std::vector<BlockKey> keys;
  for (uint64_t i = 0; i < 1024; ++i) keys.push_back({0, 0, 0, 2 * i});  // every other block
  auto batches = split_disk_reads(keys, 32);
  ASSERT_NO_FATAL_FAILURE(expect_partition(batches, keys.size()));
  ASSERT_EQ(batches.size(), 32u);
  for (const auto& batch : batches) EXPECT_EQ(batch.size(), 32u);
  // Few blocks: batches of at least kMinScatteredBatch, sizes differing by one at most.
  keys.resize(10);
  batches = split_disk_reads(keys, 32);
  ASSERT_NO_FATAL_FAILURE(expect_partition(batches, keys.size()));
  ASSERT_EQ(batches.size(), 3u);
  for (const auto& batch : batches) EXPECT_TRUE(batch.size() == 3 || batch.size() == 4);
  // One thread: one batch.
  batches = split_disk_reads(keys, 1);
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].size(), 10u);
}

TEST(DiskReadSplit, OnlyTheSameHeadsConsecutiveBlocksAreNeighbours) {
  std::vector<BlockKey> keys;
  // Block numbers that follow on across heads, layers and sequences are not a run.
  for (uint32_t h = 0; h < kMinRunBlocks; ++h) keys.push_back({0, 0, h, h});
  for (uint32_t l = 1; l <= kMinRunBlocks; ++l) keys.push_back({0, l, 0, 100 + l});
  for (uint64_t s = 1; s <= kMinRunBlocks; ++s) keys.push_back({s, 0, 0, 200 + s});
  ASSERT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  const auto batches = split_disk_reads(keys, 64);
  ASSERT_NO_FATAL_FAILURE(expect_partition(batches, keys.size()));
  for (const auto& batch : batches) EXPECT_LT(batch.size(), kMinRunBlocks);
  EXPECT_EQ(batches.size(), keys.size() / kMinScatteredBatch);
}

TEST(DiskReadSplit, RandomMixesArePartitionedWithEveryLongRunWhole) {
  std::mt19937_64 rng(test::fresh_seed());
  for (int round = 0; round < 200; ++round) {
    std::vector<BlockKey> keys;
    std::vector<std::vector<size_t>> runs;  // the batches that runs must come out as
    uint64_t next = 0;
    const int pieces = 1 + static_cast<int>(rng() % 40);
    for (int p = 0; p < pieces; ++p) {
      next += 2 + rng() % 5;  // a gap: pieces are never neighbours of each other
      const size_t n = rng() % 3 == 0 ? 1 + rng() % 70 : 1;
      for (size_t from = 0; from < n; from += kMaxRunBlocks) {
        const size_t len = std::min(kMaxRunBlocks, n - from);
        if (len < kMinRunBlocks) continue;
        runs.emplace_back();
        for (size_t i = 0; i < len; ++i) runs.back().push_back(keys.size() + from + i);
      }
      for (const BlockKey& k : run_of(0, next, n)) keys.push_back(k);
      next += n;
    }
    const size_t threads = 1 + rng() % 40;
    const auto batches = split_disk_reads(keys, threads);
    SCOPED_TRACE(testing::Message()
                 << "round " << round << ", " << keys.size() << " keys, " << threads << " threads");
    ASSERT_NO_FATAL_FAILURE(expect_partition(batches, keys.size()));
    std::vector<size_t> others;  // sizes of the batches that are not runs
    for (const auto& batch : batches) {
      if (std::find(runs.begin(), runs.end(), batch) == runs.end()) others.push_back(batch.size());
    }
    EXPECT_EQ(batches.size() - others.size(), runs.size()) << "a run was split or merged";
    EXPECT_LE(others.size(), threads);
    if (!others.empty()) {
      EXPECT_LE(*std::max_element(others.begin(), others.end()) -
                    *std::min_element(others.begin(), others.end()),
                1u);
    }
  }
}

TEST(DiskReadSplit, NothingToRead) { EXPECT_TRUE(split_disk_reads({}, 32).empty()); }

}  // namespace
}  // namespace lmkv
