// The disk tier: encoded block values under encoded block keys. DiskTier is the interface the store
// talks to, so tests can wrap it to inject faults; RocksDbDiskTier is the real one. Values are
// opaque here: the store encodes and verifies them (value_codec.h). All methods are thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvstore/block.h"
#include "kvstore/store_stats.h"
#include "lmkv/status.h"

namespace lmkv {

enum class DirectIo {
  kAuto,  // direct I/O where the filesystem supports O_DIRECT (not tmpfs), buffered elsewhere
  kOn,    // always; opening fails where unsupported
  kOff,   // buffered through the page cache
};

}  // namespace lmkv
namespace rocksdb {
class Env;
}
namespace lmkv {

struct DiskOptions {
  std::string path;                      // RocksDB directory (required)
  bool create_if_missing = true;         // create the directory and database when absent
  DirectIo direct_io = DirectIo::kAuto;  // for reads, flushes and compactions
  // Block cache for RocksDB's metadata: index and filter blocks, and with blob_files the table
  // blocks of keys and blob references. Payloads never enter it, so no block is cached twice
  // above the host tier.
  size_t metadata_cache_bytes = 32ull << 20;
  size_t write_buffer_bytes = 64ull << 20;  // memtable size before a flush
  // Block values go to RocksDB blob files (integrated BlobDB) and the sorted tables hold only
  // small references: compactions stop rewriting 25 KB payloads, and a read is one exact-size
  // read of the blob. Off: values live inside the sorted tables.
  bool blob_files = true;
  // The RocksDB environment (null: the default). Tests pass one whose file system fails or runs
  // out of space.
  rocksdb::Env* env = nullptr;
};

struct DiskRecord {
  BlockKey key;
  std::string_view value;  // encoded (value_codec.h)
  bool landmark = false;   // the block's landmark key rather than its payload
};

class DiskTier {
 public:
  virtual ~DiskTier() = default;

  // Writes all records (payloads and landmarks) in one atomic batch.
  virtual Status put(const std::vector<DiskRecord>& records) = 0;

  // Reads keys[i] for every i and calls visit(i, status, value) once per key, possibly from
  // several threads at once. status is NotFound for an absent key; value is valid only during the
  // call. Keys should be sorted (they are read in that order).
  using Visitor = std::function<void(size_t i, const Status& status, std::string_view value)>;
  virtual void multi_get(const std::vector<BlockKey>& keys, const Visitor& visit) = 0;

  // True when a value is stored under `key` (no checksum check).
  virtual Result<bool> contains(const BlockKey& key) = 0;

  // Removes every block and landmark of `sequence`, and nothing else.
  virtual Status erase_sequence(uint64_t sequence) = 0;

  // Visits every stored landmark in key order (sequence, layer, kv_head, block); a visitor error
  // stops the scan and is returned.
  using LandmarkVisitor = std::function<Status(const BlockKey& key, std::string_view value)>;
  virtual Status scan_landmarks(const LandmarkVisitor& visit) = 0;

  // Store-wide metadata (the block shape), kept beside the blocks.
  virtual Result<std::optional<std::string>> get_metadata(const std::string& name) = 0;
  virtual Status put_metadata(const std::string& name, const std::string& value) = 0;

  // Makes every completed put durable (survives a crash of the process or machine).
  virtual Status sync() = 0;
  // Flushes and compacts everything written so far into sorted files, so that later reads find
  // each block in one place and neighbouring blocks side by side (after a bulk ingest).
  virtual Status compact() = 0;
  // Syncs and closes; later calls fail.
  virtual Status close() = 0;

  // Whether reads bypass the page cache (after kAuto was resolved).
  virtual bool direct_reads() const = 0;
  // The file reads of every multi_get and contains so far (none for a tier that does not count).
  virtual DiskReadCounters read_counters() const { return {}; }
};

Result<std::unique_ptr<DiskTier>> open_rocksdb_disk_tier(const DiskOptions& options);

}  // namespace lmkv
