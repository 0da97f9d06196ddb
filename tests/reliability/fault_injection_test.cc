// Faults on the disk tier: read errors, flipped bits and truncated values are reported as errors
// naming the block and never returned as data; the other blocks stay readable; a refused write
// stores nothing and loses nothing already stored.
#include <gtest/gtest.h>

#include "faulty_disk.h"
#include "kvstore/tiered_store.h"
#include "test_util.h"

namespace lmkv {
namespace {

struct FaultyStore {
  test::TempDir dir;
  std::shared_ptr<test::Faults> faults = std::make_shared<test::Faults>();
  std::unique_ptr<TieredStore> store;
  uint64_t seed = test::fresh_seed();

  explicit FaultyStore(WritePolicy policy = WritePolicy::kWriteThrough) {
    StoreOptions options = test::test_store_options(dir.path(), 4);
    options.write_policy = policy;
    options.open_disk = test::faulty_disk(faults);
    auto opened = TieredStore::open(options);
    EXPECT_TRUE(opened.ok()) << opened.status().to_string();
    store = std::move(opened).value();
  }
};

TEST(FaultInjection, DamagedReadsNameTheBlockAndSpareTheOthers) {
  FaultyStore s;
  for (uint64_t b = 0; b < 12; ++b)
    ASSERT_TRUE(test::put_test_block(*s.store, {1, 0, 0, b}, s.seed).ok());
  ASSERT_TRUE(s.store->evict_all(Tier::kHost).ok());
  s.faults->read_error = [](const BlockKey& k) { return k.block_no == 3; };
  s.faults->flip_bit = [](const BlockKey& k) { return k.block_no == 5; };
  s.faults->truncate = [](const BlockKey& k) { return k.block_no == 7; };
  const std::pair<uint64_t, StatusCode> bad[] = {
      {3, StatusCode::kIOError}, {5, StatusCode::kCorruption}, {7, StatusCode::kCorruption}};
  for (auto [block, code] : bad) {
    const BlockKey key{1, 0, 0, block};
    Result<PageIn> page = s.store->page_in({key}, PageInTarget::kHost);
    EXPECT_EQ(page.status().code(), code) << page.status().to_string();
    EXPECT_NE(page.status().message().find(key.to_string()), std::string::npos)
        << page.status().message();
  }
  // A batch with a damaged block fails whole, pins nothing, and caches none of the damage.
  Result<PageIn> batch =
      s.store->page_in({{1, 0, 0, 2}, {1, 0, 0, 5}, {1, 0, 0, 8}}, PageInTarget::kHost);
  EXPECT_EQ(batch.status().code(), StatusCode::kCorruption);
  for (uint64_t b = 0; b < 12; ++b) {
    if (b == 3 || b == 5 || b == 7) continue;
    Result<PageIn> page = s.store->page_in({{1, 0, 0, b}}, PageInTarget::kHost);
    ASSERT_TRUE(page.ok()) << b << ": " << page.status().to_string();
    EXPECT_TRUE(test::payload_matches(s.store->shape(), {1, 0, 0, b}, s.seed, page->payload(0)));
  }
  // Once the disk behaves again, the blocks are intact: nothing was overwritten.
  s.faults->read_error = s.faults->flip_bit =
      s.faults->truncate = [](const BlockKey&) { return false; };
  for (uint64_t b : {3, 5, 7}) {
    Result<PageIn> page = s.store->page_in({{1, 0, 0, b}}, PageInTarget::kHost);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    EXPECT_TRUE(test::payload_matches(s.store->shape(), {1, 0, 0, b}, s.seed, page->payload(0)));
  }
}

TEST(FaultInjection, RefusedWritesStoreNothingAndLoseNothing) {
  for (WritePolicy policy : {WritePolicy::kWriteThrough, WritePolicy::kWriteBack}) {
    FaultyStore s(policy);
    for (uint64_t b = 0; b < 4; ++b)
      ASSERT_TRUE(test::put_test_block(*s.store, {2, 0, 0, b}, s.seed).ok());
    s.faults->fail_writes = true;
    // Write-through refuses the put at once; write-back refuses when a block must reach disk
    // (eviction here: the host tier holds 4 blocks).
    Status refused;
    uint64_t b = 4;
    for (; b < 12 && refused.ok(); ++b)
      refused = test::put_test_block(*s.store, {2, 0, 0, b}, s.seed);
    EXPECT_EQ(refused.code(), StatusCode::kIOError) << refused.to_string();
    EXPECT_EQ(s.store->sync().code(),
              policy == WritePolicy::kWriteBack ? StatusCode::kIOError : StatusCode::kOk);
    s.faults->fail_writes = false;
    ASSERT_TRUE(s.store->sync().ok());
    // Every block whose put succeeded is intact; the refused one can be put again.
    for (uint64_t i = 0; i + 1 < b; ++i) {
      Result<PageIn> page = s.store->page_in({{2, 0, 0, i}}, PageInTarget::kHost);
      ASSERT_TRUE(page.ok()) << i << ": " << page.status().to_string();
      EXPECT_TRUE(test::payload_matches(s.store->shape(), {2, 0, 0, i}, s.seed, page->payload(0)));
    }
    const BlockKey again{2, 0, 0, b - 1};
    Result<bool> stored = s.store->contains(again);
    ASSERT_TRUE(stored.ok());
    if (!*stored) ASSERT_TRUE(test::put_test_block(*s.store, again, s.seed).ok());
    Result<PageIn> page = s.store->page_in({again}, PageInTarget::kHost);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
  }
}

}  // namespace
}  // namespace lmkv
