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
    case IndexBackend::kFaissGpuFlat:
      return "faiss-gpu-flat";
    case IndexBackend::kFaissGpuIvf:
      return "faiss-gpu-ivf";
  }
  return "unknown";
}

Result<IndexBackend> parse_index_backend(const std::string& name) {
  constexpr IndexBackend kAll[] = {IndexBackend::kAuto,       IndexBackend::kFaissFlat,
                                   IndexBackend::kFaissIvf,   IndexBackend::kFaissHnsw,
                                   IndexBackend::kGpuFused,   IndexBackend::kFaissGpuFlat,
                                   IndexBackend::kFaissGpuIvf};
  std::string known;
  for (IndexBackend b : kAll) {
    if (name == index_backend_name(b)) return b;
    known += known.empty() ? index_backend_name(b) : std::string(", ") + index_backend_name(b);
  }
  return Status::InvalidArgument(fmt::format("unknown index backend '{}' ({})", name, known));
}

Result<std::unique_ptr<LandmarkIndex>> make_landmark_index(const IndexOptions& options) {
  IndexBackend backend = options.backend;
  if (backend == IndexBackend::kAuto) {
    backend = cuda_device_count() > options.cuda_device ? IndexBackend::kGpuFused
                                                        : IndexBackend::kFaissFlat;
  }
  if (backend == IndexBackend::kGpuFused) {
    LMKV_ASSIGN_OR_RETURN(auto gpu, make_gpu_fused_index({options.dim, options.cuda_device,
                                                          options.gpu_int8_screening}));
    return std::unique_ptr<LandmarkIndex>(std::move(gpu));
  }
  if (backend == IndexBackend::kFaissGpuFlat || backend == IndexBackend::kFaissGpuIvf) {
    FaissGpuOptions gpu;
    gpu.kind = backend == IndexBackend::kFaissGpuIvf ? FaissGpuKind::kIvf : FaissGpuKind::kFlat;
    gpu.dim = options.dim;
    gpu.cuda_device = options.cuda_device;
    gpu.ivf_min_train = options.faiss.ivf_min_train;
    gpu.ivf_nlist = options.faiss.ivf_nlist;
    gpu.ivf_nprobe = options.faiss.ivf_nprobe;
    gpu.ivf_retrain_growth = options.faiss.ivf_retrain_growth;
    return make_faiss_gpu_index(gpu);
  }
  FaissCpuOptions faiss = options.faiss;
  faiss.dim = options.dim;
  faiss.kind = backend == IndexBackend::kFaissIvf    ? FaissCpuKind::kIvf
               : backend == IndexBackend::kFaissHnsw ? FaissCpuKind::kHnsw
                                                     : FaissCpuKind::kFlat;
  return make_faiss_cpu_index(faiss);
}

}  // namespace lmkv
