// FAISS GPU backends of the landmark index.
#include "index/faiss_gpu_index.h"

#include <faiss/gpu/GpuIndexFlat.h>
#include <faiss/gpu/GpuIndexIVFFlat.h>
#include <faiss/gpu/StandardGpuResources.h>
#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <unordered_map>

#include "index/exact_topk.h"
#include "kvstore/cuda_util.h"

namespace lmkv {
namespace {

// FAISS GPU's largest k (GPU_MAX_SELECTION_K) and nprobe.
constexpr uint32_t kMaxFaissK = 2048;
// The flat index is asked for this many more results than k, so that scores tied at the k-th are
// all seen and re-ranked by block number (FAISS's own order among ties is unspecified).
constexpr uint32_t kTieMargin = 32;

// One head's landmarks. `keys` is kept on the host only for IVF (see add_ivf).
struct GpuHead {
  std::vector<float> keys;
  size_t trained_on = 0;           // keys the IVF lists were trained on
  std::vector<int64_t> block_nos;  // by row in the FAISS index
  std::unordered_set<uint64_t> present;
  std::unique_ptr<faiss::gpu::GpuIndex> index;
};

class FaissGpuIndex final : public LandmarkIndex {
 public:
  explicit FaissGpuIndex(FaissGpuOptions options) : options_(options) {
    resources_.setTempMemory(options.temp_memory_bytes);
  }

  uint32_t dim() const override { return options_.dim; }
  std::string name() const override {
    return options_.kind == FaissGpuKind::kFlat ? "faiss-gpu-flat" : "faiss-gpu-ivf";
  }

  Status add(const HeadKey& key, const uint64_t* block_nos, const float* keys, size_t n) override {
    if (n == 0) return Status::Ok();
    LMKV_RETURN_IF_ERROR(validate_add(key, block_nos, keys, n, options_.dim));
    std::lock_guard<std::mutex> lock(mu_);
    GpuHead& head = heads_[key];
    LMKV_RETURN_IF_ERROR(claim_new_blocks(key, block_nos, n, &head.present));
    const size_t host_keys = head.keys.size();
    try {
      if (options_.kind == FaissGpuKind::kFlat) {
        add_flat(head, keys, n);
      } else {
        add_ivf(head, keys, n);
      }
    } catch (const std::exception& e) {
      // The head keeps exactly the blocks it had: their numbers, and (IVF) keys.
      for (size_t i = 0; i < n; ++i) head.present.erase(block_nos[i]);
      head.keys.resize(host_keys);
      return Status::Internal(fmt::format("FAISS GPU failed to add {} landmarks to {}: {}", n,
                                          key.to_string(), e.what()));
    }
    head.block_nos.insert(head.block_nos.end(), block_nos, block_nos + n);
    return Status::Ok();
  }

  Status search(const SearchRequest& r, SearchResult* result) override {
    LMKV_RETURN_IF_ERROR(validate_search(r, options_.dim));
    if (result == nullptr) return Status::InvalidArgument("search with a null result");
    if (r.k > kMaxFaissK) {
      return Status::InvalidArgument(
          fmt::format("k={} is above FAISS GPU's largest k, {}", r.k, kMaxFaissK));
    }
    std::lock_guard<std::mutex> lock(mu_);
    const size_t per_head = size_t{r.queries_per_head} * r.k;
    result->k = r.k;
    result->block_nos.assign(r.heads * per_head, -1);
    result->scores.assign(r.heads * per_head, -std::numeric_limits<float>::infinity());
    bool any = false;
    for (uint32_t h = 0; h < r.heads; ++h) {
      auto it = heads_.find({r.sequence, r.layer, h});
      if (it == heads_.end()) continue;  // a head with no blocks yet: nothing to retrieve
      any = true;
      try {
        search_head(it->second, r.queries + size_t{h} * r.queries_per_head * options_.dim,
                    r.queries_per_head, r.k, result->block_nos.data() + h * per_head,
                    result->scores.data() + h * per_head);
      } catch (const std::exception& e) {
        return Status::Internal(fmt::format("FAISS GPU search of head {} failed: {}", h, e.what()));
      }
    }
    if (!any) {
      return Status::NotFound(
          fmt::format("sequence {} layer {} has no landmarks", r.sequence, r.layer));
    }
    return Status::Ok();
  }

  Status erase(uint64_t sequence) override {
    std::lock_guard<std::mutex> lock(mu_);
    erase_heads_of(heads_, sequence);
    return Status::Ok();
  }

  size_t size(const HeadKey& key) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = heads_.find(key);
    return it == heads_.end() ? 0 : it->second.block_nos.size();
  }

 private:
  void add_flat(GpuHead& head, const float* keys, size_t n) {
    if (!head.index) {
      faiss::gpu::GpuIndexFlatConfig config;
      config.device = options_.cuda_device;
      head.index = std::make_unique<faiss::gpu::GpuIndexFlatIP>(
          &resources_, static_cast<int>(options_.dim), config);
    }
    head.index->add(static_cast<faiss::Index::idx_t>(n), keys);
  }

  // Every key also stays on the host: the training set, the exact search of a head too small to
  // train, and the next training once the head has grown ivf_retrain_growth times.
  void add_ivf(GpuHead& head, const float* keys, size_t n) {
    head.keys.insert(head.keys.end(), keys, keys + n * options_.dim);
    const size_t total = head.keys.size() / options_.dim;
    if (head.index && !ivf_retrain_due(total, head.trained_on, options_.ivf_retrain_growth)) {
      head.index->add(static_cast<faiss::Index::idx_t>(n), keys);
      return;
    }
    if (total < options_.ivf_min_train) return;
    const uint32_t nlist = ivf_list_count(options_.ivf_nlist, total);
    faiss::gpu::GpuIndexIVFFlatConfig config;
    config.device = options_.cuda_device;
    auto ivf = std::make_unique<faiss::gpu::GpuIndexIVFFlat>(
        &resources_, static_cast<int>(options_.dim), static_cast<int>(nlist),
        faiss::METRIC_INNER_PRODUCT, config);
    ivf->setNumProbes(static_cast<int>(std::min(options_.ivf_nprobe, nlist)));
    ivf->train(static_cast<faiss::Index::idx_t>(total), head.keys.data());
    ivf->add(static_cast<faiss::Index::idx_t>(total), head.keys.data());
    head.index = std::move(ivf);  // the old lists serve until the new ones are complete
    head.trained_on = total;
  }

  void search_head(const GpuHead& head, const float* queries, uint32_t nq, uint32_t k,
                   int64_t* blocks, float* scores) const {
    const size_t n = head.block_nos.size();
    if (!head.index) {  // IVF before training
      exact_topk(queries, nq, head.keys.data(), head.block_nos.data(), n, options_.dim, k, blocks,
                 scores);
      return;
    }
    const uint32_t margin = options_.kind == FaissGpuKind::kFlat ? kTieMargin : 0;
    const auto found = static_cast<uint32_t>(std::min<size_t>({n, k + margin, kMaxFaissK}));
    std::vector<faiss::Index::idx_t> rows(size_t{nq} * found);
    std::vector<float> found_scores(size_t{nq} * found);
    head.index->search(nq, queries, found, found_scores.data(), rows.data());
    select_topk_of_rows(found_scores.data(), rows.data(), nq, found, head.block_nos.data(), k,
                        blocks, scores);
  }

  FaissGpuOptions options_;
  // FAISS GPU resources and indexes serve one caller at a time.
  mutable std::mutex mu_;
  faiss::gpu::StandardGpuResources resources_;
  std::unordered_map<HeadKey, GpuHead, HeadKeyHash> heads_;
};

}  // namespace

bool faiss_gpu_available() { return true; }

Result<std::unique_ptr<LandmarkIndex>> make_faiss_gpu_index(const FaissGpuOptions& options) {
  if (options.dim == 0 || options.dim > 4096) {
    return Status::InvalidArgument(
        fmt::format("index dim={} is out of range [1, 4096]", options.dim));
  }
  if (options.kind == FaissGpuKind::kIvf &&
      (options.ivf_nprobe == 0 || options.ivf_nprobe > kMaxFaissK)) {
    return Status::InvalidArgument(fmt::format("ivf_nprobe={} is out of FAISS GPU's range [1, {}]",
                                               options.ivf_nprobe, kMaxFaissK));
  }
  if (options.kind == FaissGpuKind::kIvf) {
    LMKV_RETURN_IF_ERROR(check_retrain_growth(options.ivf_retrain_growth));
  }
  const int devices = cuda_device_count();
  if (options.cuda_device < 0 || options.cuda_device >= devices) {
    return Status::FailedPrecondition(
        fmt::format("the FAISS GPU index needs CUDA device {}, but {} device(s) are usable",
                    options.cuda_device, devices));
  }
  try {
    return std::unique_ptr<LandmarkIndex>(new FaissGpuIndex(options));
  } catch (const std::exception& e) {
    return Status::Internal(std::string("FAISS GPU resources could not be made: ") + e.what());
  }
}

}  // namespace lmkv
