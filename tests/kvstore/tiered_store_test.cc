// TieredStore on the CPU tiers (host and disk): round trips, demotion and promotion, eviction
// order, capacities, persistence, corruption, erase, statistics and error reporting.
#include "kvstore/tiered_store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <sys/wait.h>

#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "faulty_disk.h"
#include "kvstore/cuda_util.h"
#include "kvstore/key_codec.h"
#include "kvstore/value_codec.h"
#include "test_util.h"

namespace lmkv {
namespace {

using test::put_test_block;

std::unique_ptr<TieredStore> open_store(const StoreOptions& options) {
  auto store = TieredStore::open(options);
  EXPECT_TRUE(store.ok()) << store.status().to_string();
  return store.ok() ? std::move(store).value() : nullptr;
}

// Reads `key` through a host page-in and checks every byte.
void expect_block(TieredStore& store, const BlockKey& key, uint64_t seed) {
  Result<PageIn> page = store.page_in({key}, PageInTarget::kHost);
  ASSERT_TRUE(page.ok()) << key.to_string() << ": " << page.status().to_string();
  EXPECT_TRUE(test::payload_matches(store.shape(), key, seed, page->payload(0))) << key.to_string();
}

Tier tier_of(TieredStore& store, const BlockKey& key) {
  Result<Tier> tier = store.residency(key);
  EXPECT_TRUE(tier.ok()) << tier.status().to_string();
  return tier.ok() ? *tier : Tier::kDisk;
}

class StoreRoundTrip
    : public ::testing::TestWithParam<std::tuple<DType, WritePolicy, EvictionPolicyKind>> {};

TEST_P(StoreRoundTrip, BitExactThroughHostDiskAndBack) {
  const auto [dtype, policy, eviction] = GetParam();
  test::TempDir dir;
  StoreOptions options = test::test_store_options(dir.path(), 8, {50, 128, dtype});
  options.write_policy = policy;
  options.eviction = eviction;
  auto store = open_store(options);
  ASSERT_TRUE(store);
  const uint64_t seed = test::fresh_seed();
  std::vector<BlockKey> keys;
  for (uint64_t b = 0; b < 40; ++b) keys.push_back({b % 2, 1, static_cast<uint32_t>(b % 3), b});
  for (const auto& k : keys) ASSERT_TRUE(put_test_block(*store, k, seed).ok()) << k.to_string();
  // 40 blocks through 8 host slots: most were demoted to disk.
  int on_disk = 0;
  for (const auto& k : keys) on_disk += tier_of(*store, k) == Tier::kDisk;
  EXPECT_EQ(on_disk, 32);
  ASSERT_TRUE(store->compact_disk().ok());
  for (const auto& k : keys) expect_block(*store, k, seed);  // each read promotes to host
  EXPECT_EQ(tier_of(*store, keys.back()), Tier::kHost);
  // read() copies out K and V separately.
  std::vector<char> k_out(store->shape().tensor_bytes()), v_out(store->shape().tensor_bytes());
  ASSERT_TRUE(store->read(keys[3], k_out.data(), v_out.data()).ok());
  const std::vector<char> want = test::block_payload(store->shape(), keys[3], seed);
  EXPECT_EQ(0, std::memcmp(k_out.data(), want.data(), k_out.size()));
  EXPECT_EQ(0, std::memcmp(v_out.data(), want.data() + k_out.size(), v_out.size()));
}

INSTANTIATE_TEST_SUITE_P(
    Policies, StoreRoundTrip,
    ::testing::Combine(::testing::Values(DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(WritePolicy::kWriteThrough, WritePolicy::kWriteBack),
                       ::testing::Values(EvictionPolicyKind::kLru, EvictionPolicyKind::kClock)));

TEST(TieredStore, LruEvictsTheLeastRecentlyUsedBlock) {
  test::TempDir dir;
  auto store = open_store(test::test_store_options(dir.path(), 3));
  ASSERT_TRUE(store);
  const uint64_t seed = test::fresh_seed();
  const BlockKey a{0, 0, 0, 0}, b{0, 0, 0, 1}, c{0, 0, 0, 2}, d{0, 0, 0, 3};
  for (const auto& k : {a, b, c}) ASSERT_TRUE(put_test_block(*store, k, seed).ok());
  expect_block(*store, a, seed);  // a is now the most recent; b the least
  ASSERT_TRUE(put_test_block(*store, d, seed).ok());
  EXPECT_EQ(tier_of(*store, b), Tier::kDisk);
  for (const auto& k : {a, c, d}) EXPECT_EQ(tier_of(*store, k), Tier::kHost) << k.to_string();
  EXPECT_EQ(store->stats().tier(Tier::kHost).evictions, 1u);
}

TEST(TieredStore, CapacityIsNeverExceeded) {
  test::TempDir dir;
  auto store = open_store(test::test_store_options(dir.path(), 5));
  ASSERT_TRUE(store);
  const uint64_t seed = test::fresh_seed();
  std::mt19937_64 rng(seed);
  std::vector<BlockKey> keys;
  for (uint64_t b = 0; b < 30; ++b) {
    keys.push_back({0, 0, 0, b});
    ASSERT_TRUE(put_test_block(*store, keys.back(), seed).ok());
    ASSERT_LE(store->stats().tier(Tier::kHost).resident_blocks, 5u);
  }
  for (int i = 0; i < 200; ++i) {
    std::vector<BlockKey> batch;
    for (int j = 0; j < 4; ++j) batch.push_back(keys[rng() % keys.size()]);
    Result<PageIn> page = store->page_in(batch, PageInTarget::kHost);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    for (size_t j = 0; j < batch.size(); ++j) {
      ASSERT_TRUE(test::payload_matches(store->shape(), batch[j], seed, page->payload(j)));
    }
    ASSERT_LE(store->stats().tier(Tier::kHost).resident_blocks, 5u);
  }
  EXPECT_EQ(store->stats().tier(Tier::kHost).capacity_blocks, 5u);
}

TEST(TieredStore, DuplicateKeysInOnePageInShareASlot) {
  test::TempDir dir;
  auto store = open_store(test::test_store_options(dir.path(), 2));
  ASSERT_TRUE(store);
  const uint64_t seed = test::fresh_seed();
  const BlockKey a{1, 0, 0, 0}, b{1, 0, 0, 1};
  ASSERT_TRUE(put_test_block(*store, a, seed).ok());
  ASSERT_TRUE(put_test_block(*store, b, seed).ok());
  Result<PageIn> page = store->page_in({a, b, a, a, b}, PageInTarget::kHost);
  ASSERT_TRUE(page.ok()) << page.status().to_string();
  EXPECT_EQ(page->slot(0), page->slot(2));
  EXPECT_EQ(page->slot(1), page->slot(4));
  EXPECT_NE(page->slot(0), page->slot(1));
  EXPECT_TRUE(test::payload_matches(store->shape(), a, seed, page->payload(3)));
}

TEST(TieredStore, PinnedBlocksAreNotEvicted) {
  test::TempDir dir;
  auto store = open_store(test::test_store_options(dir.path(), 2));
  ASSERT_TRUE(store);
  const uint64_t seed = test::fresh_seed();
  for (uint64_t b = 0; b < 4; ++b) ASSERT_TRUE(put_test_block(*store, {0, 0, 0, b}, seed).ok());
  Result<PageIn> held = store->page_in({{0, 0, 0, 0}, {0, 0, 0, 1}}, PageInTarget::kHost);
  ASSERT_TRUE(held.ok());
  // Both host slots are pinned: a third block cannot be brought in, and nothing is evicted.
  Result<PageIn> more = store->page_in({{0, 0, 0, 2}}, PageInTarget::kHost);
  EXPECT_EQ(more.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(more.status().message().find("pinned"), std::string::npos) << more.status().message();
  EXPECT_TRUE(test::payload_matches(store->shape(), {0, 0, 0, 0}, seed, held->payload(0)));
  EXPECT_TRUE(test::payload_matches(store->shape(), {0, 0, 0, 1}, seed, held->payload(1)));
  held->release();
  expect_block(*store, {0, 0, 0, 2}, seed);
  // A put with the host tier fully pinned still stores the block (write-through: on disk).
  Result<PageIn> again = store->page_in({{0, 0, 0, 0}, {0, 0, 0, 1}}, PageInTarget::kHost);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(put_test_block(*store, {0, 0, 0, 9}, seed).ok());
  again->release();
  expect_block(*store, {0, 0, 0, 9}, seed);
}

TEST(TieredStore, WriteBackPutWithTheHostTierPinnedGoesToDisk) {
  test::TempDir dir;
  StoreOptions options = test::test_store_options(dir.path(), 2);
  options.write_policy = WritePolicy::kWriteBack;
  auto store = open_store(options);
  ASSERT_TRUE(store);
  const uint64_t seed = test::fresh_seed();
  for (uint64_t b = 0; b < 2; ++b) ASSERT_TRUE(put_test_block(*store, {0, 0, 0, b}, seed).ok());
  Result<PageIn> held = store->page_in({{0, 0, 0, 0}, {0, 0, 0, 1}}, PageInTarget::kHost);
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(put_test_block(*store, {0, 0, 0, 2}, seed).ok());  // no host slot is free
  EXPECT_EQ(tier_of(*store, {0, 0, 0, 2}), Tier::kDisk);
  held->release();
  expect_block(*store, {0, 0, 0, 2}, seed);
  EXPECT_EQ(store->stats().puts, 3u);
}

TEST(TieredStore, ReopenAfterCloseFindsEveryBlock) {
  for (WritePolicy policy : {WritePolicy::kWriteThrough, WritePolicy::kWriteBack}) {
    test::TempDir dir;
    StoreOptions options = test::test_store_options(dir.path(), 16);
    options.write_policy = policy;
    const uint64_t seed = test::fresh_seed();
    {
      auto store = open_store(options);
      ASSERT_TRUE(store);
      for (uint64_t b = 0; b < 10; ++b)
        ASSERT_TRUE(put_test_block(*store, {2, 0, 1, b}, seed).ok());
      ASSERT_TRUE(store->close().ok());
      EXPECT_EQ(put_test_block(*store, {2, 0, 1, 99}, seed).code(),
                StatusCode::kFailedPrecondition);
    }
    auto store = open_store(options);
    ASSERT_TRUE(store);
    for (uint64_t b = 0; b < 10; ++b) {
      EXPECT_EQ(tier_of(*store, {2, 0, 1, b}), Tier::kDisk);
      expect_block(*store, {2, 0, 1, b}, seed);
    }
  }
}

TEST(TieredStore, ReopenAfterSyncFindsBlocksOfAProcessThatDied) {
  for (const char* policy : {"write-through", "write-back"}) {
    test::TempDir dir;
    StoreOptions options = test::test_store_options(dir.path(), 16);
    const uint64_t seed = test::fresh_seed();
    // A fresh process (not a fork of this multi-threaded one) writes 10 blocks, syncs and exits
    // without closing the store.
    const std::string command = std::string(LMKV_STORE_WRITER_CHILD) + " " + dir.path() + " " +
                                policy + " " + std::to_string(seed) + " 4 10";
    const int status = std::system(command.c_str());
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << command << ": " << status;
    auto store = open_store(options);
    ASSERT_TRUE(store);
    for (uint64_t b = 0; b < 10; ++b) expect_block(*store, {4, 1, 0, b}, seed);
  }
}

// Flips one byte of a stored value directly in RocksDB, as a disk fault would.
void flip_stored_byte(const std::string& path, const BlockKey& key, size_t offset) {
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), path, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string value;
  ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), encode_block_key(key), &value).ok());
  value[offset] = static_cast<char>(value[offset] ^ 0x10);
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), encode_block_key(key), value).ok());
  ASSERT_TRUE(db->Close().ok());
}

TEST(TieredStore, FlippedStoredByteIsReportedAsCorruption) {
  test::TempDir dir;
  const StoreOptions options = test::test_store_options(dir.path(), 4);
  const uint64_t seed = test::fresh_seed();
  const BlockKey bad{1, 2, 3, 4}, good{1, 2, 3, 5};
  {
    auto store = open_store(options);
    ASSERT_TRUE(store);
    ASSERT_TRUE(put_test_block(*store, bad, seed).ok());
    ASSERT_TRUE(put_test_block(*store, good, seed).ok());
  }
  flip_stored_byte(dir.path(), bad, kValueHeaderBytes + 1234);
  auto store = open_store(options);
  ASSERT_TRUE(store);
  Result<PageIn> page = store->page_in({good, bad}, PageInTarget::kHost);
  EXPECT_EQ(page.status().code(), StatusCode::kCorruption);
  EXPECT_NE(page.status().message().find(bad.to_string()), std::string::npos)
      << page.status().message();
  std::vector<char> out(options.shape.payload_bytes());
  EXPECT_EQ(store->read(bad, out.data(), out.data() + options.shape.tensor_bytes()).code(),
            StatusCode::kCorruption);
  expect_block(*store, good, seed);  // the other block stays readable
  EXPECT_EQ(store->stats().tier(Tier::kHost).resident_blocks, 1u) << "the bad block was cached";
}

TEST(TieredStore, EraseRemovesASequenceAndNothingElse) {
  test::TempDir dir;
  auto store = open_store(test::test_store_options(dir.path(), 6));
  ASSERT_TRUE(store);
  const uint64_t seed = test::fresh_seed();
  for (uint64_t seq = 0; seq < 3; ++seq) {
    for (uint64_t b = 0; b < 5; ++b) ASSERT_TRUE(put_test_block(*store, {seq, 0, 0, b}, seed).ok());
  }
  // One block of the erased sequence is pinned by a page-in while the erase runs.
  Result<PageIn> held = store->page_in({{1, 0, 0, 4}}, PageInTarget::kHost);
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(store->erase(1).ok());
  for (uint64_t b = 0; b < 5; ++b) {
    EXPECT_EQ(store->residency({1, 0, 0, b}).status().code(), StatusCode::kNotFound);
    EXPECT_FALSE(*store->contains({1, 0, 0, b}));
  }
  held->release();
  for (uint64_t seq : {0, 2}) {
    for (uint64_t b = 0; b < 5; ++b) expect_block(*store, {seq, 0, 0, b}, seed);
  }
  // The erased keys may be written again, and the orphaned slot was freed.
  ASSERT_TRUE(put_test_block(*store, {1, 0, 0, 4}, seed ^ 1).ok());
  expect_block(*store, {1, 0, 0, 4}, seed ^ 1);
  EXPECT_LE(store->stats().tier(Tier::kHost).resident_blocks, 6u);
}

TEST(TieredStore, StatisticsCountHitsMissesAndLatency) {
  test::TempDir dir;
  auto store = open_store(test::test_store_options(dir.path(), 4));
  ASSERT_TRUE(store);
  const uint64_t seed = test::fresh_seed();
  for (uint64_t b = 0; b < 8; ++b) ASSERT_TRUE(put_test_block(*store, {0, 0, 0, b}, seed).ok());
  ASSERT_TRUE(store->compact_disk().ok());  // out of the memtable: reads go to files
  // A read before the reset that leaves every block in its tier.
  ASSERT_TRUE(*store->contains({0, 0, 0, 3}));
  EXPECT_GT(store->stats().disk_reads.reads, 0u);
  store->reset_stats();
  // Blocks 4..7 are in the host tier, 0..3 on disk.
  ASSERT_TRUE(store->page_in({{0, 0, 0, 6}, {0, 0, 0, 7}}, PageInTarget::kHost).ok());
  ASSERT_TRUE(store->page_in({{0, 0, 0, 0}, {0, 0, 0, 1}, {0, 0, 0, 2}}, PageInTarget::kHost).ok());
  const StoreStatsSnapshot s = store->stats();
  const size_t block = store->shape().payload_bytes();
  EXPECT_EQ(s.tier(Tier::kHost).hits, 2u);
  EXPECT_EQ(s.tier(Tier::kHost).misses, 3u);
  EXPECT_EQ(s.tier(Tier::kDisk).hits, 3u);
  EXPECT_EQ(s.tier(Tier::kDisk).bytes_out, 3 * block);
  EXPECT_EQ(s.tier(Tier::kHost).evictions, 3u);
  EXPECT_EQ(s.latency(Tier::kHost).count(), 1u);
  EXPECT_EQ(s.latency(Tier::kDisk).count(), 1u);
  EXPECT_GT(s.latency(Tier::kDisk).max_ns(), 0u);
  EXPECT_EQ(s.page_ins, 2u);
  // Since the reset: the three blocks' reads, and none of the read before it.
  EXPECT_EQ(s.disk_reads.reads, 3u);
  EXPECT_GE(s.disk_reads.bytes, 3 * block);
  EXPECT_GT(s.disk_reads.read_ns, 0u);
  const nlohmann::json j = nlohmann::json::parse(store->stats_json());
  EXPECT_EQ(j["disk_reads"]["reads"], 3);
  EXPECT_GT(j["disk_reads"]["read_us"].get<double>(), 0.0);
  EXPECT_EQ(j["tiers"]["disk"]["hits"], 3);
  EXPECT_EQ(j["tiers"]["host"]["capacity_blocks"], 4);
  for (const char* tier : {"gpu", "host", "disk"}) {
    for (const char* field : {"count", "p50", "p90", "p99", "max", "mean"}) {
      EXPECT_TRUE(j["swap_in_latency_us"][tier].contains(field)) << tier << "." << field;
    }
  }
}

// Opens a store with test options changed by `change`, expecting `code` and `needle` in the
// message.
void expect_open_refused(const std::string& dir, const std::function<void(StoreOptions&)>& change,
                         StatusCode code, const std::string& needle) {
  StoreOptions o = test::test_store_options(dir, 4);
  change(o);
  const Status s = TieredStore::open(o).status();
  EXPECT_EQ(s.code(), code) << s.to_string();
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

TEST(TieredStore, BadInputGetsAClearError) {
  test::TempDir dir;
  const uint64_t seed = test::fresh_seed();
  constexpr StatusCode kInvalid = StatusCode::kInvalidArgument;
  expect_open_refused(
      dir.path(), [](StoreOptions& o) { o.shape.head_dim = 100; }, kInvalid, "head_dim=100");
  expect_open_refused(
      dir.path(), [](StoreOptions& o) { o.host_capacity_bytes = 1000; }, kInvalid,
      "host_capacity_bytes=1000");
  expect_open_refused(
      dir.path(), [](StoreOptions& o) { o.cuda_device = -1; }, kInvalid, "cuda_device=-1");
  expect_open_refused(
      dir.path(), [](StoreOptions& o) { o.async_page_in_threads = 0; }, kInvalid,
      "async_page_in_threads=0");
  if (cuda_device_count() == 0) {
    expect_open_refused(
        dir.path(), [](StoreOptions& o) { o.gpu_capacity_bytes = 1ull << 30; },
        StatusCode::kFailedPrecondition, "gpu_capacity_bytes");
  }
  {
    StoreOptions o = test::test_store_options("", 4);
    EXPECT_EQ(TieredStore::open(o).status().code(), StatusCode::kInvalidArgument);
  }
  auto store = open_store(test::test_store_options(dir.path(), 4));
  ASSERT_TRUE(store);
  const BlockKey key{0, 1, 2, 3};
  ASSERT_TRUE(put_test_block(*store, key, seed).ok());
  const Status twice = put_test_block(*store, key, seed);
  EXPECT_EQ(twice.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(twice.message().find(key.to_string()), std::string::npos);
  ASSERT_TRUE(store->evict_all(Tier::kHost).ok());
  EXPECT_EQ(put_test_block(*store, key, seed).code(), StatusCode::kAlreadyExists)
      << "a block only on disk is still immutable";
  EXPECT_EQ(store->put({0, 0, 0, 0}, nullptr, nullptr).code(), StatusCode::kInvalidArgument);
  const BlockKey unknown{7, 7, 7, 7};
  Result<PageIn> missing = store->page_in({key, unknown}, PageInTarget::kHost);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(unknown.to_string()), std::string::npos);
  EXPECT_EQ(store->stats().tier(Tier::kHost).resident_blocks, 1u) << "a failed page-in leaks slots";
  Result<PageIn> too_many = store->page_in(
      {{0, 0, 0, 1}, {0, 0, 0, 2}, {0, 0, 0, 3}, {0, 0, 0, 4}, {0, 0, 0, 5}}, PageInTarget::kHost);
  EXPECT_EQ(too_many.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(too_many.status().message().find("5 distinct blocks"), std::string::npos)
      << too_many.status().message();
  EXPECT_EQ(store->stats().tier(Tier::kHost).resident_blocks, 1u)
      << "a request too big for the tier is refused before it evicts anything";
  EXPECT_EQ(store->page_in({key}, PageInTarget::kDevice).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->evict_all(Tier::kDisk).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(store->close().ok());
  // Reopening with another shape would misread every block.
  StoreOptions other = test::test_store_options(dir.path(), 4, {50, 64, DType::kFloat16});
  const Status reshaped = TieredStore::open(other).status();
  EXPECT_EQ(reshaped.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(reshaped.message().find("B=50 d=64 fp16"), std::string::npos) << reshaped.message();
}

TEST(TieredStore, DamagedReadsFromAWrappedDiskAreCaught) {
  test::TempDir dir;
  StoreOptions options = test::test_store_options(dir.path(), 4);
  auto faults = std::make_shared<test::Faults>();
  faults->flip_bit = [](const BlockKey& k) { return k.block_no % 2 == 1; };
  options.open_disk = test::faulty_disk(faults);
  auto store = open_store(options);
  ASSERT_TRUE(store);
  const uint64_t seed = test::fresh_seed();
  for (uint64_t b = 0; b < 8; ++b) ASSERT_TRUE(put_test_block(*store, {0, 0, 0, b}, seed).ok());
  ASSERT_TRUE(store->evict_all(Tier::kHost).ok());
  for (uint64_t b = 0; b < 8; ++b) {
    Result<PageIn> page = store->page_in({{0, 0, 0, b}}, PageInTarget::kHost);
    if (b % 2 == 0) {
      ASSERT_TRUE(page.ok()) << page.status().to_string();
      EXPECT_TRUE(test::payload_matches(store->shape(), {0, 0, 0, b}, seed, page->payload(0)));
    } else {
      EXPECT_EQ(page.status().code(), StatusCode::kCorruption) << b;
    }
  }
}

}  // namespace
}  // namespace lmkv
