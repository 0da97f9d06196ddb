// What a block is: its address (sequence, layer, kv_head, block_no) and its shape (B tokens of
// head_dim values, fp16 or bf16, K then V). Every tier stores exactly shape.payload_bytes() per
// block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "lmkv/status.h"

namespace lmkv {

enum class DType : uint8_t { kFloat16 = 1, kBFloat16 = 2 };

// The memory tiers, fastest first.
enum class Tier : uint8_t { kGpu = 0, kHost = 1, kDisk = 2 };
inline constexpr int kTierCount = 3;
const char* tier_name(Tier tier);

const char* dtype_name(DType dtype);
size_t dtype_bytes(DType dtype);

struct BlockKey {
  uint64_t sequence = 0;
  uint32_t layer = 0;
  uint32_t kv_head = 0;
  uint64_t block_no = 0;

  bool operator==(const BlockKey& o) const {
    return sequence == o.sequence && layer == o.layer && kv_head == o.kv_head &&
           block_no == o.block_no;
  }
  bool operator!=(const BlockKey& o) const { return !(*this == o); }
  // Sequence-major order: the order of the disk tier's keys.
  bool operator<(const BlockKey& o) const;
  // "(seq 3, layer 1, head 7, block 42)"
  std::string to_string() const;
};

struct BlockKeyHash {
  size_t operator()(const BlockKey& key) const;
};

// Largest supported values; kernels are specialised up to these.
inline constexpr uint32_t kMaxHeadDim = 256;
inline constexpr uint32_t kMaxBlockTokens = 4096;

struct BlockShape {
  uint32_t block_tokens = 50;  // B, tokens per block (the paper uses 50)
  uint32_t head_dim = 128;     // d, a multiple of 8 (16-byte rows for vectorised copies), <= 256
  DType dtype = DType::kFloat16;

  size_t tensor_bytes() const { return size_t{block_tokens} * head_dim * dtype_bytes(dtype); }
  // K[B][d] followed by V[B][d].
  size_t payload_bytes() const { return 2 * tensor_bytes(); }
  Status validate() const;
  std::string to_string() const;
  bool operator==(const BlockShape& o) const {
    return block_tokens == o.block_tokens && head_dim == o.head_dim && dtype == o.dtype;
  }
};

}  // namespace lmkv
