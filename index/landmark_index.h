// LandmarkIndex: the landmark keys of every (sequence, layer, kv_head), searched for the top-k
// blocks of all heads of a layer in one call. Backends (FAISS CPU, FAISS GPU, the fused GPU search)
// implement this interface, each in its own file beside it.
//
// Results are ordered by score (inner product, highest first); equal scores are ordered by lower
// block number, so exact backends return exactly the brute-force top-k.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <unordered_set>
#include <vector>

#include "lmkv/status.h"

namespace lmkv {

// The landmark set of one KV head of one layer of one sequence.
struct HeadKey {
  uint64_t sequence = 0;
  uint32_t layer = 0;
  uint32_t kv_head = 0;
  bool operator==(const HeadKey& o) const {
    return sequence == o.sequence && layer == o.layer && kv_head == o.kv_head;
  }
  std::string to_string() const;
};

struct HeadKeyHash {
  size_t operator()(const HeadKey& key) const;
};

// One layer's search: for each of `heads` KV heads of `sequence` and `layer`, `queries_per_head`
// query vectors of `dim` floats (head-major: queries[(h * queries_per_head + q) * dim]).
struct SearchRequest {
  uint64_t sequence = 0;
  uint32_t layer = 0;
  uint32_t heads = 0;
  uint32_t queries_per_head = 1;
  uint32_t k = 0;
  const float* queries = nullptr;
};

// For query (h, q), slot i of k: block_nos[(h * queries_per_head + q) * k + i] and its score.
// When a head has fewer than k blocks, the remaining slots hold block -1 and score -inf.
struct SearchResult {
  uint32_t k = 0;
  std::vector<int64_t> block_nos;
  std::vector<float> scores;
};

class LandmarkIndex {
 public:
  virtual ~LandmarkIndex() = default;

  // Head dimension every key and query must have.
  virtual uint32_t dim() const = 0;
  // Appends `n` landmark keys (`dim` floats each) of blocks `block_nos` of one head. A block
  // already indexed for that head is an AlreadyExists error; nothing is added then.
  virtual Status add(const HeadKey& head, const uint64_t* block_nos, const float* keys,
                     size_t n) = 0;
  // Top-k blocks per head and query; see SearchRequest and SearchResult.
  virtual Status search(const SearchRequest& request, SearchResult* result) = 0;
  // Forgets every head of `sequence`.
  virtual Status erase(uint64_t sequence) = 0;
  // Landmarks indexed for `head` (0 for an unknown head).
  virtual size_t size(const HeadKey& head) const = 0;
  // "faiss-flat", "faiss-ivf", ...
  virtual std::string name() const = 0;
};

// Checks what every backend requires of a request: known heads, finite queries, k >= 1.
Status validate_search(const SearchRequest& request, uint32_t dim);

// Checks what every backend requires of an add of n > 0 keys: non-null arrays, finite keys.
Status validate_add(const HeadKey& head, const uint64_t* block_nos, const float* keys, size_t n,
                    uint32_t dim);

// Adds block_nos[0..n) to a head's `present` set, or returns AlreadyExists naming the first block
// already there or repeated in the batch (nothing is added then).
Status claim_new_blocks(const HeadKey& head, const uint64_t* block_nos, size_t n,
                        std::unordered_set<uint64_t>* present);

// Checks an IVF backend's ivf_retrain_growth: 0 (never train again) or a finite factor above 1.
Status check_retrain_growth(double growth);

// IVF lists for a head trained on `keys` keys: `configured`, or when 0 the square root of `keys`
// within [16, 4096].
uint32_t ivf_list_count(uint32_t configured, size_t keys);

// Whether a head trained on `trained_on` keys (0: never trained) trains again now that it holds
// `keys`: once it has grown `growth` times (growth 0: never).
bool ivf_retrain_due(size_t keys, size_t trained_on, double growth);

// Removes every head of `sequence` from a backend's map keyed by HeadKey.
template <typename HeadMap>
void erase_heads_of(HeadMap& heads, uint64_t sequence) {
  for (auto it = heads.begin(); it != heads.end();) {
    it = it->first.sequence == sequence ? heads.erase(it) : std::next(it);
  }
}

}  // namespace lmkv
