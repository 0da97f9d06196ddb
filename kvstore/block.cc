// Block addressing and shape checks.
#include "kvstore/block.h"

#include <fmt/format.h>

#include <tuple>

namespace lmkv {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
      return "fp16";
    case DType::kBFloat16:
      return "bf16";
  }
  return "unknown";
}

const char* tier_name(Tier tier) {
  switch (tier) {
    case Tier::kGpu:
      return "gpu";
    case Tier::kHost:
      return "host";
    case Tier::kDisk:
      return "disk";
  }
  return "unknown";
}

size_t dtype_bytes(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
  }
  return 0;
}

bool BlockKey::operator<(const BlockKey& o) const {
  return std::tie(sequence, layer, kv_head, block_no) <
         std::tie(o.sequence, o.layer, o.kv_head, o.block_no);
}

std::string BlockKey::to_string() const {
  return fmt::format("(seq {}, layer {}, head {}, block {})", sequence, layer, kv_head, block_no);
}

size_t BlockKeyHash::operator()(const BlockKey& key) const {
  // Each field times its own odd constant, folded once: cheap (this runs twice per block of every
  // page-in) and well spread for sequential block numbers.
  uint64_t h = key.sequence * 0x9E3779B97F4A7C15ull;
  h ^= (uint64_t{key.layer} << 32 | key.kv_head) * 0xC2B2AE3D27D4EB4Full;
  h ^= key.block_no * 0x165667B19E3779F9ull;
  return static_cast<size_t>(h ^ (h >> 29));
}

Status BlockShape::validate() const {
  if (block_tokens == 0 || block_tokens > kMaxBlockTokens) {
    return Status::InvalidArgument(
        fmt::format("block_tokens={} is out of range [1, {}]", block_tokens, kMaxBlockTokens));
  }
  if (head_dim == 0 || head_dim > kMaxHeadDim || head_dim % 8 != 0) {
    return Status::InvalidArgument(
        fmt::format("head_dim={} must be a multiple of 8 in [8, {}]", head_dim, kMaxHeadDim));
  }
  if (dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    return Status::InvalidArgument(
        fmt::format("dtype={} is not fp16 (1) or bf16 (2)", static_cast<int>(dtype)));
  }
  return Status::Ok();
}

std::string BlockShape::to_string() const {
  return fmt::format("B={} d={} {}", block_tokens, head_dim, dtype_name(dtype));
}

}  // namespace lmkv
