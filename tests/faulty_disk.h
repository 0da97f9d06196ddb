// A disk tier wrapper that injects faults, as a failing disk would: reads of chosen blocks fail
// with an I/O error, come back bit-flipped or truncated, or wait; writes fail while `fail_writes`
// is set.
// The faults are switched by the test through the shared Faults object.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "kvstore/disk_tier.h"

namespace lmkv::test {

struct Faults {
  // Which blocks' reads are damaged, and how.
  std::function<bool(const BlockKey&)> read_error = [](const BlockKey&) { return false; };
  std::function<bool(const BlockKey&)> flip_bit = [](const BlockKey&) { return false; };
  std::function<bool(const BlockKey&)> truncate = [](const BlockKey&) { return false; };
  std::atomic<bool> fail_writes{false};
  // Called before every read, on the reading thread: a test can hold a read here.
  std::function<void()> before_read = [] {};
};

class FaultyDisk final : public DiskTier {
 public:
  FaultyDisk(std::unique_ptr<DiskTier> inner, std::shared_ptr<Faults> faults)
      : inner_(std::move(inner)), faults_(std::move(faults)) {}

  Status put(const std::vector<DiskRecord>& r) override {
    if (faults_->fail_writes) return Status::IOError("injected: the disk refused a write");
    return inner_->put(r);
  }
  void multi_get(const std::vector<BlockKey>& keys, const Visitor& visit) override {
    faults_->before_read();
    inner_->multi_get(keys, [&](size_t i, const Status& s, std::string_view v) {
      if (!s.ok()) return visit(i, s, v);
      if (faults_->read_error(keys[i])) {
        return visit(i, Status::IOError("injected: reading " + keys[i].to_string() + " failed"),
                     {});
      }
      std::string damaged(v);
      if (faults_->flip_bit(keys[i])) damaged[damaged.size() / 2] ^= 0x01;
      if (faults_->truncate(keys[i])) damaged.resize(damaged.size() - 100);
      visit(i, s, damaged);
    });
  }
  Result<bool> contains(const BlockKey& k) override { return inner_->contains(k); }
  Status erase_sequence(uint64_t s) override { return inner_->erase_sequence(s); }
  Status scan_landmarks(const LandmarkVisitor& visit) override {
    return inner_->scan_landmarks(visit);
  }
  Result<std::optional<std::string>> get_metadata(const std::string& n) override {
    return inner_->get_metadata(n);
  }
  Status put_metadata(const std::string& n, const std::string& v) override {
    return inner_->put_metadata(n, v);
  }
  Status sync() override { return inner_->sync(); }
  Status compact() override { return inner_->compact(); }
  Status close() override { return inner_->close(); }
  bool direct_reads() const override { return inner_->direct_reads(); }

 private:
  std::unique_ptr<DiskTier> inner_;
  std::shared_ptr<Faults> faults_;
};

// StoreOptions::open_disk that wraps RocksDB in a FaultyDisk driven by `faults`.
inline std::function<Result<std::unique_ptr<DiskTier>>(const DiskOptions&)> faulty_disk(
    std::shared_ptr<Faults> faults) {
  return [faults](const DiskOptions& o) -> Result<std::unique_ptr<DiskTier>> {
    LMKV_ASSIGN_OR_RETURN(auto inner, open_rocksdb_disk_tier(o));
    return std::unique_ptr<DiskTier>(new FaultyDisk(std::move(inner), faults));
  };
}

}  // namespace lmkv::test
