// Many threads putting, paging in (the same blocks too) and erasing at once, with tiers small
// enough that eviction runs all the time. Run under ThreadSanitizer with LMKV_SANITIZER=thread.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "kvstore/tiered_store.h"
#include "test_util.h"

namespace lmkv {
namespace {

class Concurrency : public ::testing::TestWithParam<WritePolicy> {};

TEST_P(Concurrency, WritersReadersAndErasersNeverSeeAWrongBlock) {
  test::TempDir dir;
  StoreOptions options = test::test_store_options(dir.path(), 64, {16, 64, DType::kFloat16});
  options.write_policy = GetParam();
  auto opened = TieredStore::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();

  constexpr int kWriters = 3, kReaders = 3, kBlocksPerWriter = 150, kBatch = 6;
  std::atomic<int> written[kWriters] = {};
  std::atomic<bool> failed{false};
  std::atomic<int> reads{0};
  std::atomic<int> writers_left{kWriters};
  auto fail = [&](const std::string& what) {
    if (!failed.exchange(true)) ADD_FAILURE() << what;
  };

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int b = 0; b < kBlocksPerWriter && !failed; ++b) {
        const Status s = test::put_test_block(store, {uint64_t(w), 0, 0, uint64_t(b)}, seed);
        if (!s.ok()) return fail("put: " + s.to_string());
        written[w].store(b + 1);
      }
      --writers_left;
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937_64 rng(seed + r);
      // Read while the writers write, and at least 100 batches.
      for (int i = 0; (writers_left > 0 || i < 100) && !failed;) {
        std::vector<BlockKey> batch;
        for (int j = 0; j < kBatch; ++j) {
          const int w = static_cast<int>(rng() % kWriters);
          const int n = written[w].load();
          if (n == 0) continue;
          // Readers favour the newest blocks, so they often race for the same ones.
          const int b = rng() % 2 ? n - 1 : static_cast<int>(rng() % n);
          batch.push_back({uint64_t(w), 0, 0, uint64_t(b)});
        }
        if (batch.empty()) continue;
        Result<PageIn> page = store.page_in(batch, PageInTarget::kHost);
        if (!page.ok()) return fail("page_in: " + page.status().to_string());
        for (size_t j = 0; j < batch.size(); ++j) {
          if (!test::payload_matches(store.shape(), batch[j], seed, page->payload(j))) {
            return fail("wrong bytes for " + batch[j].to_string());
          }
        }
        reads += static_cast<int>(batch.size());
        ++i;
      }
    });
  }
  threads.emplace_back([&] {  // a sequence that keeps being written and erased
    for (int round = 0; round < 20 && !failed; ++round) {
      for (uint64_t b = 0; b < 10; ++b) {
        const Status s = test::put_test_block(store, {1000, 0, 0, b}, seed + round);
        if (!s.ok()) return fail("put to erased sequence: " + s.to_string());
      }
      const Status s = store.erase(1000);
      if (!s.ok()) return fail("erase: " + s.to_string());
    }
  });
  for (auto& t : threads) t.join();
  ASSERT_FALSE(failed);
  EXPECT_GT(reads.load(), 0);

  // Nothing was lost: every written block is intact, and the erased sequence is gone.
  for (int w = 0; w < kWriters; ++w) {
    for (int b = 0; b < kBlocksPerWriter; ++b) {
      const BlockKey key{uint64_t(w), 0, 0, uint64_t(b)};
      Result<PageIn> page = store.page_in({key}, PageInTarget::kHost);
      ASSERT_TRUE(page.ok()) << page.status().to_string();
      ASSERT_TRUE(test::payload_matches(store.shape(), key, seed, page->payload(0)));
    }
  }
  EXPECT_FALSE(*store.contains({1000, 0, 0, 0}));
  EXPECT_LE(store.stats().tier(Tier::kHost).resident_blocks, 64u);
}

INSTANTIATE_TEST_SUITE_P(Policies, Concurrency,
                         ::testing::Values(WritePolicy::kWriteThrough, WritePolicy::kWriteBack));

}  // namespace
}  // namespace lmkv
