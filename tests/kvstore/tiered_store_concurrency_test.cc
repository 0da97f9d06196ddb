// Many threads putting, paging in (the same blocks too) and erasing at once, with tiers small
// enough that eviction runs all the time; and page_in_async from many callers. Run under
// ThreadSanitizer with LMKV_SANITIZER=thread.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <random>
#include <thread>

#include "faulty_disk.h"
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

// page_in_async runs page_in on a few workers shared by every caller. A store of 200 blocks with
// 64 in the host tier, so that calls read the disk as well as hit.
class AsyncPageInConcurrency : public ::testing::Test {
 protected:
  static constexpr uint64_t kBlocks = 200;

  void open_and_fill(int async_threads, const std::shared_ptr<test::Faults>& faults = nullptr) {
    StoreOptions options = test::test_store_options(dir_.path(), 64, {16, 64, DType::kFloat16});
    options.async_page_in_threads = async_threads;
    if (faults) options.open_disk = test::faulty_disk(faults);
    auto opened = TieredStore::open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    store_ = std::move(opened).value();
    for (uint64_t b = 0; b < kBlocks; ++b) {
      ASSERT_TRUE(test::put_test_block(*store_, key(b), seed_).ok());
    }
  }
  static BlockKey key(uint64_t b) { return {7, 1, static_cast<uint32_t>(b % 4), b}; }
  // Whether every block of `batch` came back with its own bytes.
  bool matches(const std::vector<BlockKey>& batch, const PageIn& page) const {
    for (size_t j = 0; j < batch.size(); ++j) {
      if (!test::payload_matches(store_->shape(), batch[j], seed_, page.payload(j))) return false;
    }
    return true;
  }

  test::TempDir dir_;
  const uint64_t seed_ = test::fresh_seed();
  std::unique_ptr<TieredStore> store_;
};

TEST_F(AsyncPageInConcurrency, MoreCallsThanWorkersAllGetTheirBlocks) {
  open_and_fill(/*async_threads=*/2);
  constexpr int kCallers = 4, kCallsEach = 20, kBatch = 4, kInFlightEach = 2;
  std::atomic<bool> failed{false};
  auto fail = [&](const std::string& what) {
    if (!failed.exchange(true)) ADD_FAILURE() << what;
  };
  std::vector<std::thread> callers;
  for (int t = 0; t < kCallers; ++t) {
    callers.emplace_back([&, t] {
      std::mt19937_64 rng(seed_ + t);
      // Each caller keeps two calls queued, so eight wait for the two workers at times.
      std::deque<std::pair<std::vector<BlockKey>, std::future<Result<PageIn>>>> pending;
      for (int call = 0; call < kCallsEach || !pending.empty();) {
        if (call < kCallsEach && pending.size() < kInFlightEach) {
          std::vector<BlockKey> batch;
          for (int j = 0; j < kBatch; ++j) batch.push_back(key(rng() % kBlocks));
          auto future = store_->page_in_async(batch, PageInTarget::kHost);
          pending.emplace_back(std::move(batch), std::move(future));
          ++call;
          continue;
        }
        auto [batch, future] = std::move(pending.front());
        pending.pop_front();
        Result<PageIn> page = future.get();
        if (!page.ok()) return fail("page_in_async: " + page.status().to_string());
        if (!matches(batch, *page)) return fail("wrong bytes in a page_in_async result");
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_FALSE(failed);
  EXPECT_EQ(store_->stats().page_ins, uint64_t{kCallers} * kCallsEach);
}

TEST_F(AsyncPageInConcurrency, ErrorsComeBackThroughTheFuture) {
  open_and_fill(/*async_threads=*/1);
  const BlockKey unknown{99, 0, 0, 0};
  Result<PageIn> page = store_->page_in_async({key(0), unknown}, PageInTarget::kHost).get();
  ASSERT_EQ(page.status().code(), StatusCode::kNotFound) << page.status().to_string();
  EXPECT_NE(page.status().message().find(unknown.to_string()), std::string::npos)
      << page.status().message();
  // Nothing stays pinned: the whole host tier can still be paged in at once.
  std::vector<BlockKey> all;
  for (uint64_t b = 0; b < 64; ++b) all.push_back(key(b));
  EXPECT_TRUE(store_->page_in_async(all, PageInTarget::kHost).get().ok());
}

TEST_F(AsyncPageInConcurrency, CloseLetsEarlierCallsFinishAndLaterOnesFail) {
  // The first call stops in its disk read until the gate opens, so that the others are still
  // queued behind it, on the one worker, when close() begins.
  auto faults = std::make_shared<test::Faults>();
  open_and_fill(/*async_threads=*/1, faults);
  std::promise<void> gate;
  std::shared_future<void> gate_open = gate.get_future().share();
  std::atomic<bool> first_read{true};
  faults->before_read = [&] {
    if (first_read.exchange(false)) gate_open.wait();
  };
  std::vector<std::vector<BlockKey>> batches;
  std::vector<std::future<Result<PageIn>>> futures;
  for (uint64_t call = 0; call < 16; ++call) {
    // Blocks 0 to 135 are on disk only (the host tier keeps the last 64 put).
    batches.push_back({key(call * 3), key(call * 3 + 1), key(kBlocks - 1 - call)});
    futures.push_back(store_->page_in_async(batches.back(), PageInTarget::kHost));
  }
  Status closed;
  std::thread closer([&] { closed = store_->close(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  gate.set_value();
  closer.join();
  ASSERT_TRUE(closed.ok()) << closed.to_string();
  for (size_t i = 0; i < futures.size(); ++i) {
    ASSERT_EQ(futures[i].wait_for(std::chrono::seconds(0)), std::future_status::ready) << i;
    Result<PageIn> page = futures[i].get();
    ASSERT_TRUE(page.ok()) << i << ": " << page.status().to_string();
    EXPECT_TRUE(matches(batches[i], *page)) << i;
  }  // the results are released after the close, which is safe
  auto late = store_->page_in_async({key(0)}, PageInTarget::kHost);
  ASSERT_EQ(late.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(late.get().status().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace lmkv
