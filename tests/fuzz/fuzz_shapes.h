// The small block shape and fixed key the codec fuzz targets use: payloads of 64 bytes keep valid
// lengths within the fuzzer's reach.
#pragma once

#include "kvstore/block.h"

namespace lmkv::fuzz {

inline constexpr BlockShape kShape{2, 8, DType::kFloat16};  // K and V: 2 x 8 fp16 each
inline constexpr BlockKey kKey{3, 1, 2, 99};

}  // namespace lmkv::fuzz
