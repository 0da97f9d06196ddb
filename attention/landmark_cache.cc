#include "attention/landmark_cache.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "attention/landmark_keys.h"
#include "index/landmark_persistence.h"

namespace lmkv {

// One layer of one sequence: how many blocks are sealed and indexed, and the host copy of the
// tokens since the first block not yet indexed (the local window), [kv_heads][tokens][d].
struct LandmarkCache::LayerState {
  uint64_t indexed_blocks = 0;  // blocks in the index (retrievable)
  uint64_t sealed_blocks = 0;   // blocks in the store; those past indexed_blocks are pending
  std::vector<std::vector<uint16_t>> keys, values;  // per KV head, from indexed_blocks * B on
  std::vector<float> pending_landmarks;             // [pending blocks][kv_heads][d]
  uint32_t dim = 0;
  uint64_t window_tokens() const { return keys.empty() ? 0 : keys[0].size() / dim; }
};

const char* landmark_source_name(LandmarkSource source) {
  switch (source) {
    case LandmarkSource::kGiven:
      return "given";
    case LandmarkSource::kMean:
      return "mean";
    case LandmarkSource::kRepresentative:
      return "representative";
  }
  return "?";
}

Status sealed_block_landmark(LandmarkSource source, const float* keys, uint32_t tokens,
                             uint32_t dim, float* out) {
  switch (source) {
    case LandmarkSource::kMean:
      return mean_landmark(keys, tokens, dim, out);
    case LandmarkSource::kRepresentative:
      return representative_landmark(keys, tokens, dim, keys, tokens, out);
    case LandmarkSource::kGiven:
      break;
  }
  return Status::InvalidArgument("given landmarks come from the caller, not from the keys");
}

Result<std::unique_ptr<LandmarkCache>> LandmarkCache::open(CacheOptions options) {
  if (options.layers == 0 || options.heads == 0 || options.kv_heads == 0 ||
      options.heads % options.kv_heads != 0) {
    return Status::InvalidArgument(fmt::format("cache of {} layers, {} heads over {} KV heads",
                                               options.layers, options.heads, options.kv_heads));
  }
  if (options.retrieval.top_k == 0) return Status::InvalidArgument("cache with top_k=0");
  if (options.retrieval.device == AttentionDevice::kGpu && options.store.gpu_capacity_bytes == 0) {
    return Status::InvalidArgument(
        "GPU attention needs a GPU tier: set store.gpu_capacity_bytes (retrieved blocks are paged "
        "into it)");
  }
  LMKV_ASSIGN_OR_RETURN(std::unique_ptr<TieredStore> store, TieredStore::open(options.store));
  IndexOptions index_options;
  index_options.backend = options.backend;
  index_options.dim = options.store.shape.head_dim;
  index_options.cuda_device = options.store.cuda_device;
  LMKV_ASSIGN_OR_RETURN(std::unique_ptr<LandmarkIndex> index, make_landmark_index(index_options));
  LMKV_RETURN_IF_ERROR(rebuild_index(*store, *index));
  return std::unique_ptr<LandmarkCache>(
      new LandmarkCache(std::move(options), std::move(store), std::move(index)));
}

LandmarkCache::LandmarkCache(CacheOptions options, std::unique_ptr<TieredStore> store,
                             std::unique_ptr<LandmarkIndex> index)
    : options_(std::move(options)), store_(std::move(store)), index_(std::move(index)) {
  attention_ = std::make_unique<RetrievalAttention>(*store_, *index_);
}

LandmarkCache::~LandmarkCache() { (void)close(); }

Status LandmarkCache::check_open() const {
  return closed_ ? Status::FailedPrecondition("the cache is closed") : Status::Ok();
}

LandmarkCache::LayerState& LandmarkCache::state(uint64_t sequence, uint32_t layer) {
  auto& layers = sequences_[sequence];
  if (layers.empty()) layers.resize(options_.layers);
  auto& s = layers[layer];
  if (s == nullptr) {
    s = std::make_unique<LayerState>();
    // A reopened store: continue after the sealed blocks the index was rebuilt from.
    s->indexed_blocks = s->sealed_blocks = index_->size({sequence, layer, 0});
    s->keys.resize(options_.kv_heads);
    s->values.resize(options_.kv_heads);
    s->dim = options_.store.shape.head_dim;
  }
  return *s;
}

// Pending blocks enter the index; their tokens leave the window.
Status LandmarkCache::index_pending(uint64_t sequence, uint32_t layer, LayerState& s) {
  const uint64_t pending = s.sealed_blocks - s.indexed_blocks;
  if (pending == 0) return Status::Ok();
  const uint32_t d = options_.store.shape.head_dim, B = options_.store.shape.block_tokens;
  std::vector<uint64_t> numbers(pending);
  std::vector<float> keys(pending * d);
  for (uint32_t g = 0; g < options_.kv_heads; ++g) {
    for (uint64_t i = 0; i < pending; ++i) {
      numbers[i] = s.indexed_blocks + i;
      std::memcpy(&keys[i * d], &s.pending_landmarks[(i * options_.kv_heads + g) * d],
                  d * sizeof(float));
    }
    LMKV_RETURN_IF_ERROR(index_->add({sequence, layer, g}, numbers.data(), keys.data(), pending));
    const size_t drop = size_t(pending) * B * d;
    s.keys[g].erase(s.keys[g].begin(), s.keys[g].begin() + drop);
    s.values[g].erase(s.values[g].begin(), s.values[g].begin() + drop);
  }
  s.indexed_blocks = s.sealed_blocks;
  s.pending_landmarks.clear();
  return Status::Ok();
}

// Seals the next block of the window: into the store with its landmark keys (one per KV head).
Status LandmarkCache::seal(uint64_t sequence, uint32_t layer, LayerState& s,
                           const float* landmarks) {
  const BlockShape& shape = options_.store.shape;
  const uint32_t d = shape.head_dim, B = shape.block_tokens;
  const size_t offset = size_t(s.sealed_blocks - s.indexed_blocks) * B * d;
  const size_t tensor = size_t{B} * d;
  std::vector<BlockWrite> writes;
  std::vector<BlockKey> keys;
  std::vector<float> block_landmarks(size_t{options_.kv_heads} * d);
  std::vector<float> floats(tensor);
  for (uint32_t g = 0; g < options_.kv_heads; ++g) {
    const BlockKey key{sequence, layer, g, s.sealed_blocks};
    writes.push_back({key, &s.keys[g][offset], &s.values[g][offset]});
    keys.push_back(key);
    float* l = &block_landmarks[size_t{g} * d];
    if (landmarks != nullptr) {
      std::memcpy(l, landmarks + size_t{g} * d, d * sizeof(float));
      continue;
    }
    LMKV_RETURN_IF_ERROR(to_floats(&s.keys[g][offset], shape.dtype, tensor, floats.data()));
    LMKV_RETURN_IF_ERROR(sealed_block_landmark(options_.landmark, floats.data(), B, d, l));
  }
  LMKV_RETURN_IF_ERROR(store_->put(writes));
  LMKV_RETURN_IF_ERROR(store_->put_landmarks(keys, block_landmarks.data(), d));
  s.pending_landmarks.insert(s.pending_landmarks.end(), block_landmarks.begin(),
                             block_landmarks.end());
  ++s.sealed_blocks;
  return Status::Ok();
}

Result<uint32_t> LandmarkCache::blocks_sealed_by(uint64_t sequence, uint32_t layer,
                                                 uint32_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  LMKV_RETURN_IF_ERROR(check_open());
  if (layer >= options_.layers) {
    return Status::InvalidArgument(fmt::format("layer {} of {}", layer, options_.layers));
  }
  LayerState& s = state(sequence, layer);
  const uint32_t B = options_.store.shape.block_tokens;
  const uint64_t open = s.window_tokens() - (s.sealed_blocks - s.indexed_blocks) * B;
  return uint32_t((open + tokens) / B);
}

// A NaN or infinite key or value would poison its block's landmark and every softmax that
// retrieves it: refused before anything is stored. Checked on the raw bits (exponent all ones).
Status LandmarkCache::check_finite(const void* keys, const void* values, uint32_t tokens) const {
  const uint16_t exponent = options_.store.shape.dtype == DType::kFloat16 ? 0x7C00 : 0x7F80;
  const size_t n = size_t{tokens} * options_.kv_heads * options_.store.shape.head_dim;
  for (const void* data : {keys, values}) {
    const auto* bits = static_cast<const uint16_t*>(data);
    for (size_t i = 0; i < n; ++i) {
      if ((bits[i] & exponent) == exponent) {
        const size_t per_token = n / tokens;
        return Status::InvalidArgument(fmt::format(
            "{} of token {} (KV head {}) is not finite", data == keys ? "a key" : "a value",
            i / per_token, i % per_token / options_.store.shape.head_dim));
      }
    }
  }
  return Status::Ok();
}

Status LandmarkCache::append(uint64_t sequence, uint32_t layer, uint32_t tokens, const void* keys,
                             const void* values, const float* landmarks) {
  std::lock_guard<std::mutex> lock(mu_);
  LMKV_RETURN_IF_ERROR(check_open());
  if (layer >= options_.layers) {
    return Status::InvalidArgument(fmt::format("layer {} of {}", layer, options_.layers));
  }
  if (tokens == 0) return Status::Ok();
  if (keys == nullptr || values == nullptr) {
    return Status::InvalidArgument(
        fmt::format("append of {} tokens with null keys or values", tokens));
  }
  const bool given = options_.landmark == LandmarkSource::kGiven;
  if (!given && landmarks != nullptr) {
    return Status::InvalidArgument(fmt::format("landmarks passed, but the cache computes {} ones",
                                               landmark_source_name(options_.landmark)));
  }
  LMKV_RETURN_IF_ERROR(check_finite(keys, values, tokens));
  LayerState& s = state(sequence, layer);
  const uint32_t B = options_.store.shape.block_tokens;
  const uint64_t open_tokens = s.window_tokens() - (s.sealed_blocks - s.indexed_blocks) * B;
  const uint64_t sealing = (open_tokens + tokens) / B;
  if (given && sealing > 0 && landmarks == nullptr) {
    return Status::InvalidArgument(
        fmt::format("this append seals {} blocks: pass their given landmarks ([{}][{}][{}] floats)",
                    sealing, sealing, options_.kv_heads, options_.store.shape.head_dim));
  }
  if (given) {
    const size_t n = size_t(sealing) * options_.kv_heads * options_.store.shape.head_dim;
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(landmarks[i])) {
        return Status::InvalidArgument(
            fmt::format("given landmark value {} is {}", i, landmarks[i]));
      }
    }
  }
  LMKV_RETURN_IF_ERROR(index_pending(sequence, layer, s));
  const uint32_t d = options_.store.shape.head_dim;
  const uint32_t kv = options_.kv_heads;
  const auto* k = static_cast<const uint16_t*>(keys);
  const auto* v = static_cast<const uint16_t*>(values);
  // Tokens are [token][kv_head][d]; the window keeps them per KV head.
  for (uint32_t g = 0; g < kv; ++g) {
    for (uint32_t t = 0; t < tokens; ++t) {
      const size_t at = (size_t{t} * kv + g) * d;
      s.keys[g].insert(s.keys[g].end(), k + at, k + at + d);
      s.values[g].insert(s.values[g].end(), v + at, v + at + d);
    }
  }
  uint32_t sealed_now = 0;
  while (s.window_tokens() >= (s.sealed_blocks - s.indexed_blocks + 1) * B) {
    LMKV_RETURN_IF_ERROR(
        seal(sequence, layer, s, given ? landmarks + size_t{sealed_now} * kv * d : nullptr));
    ++sealed_now;
  }
  return Status::Ok();
}

Status LandmarkCache::attend(uint64_t sequence, uint32_t layer, uint32_t tokens,
                             const float* queries, float* out, RetrievalTrace* trace) {
  std::lock_guard<std::mutex> lock(mu_);
  LMKV_RETURN_IF_ERROR(check_open());
  if (layer >= options_.layers) {
    return Status::InvalidArgument(fmt::format("layer {} of {}", layer, options_.layers));
  }
  LayerState& s = state(sequence, layer);
  const uint32_t d = options_.store.shape.head_dim, B = options_.store.shape.block_tokens;
  if (tokens == 0 || tokens > s.window_tokens()) {
    return Status::InvalidArgument(fmt::format(
        "attend for {} tokens of sequence {} layer {}: the window holds {} appended tokens", tokens,
        sequence, layer, s.window_tokens()));
  }
  // The window as one [kv_heads][window][d] array.
  const size_t window = s.window_tokens();
  std::vector<uint16_t> wk(size_t{options_.kv_heads} * window * d), wv(wk.size());
  for (uint32_t g = 0; g < options_.kv_heads; ++g) {
    std::memcpy(&wk[size_t{g} * window * d], s.keys[g].data(), window * d * 2);
    std::memcpy(&wv[size_t{g} * window * d], s.values[g].data(), window * d * 2);
  }
  RetrievalInputs in;
  in.sequence = sequence;
  in.layer = layer;
  in.heads = options_.heads;
  in.kv_heads = options_.kv_heads;
  in.tokens = tokens;
  in.queries = queries;
  in.window_tokens = uint32_t(window);
  in.window_keys = wk.data();
  in.window_values = wv.data();
  in.window_start = int64_t(s.indexed_blocks) * B;
  return attention_->run(in, options_.retrieval, out, trace);
}

uint64_t LandmarkCache::length(uint64_t sequence, uint32_t layer) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_ || layer >= options_.layers) return 0;
  LayerState& s = state(sequence, layer);
  return s.indexed_blocks * options_.store.shape.block_tokens + s.window_tokens();
}

Status LandmarkCache::sync() {
  std::lock_guard<std::mutex> lock(mu_);
  LMKV_RETURN_IF_ERROR(check_open());
  return store_->sync();
}

Status LandmarkCache::erase(uint64_t sequence) {
  std::lock_guard<std::mutex> lock(mu_);
  LMKV_RETURN_IF_ERROR(check_open());
  sequences_.erase(sequence);
  LMKV_RETURN_IF_ERROR(index_->erase(sequence));
  return store_->erase(sequence);
}

Status LandmarkCache::close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return Status::FailedPrecondition("the cache is already closed");
  closed_ = true;
  attention_.reset();
  return store_->close();
}

std::string LandmarkCache::stats_json() const { return store_->stats_json(); }

}  // namespace lmkv
