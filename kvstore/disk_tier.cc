// The RocksDB disk tier.
#include "kvstore/disk_tier.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iostats_context.h>
#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "kvstore/key_codec.h"

namespace lmkv {
namespace {

Status from_rocksdb(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  if (s.IsNotFound()) return Status::NotFound(what + ": " + s.ToString());
  if (s.IsCorruption()) return Status::Corruption(what + ": " + s.ToString());
  if (s.IsInvalidArgument()) return Status::InvalidArgument(what + ": " + s.ToString());
  return Status::IOError(what + ": " + s.ToString());
}

// Whether `dir` accepts O_DIRECT opens (tmpfs and some overlay filesystems do not).
bool supports_direct_io(const std::string& dir) {
  const std::string probe = dir + "/.lmkv_direct_io_probe";
  const int fd = ::open(probe.c_str(), O_CREAT | O_RDWR | O_DIRECT, 0600);
  if (fd < 0) return false;
  ::close(fd);
  ::unlink(probe.c_str());
  return true;
}

std::string metadata_key(const std::string& name) { return std::string(1, kMetadataKeyTag) + name; }

// The file reads of a disk tier so far, added to by many reading threads.
class ReadTotals {
 public:
  void add(const DiskReadCounters& d) {
    reads_.fetch_add(d.reads, std::memory_order_relaxed);
    bytes_.fetch_add(d.bytes, std::memory_order_relaxed);
    read_ns_.fetch_add(d.read_ns, std::memory_order_relaxed);
  }
  DiskReadCounters load() const {
    return {reads_.load(std::memory_order_relaxed), bytes_.load(std::memory_order_relaxed),
            read_ns_.load(std::memory_order_relaxed)};
  }

 private:
  std::atomic<uint64_t> reads_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> read_ns_{0};
};

// Adds the file reads that RocksDB makes on this thread while the scope lives to `totals`. RocksDB
// counts them per thread, and times them only at a perf level that the scope raises and restores.
class CountedReads {
 public:
  explicit CountedReads(ReadTotals& totals) : totals_(totals), level_(rocksdb::GetPerfLevel()) {
    if (level_ < rocksdb::PerfLevel::kEnableTimeExceptForMutex) {
      rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableTimeExceptForMutex);
    }
    start_ = thread_counters();
  }
  ~CountedReads() {
    totals_.add(thread_counters() - start_);
    rocksdb::SetPerfLevel(level_);
  }
  CountedReads(const CountedReads&) = delete;
  CountedReads& operator=(const CountedReads&) = delete;

 private:
  static DiskReadCounters thread_counters() {
    const rocksdb::PerfContext& perf = *rocksdb::get_perf_context();
    const rocksdb::IOStatsContext& io = *rocksdb::get_iostats_context();
    return {perf.block_read_count + perf.blob_read_count, io.bytes_read, io.read_nanos};
  }

  ReadTotals& totals_;
  rocksdb::PerfLevel level_;
  DiskReadCounters start_;
};

class RocksDbDiskTier final : public DiskTier {
 public:
  RocksDbDiskTier(std::unique_ptr<rocksdb::DB> db, std::string path, bool direct_reads,
                  bool blob_files)
      : db_(std::move(db)),
        path_(std::move(path)),
        direct_reads_(direct_reads),
        blob_files_(blob_files) {}
  ~RocksDbDiskTier() override { (void)close(); }

  Status put(const std::vector<DiskRecord>& records) override {
    LMKV_RETURN_IF_ERROR(check_writable());
    rocksdb::WriteBatch batch;
    for (const DiskRecord& r : records) {
      batch.Put(encode_block_key(r.key, r.landmark ? kLandmarkKeyTag : kBlockKeyTag),
                rocksdb::Slice(r.value.data(), r.value.size()));
    }
    return written(db_->Write(rocksdb::WriteOptions(), &batch),
                   fmt::format("writing {} records to {}", records.size(), path_));
  }

  Status scan_landmarks(const LandmarkVisitor& visit) override {
    LMKV_RETURN_IF_ERROR(check_open());
    const auto [begin, end] = tag_key_range(kLandmarkKeyTag);
    rocksdb::ReadOptions read_options;
    rocksdb::Slice upper(end);
    read_options.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options));
    for (it->Seek(begin); it->Valid(); it->Next()) {
      Result<BlockKey> key =
          decode_block_key(std::string_view(it->key().data(), it->key().size()), kLandmarkKeyTag);
      if (!key.ok()) return key.status();
      LMKV_RETURN_IF_ERROR(visit(*key, std::string_view(it->value().data(), it->value().size())));
    }
    return from_rocksdb(it->status(), "scanning landmarks in " + path_);
  }

  void multi_get(const std::vector<BlockKey>& keys, const Visitor& visit) override {
    if (Status s = check_open(); !s.ok()) {
      for (size_t i = 0; i < keys.size(); ++i) visit(i, s, {});
      return;
    }
    std::vector<std::string> encoded(keys.size());
    std::vector<rocksdb::Slice> slices(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      encoded[i] = encode_block_key(keys[i]);
      slices[i] = encoded[i];
    }
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    rocksdb::ReadOptions read_options = block_read_options();
    // Every value carries its own checksum over key, header and payload, verified by the store:
    // RocksDB's block checksum would check the same bytes a second time.
    read_options.verify_checksums = false;
    const bool sorted = std::is_sorted(keys.begin(), keys.end());
    CountedReads counted(read_totals_);
    db_->MultiGet(read_options, db_->DefaultColumnFamily(), keys.size(), slices.data(),
                  values.data(), statuses.data(), sorted);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (statuses[i].IsNotFound()) {
        visit(i, Status::NotFound(fmt::format("block {} is not stored", keys[i].to_string())), {});
      } else if (!statuses[i].ok()) {
        visit(i, from_rocksdb(statuses[i], "reading block " + keys[i].to_string()), {});
      } else {
        visit(i, Status::Ok(), std::string_view(values[i].data(), values[i].size()));
      }
    }
  }

  Result<bool> contains(const BlockKey& key) override {
    LMKV_RETURN_IF_ERROR(check_open());
    const std::string encoded = encode_block_key(key);
    rocksdb::ReadOptions read_options = block_read_options();
    CountedReads counted(read_totals_);
    std::string ignored;
    if (!db_->KeyMayExist(read_options, db_->DefaultColumnFamily(), encoded, &ignored))
      return false;
    rocksdb::PinnableSlice value;
    const rocksdb::Status s = db_->Get(read_options, db_->DefaultColumnFamily(), encoded, &value);
    if (s.IsNotFound()) return false;
    LMKV_RETURN_IF_ERROR(from_rocksdb(s, "looking up block " + key.to_string()));
    return true;
  }

  Status erase_sequence(uint64_t sequence) override {
    LMKV_RETURN_IF_ERROR(check_writable());
    rocksdb::WriteBatch batch;  // blocks and landmarks go together
    for (char tag : {kBlockKeyTag, kLandmarkKeyTag}) {
      const auto [begin, end] = sequence_key_range(sequence, tag);
      batch.DeleteRange(db_->DefaultColumnFamily(), begin, end);
    }
    return written(db_->Write(rocksdb::WriteOptions(), &batch),
                   fmt::format("erasing sequence {}", sequence));
  }

  Result<std::optional<std::string>> get_metadata(const std::string& name) override {
    LMKV_RETURN_IF_ERROR(check_open());
    std::string value;
    const rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), metadata_key(name), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    LMKV_RETURN_IF_ERROR(from_rocksdb(s, "reading metadata " + name));
    return std::optional<std::string>(std::move(value));
  }

  Status put_metadata(const std::string& name, const std::string& value) override {
    LMKV_RETURN_IF_ERROR(check_writable());
    rocksdb::WriteOptions write_options;
    write_options.sync = true;
    return written(db_->Put(write_options, metadata_key(name), value), "writing metadata " + name);
  }

  Status sync() override {
    LMKV_RETURN_IF_ERROR(check_writable());
    return written(db_->FlushWAL(/*sync=*/true), "syncing " + path_);
  }

  Status compact() override {
    LMKV_RETURN_IF_ERROR(check_writable());
    rocksdb::CompactRangeOptions options;
    options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    return written(db_->CompactRange(options, nullptr, nullptr), "compacting " + path_);
  }

  Status close() override {
    if (closed_.exchange(true)) return Status::Ok();
    Status s = write_failure();
    if (s.ok()) s = from_rocksdb(db_->FlushWAL(/*sync=*/true), "syncing " + path_ + " at close");
    const rocksdb::Status closing = db_->Close();
    if (s.ok()) s = from_rocksdb(closing, "closing " + path_);
    return s;
  }

  bool direct_reads() const override { return direct_reads_; }
  DiskReadCounters read_counters() const override { return read_totals_.load(); }

 private:
  Status check_open() const {
    if (closed_.load())
      return Status::FailedPrecondition("the disk tier at " + path_ + " is closed");
    return Status::Ok();
  }

  Status check_writable() const {
    LMKV_RETURN_IF_ERROR(check_open());
    return write_failure();
  }

  // After a failed write (a full disk, an I/O error) RocksDB keeps its log writer in an error
  // state that a later write or sync must not touch (some builds assert on it). The tier then
  // refuses writes with the first error until the store is reopened; reads go on.
  Status write_failure() const {
    std::lock_guard<std::mutex> lock(failure_mu_);
    return write_failure_;
  }

  Status written(const rocksdb::Status& s, const std::string& what) {
    Status status = from_rocksdb(s, what);
    if (!s.ok() && (s.IsIOError() || s.IsNoSpace() || s.IsCorruption())) {
      std::lock_guard<std::mutex> lock(failure_mu_);
      if (write_failure_.ok()) {
        write_failure_ = Status::IOError(fmt::format(
            "the disk tier at {} stopped writing after: {} (reopen the store once fixed)", path_,
            status.to_string()));
      }
    }
    return status;
  }

  // The host tier caches payloads, so RocksDB's cache must not. With blob files the table blocks
  // that a read passes through hold only keys and blob references: caching them saves the table
  // reads that were 4-6% of a disk page-in's reads on the GPU machine.
  // Without blob files they hold the payloads themselves, and stay out.
  rocksdb::ReadOptions block_read_options() const {
    rocksdb::ReadOptions options;
    options.fill_cache = blob_files_;
    return options;
  }

  std::unique_ptr<rocksdb::DB> db_;
  std::string path_;
  bool direct_reads_;
  bool blob_files_;
  ReadTotals read_totals_;
  std::atomic<bool> closed_{false};
  mutable std::mutex failure_mu_;
  Status write_failure_;
};

}  // namespace

Result<std::unique_ptr<DiskTier>> open_rocksdb_disk_tier(const DiskOptions& options) {
  if (options.path.empty()) return Status::InvalidArgument("disk path is empty");
  std::error_code ec;
  if (options.create_if_missing) std::filesystem::create_directories(options.path, ec);
  if (ec) {
    return Status::IOError(
        fmt::format("cannot create disk directory '{}': {}", options.path, ec.message()));
  }
  if (!std::filesystem::is_directory(options.path, ec)) {
    return Status::NotFound(fmt::format("disk directory '{}' does not exist", options.path));
  }
  bool direct = options.direct_io == DirectIo::kOn;
  if (options.direct_io == DirectIo::kAuto) direct = supports_direct_io(options.path);

  rocksdb::Options db_options;
  db_options.create_if_missing = options.create_if_missing;
  if (options.env != nullptr) db_options.env = options.env;
  db_options.compression = rocksdb::kNoCompression;  // fp16/bf16 payloads do not compress
  db_options.write_buffer_size = options.write_buffer_bytes;
  db_options.max_background_jobs = 4;
  db_options.use_direct_reads = direct;
  db_options.use_direct_io_for_flush_and_compaction = direct;
  db_options.allow_concurrent_memtable_write = true;
  if (options.blob_files) {
    db_options.enable_blob_files = true;
    db_options.min_blob_size = 1024;  // block values; metadata stays in the tables
    db_options.blob_file_size = 256ull << 20;
    db_options.blob_compression_type = rocksdb::kNoCompression;
    // Space of erased sequences comes back as compactions move live blobs out of old files.
    db_options.enable_blob_garbage_collection = true;
  }
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.metadata_cache_bytes);
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.block_size = 32 * 1024;  // one block value per data block
  db_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  rocksdb::DB* raw = nullptr;
  const rocksdb::Status s = rocksdb::DB::Open(db_options, options.path, &raw);
  if (!s.ok()) {
    return from_rocksdb(s, fmt::format("opening RocksDB at '{}' (direct I/O {})", options.path,
                                       direct ? "on" : "off"));
  }
  return std::unique_ptr<DiskTier>(new RocksDbDiskTier(std::unique_ptr<rocksdb::DB>(raw),
                                                       options.path, direct, options.blob_files));
}

}  // namespace lmkv
