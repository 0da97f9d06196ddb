// LandmarkCache: blocks seal as tokens arrive, a chunk attends to its own tokens as its window and
// retrieves only blocks sealed before it, lengths and errors.
#include "attention/landmark_cache.h"

#include <gtest/gtest.h>

#include <random>

#include "kvstore/dtype_convert.h"
#include "test_util.h"

namespace lmkv {
namespace {

constexpr uint32_t kHeads = 2, kDim = 64, kBlock = 16;

CacheOptions small_options(const std::string& path) {
  CacheOptions o;
  o.store = test::test_store_options(path, 64, {kBlock, kDim, DType::kFloat16});
  o.layers = 1;
  o.heads = o.kv_heads = kHeads;
  o.backend = IndexBackend::kFaissFlat;
  o.retrieval.top_k = 64;  // every block: the trace shows all retrievable ones
  return o;
}

std::vector<uint16_t> random_halves(std::mt19937_64& rng, size_t n) {
  std::normal_distribution<float> normal;
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = float_to_half_bits(normal(rng));
  return v;
}

TEST(LandmarkCache, AChunkRetrievesOnlyBlocksSealedBeforeIt) {
  test::TempDir dir;
  auto cache = LandmarkCache::open(small_options(dir.sub("db")));
  ASSERT_TRUE(cache.ok()) << cache.status().to_string();
  std::mt19937_64 rng(test::fresh_seed());
  std::vector<float> queries(100 * kHeads * kDim, 0.5f), out(queries.size());
  uint64_t appended = 0;
  for (uint32_t chunk : {40u, 100u, 7u, 1u}) {
    const auto k = random_halves(rng, size_t{chunk} * kHeads * kDim);
    const auto v = random_halves(rng, k.size());
    auto sealing = (*cache)->blocks_sealed_by(0, 0, chunk);
    ASSERT_TRUE(sealing.ok());
    EXPECT_EQ(*sealing, (appended % kBlock + chunk) / kBlock);
    ASSERT_TRUE((*cache)->append(0, 0, chunk, k.data(), v.data()).ok());
    RetrievalTrace trace;
    ASSERT_TRUE((*cache)->attend(0, 0, chunk, queries.data(), out.data(), &trace).ok());
    // Retrievable: the blocks complete before this chunk began; the chunk's own are its window.
    const int64_t before = int64_t(appended / kBlock);
    int64_t most = -1;
    for (int64_t b : trace.block_nos) most = std::max(most, b);
    EXPECT_EQ(most, before - 1) << "chunk of " << chunk << " after " << appended << " tokens";
    appended += chunk;
    EXPECT_EQ((*cache)->length(0, 0), appended);
    for (float x : out) ASSERT_TRUE(std::isfinite(x));
  }
  ASSERT_TRUE((*cache)->close().ok());
  EXPECT_EQ((*cache)->close().code(), StatusCode::kFailedPrecondition);
}

TEST(LandmarkCache, BadUseIsAClearError) {
  test::TempDir dir;
  CacheOptions gpu_without_tier = small_options(dir.sub("a"));
  gpu_without_tier.retrieval.device = AttentionDevice::kGpu;
  EXPECT_EQ(LandmarkCache::open(gpu_without_tier).status().code(), StatusCode::kInvalidArgument);
  CacheOptions odd = small_options(dir.sub("b"));
  odd.kv_heads = 3;
  EXPECT_EQ(LandmarkCache::open(odd).status().code(), StatusCode::kInvalidArgument);

  CacheOptions given = small_options(dir.sub("c"));
  given.landmark = LandmarkSource::kGiven;
  auto cache = LandmarkCache::open(given);
  ASSERT_TRUE(cache.ok()) << cache.status().to_string();
  std::mt19937_64 rng(test::fresh_seed());
  const auto k = random_halves(rng, 20 * kHeads * kDim), v = random_halves(rng, k.size());
  // 20 tokens seal one block: its landmarks are required; 5 more seal none.
  const Status missing = (*cache)->append(0, 0, 20, k.data(), v.data(), nullptr);
  EXPECT_EQ(missing.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.message().find("seals 1 blocks"), std::string::npos) << missing.message();
  std::vector<float> landmarks(kHeads * kDim, 1.f);
  landmarks[3] = NAN;
  EXPECT_EQ((*cache)->append(0, 0, 20, k.data(), v.data(), landmarks.data()).code(),
            StatusCode::kInvalidArgument);
  landmarks[3] = 1.f;
  ASSERT_TRUE((*cache)->append(0, 0, 20, k.data(), v.data(), landmarks.data()).ok());
  ASSERT_TRUE((*cache)->append(0, 0, 5, k.data(), v.data(), nullptr).ok());
  std::vector<float> q(kHeads * kDim, 1.f), out(q.size());
  EXPECT_EQ((*cache)->attend(0, 0, 26, q.data(), out.data()).code(),
            StatusCode::kInvalidArgument);  // only 25 appended
  EXPECT_EQ((*cache)->attend(0, 4, 1, q.data(), out.data()).code(),
            StatusCode::kInvalidArgument);  // layer 4 of 1
  EXPECT_TRUE((*cache)->attend(0, 0, 1, q.data(), out.data()).ok());
}

}  // namespace
}  // namespace lmkv
