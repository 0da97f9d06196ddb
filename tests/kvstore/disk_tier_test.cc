// The RocksDB disk tier: batched writes and reads, range erase, metadata, reopen.
#include "kvstore/disk_tier.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>

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
