// Retrieval attention end to end (index search, page-in through the store, attention) against the
// CPU reference: every block equals the full grouped softmax, top-k equals the reference's own
// selection, per-chunk mode, needles, tiers (retrieval_attention_gpu_test.cc: the GPU path).
#include "attention/retrieval_attention.h"

#include <gtest/gtest.h>

#include "attention/retrieval_fixture.h"

namespace lmkv {
namespace {

TEST_F(RetrievalAttentionTest, EveryBlockEqualsTheFullGroupedSoftmax) {
  build(20, 9);
  const std::vector<float> q = queries(5);
  RetrievalOptions options;
  options.top_k = 20;
  EXPECT_LE(relative_error(run(inputs(q, 5), options), reference(q, 5, 20, Retrieval::kPerToken)),
            kCpuBound);
}

TEST_F(RetrievalAttentionTest, TopKEqualsTheReferenceSelection) {
  build(40, 6);
  const std::vector<float> q = queries(3);
  for (uint32_t k : {1u, 4u, 13u}) {
    RetrievalOptions options;
    options.top_k = k;
    EXPECT_LE(relative_error(run(inputs(q, 3), options), reference(q, 3, k, Retrieval::kPerToken)),
              kCpuBound)
        << "k " << k;
  }
}

TEST_F(RetrievalAttentionTest, PerChunkModeEqualsTheReferenceOffloadMode) {
  build(30, 12);
  const std::vector<float> q = queries(8);
  RetrievalOptions options;
  options.top_k = 5;
  options.retrieval = Retrieval::kPerChunk;
  RetrievalTrace trace;
  const std::vector<float> got = run(inputs(q, 8), options, &trace);
  EXPECT_LE(relative_error(got, reference(q, 8, 5, Retrieval::kPerChunk)), kCpuBound);
  // One selection per head for the whole chunk: every token of a head has the same blocks.
  for (uint32_t h = 0; h < kHeads; ++h) {
    for (uint32_t t = 1; t < 8; ++t) {
      for (uint32_t i = 0; i < 5; ++i) {
        EXPECT_EQ(trace.block_nos[(t * kHeads + h) * 5 + i], trace.block_nos[h * 5 + i]);
      }
    }
  }
}

TEST_F(RetrievalAttentionTest, BeforeAnyBlockIsSealedTheWindowAlone) {
  build(0, 4);
  const std::vector<float> q = queries(2);
  RetrievalOptions options;
  options.top_k = 8;
  EXPECT_LE(relative_error(run(inputs(q, 2), options), reference(q, 2, 8, Retrieval::kPerToken)),
            kCpuBound);
}

// A needle block whose landmark and keys align with a later query is retrieved at every depth
// and dominates that query's output.
TEST_F(RetrievalAttentionTest, PlantedNeedleIsRetrievedAtEveryDepthAndDominates) {
  const size_t blocks = 200;
  for (size_t depth : {size_t{0}, blocks / 2, blocks - 1}) {
    sequence_ = 100 + depth;  // a fresh sequence per depth
    build(0, 1);
    blocks_ = blocks;
    keys_.clear(), values_.clear(), landmarks_.clear();
    std::vector<float> q = queries(1);
    std::normal_distribution<float> normal;
    const size_t tensor = size_t{kB} * kDim;
    for (uint32_t g = 0; g < kKv; ++g) {
      keys_.push_back(std::vector<float>(blocks * tensor));
      values_.push_back(std::vector<float>(blocks * tensor));
      landmarks_.push_back(std::vector<float>(blocks * kDim));
      for (auto* v : {&keys_[g], &values_[g], &landmarks_[g]}) {
        for (auto& x : *v) x = half_bits_to_float(float_to_half_bits(0.3f * normal(rng_)));
      }
      // Needle: keys and landmark along query head 2g's direction, values all 5.
      const float* dir = q.data() + size_t{2 * g} * kDim;
      for (uint32_t i = 0; i < kDim; ++i) {
        landmarks_[g][depth * kDim + i] = half_bits_to_float(float_to_half_bits(dir[i]));
        for (uint32_t j = 0; j < kB; ++j) {
          keys_[g][depth * tensor + j * kDim + i] = half_bits_to_float(float_to_half_bits(dir[i]));
          values_[g][depth * tensor + j * kDim + i] = 5.f;
        }
      }
    }
    write_blocks();
    RetrievalOptions options;
    options.top_k = 4;
    RetrievalTrace trace;
    const std::vector<float> out = run(inputs(q, 1), options, &trace);
    for (uint32_t g = 0; g < kKv; ++g) {
      const uint32_t h = 2 * g;
      EXPECT_EQ(trace.block_nos[h * 4], int64_t(depth)) << "depth " << depth;
      double mean = 0;
      for (uint32_t i = 0; i < kDim; ++i) mean += out[h * kDim + i] / kDim;
      EXPECT_GT(mean, 4.5) << "depth " << depth << ": the needle's values should dominate";
    }
  }
}

TEST_F(RetrievalAttentionTest, OutputDoesNotDependOnTheTierBlocksComeFrom) {
  build(100, 5);  // more blocks than the 64-block host tier: some start on disk
  const std::vector<float> q = queries(4);
  RetrievalOptions options;
  options.top_k = 12;  // up to 48 blocks a token: the 4 tokens need several waves of 64 slots
  RetrievalTrace from_mixed, from_disk;
  const std::vector<float> mixed = run(inputs(q, 4), options, &from_mixed);
  ASSERT_TRUE(store_->evict_all(Tier::kHost).ok());
  const std::vector<float> disk = run(inputs(q, 4), options, &from_disk);
  EXPECT_EQ(mixed, disk);
  // Later waves may find blocks an earlier wave promoted; the first finds all on disk.
  EXPECT_GT(from_disk.blocks_from_tier[size_t(Tier::kDisk)], 0u);
  EXPECT_EQ(from_disk.blocks_from_tier[size_t(Tier::kGpu)], 0u);
  EXPECT_LE(relative_error(disk, reference(q, 4, 12, Retrieval::kPerToken)), kCpuBound);
  // A token whose heads retrieve more distinct blocks than the tier holds cannot run.
  options.top_k = 40;
  RetrievalAttention attention(*store_, *index_);
  std::vector<float> out(disk.size());
  const Status s = attention.run(inputs(q, 4), options, out.data());
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
  EXPECT_NE(s.message().find("hold 64"), std::string::npos) << s.message();
}

TEST_F(RetrievalAttentionTest, BadArgumentsAreClearErrors) {
  build(10, 4);
  const std::vector<float> q = queries(2);
  RetrievalAttention attention(*store_, *index_);
  std::vector<float> out(2 * kHeads * kDim);
  RetrievalOptions zero_k;
  zero_k.top_k = 0;
  EXPECT_EQ(attention.run(inputs(q, 2), zero_k, out.data()).code(), StatusCode::kInvalidArgument);
  RetrievalInputs in = inputs(q, 2);
  in.kv_heads = 3;
  EXPECT_EQ(attention.run(in, {}, out.data()).code(), StatusCode::kInvalidArgument);
  in = inputs(q, 2);
  in.window_tokens = 1;
  EXPECT_EQ(attention.run(in, {}, out.data()).code(), StatusCode::kInvalidArgument);
  in = inputs(q, 2);
  in.sequence = 99;  // unknown: no landmarks, window alone
  EXPECT_TRUE(attention.run(in, {}, out.data()).ok());
  auto wrong_dim = make_faiss_cpu_index({FaissCpuKind::kFlat, 32});
  RetrievalAttention mismatched(*store_, *wrong_dim.value());
  EXPECT_EQ(mismatched.run(inputs(q, 2), {}, out.data()).code(), StatusCode::kInvalidArgument);
  RetrievalOptions gpu;
  gpu.device = AttentionDevice::kGpu;  // the store has no GPU tier
  EXPECT_EQ(attention.run(inputs(q, 2), gpu, out.data()).code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace lmkv
