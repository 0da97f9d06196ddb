// Shared request checks and head addressing.
#include "index/landmark_index.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "kvstore/block.h"

namespace lmkv {

std::string HeadKey::to_string() const {
  return fmt::format("(seq {}, layer {}, head {})", sequence, layer, kv_head);
}

size_t HeadKeyHash::operator()(const HeadKey& key) const {
  return BlockKeyHash()({key.sequence, key.layer, key.kv_head, 0});
}

Status validate_search(const SearchRequest& r, uint32_t dim) {
  if (r.heads == 0 || r.queries_per_head == 0) {
    return Status::InvalidArgument(
        fmt::format("search with heads={} and queries_per_head={}", r.heads, r.queries_per_head));
  }
  if (r.k == 0) return Status::InvalidArgument("search with k=0");
  if (r.queries == nullptr) return Status::InvalidArgument("search with null queries");
  const size_t values = size_t{r.heads} * r.queries_per_head * dim;
  for (size_t i = 0; i < values; ++i) {
    if (!std::isfinite(r.queries[i])) {
      const size_t query = i / dim;
      return Status::InvalidArgument(fmt::format(
          "query {} of head {} has a non-finite value {} at dimension {}",
          query % r.queries_per_head, query / r.queries_per_head, r.queries[i], i % dim));
    }
  }
  return Status::Ok();
}

Status validate_add(const HeadKey& head, const uint64_t* block_nos, const float* keys, size_t n,
                    uint32_t dim) {
  if (block_nos == nullptr || keys == nullptr) {
    return Status::InvalidArgument("add to " + head.to_string() + " with null blocks or keys");
  }
  for (size_t i = 0; i < n * dim; ++i) {
    if (!std::isfinite(keys[i])) {
      return Status::InvalidArgument(fmt::format("landmark key of block {} of {} is not finite",
                                                 block_nos[i / dim], head.to_string()));
    }
  }
  return Status::Ok();
}

Status claim_new_blocks(const HeadKey& head, const uint64_t* block_nos, size_t n,
                        std::unordered_set<uint64_t>* present) {
  std::unordered_set<uint64_t> batch;
  for (size_t i = 0; i < n; ++i) {
    if (present->count(block_nos[i]) || !batch.insert(block_nos[i]).second) {
      return Status::AlreadyExists(
          fmt::format("block {} of {} already has a landmark", block_nos[i], head.to_string()));
    }
  }
  present->insert(batch.begin(), batch.end());
  return Status::Ok();
}

Status check_retrain_growth(double growth) {
  if (growth == 0 || (std::isfinite(growth) && growth > 1)) return Status::Ok();
  return Status::InvalidArgument(fmt::format(
      "ivf_retrain_growth={} must be 0 (never retrain) or a finite factor above 1", growth));
}

uint32_t ivf_list_count(uint32_t configured, size_t keys) {
  if (configured != 0) return configured;
  return std::clamp<uint32_t>(static_cast<uint32_t>(std::sqrt(double(keys))), 16, 4096);
}

bool ivf_retrain_due(size_t keys, size_t trained_on, double growth) {
  return trained_on > 0 && growth > 0 && double(keys) >= double(trained_on) * growth;
}

}  // namespace lmkv
