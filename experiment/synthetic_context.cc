#include "experiment/synthetic_context.h"

#include <algorithm>
#include <cmath>

namespace lmkv {
namespace {

// Scales, relative to unit directions: keys = kKeyScale * direction + N(0, 1) noise per entry, so
// a block's keys cluster around its direction; queries likewise with kQueryScale.
constexpr float kKeyScale = 4.0f;
constexpr float kQueryScale = 4.0f;
constexpr float kQueryNoise = 0.3f;
// Given landmarks are sharp, as trained landmark tokens are: a query along a block's direction
// gives its landmark a logit q.l / sqrt(d) = kQueryScale * kLandmarkLogit = 20 at any head dim,
// while unrelated blocks spread with a deviation of 20 / sqrt(d); at 10M tokens (200,000 blocks)
// and d = 128 the aligned block still outweighs all others together by e^6. The landmark's norm
// is kLandmarkLogit * sqrt(d).
constexpr float kLandmarkLogit = 5.0f;

// splitmix64: one well-mixed 64-bit value per input, so every (layer, head, block) gets its own
// stream without shared state.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Approximately normal deviates, cheaply: the sum of four 16-bit uniforms from one xorshift draw
// (Irwin-Hall, n = 4), centred and scaled to unit variance. A million-token context needs
// billions of them; Box-Muller's log and sine cost ten times more.
struct Normal {
  uint64_t s;
  explicit Normal(uint64_t seed) : s(mix(seed) | 1) {}
  float next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    const uint32_t sum = uint32_t(s & 0xFFFF) + uint32_t((s >> 16) & 0xFFFF) +
                         uint32_t((s >> 32) & 0xFFFF) + uint32_t(s >> 48);
    constexpr float kScale = 1.7320508f / 65536.f;  // sqrt(12 / 4) per unit of 2^16
    return (float(sum) - 2 * 65535.5f) * kScale;
  }
};

uint64_t key_of(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  return mix(mix(mix(mix(seed ^ a) ^ b) ^ c) ^ d);
}

enum Stream : uint64_t { kTopic = 1, kNeedle, kBlock, kWindow, kQuery };

}  // namespace

SyntheticContext::SyntheticContext(SyntheticOptions options) : options_(std::move(options)) {
  for (double depth : options_.needle_depths) {
    const double clamped = std::clamp(depth, 0.0, 1.0);
    needle_blocks_.push_back(
        options_.blocks ? uint64_t(std::llround(clamped * double(options_.blocks - 1))) : 0);
  }
}

uint64_t SyntheticContext::needle_block(size_t i) const { return needle_blocks_[i]; }

int SyntheticContext::needle_at(uint64_t block) const {
  for (size_t i = 0; i < needle_blocks_.size(); ++i) {
    if (needle_blocks_[i] == block) return int(i);
  }
  return -1;
}

void SyntheticContext::unit_vector(uint64_t seed, float* out) const {
  Normal normal(seed);
  double norm = 0;
  for (uint32_t i = 0; i < options_.dim; ++i) {
    out[i] = normal.next();
    norm += double(out[i]) * out[i];
  }
  const float inv = float(1.0 / std::sqrt(norm));
  for (uint32_t i = 0; i < options_.dim; ++i) out[i] *= inv;
}

void SyntheticContext::direction(uint32_t layer, uint32_t kv_head, uint64_t block,
                                 float* out) const {
  const uint64_t seed = options_.seed;
  const int needle = needle_at(block);
  if (needle >= 0) return unit_vector(key_of(seed, kNeedle, layer, kv_head, needle), out);
  // Drift: blend topic a into topic a + 1 over blocks_per_topic blocks.
  const double x = double(block) / options_.blocks_per_topic;
  const uint64_t a = uint64_t(x) % options_.topics, b = (a + 1) % options_.topics;
  const float w = float(x - std::floor(x));
  std::vector<float> ta(options_.dim), tb(options_.dim);
  unit_vector(key_of(seed, kTopic, layer, kv_head, a), ta.data());
  unit_vector(key_of(seed, kTopic, layer, kv_head, b), tb.data());
  double norm = 0;
  for (uint32_t i = 0; i < options_.dim; ++i) {
    out[i] = (1 - w) * ta[i] + w * tb[i];
    norm += double(out[i]) * out[i];
  }
  const float inv = float(1.0 / std::sqrt(norm));
  for (uint32_t i = 0; i < options_.dim; ++i) out[i] *= inv;
}

namespace {

// `tokens` tokens clustered around `dir`: keys kKeyScale * dir + noise, values noise.
void clustered_tokens(const std::vector<float>& dir, uint32_t tokens, Normal& normal, float* keys,
                      float* values) {
  const size_t d = dir.size();
  for (uint32_t t = 0; t < tokens; ++t) {
    for (size_t i = 0; i < d; ++i) {
      keys[t * d + i] = kKeyScale * dir[i] + normal.next();
      values[t * d + i] = normal.next();
    }
  }
}

}  // namespace

void SyntheticContext::block(uint32_t layer, uint32_t kv_head, uint64_t block, float* keys,
                             float* values) const {
  std::vector<float> dir(options_.dim);
  direction(layer, kv_head, block, dir.data());
  Normal normal(key_of(options_.seed, kBlock, layer, kv_head, block));
  clustered_tokens(dir, options_.block_tokens, normal, keys, values);
}

void SyntheticContext::given_landmark(uint32_t layer, uint32_t kv_head, uint64_t block,
                                      float* out) const {
  direction(layer, kv_head, block, out);
  const float norm = kLandmarkLogit * std::sqrt(float(options_.dim));
  for (uint32_t i = 0; i < options_.dim; ++i) out[i] *= norm;
}

void SyntheticContext::window(uint32_t layer, uint32_t kv_head, uint32_t tokens, float* keys,
                              float* values) const {
  std::vector<float> dir(options_.dim);
  direction(layer, kv_head, options_.blocks, dir.data());  // the open block continues the drift
  Normal normal(key_of(options_.seed, kWindow, layer, kv_head, tokens));
  clustered_tokens(dir, tokens, normal, keys, values);
}

void SyntheticContext::needle_query(uint32_t layer, uint32_t kv_head, size_t needle, uint64_t salt,
                                    float* out) const {
  unit_vector(key_of(options_.seed, kNeedle, layer, kv_head, needle), out);
  Normal normal(key_of(options_.seed, kQuery, layer, kv_head, salt));
  for (uint32_t i = 0; i < options_.dim; ++i) {
    out[i] = kQueryScale * out[i] + kQueryNoise * normal.next();
  }
}

void SyntheticContext::topic_query(uint32_t layer, uint32_t kv_head, uint64_t salt,
                                   float* out) const {
  const uint64_t pick = key_of(options_.seed, kQuery, layer, kv_head, ~salt);
  const uint64_t block = options_.blocks ? pick % options_.blocks : 0;
  direction(layer, kv_head, block, out);
  Normal normal(key_of(options_.seed, kQuery, layer, kv_head, salt));
  for (uint32_t i = 0; i < options_.dim; ++i) {
    out[i] = kQueryScale * out[i] + kQueryNoise * normal.next();
  }
}

}  // namespace lmkv
