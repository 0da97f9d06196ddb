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
};

// Heads whose blocks are added in increasing block order only (as blocks seal): positions then
// follow block numbers, which is how the kernels apply the lower-block tie rule.
class GpuFusedIndex : public LandmarkIndex {
 public:
  // Like search, with queries, block numbers and scores in device memory (same layouts), enqueued
  // on `stream`. Device queries are not checked for NaN or infinity.
  virtual Status search_on_device(const SearchRequest& request, int64_t* block_nos, float* scores,
                                  CUstream_st* stream) = 0;
};

Result<std::unique_ptr<GpuFusedIndex>> make_gpu_fused_index(const GpuFusedOptions& options);

}  // namespace lmkv
