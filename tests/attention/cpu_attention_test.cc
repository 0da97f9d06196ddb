// One layer of CPU landmark attention: grouped-query heads, retrieval modes, causality, needles.
#include "attention/cpu_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "test_util.h"

namespace lmkv {
namespace {

// A layer's KV heads: each with `blocks` blocks of B tokens and a window of `window` tokens.
struct Layer {
  uint32_t d, B;
  std::vector<std::vector<float>> keys, values, landmarks, wkeys, wvalues;
  LayerAttentionInputs inputs(uint32_t heads, size_t tokens, const float* queries) const {
    LayerAttentionInputs in;
    in.heads = heads;
    in.kv_heads = uint32_t(keys.size());
    in.dim = d;
    in.tokens = tokens;
    in.queries = queries;
    for (size_t g = 0; g < keys.size(); ++g) {
      in.blocks.push_back(
          {B, d, landmarks[g].size() / d, keys[g].data(), values[g].data(), landmarks[g].data()});
      in.windows.push_back({wkeys[g].size() / d, wkeys[g].data(), wvalues[g].data()});
    }
    return in;
  }
};

Layer random_layer(std::mt19937_64& rng, uint32_t kv_heads, uint32_t d, uint32_t B, size_t blocks,
                   size_t window) {
  std::normal_distribution<float> normal;
  Layer l{d, B, {}, {}, {}, {}, {}};
  auto fill = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = normal(rng);
    return v;
  };
  for (uint32_t g = 0; g < kv_heads; ++g) {
    l.keys.push_back(fill(blocks * B * d));
    l.values.push_back(fill(blocks * B * d));
    l.landmarks.push_back(fill(blocks * d));
    l.wkeys.push_back(fill(window * d));
    l.wvalues.push_back(fill(window * d));
  }
  return l;
}

TEST(CpuAttention, GroupedQueryHeadsEqualTheExpandedMultiHeadLayer) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  constexpr uint32_t kHeads = 8, kKv = 2, kDim = 16;
  const Layer gqa = random_layer(rng, kKv, kDim, 4, 20, 6);
  Layer expanded = gqa;  // KV head h / 4 copied to every query head
  for (auto* v : {&expanded.keys, &expanded.values, &expanded.landmarks, &expanded.wkeys,
                  &expanded.wvalues}) {
    std::vector<std::vector<float>> copies;
    for (uint32_t h = 0; h < kHeads; ++h) copies.push_back((*v)[h / (kHeads / kKv)]);
    *v = copies;
  }
  std::vector<float> queries(3 * kHeads * kDim);
  for (auto& x : queries) x = normal(rng);
  for (Retrieval mode : {Retrieval::kPerToken, Retrieval::kPerChunk}) {
    std::vector<double> a, b;
    ASSERT_TRUE(cpu_layer_attention(gqa.inputs(kHeads, 3, queries.data()), {5, mode, 0}, &a).ok());
    ASSERT_TRUE(
        cpu_layer_attention(expanded.inputs(kHeads, 3, queries.data()), {5, mode, 0}, &b).ok());
    EXPECT_EQ(a, b);
  }
}

TEST(CpuAttention, RetrievingEveryBlockIsTheFullGroupedSoftmaxInBothModes) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  const Layer layer = random_layer(rng, 1, 8, 3, 10, 4);
  std::vector<float> queries(4 * 8);
  for (auto& x : queries) x = normal(rng);
  std::vector<double> per_token, per_chunk;
  ASSERT_TRUE(cpu_layer_attention(layer.inputs(1, 4, queries.data()), {10, Retrieval::kPerToken, 0},
                                  &per_token)
                  .ok());
  ASSERT_TRUE(cpu_layer_attention(layer.inputs(1, 4, queries.data()), {64, Retrieval::kPerChunk, 0},
                                  &per_chunk)
                  .ok());
  for (size_t i = 0; i < per_token.size(); ++i) EXPECT_NEAR(per_token[i], per_chunk[i], 1e-12);
}

TEST(CpuAttention, EarlierTokensDoNotSeeLaterOnes) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  Layer layer = random_layer(rng, 1, 8, 3, 6, 5);
  std::vector<float> queries(5 * 8);
  for (auto& x : queries) x = normal(rng);
  std::vector<double> before, after;
  ASSERT_TRUE(
      cpu_layer_attention(layer.inputs(1, 5, queries.data()), {2, Retrieval::kPerToken, 0}, &before)
          .ok());
  for (uint32_t i = 0; i < 8; ++i) layer.wvalues[0][4 * 8 + i] += 100;  // the last token's value
  ASSERT_TRUE(
      cpu_layer_attention(layer.inputs(1, 5, queries.data()), {2, Retrieval::kPerToken, 0}, &after)
          .ok());
  for (size_t i = 0; i < 4 * 8; ++i) EXPECT_EQ(before[i], after[i]) << "token " << i / 8;
  EXPECT_NE(before[4 * 8], after[4 * 8]);
}

TEST(CpuAttention, APlantedNeedleIsRetrievedAtEveryDepthAndDominates) {
  std::mt19937_64 rng(test::fresh_seed());
  std::normal_distribution<float> normal;
  constexpr uint32_t kDim = 32, kB = 10;
  constexpr size_t kBlocks = 400;
  std::vector<float> direction(kDim);
  for (auto& x : direction) x = normal(rng);
  // A fixed length (|direction|^2 = kDim) gives every seed the same margin: a short random
  // direction would leave the needle too weak to dominate.
  double squared = 0;
  for (float x : direction) squared += double(x) * x;
  for (auto& x : direction) x = static_cast<float>(x * std::sqrt(kDim / squared));
  for (size_t depth : {size_t{0}, kBlocks / 100, kBlocks / 2, kBlocks - 1}) {
    Layer layer = random_layer(rng, 1, kDim, kB, kBlocks, 2);
    for (auto* v : {&layer.keys[0], &layer.landmarks[0], &layer.wkeys[0]}) {
      for (auto& x : *v) x *= 0.1f;  // background: weak keys
    }
    // The needle block: keys and landmark along `direction`, values all 1.
    for (uint32_t t = 0; t < kB; ++t) {
      for (uint32_t i = 0; i < kDim; ++i) {
        layer.keys[0][(depth * kB + t) * kDim + i] = direction[i];
        layer.values[0][(depth * kB + t) * kDim + i] = 1.0f;
      }
    }
    for (uint32_t i = 0; i < kDim; ++i) layer.landmarks[0][depth * kDim + i] = direction[i];
    std::vector<float> query(direction);
    for (auto& x : query) x *= 2;  // strongly aligned with the needle
    const HeadBlocks blocks = layer.inputs(1, 1, query.data()).blocks[0];
    auto chosen = select_blocks_per_token(query.data(), blocks, 4);
    ASSERT_TRUE(chosen.ok());
    EXPECT_EQ(chosen->front(), depth) << "needle at block " << depth;
    std::vector<double> out;
    ASSERT_TRUE(
        cpu_layer_attention(layer.inputs(1, 1, query.data()), {4, Retrieval::kPerToken, 0}, &out)
            .ok());
    for (uint32_t i = 0; i < kDim; ++i) EXPECT_NEAR(out[i], 1.0, 0.05) << "depth " << depth;
  }
}

TEST(CpuAttention, BadShapesGetAClearError) {
  std::mt19937_64 rng(test::fresh_seed());
  const Layer layer = random_layer(rng, 2, 8, 2, 3, 2);
  std::vector<float> queries(3 * 8);
  std::vector<double> out;
  const Status heads = cpu_layer_attention(layer.inputs(3, 1, queries.data()), {}, &out);
  EXPECT_EQ(heads.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(heads.message().find("heads=3"), std::string::npos) << heads.message();
  EXPECT_EQ(
      cpu_layer_attention(layer.inputs(2, 1, queries.data()), {0, Retrieval::kPerToken, 0}, &out)
          .code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(cpu_layer_attention(layer.inputs(2, 3, queries.data()), {}, &out).code(),
            StatusCode::kInvalidArgument);  // the chunk is longer than the window
}

}  // namespace
}  // namespace lmkv
