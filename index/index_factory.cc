// Backend selection for the landmark index.
#include "index/index_factory.h"

#include <fmt/format.h>

#include "kvstore/cuda_util.h"

namespace lmkv {

const char* index_backend_name(IndexBackend backend) {
  switch (backend) {
    case IndexBackend::kAuto:
      return "auto";
    case IndexBackend::kFaissFlat:
      return "faiss-flat";
    case IndexBackend::kFaissIvf:
      return "faiss-ivf";
    case IndexBackend::kFaissHnsw:
      return "faiss-hnsw";
    case IndexBackend::kGpuFused:
      return "gpu-fused";
  }
  return "unknown";
}

Result<IndexBackend> parse_index_backend(const std::string& name) {
  for (IndexBackend b : {IndexBackend::kAuto, IndexBackend::kFaissFlat, IndexBackend::kFaissIvf,
                         IndexBackend::kFaissHnsw, IndexBackend::kGpuFused}) {
    if (name == index_backend_name(b)) return b;
  }
  return Status::InvalidArgument(fmt::format(
      "unknown index backend '{}' (auto, faiss-flat, faiss-ivf, faiss-hnsw, gpu-fused)", name));
}

Result<std::unique_ptr<LandmarkIndex>> make_landmark_index(const IndexOptions& options) {
  IndexBackend backend = options.backend;
  if (backend == IndexBackend::kAuto) {
    backend = cuda_device_count() > options.cuda_device ? IndexBackend::kGpuFused
                                                        : IndexBackend::kFaissFlat;
  }
  if (backend == IndexBackend::kGpuFused) {
    LMKV_ASSIGN_OR_RETURN(auto gpu, make_gpu_fused_index({options.dim, options.cuda_device}));
    return std::unique_ptr<LandmarkIndex>(std::move(gpu));
  }
  FaissCpuOptions faiss = options.faiss;
  faiss.dim = options.dim;
  faiss.kind = backend == IndexBackend::kFaissIvf    ? FaissCpuKind::kIvf
               : backend == IndexBackend::kFaissHnsw ? FaissCpuKind::kHnsw
                                                     : FaissCpuKind::kFlat;
  return make_faiss_cpu_index(faiss);
}

}  // namespace lmkv
