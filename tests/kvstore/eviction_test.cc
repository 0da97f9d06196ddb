// Eviction order of the LRU and CLOCK policies, and the slot pool that uses them.
#include "kvstore/eviction.h"

#include <gtest/gtest.h>

#include "kvstore/slot_pool.h"

namespace lmkv {
namespace {

const auto kAny = [](int32_t) { return true; };

TEST(Lru, EvictsLeastRecentlyUsedFirst) {
  LruPolicy lru(4);
  for (int32_t s : {0, 1, 2, 3}) lru.insert(s);
  lru.access(0);  // order, oldest first: 1 2 3 0
  EXPECT_EQ(lru.victim(kAny), 1);
  lru.remove(1);
  EXPECT_EQ(lru.victim(kAny), 2);
  lru.access(2);
  EXPECT_EQ(lru.victim(kAny), 3);
}

TEST(Lru, SkipsSlotsThatMayNotBeEvicted) {
  LruPolicy lru(3);
  for (int32_t s : {0, 1, 2}) lru.insert(s);
  EXPECT_EQ(lru.victim([](int32_t s) { return s != 0; }), 1);
  EXPECT_EQ(lru.victim([](int32_t) { return false; }), std::nullopt);
}

TEST(Clock, GivesReferencedSlotsASecondChance) {
  ClockPolicy clock(4);
  for (int32_t s : {0, 1, 2, 3}) clock.insert(s);
  clock.access(0);
  clock.access(1);
  EXPECT_EQ(clock.victim(kAny), 2);  // 0 and 1 lose their reference bits on the way
  clock.remove(2);
  EXPECT_EQ(clock.victim(kAny), 3);
  clock.remove(3);
  EXPECT_EQ(clock.victim(kAny), 0);  // second sweep: 0 was cleared
}

TEST(Clock, NoVictimWhenAllPinned) {
  ClockPolicy clock(2);
  clock.insert(0);
  clock.insert(1);
  clock.access(0);
  EXPECT_EQ(clock.victim([](int32_t) { return false; }), std::nullopt);
}

TEST(SlotPool, VictimsAreReadyAndUnpinned) {
  for (EvictionPolicyKind kind : {EvictionPolicyKind::kLru, EvictionPolicyKind::kClock}) {
    SlotPool pool(3, kind);
    const auto a = pool.take({0, 0, 0, 1});
    const auto b = pool.take({0, 0, 0, 2});
    const auto c = pool.take({0, 0, 0, 3});
    ASSERT_TRUE(a && b && c);
    EXPECT_EQ(pool.take({0, 0, 0, 4}), std::nullopt);
    EXPECT_EQ(pool.victim(), std::nullopt) << "slots still filling must not be evicted";
    for (int32_t s : {*a, *b, *c}) pool.set_state(s, SlotState::kReady);
    pool.pin(*a);
    pool.pin(*b);
    EXPECT_EQ(pool.victim(), *c) << eviction_policy_name(kind);
    pool.pin(*c);
    EXPECT_EQ(pool.victim(), std::nullopt);
    EXPECT_EQ(pool.unpin(*a), 0);
    EXPECT_EQ(pool.victim(), *a);
    pool.unpin(*c);
    pool.release(*c);
    EXPECT_EQ(pool.used(), 2);
    EXPECT_EQ(pool.take({0, 0, 0, 5}), *c);
  }
}

}  // namespace
}  // namespace lmkv
