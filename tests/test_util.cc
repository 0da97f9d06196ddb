// Test helpers.
#include "test_util.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

namespace lmkv::test {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/lmkv-test-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed for " << pattern;
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

uint64_t fresh_seed() {
  uint64_t seed = 0;
  if (const char* fixed = std::getenv("LMKV_TEST_SEED")) {
    seed = std::strtoull(fixed, nullptr, 10);
  } else {
    std::random_device rd;
    seed = (uint64_t{rd()} << 32) ^ rd();
  }
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  std::printf("[ seed     ] LMKV_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed));
  return seed;
}

std::vector<char> block_payload(const BlockShape& shape, const BlockKey& key, uint64_t seed) {
  std::vector<char> out(shape.payload_bytes());
  uint64_t state = seed ^ BlockKeyHash()(key);
  for (size_t i = 0; i < out.size(); i += 8) {
    // splitmix64: every byte pattern, NaN and Inf bit patterns included, must survive bit-exact.
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::memcpy(out.data() + i, &z, std::min<size_t>(8, out.size() - i));
  }
  return out;
}

StoreOptions test_store_options(const std::string& disk_path, int32_t host_blocks,
                                BlockShape shape) {
  StoreOptions options;
  options.shape = shape;
  options.disk_path = disk_path;
  options.host_capacity_bytes = static_cast<size_t>(host_blocks) * shape.payload_bytes();
  options.gpu_capacity_bytes = 0;
  options.disk_read_threads = 4;
  return options;
}

Status put_test_block(TieredStore& store, const BlockKey& key, uint64_t seed) {
  const std::vector<char> payload = block_payload(store.shape(), key, seed);
  return store.put(key, payload.data(), payload.data() + store.shape().tensor_bytes());
}

bool payload_matches(const BlockShape& shape, const BlockKey& key, uint64_t seed,
                     const char* payload) {
  const std::vector<char> want = block_payload(shape, key, seed);
  return std::memcmp(want.data(), payload, want.size()) == 0;
}

}  // namespace lmkv::test
