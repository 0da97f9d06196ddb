// A bounded soak: several threads ingest whole sequences, read them back while others work, and
// erase them, over and over, beside a sequence that stays. No error, no lost or wrong block, and
// resident memory flat once the store's caches and buffers have warmed up.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "kvstore/tiered_store.h"
#include "test_util.h"

namespace lmkv {
namespace {

size_t resident_bytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

TEST(Soak, ManyThreadsIngestReadAndEraseWithoutLossOrGrowth) {
  test::TempDir dir;
  StoreOptions options = test::test_store_options(dir.path(), 256, {16, 64, DType::kFloat16});
  options.write_policy = WritePolicy::kWriteBack;  // the path with the most moving parts
  auto opened = TieredStore::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();
  constexpr uint64_t kAnchor = 0, kBlocks = 120;
  for (uint64_t b = 0; b < kBlocks; ++b)
    ASSERT_TRUE(test::put_test_block(store, {kAnchor, 0, 0, b}, seed).ok());

  constexpr int kThreads = 4;
  const auto warm_up = std::chrono::seconds(3), total = std::chrono::seconds(10);
  const auto start = std::chrono::steady_clock::now();
  std::atomic<bool> failed{false};
  std::atomic<uint64_t> rounds{0}, blocks_read{0};
  auto fail = [&](const std::string& what) {
    if (!failed.exchange(true)) ADD_FAILURE() << what;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      for (uint64_t round = 0; !failed && std::chrono::steady_clock::now() - start < total;
           ++round) {
        const uint64_t seq = 1 + t + kThreads * round;  // each sequence is written once
        for (uint64_t b = 0; b < kBlocks; ++b) {
          const Status s = test::put_test_block(store, {seq, 0, 0, b}, seed);
          if (!s.ok()) return fail("put: " + s.to_string());
        }
        for (int i = 0; i < 20; ++i) {
          std::vector<BlockKey> batch;
          for (int j = 0; j < 6; ++j) {
            batch.push_back({j % 2 ? seq : kAnchor, 0, 0, rng() % kBlocks});
          }
          Result<PageIn> page = store.page_in(batch, PageInTarget::kHost);
          if (!page.ok()) return fail("page_in: " + page.status().to_string());
          for (size_t j = 0; j < batch.size(); ++j) {
            if (!test::payload_matches(store.shape(), batch[j], seed, page->payload(j))) {
              return fail("wrong bytes for " + batch[j].to_string());
            }
          }
          blocks_read += batch.size();
        }
        if (Status s = store.erase(seq); !s.ok()) return fail("erase: " + s.to_string());
        ++rounds;
      }
    });
  }
  std::this_thread::sleep_for(warm_up);
  const size_t warm = resident_bytes();
  for (auto& t : threads) t.join();
  const size_t end = resident_bytes();
  ASSERT_FALSE(failed);
  for (uint64_t b = 0; b < kBlocks; ++b) {
    Result<PageIn> page = store.page_in({{kAnchor, 0, 0, b}}, PageInTarget::kHost);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    ASSERT_TRUE(test::payload_matches(store.shape(), {kAnchor, 0, 0, b}, seed, page->payload(0)));
  }
  const double growth_mb = (double(end) - double(warm)) / (1 << 20);
  std::printf(
      "[ soak     ] %llu sequences of %llu blocks ingested, read and erased; %llu blocks "
      "read; resident %.1f MB after warm-up, %.1f MB at the end\n",
      (unsigned long long)rounds.load(), (unsigned long long)kBlocks,
      (unsigned long long)blocks_read.load(), warm / 1048576.0, end / 1048576.0);
  RecordProperty("rounds", std::to_string(rounds.load()));
  RecordProperty("resident_growth_mb", std::to_string(growth_mb));
  EXPECT_GT(rounds.load(), uint64_t{kThreads});
  // Flat: the memtable (64 MB) and index cache (32 MB) bound what RocksDB may still add. Under
  // AddressSanitizer freed memory sits in its quarantine, so resident size says nothing there.
#ifndef __SANITIZE_ADDRESS__
  EXPECT_LT(growth_mb, 96.0) << "resident memory kept growing after warm-up";
#endif
}

}  // namespace
}  // namespace lmkv
