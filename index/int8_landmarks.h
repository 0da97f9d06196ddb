// int8 copies of landmark keys for the fused GPU search's screening pass. Each row r of fp16 keys
// h_r is stored as codes c_r (int8, |c| <= 127) and one scale s_r = max_j |h_rj| / 127, so that
// |h_rj - s_r c_rj| <= s_r (1/2 + 2^-17) for every j: half a step, plus the float rounding of
// h / s (at most 128 * 2^-24). For any query q this bounds the screened score:
//   |q . h_r - s_r (q . c_r)| <= s_r ||q||_1 (1/2 + 2^-17),
// which is what lets the screening pass prove that a row it did not rescore cannot be in the top k
// (its slack, kScreenSlack, is 1/2 + 2^-7).
#pragma once

#include <cstddef>
#include <cstdint>

namespace lmkv {

// Quantizes n rows of `dim` values (fp16 values, widened to float: the keys the exact pass reads)
// into codes[n * dim] and scales[n]. An all-zero row gets scale 0 and codes 0.
void quantize_landmark_rows(const float* keys, size_t n, uint32_t dim, int8_t* codes,
                            float* scales);

}  // namespace lmkv
