// Helpers shared by the tests: temporary directories, fresh random seeds (printed, so a failure
// can be replayed with LMKV_TEST_SEED), and block payloads derived from (seed, key) so any reader
// can check what it got.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvstore/block.h"
#include "kvstore/tiered_store.h"

namespace lmkv::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A new random seed per call, or LMKV_TEST_SEED when set; logged to the test output.
uint64_t fresh_seed();

// The payload (K then V, shape.payload_bytes()) that block `key` carries in a test seeded `seed`.
std::vector<char> block_payload(const BlockShape& shape, const BlockKey& key, uint64_t seed);

// Store options for tests: small host tier, no GPU tier, direct I/O where supported.
StoreOptions test_store_options(const std::string& disk_path, int32_t host_blocks,
                                BlockShape shape = {});

// Puts `key` with its block_payload.
Status put_test_block(TieredStore& store, const BlockKey& key, uint64_t seed);

// True when `payload` (payload_bytes) equals block_payload(shape, key, seed) byte for byte.
bool payload_matches(const BlockShape& shape, const BlockKey& key, uint64_t seed,
                     const char* payload);

}  // namespace lmkv::test
