// Exhaustion: a disk that fills up (RocksDB over a file system with a byte budget that answers
// "no space" once spent), allocations that fail, tiers too small. Each gives a clear error; nothing
// stored before is lost or damaged.
#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>

#include "kvstore/cuda_util.h"
#include "kvstore/tiered_store.h"
#include "test_util.h"

namespace lmkv {
namespace {

// A file whose appends draw on a shared byte budget; past it every append fails with NoSpace,
// as a full file system's would.
class BudgetedFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  BudgetedFile(std::unique_ptr<rocksdb::FSWritableFile> file, std::atomic<int64_t>* budget)
      : FSWritableFileOwnerWrapper(std::move(file)), budget_(budget) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    if (!take(data.size())) return rocksdb::IOStatus::NoSpace("test file system is full");
    return target()->Append(data, options, dbg);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    if (!take(data.size())) return rocksdb::IOStatus::NoSpace("test file system is full");
    return target()->Append(data, options, info, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    if (!take(data.size())) return rocksdb::IOStatus::NoSpace("test file system is full");
    return target()->PositionedAppend(data, offset, options, dbg);
  }

 private:
  bool take(size_t bytes) { return budget_->fetch_sub(int64_t(bytes)) >= int64_t(bytes); }
  std::atomic<int64_t>* budget_;
};

class BudgetedFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit BudgetedFileSystem(std::atomic<int64_t>* budget)
      : FileSystemWrapper(rocksdb::FileSystem::Default()), budget_(budget) {}
  const char* Name() const override { return "BudgetedFileSystem"; }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->NewWritableFile(name, options, &file, dbg);
    if (s.ok()) result->reset(new BudgetedFile(std::move(file), budget_));
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->ReopenWritableFile(name, options, &file, dbg);
    if (s.ok()) result->reset(new BudgetedFile(std::move(file), budget_));
    return s;
  }

 private:
  std::atomic<int64_t>* budget_;
};

TEST(Exhaustion, AFullDiskIsAClearErrorAndLosesNoSyncedBlock) {
  test::TempDir dir;
  const uint64_t seed = test::fresh_seed();
  std::atomic<int64_t> budget{int64_t{1} << 40};
  auto env = rocksdb::NewCompositeEnv(std::make_shared<BudgetedFileSystem>(&budget));
  StoreOptions options = test::test_store_options(dir.sub("db"), 8);
  options.open_disk = [&](const DiskOptions& disk) {
    DiskOptions limited = disk;
    limited.env = env.get();
    return open_rocksdb_disk_tier(limited);
  };
  std::vector<uint64_t> synced;
  {
    auto store = TieredStore::open(options);
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    budget = 2 << 20;  // about 80 more blocks of 25.6 KB, with RocksDB's own files
    Status failed;
    uint64_t b = 0;
    for (; b < 1000 && failed.ok(); ++b) {
      failed = test::put_test_block(**store, {1, 0, 0, b}, seed);
      if (failed.ok() && b % 4 == 3) {
        failed = (*store)->sync();
        if (failed.ok()) {
          for (uint64_t i = b - 3; i <= b; ++i) synced.push_back(i);
        }
      }
    }
    ASSERT_FALSE(failed.ok()) << "the disk never filled";
    EXPECT_EQ(failed.code(), StatusCode::kIOError) << failed.to_string();
    EXPECT_NE(failed.to_string().find("space"), std::string::npos) << failed.to_string();
    EXPECT_GT(synced.size(), 8u);
    // Still readable while the disk is full.
    for (uint64_t i : synced) {
      std::vector<char> k(options.shape.tensor_bytes()), v(k.size());
      ASSERT_TRUE((*store)->read({1, 0, 0, i}, k.data(), v.data()).ok()) << i;
    }
    (void)(*store)->close();  // may report the full disk again
  }
  // Space comes back: every synced block is intact, none partial.
  budget = int64_t{1} << 40;
  auto store = TieredStore::open(options);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  for (uint64_t i : synced) {
    Result<PageIn> page = (*store)->page_in({{1, 0, 0, i}}, PageInTarget::kHost);
    ASSERT_TRUE(page.ok()) << i << ": " << page.status().to_string();
    EXPECT_TRUE(test::payload_matches(options.shape, {1, 0, 0, i}, seed, page->payload(0))) << i;
  }
  // A block past the last sync is either absent or whole.
  for (uint64_t i = synced.back() + 1; i < synced.back() + 8; ++i) {
    Result<bool> stored = (*store)->contains({1, 0, 0, i});
    ASSERT_TRUE(stored.ok());
    if (!*stored) continue;
    Result<PageIn> page = (*store)->page_in({{1, 0, 0, i}}, PageInTarget::kHost);
    ASSERT_TRUE(page.ok()) << i << ": " << page.status().to_string();
    EXPECT_TRUE(test::payload_matches(options.shape, {1, 0, 0, i}, seed, page->payload(0))) << i;
  }
}

TEST(Exhaustion, AFailedAllocationIsAClearError) {
  test::TempDir dir;
  StoreOptions options = test::test_store_options(dir.sub("db"), 8);
  options.host_capacity_bytes = size_t{1} << 45;  // 32 TiB: no machine gives this
  auto store = TieredStore::open(options);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kResourceExhausted) << store.status().to_string();
  EXPECT_NE(store.status().to_string().find("host tier"), std::string::npos)
      << store.status().to_string();
  if (cuda_device_count() > 0) {
    StoreOptions gpu = test::test_store_options(dir.sub("db2"), 8);
    gpu.gpu_capacity_bytes = size_t{1} << 45;
    auto opened = TieredStore::open(gpu);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), StatusCode::kResourceExhausted)
        << opened.status().to_string();
    EXPECT_NE(opened.status().to_string().find("GPU tier"), std::string::npos)
        << opened.status().to_string();
  }
}

TEST(Exhaustion, TiersTooSmallAreRefusedOrEvictWithoutLoss) {
  test::TempDir dir;
  StoreOptions options = test::test_store_options(dir.sub("db"), 8);
  options.host_capacity_bytes = options.shape.payload_bytes() - 1;  // under one block
  auto refused = TieredStore::open(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status().to_string();

  // Two host slots under 20 blocks: eviction to disk keeps everything; a page-in wider than the
  // tier is refused whole.
  const uint64_t seed = test::fresh_seed();
  StoreOptions tiny = test::test_store_options(dir.sub("db2"), 2);
  auto store = TieredStore::open(tiny);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  for (uint64_t b = 0; b < 20; ++b) {
    ASSERT_TRUE(test::put_test_block(**store, {4, 0, 0, b}, seed).ok());
  }
  Result<PageIn> wide =
      (*store)->page_in({{4, 0, 0, 0}, {4, 0, 0, 1}, {4, 0, 0, 2}}, PageInTarget::kHost);
  ASSERT_FALSE(wide.ok());
  EXPECT_EQ(wide.status().code(), StatusCode::kResourceExhausted);
  for (uint64_t b = 0; b < 20; ++b) {
    Result<PageIn> page = (*store)->page_in({{4, 0, 0, b}}, PageInTarget::kHost);
    ASSERT_TRUE(page.ok()) << b << ": " << page.status().to_string();
    EXPECT_TRUE(test::payload_matches(tiny.shape, {4, 0, 0, b}, seed, page->payload(0)));
  }
}

}  // namespace
}  // namespace lmkv
