// Eviction policies over the slots of one tier. A policy tracks which slots hold blocks and in what
// order they were used; the tier asks it for a victim and says which slots may not be taken
// (pinned by a running page-in or kernel). Not thread-safe: the store's lock guards it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace lmkv {

enum class EvictionPolicyKind { kLru, kClock };

const char* eviction_policy_name(EvictionPolicyKind kind);

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  // A block was placed in `slot`.
  virtual void insert(int32_t slot) = 0;
  // The block in `slot` was used.
  virtual void access(int32_t slot) = 0;
  // `slot` was emptied.
  virtual void remove(int32_t slot) = 0;
  // The slot to evict next among those `evictable` accepts, or none.
  virtual std::optional<int32_t> victim(const std::function<bool(int32_t)>& evictable) = 0;
};

std::unique_ptr<EvictionPolicy> make_eviction_policy(EvictionPolicyKind kind, int32_t slot_count);

// Least recently used: an intrusive doubly linked list over slot numbers, most recent at the head.
class LruPolicy final : public EvictionPolicy {
 public:
  explicit LruPolicy(int32_t slot_count);
  void insert(int32_t slot) override;
  void access(int32_t slot) override;
  void remove(int32_t slot) override;
  std::optional<int32_t> victim(const std::function<bool(int32_t)>& evictable) override;

 private:
  void unlink(int32_t slot);
  void push_front(int32_t slot);

  std::vector<int32_t> prev_, next_;
  std::vector<uint8_t> linked_;  // not vector<bool>: bit access is slow on this hot path
  int32_t head_ = -1, tail_ = -1;
};

// CLOCK (second chance): a reference bit per slot and a sweeping hand; cheaper than LRU per access.
class ClockPolicy final : public EvictionPolicy {
 public:
  explicit ClockPolicy(int32_t slot_count);
  void insert(int32_t slot) override;
  void access(int32_t slot) override;
  void remove(int32_t slot) override;
  std::optional<int32_t> victim(const std::function<bool(int32_t)>& evictable) override;

 private:
  std::vector<uint8_t> present_, referenced_;
  int32_t hand_ = 0;
};

}  // namespace lmkv
