// Crash consistency: a child process ingests blocks and syncs at checkpoints; the parent kills it
// with SIGKILL at random moments, at least 50 times, reopening the store after each kill. Every
// synced block must come back bit-exact, no stored block may be partial or wrong, and the landmark
// keys rebuilt from disk must match the blocks.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <random>
#include <thread>

#include "kvstore/tiered_store.h"
#include "reliability/synced_log.h"
#include "test_util.h"

extern char** environ;

namespace lmkv {
namespace {

constexpr int kKills = 50;
constexpr uint64_t kSyncEvery = 5;

class CrashConsistency : public ::testing::TestWithParam<const char*> {};

TEST_P(CrashConsistency, SyncedBlocksSurviveSigkill) {
  test::TempDir dir;
  const std::string store_dir = dir.sub("store"), log = dir.sub("synced.log");
  const uint64_t seed = test::fresh_seed();
  std::mt19937_64 rng(seed);
  StoreOptions options = test::test_store_options(store_dir, 8, {16, 64, DType::kFloat16});
  const std::string seed_arg = std::to_string(seed), every = std::to_string(kSyncEvery);
  uint64_t synced_before = 0;
  uint64_t checked = 0;  // blocks below this were verified after an earlier kill
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int kills = 0;
  for (; kills < kKills && std::chrono::steady_clock::now() < deadline; ++kills) {
    char* args[] = {const_cast<char*>(LMKV_CRASH_WRITER),
                    const_cast<char*>(store_dir.c_str()),
                    const_cast<char*>(log.c_str()),
                    const_cast<char*>(GetParam()),
                    const_cast<char*>(seed_arg.c_str()),
                    const_cast<char*>(every.c_str()),
                    nullptr};
    pid_t child = 0;
    ASSERT_EQ(posix_spawn(&child, LMKV_CRASH_WRITER, nullptr, nullptr, args, environ), 0);
    // Kill at a random moment: often while the writer is still opening the store; every fifth
    // round late enough that it gets well into ingesting. Until a sync has been seen those late
    // rounds wait longer each time (a slow start, as under sanitizers on a loaded machine, must
    // not keep the writer from ever syncing).
    const int late_ms = synced_before == 0 ? 400 * (1 + kills / 5) : 400;
    const int window_ms = kills % 5 == 4 ? late_ms : 120;
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % window_ms));
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status))
        << "the writer stopped by itself (status " << status << "): see its stderr above";

    const uint64_t synced = test::last_synced(log);
    ASSERT_GE(synced, synced_before) << "the synced count went backwards";
    synced_before = synced;
    auto store = TieredStore::open(options);
    ASSERT_TRUE(store.ok()) << "reopen after kill " << kills << ": " << store.status().to_string();
    // Blocks synced since the last check, a sample of older ones and the unsynced tail: synced
    // ones bit-exact, the others absent or intact. (All of them are checked once more at the end.)
    std::vector<uint64_t> check;
    for (uint64_t b = checked; b < synced + 2 * kSyncEvery; ++b) check.push_back(b);
    for (int i = 0; i < 64 && checked > 0; ++i) check.push_back(rng() % checked);
    checked = synced;
    for (uint64_t b : check) {
      const BlockKey key{7, 0, 0, b};
      Result<PageIn> page = (*store)->page_in({key}, PageInTarget::kHost);
      if (b < synced) {
        ASSERT_TRUE(page.ok()) << "synced block " << b << " after kill " << kills << ": "
                               << page.status().to_string();
      } else if (!page.ok()) {
        ASSERT_EQ(page.status().code(), StatusCode::kNotFound) << page.status().to_string();
        continue;
      }
      ASSERT_TRUE(test::payload_matches((*store)->shape(), key, seed, page->payload(0)))
          << "block " << b << " after kill " << kills;
    }
    // Landmarks rebuilt from disk: each intact, every synced block has one, and none outlives
    // its block (only the unsynced tail could, and it was just read above).
    uint64_t landmarks = 0;
    std::vector<uint64_t> tail_landmarks;
    const Status scanned =
        (*store)->scan_landmarks([&](const BlockKey& key, const float* v, uint32_t dim) -> Status {
          if (dim != 8 || v[0] != float(key.block_no)) {
            return Status::Corruption("landmark of " + key.to_string() + " is wrong");
          }
          if (key.block_no >= synced) tail_landmarks.push_back(key.block_no);
          ++landmarks;
          return Status::Ok();
        });
    ASSERT_TRUE(scanned.ok()) << scanned.to_string();
    for (uint64_t b : tail_landmarks) {
      Result<bool> stored = (*store)->contains({7, 0, 0, b});
      ASSERT_TRUE(stored.ok() && *stored) << "landmark without its block " << b;
    }
    ASSERT_GE(landmarks, synced);
  }
  EXPECT_EQ(kills, kKills) << "the time bound cut the run short";
  auto store = TieredStore::open(options);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  for (uint64_t b = 0; b < synced_before; ++b) {
    const BlockKey key{7, 0, 0, b};
    Result<PageIn> page = (*store)->page_in({key}, PageInTarget::kHost);
    ASSERT_TRUE(page.ok()) << "synced block " << b << ": " << page.status().to_string();
    ASSERT_TRUE(test::payload_matches((*store)->shape(), key, seed, page->payload(0))) << b;
  }
  EXPECT_GT(synced_before, 0u) << "the writer never reached a sync";
  RecordProperty("synced_blocks", std::to_string(synced_before));
}

INSTANTIATE_TEST_SUITE_P(Policies, CrashConsistency,
                         ::testing::Values("write-through", "write-back"));

}  // namespace
}  // namespace lmkv
