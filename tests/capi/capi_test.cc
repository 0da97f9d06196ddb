// The C API: every call, every error path (null handle, null pointers, wrong sizes, use after
// close, double close), and results equal to the C++ API's on the same inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>

#include "attention/landmark_cache.h"
#include "kvstore/dtype_convert.h"
#include "lmkv/lmkv.h"
#include "test_util.h"

namespace lmkv {
namespace {

constexpr uint32_t kHeads = 4, kKv = 2, kDim = 64, kBlock = 16;

// `dir` must outlive the config: data_dir points into it.
lmkv_config small_config(const std::string& dir) {
  lmkv_config c = lmkv_default_config();
  c.layers = 2;
  c.heads = kHeads;
  c.kv_heads = kKv;
  c.head_dim = kDim;
  c.block_tokens = kBlock;
  c.top_k = 4;
  c.device = LMKV_DEVICE_CPU;
  c.host_capacity_bytes = 1 << 20;
  c.data_dir = dir.c_str();
  c.index_backend = "faiss-flat";
  return c;
}

// Random fp16 keys and values [tokens][kv][d] and float queries [tokens][heads][d].
struct Tokens {
  std::vector<uint16_t> keys, values;
  std::vector<float> queries;
};

Tokens random_tokens(std::mt19937_64& rng, uint32_t n) {
  std::normal_distribution<float> normal;
  Tokens t;
  for (size_t i = 0; i < size_t{n} * kKv * kDim; ++i) {
    t.keys.push_back(float_to_half_bits(normal(rng)));
    t.values.push_back(float_to_half_bits(normal(rng)));
  }
  for (size_t i = 0; i < size_t{n} * kHeads * kDim; ++i) t.queries.push_back(normal(rng));
  return t;
}

TEST(CApi, EveryCallWorksAndEqualsTheCppApi) {
  test::TempDir dir;
  const std::string c_dir = dir.sub("c"), cpp_dir = dir.sub("cpp");
  lmkv_config config = small_config(c_dir);
  lmkv_cache* cache = nullptr;
  ASSERT_EQ(lmkv_open(&config, &cache), LMKV_OK) << lmkv_last_error();
  ASSERT_NE(cache, nullptr);
  EXPECT_STREQ(lmkv_last_error(), "");
  EXPECT_STREQ(lmkv_version(), "0.1.0");

  CacheOptions options;
  options.store.shape = {kBlock, kDim, DType::kFloat16};
  options.store.disk_path = cpp_dir;
  options.store.host_capacity_bytes = 1 << 20;
  options.layers = 2;
  options.heads = kHeads;
  options.kv_heads = kKv;
  options.backend = IndexBackend::kFaissFlat;
  options.landmark = LandmarkSource::kMean;
  options.retrieval.top_k = 4;
  auto cpp = LandmarkCache::open(options);
  ASSERT_TRUE(cpp.ok()) << cpp.status().to_string();

  std::mt19937_64 rng(test::fresh_seed());
  // Prefill 300 tokens in chunks of 100 on both layers, then 5 decode steps.
  std::vector<uint32_t> steps = {100, 100, 100, 1, 1, 1, 1, 1};
  for (uint32_t n : steps) {
    for (uint32_t layer = 0; layer < 2; ++layer) {
      const Tokens t = random_tokens(rng, n);
      uint32_t sealing = 0;
      ASSERT_EQ(lmkv_blocks_sealed_by(cache, 3, layer, n, &sealing), LMKV_OK);
      EXPECT_EQ(sealing, *(*cpp)->blocks_sealed_by(3, layer, n));
      ASSERT_EQ(lmkv_append(cache, 3, layer, n, t.keys.data(), t.values.data(), nullptr), LMKV_OK)
          << lmkv_last_error();
      ASSERT_TRUE((*cpp)->append(3, layer, n, t.keys.data(), t.values.data()).ok());
      std::vector<float> c_out(t.queries.size(), NAN), cpp_out(t.queries.size(), NAN);
      ASSERT_EQ(lmkv_attend(cache, 3, layer, n, t.queries.data(), c_out.data(), nullptr), LMKV_OK)
          << lmkv_last_error();
      ASSERT_TRUE((*cpp)->attend(3, layer, n, t.queries.data(), cpp_out.data()).ok());
      EXPECT_EQ(c_out, cpp_out);
      for (float x : c_out) ASSERT_TRUE(std::isfinite(x));
    }
  }
  EXPECT_EQ((*cpp)->length(3, 0), 305u);

  size_t needed = 0;
  EXPECT_EQ(lmkv_stats_json(cache, nullptr, 0, &needed), LMKV_RESOURCE_EXHAUSTED);
  ASSERT_GT(needed, 10u);
  std::string json(needed, '\0');
  ASSERT_EQ(lmkv_stats_json(cache, json.data(), json.size(), &needed), LMKV_OK);
  EXPECT_NE(json.find("\"tiers\""), std::string::npos);
  EXPECT_EQ(json.back(), '\0');

  ASSERT_EQ(lmkv_sync(cache), LMKV_OK);
  ASSERT_EQ(lmkv_erase_sequence(cache, 3), LMKV_OK);
  // After the erase the sequence starts empty: attending needs appended tokens first.
  const Tokens t = random_tokens(rng, 1);
  std::vector<float> out(t.queries.size());
  EXPECT_EQ(lmkv_attend(cache, 3, 0, 1, t.queries.data(), out.data(), nullptr),
            LMKV_INVALID_ARGUMENT);
  ASSERT_EQ(lmkv_close(cache), LMKV_OK);
}

// Offload mode (one retrieval per head for each lmkv_attend chunk) through the C API equals the
// C++ API in the same mode, and differs from per-token retrieval on the same prefill.
TEST(CApi, PerChunkRetrievalEqualsTheCppApi) {
  test::TempDir dir;
  const std::string c_dir = dir.sub("c"), cpp_dir = dir.sub("cpp"), token_dir = dir.sub("t");
  lmkv_config config = small_config(c_dir);
  config.layers = 1;
  config.retrieval = LMKV_RETRIEVAL_PER_CHUNK;
  lmkv_config per_token = small_config(token_dir);
  per_token.layers = 1;
  lmkv_cache *cache = nullptr, *token_cache = nullptr;
  ASSERT_EQ(lmkv_open(&config, &cache), LMKV_OK) << lmkv_last_error();
  ASSERT_EQ(lmkv_open(&per_token, &token_cache), LMKV_OK) << lmkv_last_error();

  CacheOptions options;
  options.store.shape = {kBlock, kDim, DType::kFloat16};
  options.store.disk_path = cpp_dir;
  options.store.host_capacity_bytes = 1 << 20;
  options.heads = kHeads;
  options.kv_heads = kKv;
  options.backend = IndexBackend::kFaissFlat;
  options.retrieval.top_k = 4;
  options.retrieval.retrieval = Retrieval::kPerChunk;
  auto cpp = LandmarkCache::open(options);
  ASSERT_TRUE(cpp.ok()) << cpp.status().to_string();

  std::mt19937_64 rng(test::fresh_seed());
  bool differs = false;
  for (uint32_t n : {200u, 60u, 1u}) {
    const Tokens t = random_tokens(rng, n);
    ASSERT_EQ(lmkv_append(cache, 1, 0, n, t.keys.data(), t.values.data(), nullptr), LMKV_OK);
    ASSERT_EQ(lmkv_append(token_cache, 1, 0, n, t.keys.data(), t.values.data(), nullptr), LMKV_OK);
    ASSERT_TRUE((*cpp)->append(1, 0, n, t.keys.data(), t.values.data()).ok());
    std::vector<float> c_out(t.queries.size(), NAN), cpp_out(t.queries.size(), NAN),
        token_out(t.queries.size(), NAN);
    ASSERT_EQ(lmkv_attend(cache, 1, 0, n, t.queries.data(), c_out.data(), nullptr), LMKV_OK)
        << lmkv_last_error();
    ASSERT_EQ(lmkv_attend(token_cache, 1, 0, n, t.queries.data(), token_out.data(), nullptr),
              LMKV_OK);
    ASSERT_TRUE((*cpp)->attend(1, 0, n, t.queries.data(), cpp_out.data()).ok());
    EXPECT_EQ(c_out, cpp_out) << n << " tokens";
    differs |= c_out != token_out;
  }
  EXPECT_TRUE(differs) << "per-chunk retrieval gave per-token results on a 60-token chunk";
  ASSERT_EQ(lmkv_close(cache), LMKV_OK);
  ASSERT_EQ(lmkv_close(token_cache), LMKV_OK);
}

TEST(CApi, ErrorPathsAreCodesWithMessagesNeverCrashes) {
  test::TempDir dir;
  lmkv_cache* cache = nullptr;
  // Open: null arguments, missing data dir, an old struct size, bad enums and shapes.
  EXPECT_EQ(lmkv_open(nullptr, &cache), LMKV_INVALID_ARGUMENT);
  const std::string path = dir.sub("db");
  lmkv_config config = small_config(path);
  EXPECT_EQ(lmkv_open(&config, nullptr), LMKV_INVALID_ARGUMENT);
  lmkv_config bad = config;
  bad.data_dir = nullptr;
  EXPECT_EQ(lmkv_open(&bad, &cache), LMKV_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmkv_last_error()).find("data_dir"), std::string::npos);
  bad = config;
  bad.struct_size = 8;
  EXPECT_EQ(lmkv_open(&bad, &cache), LMKV_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmkv_last_error()).find("struct_size 8"), std::string::npos);
  // Out-of-range enum values, stored as a C caller could (any int).
  auto store_int = [](auto& field, int value) { std::memcpy(&field, &value, sizeof value); };
  bad = config;
  store_int(bad.dtype, 9);
  EXPECT_EQ(lmkv_open(&bad, &cache), LMKV_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmkv_last_error()).find("dtype 9"), std::string::npos);
  bad = config;
  store_int(bad.device, 5);
  EXPECT_EQ(lmkv_open(&bad, &cache), LMKV_INVALID_ARGUMENT);
  bad = config;
  store_int(bad.write_policy, -1);
  EXPECT_EQ(lmkv_open(&bad, &cache), LMKV_INVALID_ARGUMENT);
  bad = config;
  bad.kv_heads = 3;
  EXPECT_EQ(lmkv_open(&bad, &cache), LMKV_INVALID_ARGUMENT);
  bad = config;
  bad.index_backend = "nonsense";
  EXPECT_EQ(lmkv_open(&bad, &cache), LMKV_INVALID_ARGUMENT);
  bad = config;
  store_int(bad.landmark, 7);
  EXPECT_EQ(lmkv_open(&bad, &cache), LMKV_INVALID_ARGUMENT);
  bad = config;
  store_int(bad.retrieval, 7);
  EXPECT_EQ(lmkv_open(&bad, &cache), LMKV_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmkv_last_error()).find("retrieval 7"), std::string::npos);
  EXPECT_EQ(cache, nullptr);
  // A caller built against 0.1.0 passes the older, shorter struct: the fields past its end are
  // not read (here one holding garbage) and take their defaults.
  bad.struct_size = offsetof(lmkv_config, retrieval);
  ASSERT_EQ(lmkv_open(&bad, &cache), LMKV_OK) << lmkv_last_error();
  ASSERT_EQ(lmkv_close(cache), LMKV_OK);
  cache = nullptr;

  // Null handles.
  uint32_t n = 0;
  size_t needed = 0;
  float q = 0, o = 0;
  EXPECT_EQ(lmkv_append(nullptr, 0, 0, 1, &q, &q, nullptr), LMKV_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmkv_last_error()).find("null handle"), std::string::npos);
  EXPECT_EQ(lmkv_attend(nullptr, 0, 0, 1, &q, &o, nullptr), LMKV_INVALID_ARGUMENT);
  EXPECT_EQ(lmkv_blocks_sealed_by(nullptr, 0, 0, 1, &n), LMKV_INVALID_ARGUMENT);
  EXPECT_EQ(lmkv_stats_json(nullptr, nullptr, 0, &needed), LMKV_INVALID_ARGUMENT);
  EXPECT_EQ(lmkv_sync(nullptr), LMKV_INVALID_ARGUMENT);
  EXPECT_EQ(lmkv_erase_sequence(nullptr, 0), LMKV_INVALID_ARGUMENT);
  EXPECT_EQ(lmkv_close(nullptr), LMKV_INVALID_ARGUMENT);
  // A pointer that was never a handle.
  EXPECT_EQ(lmkv_sync(reinterpret_cast<lmkv_cache*>(&q)), LMKV_INVALID_ARGUMENT);

  ASSERT_EQ(lmkv_open(&config, &cache), LMKV_OK) << lmkv_last_error();
  std::mt19937_64 rng(test::fresh_seed());
  const Tokens t = random_tokens(rng, 20);
  // Null pointers and wrong sizes.
  EXPECT_EQ(lmkv_append(cache, 0, 0, 20, nullptr, t.values.data(), nullptr), LMKV_INVALID_ARGUMENT);
  EXPECT_EQ(lmkv_append(cache, 0, 5, 20, t.keys.data(), t.values.data(), nullptr),
            LMKV_INVALID_ARGUMENT);  // layer 5 of 2
  EXPECT_NE(std::string(lmkv_last_error()).find("layer 5 of 2"), std::string::npos);
  const float landmark[kKv * kDim] = {};
  EXPECT_EQ(lmkv_append(cache, 0, 0, 20, t.keys.data(), t.values.data(), landmark),
            LMKV_INVALID_ARGUMENT);  // the cache computes mean landmarks itself
  EXPECT_EQ(lmkv_blocks_sealed_by(cache, 0, 0, 20, nullptr), LMKV_INVALID_ARGUMENT);
  // A non-finite key is refused before anything is stored.
  std::vector<uint16_t> infinite = t.keys;
  infinite[3 * kKv * kDim + kDim + 5] = 0x7C00;  // +inf at token 3, KV head 1
  EXPECT_EQ(lmkv_append(cache, 0, 0, 20, infinite.data(), t.values.data(), nullptr),
            LMKV_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmkv_last_error()).find("token 3 (KV head 1) is not finite"),
            std::string::npos)
      << lmkv_last_error();
  ASSERT_EQ(lmkv_append(cache, 0, 0, 20, t.keys.data(), t.values.data(), nullptr), LMKV_OK);
  std::vector<float> out(t.queries.size());
  EXPECT_EQ(lmkv_attend(cache, 0, 0, 20, nullptr, out.data(), nullptr), LMKV_INVALID_ARGUMENT);
  EXPECT_EQ(lmkv_attend(cache, 0, 0, 21, t.queries.data(), out.data(), nullptr),
            LMKV_INVALID_ARGUMENT);  // more queries than appended tokens
  EXPECT_EQ(lmkv_attend(cache, 0, 0, 0, t.queries.data(), out.data(), nullptr),
            LMKV_INVALID_ARGUMENT);
  EXPECT_EQ(lmkv_attend(cache, 0, 0, 20, t.queries.data(), out.data(), nullptr), LMKV_OK);
  EXPECT_EQ(lmkv_stats_json(cache, nullptr, 10, &needed), LMKV_INVALID_ARGUMENT);
  EXPECT_EQ(lmkv_stats_json(cache, nullptr, 0, nullptr), LMKV_INVALID_ARGUMENT);
  char small[4];
  EXPECT_EQ(lmkv_stats_json(cache, small, sizeof small, &needed), LMKV_RESOURCE_EXHAUSTED);

  // Use after close and double close.
  ASSERT_EQ(lmkv_close(cache), LMKV_OK);
  EXPECT_EQ(lmkv_sync(cache), LMKV_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lmkv_last_error()).find("closed"), std::string::npos);
  EXPECT_EQ(lmkv_append(cache, 0, 0, 20, t.keys.data(), t.values.data(), nullptr),
            LMKV_INVALID_ARGUMENT);
  EXPECT_EQ(lmkv_close(cache), LMKV_INVALID_ARGUMENT);
}

TEST(CApi, GivenLandmarksAndAReopenContinueTheSequence) {
  test::TempDir dir;
  const std::string path = dir.sub("db");
  lmkv_config config = small_config(path);
  config.landmark = LMKV_LANDMARK_GIVEN;
  lmkv_cache* cache = nullptr;
  ASSERT_EQ(lmkv_open(&config, &cache), LMKV_OK) << lmkv_last_error();
  std::mt19937_64 rng(test::fresh_seed());
  const Tokens t = random_tokens(rng, 40);  // seals 2 blocks of 16
  uint32_t sealing = 0;
  ASSERT_EQ(lmkv_blocks_sealed_by(cache, 9, 0, 40, &sealing), LMKV_OK);
  ASSERT_EQ(sealing, 2u);
  EXPECT_EQ(lmkv_append(cache, 9, 0, 40, t.keys.data(), t.values.data(), nullptr),
            LMKV_INVALID_ARGUMENT);  // given landmarks are required
  std::vector<float> landmarks(size_t{sealing} * kKv * kDim, 0.5f);
  ASSERT_EQ(lmkv_append(cache, 9, 0, 40, t.keys.data(), t.values.data(), landmarks.data()), LMKV_OK)
      << lmkv_last_error();
  ASSERT_EQ(lmkv_close(cache), LMKV_OK);
  // Reopened: the two sealed blocks are indexed again; the 8 open tokens are gone.
  ASSERT_EQ(lmkv_open(&config, &cache), LMKV_OK) << lmkv_last_error();
  ASSERT_EQ(lmkv_blocks_sealed_by(cache, 9, 0, 16, &sealing), LMKV_OK);
  EXPECT_EQ(sealing, 1u);
  const Tokens more = random_tokens(rng, 1);
  ASSERT_EQ(lmkv_append(cache, 9, 0, 1, more.keys.data(), more.values.data(), nullptr), LMKV_OK);
  std::vector<float> out(more.queries.size());
  ASSERT_EQ(lmkv_attend(cache, 9, 0, 1, more.queries.data(), out.data(), nullptr), LMKV_OK)
      << lmkv_last_error();
  for (float x : out) EXPECT_TRUE(std::isfinite(x));
  ASSERT_EQ(lmkv_close(cache), LMKV_OK);
}

}  // namespace
}  // namespace lmkv
