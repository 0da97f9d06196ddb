// The child process of the crash-consistency test: ingests blocks (and their landmarks) into a
// store, calling sync() every `every` blocks and recording in a log, after each sync, how many
// blocks are durable. It runs until killed. On start it resumes after the last logged count,
// checking blocks that survived an earlier kill unsynced instead of writing them twice.
//   crash_writer <store dir> <log file> <write-through|write-back> <seed> <every>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kvstore/tiered_store.h"
#include "reliability/synced_log.h"
#include "test_util.h"

namespace {

constexpr uint32_t kLandmarkDim = 8;

int fail(const lmkv::Status& s) {
  std::fprintf(stderr, "crash_writer: %s\n", s.to_string().c_str());
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) return 64;
  const std::string dir = argv[1], log = argv[2];
  lmkv::StoreOptions options =
      lmkv::test::test_store_options(dir, 8, {16, 64, lmkv::DType::kFloat16});
  options.write_policy = std::string(argv[3]) == "write-back" ? lmkv::WritePolicy::kWriteBack
                                                              : lmkv::WritePolicy::kWriteThrough;
  const uint64_t seed = std::strtoull(argv[4], nullptr, 10);
  const uint64_t every = std::strtoull(argv[5], nullptr, 10);
  auto store = lmkv::TieredStore::open(options);
  if (!store.ok()) return fail(store.status());
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (log_fd < 0) return 4;
  for (uint64_t b = lmkv::test::last_synced(log);; ++b) {
    const lmkv::BlockKey key{7, 0, 0, b};
    auto present = (*store)->contains(key);
    if (!present.ok()) return fail(present.status());
    if (!*present) {
      if (auto s = lmkv::test::put_test_block(**store, key, seed); !s.ok()) return fail(s);
    }
    std::vector<float> landmark(kLandmarkDim, float(b));
    if (auto s = (*store)->put_landmarks({key}, landmark.data(), kLandmarkDim); !s.ok()) {
      return fail(s);
    }
    if ((b + 1) % every == 0) {
      if (auto s = (*store)->sync(); !s.ok()) return fail(s);
      const std::string line = std::to_string(b + 1) + "\n";
      if (::write(log_fd, line.data(), line.size()) < 0 || ::fsync(log_fd) != 0) return 5;
    }
  }
}
