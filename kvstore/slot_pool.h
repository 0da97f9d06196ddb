// Bookkeeping for the fixed-size slots of one tier (GPU or host): which block owns each slot, its
// fill state, how many running page-ins or kernels pin it, and the eviction order. The memory
// itself belongs to the tier's arena. Not thread-safe: the store's lock guards it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "kvstore/block.h"
#include "kvstore/eviction.h"

namespace lmkv {

enum class SlotState : uint8_t {
  kFree,     // on the free list
  kFilling,  // reserved for a block whose bytes are being copied in
  kReady,    // holds its owner's bytes
  kFailed,   // the fill failed; freed when the last pin goes
};

class SlotPool {
 public:
  SlotPool(int32_t slot_count, EvictionPolicyKind policy);

  int32_t capacity() const { return static_cast<int32_t>(state_.size()); }
  int32_t used() const { return capacity() - static_cast<int32_t>(free_.size()); }

  // Reserves a free slot for `owner` in state kFilling, or none if every slot is taken.
  std::optional<int32_t> take(const BlockKey& owner);
  // Returns a slot to the free list (it must be unpinned).
  void release(int32_t slot);

  void set_state(int32_t slot, SlotState state) { state_[slot] = state; }
  SlotState state(int32_t slot) const { return state_[slot]; }
  const BlockKey& owner(int32_t slot) const { return owner_[slot]; }

  void touch(int32_t slot) { policy_->access(slot); }
  void pin(int32_t slot) { ++pins_[slot]; }
  // Returns the pins left.
  int32_t unpin(int32_t slot) { return --pins_[slot]; }
  int32_t pins(int32_t slot) const { return pins_[slot]; }

  // A block erased while pinned leaves its slot orphaned: no entry points at it, and the last
  // unpin frees it.
  void set_orphaned(int32_t slot, bool orphaned) { orphaned_[slot] = orphaned; }
  bool orphaned(int32_t slot) const { return orphaned_[slot]; }

  // The next slot to evict: ready, unpinned, chosen by the policy.
  std::optional<int32_t> victim();

 private:
  std::vector<SlotState> state_;
  std::vector<BlockKey> owner_;
  std::vector<int32_t> pins_;
  std::vector<uint8_t> orphaned_;
  std::vector<int32_t> free_;
  std::unique_ptr<EvictionPolicy> policy_;
};

}  // namespace lmkv
