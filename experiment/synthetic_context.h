// Synthetic but structured context for experiments: keys drift through topics across the context
// (clustered around the current topic's direction), values are random, and needles (blocks whose
// keys point along a direction of their own) sit at chosen depths, each with a later query that
// points the same way. Everything is a pure function of (seed, layer, kv head, block), so any
// part can be regenerated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lmkv {

struct SyntheticOptions {
  uint32_t dim = 64;
  uint32_t block_tokens = 50;
  uint64_t blocks = 0;              // sealed blocks per (layer, KV head)
  uint32_t topics = 16;             // topic directions per (layer, KV head)
  uint32_t blocks_per_topic = 200;  // the drift: a block's direction blends two neighbouring topics
  uint64_t seed = 1;
  std::vector<double> needle_depths;  // fractions of the context in [0, 1]
};

class SyntheticContext {
 public:
  explicit SyntheticContext(SyntheticOptions options);

  const SyntheticOptions& options() const { return options_; }
  // Block number of needle i (its depth times the block count, rounded).
  uint64_t needle_block(size_t i) const;
  // Which needle a block holds, or -1.
  int needle_at(uint64_t block) const;

  // K and V [B][d] of one block, in float.
  void block(uint32_t layer, uint32_t kv_head, uint64_t block, float* keys, float* values) const;
  // The "given" landmark key (the rule the generator states): the block's own direction (its
  // topic blend, or its needle's direction), scaled so the landmark softmax is sharp: what a
  // model trained with landmark tokens learns to emit for the block.
  void given_landmark(uint32_t layer, uint32_t kv_head, uint64_t block, float* out) const;
  // `tokens` tokens of the open block after the last sealed one (the local window), K and V.
  void window(uint32_t layer, uint32_t kv_head, uint32_t tokens, float* keys, float* values) const;
  // A query for needle i at one query head reading KV head kv_head: along the needle's direction.
  void needle_query(uint32_t layer, uint32_t kv_head, size_t needle, uint64_t salt,
                    float* out) const;
  // A query about the topic of a random earlier block.
  void topic_query(uint32_t layer, uint32_t kv_head, uint64_t salt, float* out) const;

 private:
  // The unit direction of a block's content.
  void direction(uint32_t layer, uint32_t kv_head, uint64_t block, float* out) const;
  void unit_vector(uint64_t seed, float* out) const;

  SyntheticOptions options_;
  std::vector<uint64_t> needle_blocks_;
};

}  // namespace lmkv
