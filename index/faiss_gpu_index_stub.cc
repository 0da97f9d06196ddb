// The FAISS GPU backend in a build whose FAISS has no GPU support.
#include "index/faiss_gpu_index.h"

namespace lmkv {

bool faiss_gpu_available() { return false; }

Result<std::unique_ptr<LandmarkIndex>> make_faiss_gpu_index(const FaissGpuOptions&) {
  return Status::FailedPrecondition(
      "lmkv was built without FAISS GPU indexes: the FAISS found at configure time has no "
      "faiss/gpu headers (build FAISS with -DFAISS_ENABLE_GPU=ON and reconfigure)");
}

}  // namespace lmkv
