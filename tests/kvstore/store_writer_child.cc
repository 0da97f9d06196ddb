// A child process for persistence tests: opens a store, puts blocks, syncs, and dies without
// closing anything (as a crash would), so the parent can check what a reopen finds.
//   store_writer_child <dir> <write-through|write-back> <seed> <sequence> <blocks>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "test_util.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s dir write-through|write-back seed sequence blocks\n", argv[0]);
    return 64;
  }
  lmkv::StoreOptions options = lmkv::test::test_store_options(argv[1], 16);
  options.write_policy = std::string(argv[2]) == "write-back" ? lmkv::WritePolicy::kWriteBack
                                                              : lmkv::WritePolicy::kWriteThrough;
  const uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  const uint64_t sequence = std::strtoull(argv[4], nullptr, 10);
  const uint64_t blocks = std::strtoull(argv[5], nullptr, 10);
  auto store = lmkv::TieredStore::open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().to_string().c_str());
    return 2;
  }
  for (uint64_t b = 0; b < blocks; ++b) {
    const lmkv::Status s = lmkv::test::put_test_block(**store, {sequence, 1, 0, b}, seed);
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.to_string().c_str());
      return 3;
    }
  }
  const lmkv::Status synced = (*store)->sync();
  if (!synced.ok()) {
    std::fprintf(stderr, "%s\n", synced.to_string().c_str());
    return 4;
  }
  _exit(0);  // no close, no destructors
}
