// LRU and CLOCK eviction policies.
#include "kvstore/eviction.h"

namespace lmkv {

const char* eviction_policy_name(EvictionPolicyKind kind) {
  return kind == EvictionPolicyKind::kLru ? "lru" : "clock";
}

std::unique_ptr<EvictionPolicy> make_eviction_policy(EvictionPolicyKind kind, int32_t slot_count) {
  if (kind == EvictionPolicyKind::kClock) return std::make_unique<ClockPolicy>(slot_count);
  return std::make_unique<LruPolicy>(slot_count);
}

LruPolicy::LruPolicy(int32_t slot_count)
    : prev_(slot_count, -1), next_(slot_count, -1), linked_(slot_count, false) {}

void LruPolicy::unlink(int32_t slot) {
  if (!linked_[slot]) return;
  if (prev_[slot] >= 0)
    next_[prev_[slot]] = next_[slot];
  else
    head_ = next_[slot];
  if (next_[slot] >= 0)
    prev_[next_[slot]] = prev_[slot];
  else
    tail_ = prev_[slot];
  prev_[slot] = next_[slot] = -1;
  linked_[slot] = false;
}

void LruPolicy::push_front(int32_t slot) {
  prev_[slot] = -1;
  next_[slot] = head_;
  if (head_ >= 0) prev_[head_] = slot;
  head_ = slot;
  if (tail_ < 0) tail_ = slot;
  linked_[slot] = true;
}

void LruPolicy::insert(int32_t slot) {
  unlink(slot);
  push_front(slot);
}

void LruPolicy::access(int32_t slot) { insert(slot); }

void LruPolicy::remove(int32_t slot) { unlink(slot); }

std::optional<int32_t> LruPolicy::victim(const std::function<bool(int32_t)>& evictable) {
  for (int32_t s = tail_; s >= 0; s = prev_[s]) {
    if (evictable(s)) return s;
  }
  return std::nullopt;
}

ClockPolicy::ClockPolicy(int32_t slot_count)
    : present_(slot_count, 0), referenced_(slot_count, 0) {}

void ClockPolicy::insert(int32_t slot) {
  present_[slot] = 1;
  referenced_[slot] = 0;  // a new block gets its second chance only once it is used
}

void ClockPolicy::access(int32_t slot) { referenced_[slot] = 1; }

void ClockPolicy::remove(int32_t slot) { present_[slot] = referenced_[slot] = 0; }

std::optional<int32_t> ClockPolicy::victim(const std::function<bool(int32_t)>& evictable) {
  const int32_t n = static_cast<int32_t>(present_.size());
  // Two full sweeps: the first may only clear reference bits.
  for (int32_t step = 0; step < 2 * n; ++step) {
    const int32_t s = hand_;
    hand_ = (hand_ + 1) % n;
    if (!present_[s] || !evictable(s)) continue;
    if (referenced_[s]) {
      referenced_[s] = 0;
      continue;
    }
    return s;
  }
  return std::nullopt;
}

}  // namespace lmkv
