// Choosing a landmark index backend is configuration: IndexOptions names one, or kAuto takes the
// fused GPU search when a CUDA device is usable and exact FAISS CPU search otherwise.
#pragma once

#include <memory>
#include <string>

#include "index/faiss_cpu_index.h"
#include "index/faiss_gpu_index.h"
#include "index/gpu_fused_index.h"

namespace lmkv {

enum class IndexBackend {
  kAuto,
  kFaissFlat,
  kFaissIvf,
  kFaissHnsw,
  kGpuFused,
  kFaissGpuFlat,
  kFaissGpuIvf
};

// "auto", "faiss-flat", "faiss-ivf", "faiss-hnsw", "gpu-fused", "faiss-gpu-flat", "faiss-gpu-ivf".
const char* index_backend_name(IndexBackend backend);
Result<IndexBackend> parse_index_backend(const std::string& name);

struct IndexOptions {
  IndexBackend backend = IndexBackend::kAuto;
  uint32_t dim = 128;              // landmark key dimension (the model's head dim)
  int cuda_device = 0;             // for the GPU backends (and kAuto on a GPU machine)
  bool gpu_int8_screening = true;  // GpuFusedOptions::int8_screening
  FaissCpuOptions faiss;  // IVF (CPU and GPU) and HNSW parameters; kind and dim are set from above
};

Result<std::unique_ptr<LandmarkIndex>> make_landmark_index(const IndexOptions& options);

}  // namespace lmkv
