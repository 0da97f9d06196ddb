// LandmarkIndex on the CPU with FAISS: exact flat search, or IVF-Flat / HNSW-Flat per head once the
// head is large enough to train or build them (smaller heads are searched exactly). For landmark
// sets in host memory and beyond what fits on a GPU.
#pragma once

#include <memory>
#include <shared_mutex>
#include <unordered_map>

#include "index/landmark_index.h"

namespace faiss {
struct Index;
}

namespace lmkv {

enum class FaissCpuKind { kFlat, kIvf, kHnsw };

struct FaissCpuOptions {
  FaissCpuKind kind = FaissCpuKind::kFlat;
  uint32_t dim = 128;  // landmark key dimension
  // IVF-Flat: trained on a head's keys once it holds ivf_min_train of them, with ivf_nlist lists
  // (0: the square root of the keys at training, within [16, 4096]); ivf_nprobe lists are visited.
  // The head is trained again on all its keys each time it grows ivf_retrain_growth times past its
  // last training (0: never), so the lists follow topics that came after it and nlist follows n.
  // The training runs inside the add that crosses the size: on one core, 0.6 s at 32,768 keys of
  // d = 128 and 3 s at 131,072.
  size_t ivf_min_train = 2048;
  double ivf_retrain_growth = 2.0;
  uint32_t ivf_nlist = 0;
  uint32_t ivf_nprobe = 16;
  // HNSW-Flat: built once a head holds hnsw_min_build keys; M links per node, efConstruction and
  // efSearch candidate lists.
  size_t hnsw_min_build = 1024;
  int hnsw_m = 32;
  int hnsw_ef_construction = 80;
  int hnsw_ef_search = 128;
};

// Checks the options and makes the index.
Result<std::unique_ptr<LandmarkIndex>> make_faiss_cpu_index(const FaissCpuOptions& options);

class FaissCpuIndex final : public LandmarkIndex {
 public:
  explicit FaissCpuIndex(FaissCpuOptions options);  // unchecked: prefer make_faiss_cpu_index
  ~FaissCpuIndex() override;

  uint32_t dim() const override { return options_.dim; }
  Status add(const HeadKey& head, const uint64_t* block_nos, const float* keys, size_t n) override;
  Status search(const SearchRequest& request, SearchResult* result) override;
  Status erase(uint64_t sequence) override;
  size_t size(const HeadKey& head) const override;
  std::string name() const override;

 private:
  struct Head;
  Status build_approximate(Head& head);
  void search_head(const Head& head, const float* queries, uint32_t nq, uint32_t k, int64_t* blocks,
                   float* scores) const;

  FaissCpuOptions options_;
  mutable std::shared_mutex mu_;  // shared by searches, exclusive for add and erase
  std::unordered_map<HeadKey, std::unique_ptr<Head>, HeadKeyHash> heads_;
};

}  // namespace lmkv
