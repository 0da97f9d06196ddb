// LandmarkIndex on FAISS's GPU indexes: one per head, searched head after head. GpuIndexFlatIP is
// exact; GpuIndexIVFFlat is trained once a head holds ivf_min_train keys (smaller heads are
// searched exactly on the host). FAISS GPU pays a fixed cost per search call, so a layer's heads
// cost that many calls: this backend is the baseline the fused search (gpu_fused_index.h) is
// measured against, and a choice for landmark sets that outgrow the fused index's fp16 copy.
//
// Compiled when the FAISS found at configure time has GPU support (faiss/gpu headers);
// faiss_gpu_available() says whether it was, and make_faiss_gpu_index says why it cannot be made.
#pragma once

#include <memory>

#include "index/landmark_index.h"

namespace lmkv {

enum class FaissGpuKind { kFlat, kIvf };

struct FaissGpuOptions {
  FaissGpuKind kind = FaissGpuKind::kFlat;
  uint32_t dim = 128;   // landmark key dimension
  int cuda_device = 0;  // device holding the indexes
  // IVF-Flat, as for the CPU backend: trained on a head's keys once it holds ivf_min_train of them,
  // ivf_nlist lists (0: the square root of the keys at training, within [16, 4096]), ivf_nprobe
  // of them visited, trained again each time the head grows ivf_retrain_growth times (0: never).
  size_t ivf_min_train = 2048;
  double ivf_retrain_growth = 2.0;
  uint32_t ivf_nlist = 0;
  uint32_t ivf_nprobe = 16;
  // FAISS's scratch memory on the device, shared by every head's index.
  size_t temp_memory_bytes = size_t{256} << 20;
};

// True when this build has FAISS GPU indexes.
bool faiss_gpu_available();

// Checks the options and the device and makes the index; FailedPrecondition without FAISS GPU
// support or without the device.
Result<std::unique_ptr<LandmarkIndex>> make_faiss_gpu_index(const FaissGpuOptions& options);

}  // namespace lmkv
