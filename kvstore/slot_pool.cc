// Slot bookkeeping for one tier.
#include "kvstore/slot_pool.h"

namespace lmkv {

SlotPool::SlotPool(int32_t slot_count, EvictionPolicyKind policy)
    : state_(slot_count, SlotState::kFree),
      owner_(slot_count),
      pins_(slot_count, 0),
      orphaned_(slot_count, false),
      policy_(make_eviction_policy(policy, slot_count)) {
  free_.reserve(slot_count);
  // Lowest slot numbers are taken first, which keeps early allocations dense.
  for (int32_t s = slot_count - 1; s >= 0; --s) free_.push_back(s);
}

std::optional<int32_t> SlotPool::take(const BlockKey& owner) {
  if (free_.empty()) return std::nullopt;
  const int32_t slot = free_.back();
  free_.pop_back();
  state_[slot] = SlotState::kFilling;
  owner_[slot] = owner;
  orphaned_[slot] = false;
  policy_->insert(slot);
  return slot;
}

void SlotPool::release(int32_t slot) {
  policy_->remove(slot);
  state_[slot] = SlotState::kFree;
  orphaned_[slot] = false;
  free_.push_back(slot);
}

std::optional<int32_t> SlotPool::victim() {
  return policy_->victim(
      [this](int32_t s) { return state_[s] == SlotState::kReady && pins_[s] == 0; });
}

}  // namespace lmkv
