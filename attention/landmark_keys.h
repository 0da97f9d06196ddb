// Landmark keys for models trained without landmark tokens: stand-ins computed from a block's own
// keys. The caller may always pass its own landmark keys instead.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kvstore/block.h"
#include "kvstore/dtype_convert.h"  // to_floats, for readers of block payloads
#include "lmkv/status.h"

namespace lmkv {

enum class LandmarkRule {
  kMean,            // the mean of the block's B keys
  kRepresentative,  // the block's key that scores highest, on average, against recent queries
};

// Mean of `tokens` keys of `dim` floats: out[dim].
Status mean_landmark(const float* keys, size_t tokens, uint32_t dim, float* out);

// The key (copied to out[dim]) with the highest mean inner product against the `count` queries
// (InfLLM's representative tokens, one per block); ties go to the earlier token. With no queries,
// falls back to the mean key.
Status representative_landmark(const float* keys, size_t tokens, uint32_t dim, const float* queries,
                               size_t count, float* out);

}  // namespace lmkv
