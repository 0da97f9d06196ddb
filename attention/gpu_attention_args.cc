// Host-side checks of GpuAttentionArgs, compiled in every build so bad shapes are refused (and
// tested) the same way with or without CUDA.
#include "attention/gpu_attention_args.h"

#include <fmt/format.h>

#include <cmath>

namespace lmkv {
namespace {

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

Status validate_gpu_attention_args(const GpuAttentionArgs& a) {
  if (a.dim != 64 && a.dim != 128 && a.dim != 256) {
    return Status::InvalidArgument(
        fmt::format("attention head dim {} is not 64, 128 or 256", a.dim));
  }
  if (a.dtype != DType::kFloat16 && a.dtype != DType::kBFloat16) {
    return Status::InvalidArgument(
        fmt::format("attention dtype {} is not fp16 or bf16", static_cast<int>(a.dtype)));
  }
  if (a.tokens == 0) return Status::InvalidArgument("attention over a chunk of 0 tokens");
  if (a.heads == 0 || a.kv_heads == 0 || a.heads % a.kv_heads != 0) {
    return Status::InvalidArgument(
        fmt::format("heads={} must be a positive multiple of kv_heads={}", a.heads, a.kv_heads));
  }
  if (a.block_tokens == 0 || a.block_tokens > kMaxBlockTokens) {
    return Status::InvalidArgument(
        fmt::format("block of {} tokens (1..{})", a.block_tokens, kMaxBlockTokens));
  }
  if (a.window_tokens < a.tokens) {
    return Status::InvalidArgument(fmt::format(
        "window of {} tokens cannot hold the chunk's own {} tokens", a.window_tokens, a.tokens));
  }
  if (a.window_stride_tokens != 0 && a.window_stride_tokens < a.window_tokens) {
    return Status::InvalidArgument(fmt::format("window stride of {} tokens under a window of {}",
                                               a.window_stride_tokens, a.window_tokens));
  }
  const uint64_t rows = uint64_t{a.tokens} * a.heads;
  if (rows > INT32_MAX || uint64_t{a.window_tokens} * a.kv_heads * a.dim > (1ull << 40)) {
    return Status::InvalidArgument(
        fmt::format("attention of {} tokens x {} heads, window {}: too large", a.tokens, a.heads,
                    a.window_tokens));
  }
  if (a.queries == nullptr || a.window_keys == nullptr || a.window_values == nullptr ||
      a.indptr == nullptr || a.out == nullptr) {
    return Status::InvalidArgument("attention with a null queries, window, indptr or out pointer");
  }
  if (a.max_blocks_per_row > 0 &&
      (a.slot_base == nullptr || a.slots == nullptr || a.landmark_scores == nullptr)) {
    return Status::InvalidArgument(
        fmt::format("up to {} blocks per row but a null slot base, slots or landmark scores",
                    a.max_blocks_per_row));
  }
  if (a.rope.mode == RopeMode::kStored && a.max_blocks_per_row > 0 && a.block_nos == nullptr) {
    return Status::InvalidArgument("stored-position RoPE needs the entries' block numbers");
  }
  if (a.rope.mode != RopeMode::kNone && !(a.rope.theta > 1.f && std::isfinite(a.rope.theta))) {
    return Status::InvalidArgument(
        fmt::format("RoPE theta {} is not a finite value above 1", a.rope.theta));
  }
  if (!(a.scale >= 0 && std::isfinite(a.scale))) {
    return Status::InvalidArgument(fmt::format("attention scale {}", a.scale));
  }
  // Each lane loads dim/32 consecutive elements as one vector.
  const size_t vector_bytes = a.dim / 32 * dtype_bytes(a.dtype);
  if (!aligned(a.queries, vector_bytes) || !aligned(a.window_keys, vector_bytes) ||
      !aligned(a.window_values, vector_bytes) || !aligned(a.slot_base, 16) ||
      !aligned(a.out, sizeof(float))) {
    return Status::InvalidArgument(fmt::format(
        "attention inputs must be aligned to {} bytes and the slot base to 16", vector_bytes));
  }
  return Status::Ok();
}

}  // namespace lmkv
