// The RocksDB disk tier: batched writes and reads, range erase, metadata, reopen.
#include "kvstore/disk_tier.h"

#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>

#include "test_util.h"

namespace lmkv {
namespace {

std::unique_ptr<DiskTier> open_disk(const std::string& path) {
  DiskOptions options;
  options.path = path;
  auto disk = open_rocksdb_disk_tier(options);
  EXPECT_TRUE(disk.ok()) << disk.status().to_string();
  return disk.ok() ? std::move(disk).value() : nullptr;
}

std::map<size_t, std::string> read_all(DiskTier& disk, const std::vector<BlockKey>& keys,
                                       std::map<size_t, Status>* statuses) {
  std::map<size_t, std::string> values;
  std::mutex mu;
  disk.multi_get(keys, [&](size_t i, const Status& s, std::string_view v) {
    std::lock_guard<std::mutex> lock(mu);
    (*statuses)[i] = s;
    if (s.ok()) values[i] = std::string(v);
  });
  return values;
}

TEST(DiskTier, WritesReadsAndSurvivesReopen) {
  test::TempDir dir;
  std::vector<BlockKey> keys;
  std::vector<std::string> values;
  {
    auto disk = open_disk(dir.path());
    ASSERT_TRUE(disk);
    std::vector<DiskRecord> records;
    for (uint64_t b = 0; b < 20; ++b) {
      keys.push_back({b % 3, 1, 2, b});
      values.push_back("value-" + std::to_string(b) + std::string(1000, static_cast<char>(b)));
    }
    for (size_t i = 0; i < keys.size(); ++i) records.push_back({keys[i], values[i]});
    ASSERT_TRUE(disk->put(records).ok());
    ASSERT_TRUE(disk->close().ok());
    EXPECT_EQ(disk->put(records).code(), StatusCode::kFailedPrecondition);
  }
  auto disk = open_disk(dir.path());
  ASSERT_TRUE(disk);
  std::vector<BlockKey> asked = keys;
  asked.push_back({9, 9, 9, 9});
  std::map<size_t, Status> statuses;
  auto got = read_all(*disk, asked, &statuses);
  ASSERT_EQ(statuses.size(), asked.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_TRUE(statuses[i].ok()) << statuses[i].to_string();
    EXPECT_EQ(got[i], values[i]);
  }
  EXPECT_EQ(statuses[keys.size()].code(), StatusCode::kNotFound);
  EXPECT_NE(statuses[keys.size()].message().find("(seq 9, layer 9, head 9, block 9)"),
            std::string::npos);
}

TEST(DiskTier, EraseSequenceRemovesOnlyThatSequence) {
  test::TempDir dir;
  auto disk = open_disk(dir.path());
  ASSERT_TRUE(disk);
  std::vector<BlockKey> keys;
  for (uint64_t seq : {uint64_t{0}, uint64_t{1}, uint64_t{2}, UINT64_MAX}) {
    for (uint32_t layer = 0; layer < 2; ++layer) keys.push_back({seq, layer, 0, 5});
  }
  std::vector<DiskRecord> records;
  for (const auto& k : keys) records.push_back({k, "x"});
  ASSERT_TRUE(disk->put(records).ok());
  ASSERT_TRUE(disk->put_metadata("shape", "50 128 1").ok());
  ASSERT_TRUE(disk->erase_sequence(1).ok());
  ASSERT_TRUE(disk->erase_sequence(UINT64_MAX).ok());
  for (const auto& k : keys) {
    Result<bool> present = disk->contains(k);
    ASSERT_TRUE(present.ok());
    EXPECT_EQ(*present, k.sequence == 0 || k.sequence == 2) << k.to_string();
  }
  auto shape = disk->get_metadata("shape");
  ASSERT_TRUE(shape.ok() && shape->has_value());
  EXPECT_EQ(**shape, "50 128 1");
}

// Counts the reads RocksDB makes of its sorted tables and of its blob files.
struct ReadCounts {
  std::atomic<int64_t> table{0};
  std::atomic<int64_t> blob{0};
};

class CountedFile : public rocksdb::FSRandomAccessFileOwnerWrapper {
 public:
  CountedFile(std::unique_ptr<rocksdb::FSRandomAccessFile> file, std::atomic<int64_t>* reads)
      : FSRandomAccessFileOwnerWrapper(std::move(file)), reads_(reads) {}
  rocksdb::IOStatus Read(uint64_t offset, size_t n, const rocksdb::IOOptions& options,
                         rocksdb::Slice* result, char* scratch,
                         rocksdb::IODebugContext* dbg) const override {
    ++*reads_;
    return target()->Read(offset, n, options, result, scratch, dbg);
  }
  rocksdb::IOStatus MultiRead(rocksdb::FSReadRequest* requests, size_t count,
                              const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    *reads_ += static_cast<int64_t>(count);
    return target()->MultiRead(requests, count, options, dbg);
  }

 private:
  std::atomic<int64_t>* reads_;
};

class CountingFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit CountingFileSystem(ReadCounts* counts)
      : FileSystemWrapper(rocksdb::FileSystem::Default()), counts_(counts) {}
  const char* Name() const override { return "CountingFileSystem"; }
  rocksdb::IOStatus NewRandomAccessFile(const std::string& name,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* result,
                                        rocksdb::IODebugContext* dbg) override {
    std::unique_ptr<rocksdb::FSRandomAccessFile> file;
    rocksdb::IOStatus s = target()->NewRandomAccessFile(name, options, &file, dbg);
    const bool blob = name.size() > 5 && name.compare(name.size() - 5, 5, ".blob") == 0;
    if (s.ok())
      result->reset(new CountedFile(std::move(file), blob ? &counts_->blob : &counts_->table));
    return s;
  }

 private:
  ReadCounts* counts_;
};

// The metadata cache keeps what RocksDB needs to find a block, never a payload: with blob files a
// second read of the same blocks reads only the blobs; with payloads inside the tables it reads
// the tables again.
class DiskTierCache : public ::testing::TestWithParam<bool> {};

TEST_P(DiskTierCache, RepeatedReadsReadPayloadsAgainButNotTheirKeys) {
  const bool blob_files = GetParam();
  test::TempDir dir;
  ReadCounts counts;
  auto env = rocksdb::NewCompositeEnv(std::make_shared<CountingFileSystem>(&counts));
  DiskOptions options;
  options.path = dir.path();
  options.blob_files = blob_files;
  options.env = env.get();
  auto opened = open_rocksdb_disk_tier(options);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  DiskTier& disk = **opened;
  const uint64_t seed = test::fresh_seed();
  std::mt19937_64 rng(seed);
  std::vector<BlockKey> keys;
  std::vector<std::string> values;
  for (uint32_t head = 0; head < 4; ++head) {
    for (uint64_t block = 0; block < 64; ++block) {
      keys.push_back({7, 1, head, block});
      std::string value(4096 + rng() % 4096, '\0');
      for (char& ch : value) ch = static_cast<char>(rng());
      values.push_back(std::move(value));
    }
  }
  std::vector<DiskRecord> records;
  for (size_t i = 0; i < keys.size(); ++i) records.push_back({keys[i], values[i]});
  ASSERT_TRUE(disk.put(records).ok());
  ASSERT_TRUE(disk.compact().ok());
  // Every fourth block, as a scattered page-in reads them.
  std::vector<BlockKey> wanted;
  uint64_t wanted_bytes = 0;
  for (size_t i = 0; i < keys.size(); i += 4) {
    wanted.push_back(keys[i]);
    wanted_bytes += values[i].size();
  }
  for (int round = 0; round < 2; ++round) {
    counts.table = 0;
    counts.blob = 0;
    const DiskReadCounters before = disk.read_counters();
    std::map<size_t, Status> statuses;
    const auto got = read_all(disk, wanted, &statuses);
    const DiskReadCounters read = disk.read_counters() - before;
    ASSERT_EQ(got.size(), wanted.size()) << "seed " << seed << ", round " << round;
    for (size_t i = 0; i < wanted.size(); ++i) {
      ASSERT_EQ(got.at(i), values[4 * i]) << "seed " << seed << ", round " << round;
    }
    SCOPED_TRACE(::testing::Message() << "round " << round << ": " << counts.table
                                      << " table reads, " << counts.blob << " blob reads");
    // The tier's own counters see the same reads: every payload comes from a file.
    EXPECT_GE(read.bytes, wanted_bytes);
    EXPECT_GT(read.read_ns, 0u);
    if (blob_files) {
      EXPECT_GE(counts.blob, static_cast<int64_t>(wanted.size()) / 2);  // payloads, read again
      if (round == 1) {
        EXPECT_EQ(counts.table, 0);
        EXPECT_EQ(read.reads, wanted.size());  // one blob each, no table block
      }
    } else {
      EXPECT_EQ(counts.blob, 0);
      EXPECT_GT(counts.table, 0);  // the payload blocks, read again in the second round
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BlobFilesOnAndOff, DiskTierCache, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "BlobFiles" : "PayloadsInTables");
                         });

TEST(DiskTier, MissingDirectoryWithoutCreateIsNotFound) {
  test::TempDir dir;
  DiskOptions options;
  options.path = dir.sub("absent");
  options.create_if_missing = false;
  auto disk = open_rocksdb_disk_tier(options);
  EXPECT_EQ(disk.status().code(), StatusCode::kNotFound);
  EXPECT_NE(disk.status().message().find("absent"), std::string::npos);
}

}  // namespace
}  // namespace lmkv
