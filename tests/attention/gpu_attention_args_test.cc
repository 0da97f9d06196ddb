// The host-side checks of GpuAttentionArgs: each bad argument is refused with an error naming it
// (in every build; the pointers are never dereferenced).
#include "attention/gpu_attention_args.h"

#include <gtest/gtest.h>

#include <functional>

namespace lmkv {
namespace {

alignas(64) char fake_memory[64];

GpuAttentionArgs valid_args() {
  GpuAttentionArgs a;
  a.tokens = 4;
  a.heads = 8;
  a.kv_heads = 2;
  a.dim = 128;
  a.block_tokens = 50;
  a.queries = a.window_keys = a.window_values = fake_memory;
  a.window_tokens = 10;
  a.slot_base = fake_memory;
  a.indptr = a.slots = reinterpret_cast<const int32_t*>(fake_memory);
  a.landmark_scores = reinterpret_cast<const float*>(fake_memory);
  a.max_blocks_per_row = 32;
  a.out = reinterpret_cast<float*>(fake_memory);
  return a;
}

TEST(GpuAttentionArgs, ValidArgumentsPass) {
  EXPECT_TRUE(validate_gpu_attention_args(valid_args()).ok());
}

TEST(GpuAttentionArgs, EachBadArgumentIsRefusedNamingIt) {
  const std::vector<std::pair<std::function<void(GpuAttentionArgs&)>, std::string>> cases = {
      {[](GpuAttentionArgs& a) { a.dim = 96; }, "96"},
      {[](GpuAttentionArgs& a) { a.dtype = static_cast<DType>(7); }, "dtype 7"},
      {[](GpuAttentionArgs& a) { a.tokens = 0; }, "0 tokens"},
      {[](GpuAttentionArgs& a) { a.kv_heads = 3; }, "kv_heads=3"},
      {[](GpuAttentionArgs& a) { a.heads = 0; }, "heads=0"},
      {[](GpuAttentionArgs& a) { a.block_tokens = 0; }, "block of 0"},
      {[](GpuAttentionArgs& a) { a.window_tokens = 3; }, "window of 3"},
      {[](GpuAttentionArgs& a) { a.queries = nullptr; }, "null"},
      {[](GpuAttentionArgs& a) { a.out = nullptr; }, "null"},
      {[](GpuAttentionArgs& a) { a.slots = nullptr; }, "32 blocks per row"},
      {[](GpuAttentionArgs& a) { a.rope.mode = RopeMode::kStored; }, "block numbers"},
      {[](GpuAttentionArgs& a) {
         a.rope.mode = RopeMode::kRemapped;
         a.rope.theta = 0.5f;
       },
       "theta 0.5"},
      {[](GpuAttentionArgs& a) { a.scale = -1; }, "scale -1"},
      {[](GpuAttentionArgs& a) { a.queries = fake_memory + 2; }, "aligned"},
  };
  for (const auto& [spoil, needle] : cases) {
    GpuAttentionArgs a = valid_args();
    spoil(a);
    const Status s = validate_gpu_attention_args(a);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  }
}

TEST(GpuAttentionArgs, NoBlocksNeedsNoPageTableArrays) {
  GpuAttentionArgs a = valid_args();
  a.max_blocks_per_row = 0;
  a.slot_base = nullptr;
  a.slots = nullptr;
  a.landmark_scores = nullptr;
  EXPECT_TRUE(validate_gpu_attention_args(a).ok());
}

}  // namespace
}  // namespace lmkv
