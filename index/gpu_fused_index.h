// The fused batched GPU search: the landmark keys of every head in device memory (fp16), and
// scores plus per-head top-k for all queries of all heads of a layer in two launches, with results
// left on the device for the attention kernels (search_on_device) or copied back (search).
// Built with CUDA only; make_gpu_fused_index says why it cannot be made otherwise.
#pragma once

#include <memory>

#include "index/landmark_index.h"

struct CUstream_st;

namespace lmkv {

struct GpuFusedOptions {
  uint32_t dim = 128;   // 64, 128 or 256
  int cuda_device = 0;  // device holding the keys
  // For k <= 32, a first pass over int8 copies of the keys (half the bytes) bounds every score;
  // the rows with the best bounds are rescored with the fp16 keys and the result is proven exact,
  // or else computed by an exact scan (counted in screening_fallbacks). Results are the same bits
  // either way. Costs 1 + 4/dim bytes of device memory per key element beside the 2 of fp16. Used
  // for decode-sized searches of heads of 8192 rows or more; prefill-sized ones (too many pairs to
  // split a head) stay unscreened. The proof is loose for keys whose rows are dominated by a few
  // large elements; see index/kernels/int8_screen.cuh.
  bool int8_screening = true;
};

// Heads whose blocks are added in increasing block order only (as blocks seal): positions then
// follow block numbers, which is how the kernels apply the lower-block tie rule.
class GpuFusedIndex : public LandmarkIndex {
 public:
  // Like search, with queries, block numbers and scores in device memory (same layouts), enqueued
  // on `stream`. Device queries are not checked for NaN or infinity.
  virtual Status search_on_device(const SearchRequest& request, int64_t* block_nos, float* scores,
                                  CUstream_st* stream) = 0;
  // (head, query) pairs whose screened search could not be proven exact and fell back on an exact
  // scan, since the index was made. Waits for the searches enqueued so far.
  virtual Result<uint64_t> screening_fallbacks() = 0;
};

Result<std::unique_ptr<GpuFusedIndex>> make_gpu_fused_index(const GpuFusedOptions& options);

}  // namespace lmkv
