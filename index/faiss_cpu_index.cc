// FAISS CPU backends of the landmark index.
#include "index/faiss_cpu_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <unordered_set>

#include "index/exact_topk.h"

namespace lmkv {

// One head's landmarks. `keys` keeps every key for exact search and for training; `index` is the
// approximate structure once built, holding rows [0, indexed) under their row numbers as ids.
struct FaissCpuIndex::Head {
  std::vector<float> keys;
  std::vector<int64_t> block_nos;
  std::unordered_set<uint64_t> present;
  std::unique_ptr<faiss::IndexFlatIP> quantizer;  // IVF's coarse quantizer (outlives `index`)
  std::unique_ptr<faiss::Index> index;
  size_t indexed = 0;
  size_t trained_on = 0;  // keys the IVF lists were trained on
};

Result<std::unique_ptr<LandmarkIndex>> make_faiss_cpu_index(const FaissCpuOptions& options) {
  if (options.dim == 0 || options.dim > 4096) {
    return Status::InvalidArgument(
        fmt::format("index dim={} is out of range [1, 4096]", options.dim));
  }
  if (options.kind == FaissCpuKind::kIvf && options.ivf_nprobe == 0) {
    return Status::InvalidArgument("ivf_nprobe=0 visits no list");
  }
  if (options.kind == FaissCpuKind::kIvf) {
    LMKV_RETURN_IF_ERROR(check_retrain_growth(options.ivf_retrain_growth));
  }
  if (options.kind == FaissCpuKind::kHnsw &&
      (options.hnsw_m < 2 || options.hnsw_ef_search < 1 || options.hnsw_ef_construction < 1)) {
    return Status::InvalidArgument(
        fmt::format("HNSW needs M >= 2 and positive ef (M={}, efConstruction={}, efSearch={})",
                    options.hnsw_m, options.hnsw_ef_construction, options.hnsw_ef_search));
  }
  return std::unique_ptr<LandmarkIndex>(new FaissCpuIndex(options));
}

FaissCpuIndex::FaissCpuIndex(FaissCpuOptions options) : options_(options) {}
FaissCpuIndex::~FaissCpuIndex() = default;

std::string FaissCpuIndex::name() const {
  switch (options_.kind) {
    case FaissCpuKind::kFlat:
      return "faiss-flat";
    case FaissCpuKind::kIvf:
      return "faiss-ivf";
    case FaissCpuKind::kHnsw:
      return "faiss-hnsw";
  }
  return "faiss";
}

Status FaissCpuIndex::add(const HeadKey& key, const uint64_t* block_nos, const float* keys,
                          size_t n) {
  if (n == 0) return Status::Ok();
  LMKV_RETURN_IF_ERROR(validate_add(key, block_nos, keys, n, options_.dim));
  std::unique_lock<std::shared_mutex> lock(mu_);
  std::unique_ptr<Head>& slot = heads_[key];
  if (!slot) slot = std::make_unique<Head>();
  Head& head = *slot;
  LMKV_RETURN_IF_ERROR(claim_new_blocks(key, block_nos, n, &head.present));
  head.keys.insert(head.keys.end(), keys, keys + n * options_.dim);
  head.block_nos.insert(head.block_nos.end(), block_nos, block_nos + n);
  return build_approximate(head);
}

// Builds (IVF: trains) the approximate index once the head is large enough, and appends the keys
// it does not hold yet.
Status FaissCpuIndex::build_approximate(Head& head) {
  const size_t n = head.block_nos.size();
  const int d = static_cast<int>(options_.dim);
  try {
    if (ivf_retrain_due(n, head.trained_on, options_.ivf_retrain_growth)) {
      head.index.reset();  // before its quantizer
      head.indexed = 0;
    }
    if (!head.index) {
      if (options_.kind == FaissCpuKind::kIvf && n >= options_.ivf_min_train) {
        const uint32_t nlist = ivf_list_count(options_.ivf_nlist, n);
        head.quantizer = std::make_unique<faiss::IndexFlatIP>(d);
        auto ivf = std::make_unique<faiss::IndexIVFFlat>(head.quantizer.get(), d, nlist,
                                                         faiss::METRIC_INNER_PRODUCT);
        ivf->nprobe = std::min(options_.ivf_nprobe, nlist);
        ivf->train(static_cast<faiss::Index::idx_t>(n), head.keys.data());
        head.index = std::move(ivf);
        head.trained_on = n;
      } else if (options_.kind == FaissCpuKind::kHnsw && n >= options_.hnsw_min_build) {
        auto hnsw =
            std::make_unique<faiss::IndexHNSWFlat>(d, options_.hnsw_m, faiss::METRIC_INNER_PRODUCT);
        hnsw->hnsw.efConstruction = options_.hnsw_ef_construction;
        hnsw->hnsw.efSearch = options_.hnsw_ef_search;
        head.index = std::move(hnsw);
      }
    }
    if (head.index && head.indexed < n) {
      head.index->add(static_cast<faiss::Index::idx_t>(n - head.indexed),
                      head.keys.data() + head.indexed * options_.dim);
      head.indexed = n;
    }
  } catch (const std::exception& e) {
    return Status::Internal(std::string("FAISS failed to build an index: ") + e.what());
  }
  return Status::Ok();
}

void FaissCpuIndex::search_head(const Head& head, const float* queries, uint32_t nq, uint32_t k,
                                int64_t* blocks, float* scores) const {
  if (!head.index) {
    exact_topk(queries, nq, head.keys.data(), head.block_nos.data(), head.block_nos.size(),
               options_.dim, k, blocks, scores);
    return;
  }
  std::vector<faiss::Index::idx_t> rows(size_t{nq} * k);
  std::vector<float> found(size_t{nq} * k);
  head.index->search(nq, queries, k, found.data(), rows.data());
  select_topk_of_rows(found.data(), rows.data(), nq, k, head.block_nos.data(), k, blocks, scores);
}

Status FaissCpuIndex::search(const SearchRequest& r, SearchResult* result) {
  LMKV_RETURN_IF_ERROR(validate_search(r, options_.dim));
  if (result == nullptr) return Status::InvalidArgument("search with a null result");
  std::shared_lock<std::shared_mutex> lock(mu_);
  std::vector<const Head*> heads(r.heads, nullptr);
  bool any = false;
  for (uint32_t h = 0; h < r.heads; ++h) {
    auto it = heads_.find({r.sequence, r.layer, h});
    if (it != heads_.end()) heads[h] = it->second.get();
    any |= heads[h] != nullptr;
  }
  if (!any) {
    return Status::NotFound(
        fmt::format("sequence {} layer {} has no landmarks", r.sequence, r.layer));
  }
  const size_t per_head = size_t{r.queries_per_head} * r.k;
  result->k = r.k;
  result->block_nos.assign(r.heads * per_head, -1);
  result->scores.assign(r.heads * per_head, -std::numeric_limits<float>::infinity());
  // Exceptions must not leave an OpenMP region: each head keeps its own error.
  std::vector<std::string> errors(r.heads);
#pragma omp parallel for schedule(dynamic)
  for (uint32_t h = 0; h < r.heads; ++h) {
    if (heads[h] == nullptr) continue;  // a head with no blocks yet: nothing to retrieve
    try {
      search_head(*heads[h], r.queries + size_t{h} * r.queries_per_head * options_.dim,
                  r.queries_per_head, r.k, result->block_nos.data() + h * per_head,
                  result->scores.data() + h * per_head);
    } catch (const std::exception& e) {
      errors[h] = e.what();
    }
  }
  for (uint32_t h = 0; h < r.heads; ++h) {
    if (!errors[h].empty()) {
      return Status::Internal(fmt::format("FAISS search of head {} failed: {}", h, errors[h]));
    }
  }
  return Status::Ok();
}

Status FaissCpuIndex::erase(uint64_t sequence) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  erase_heads_of(heads_, sequence);
  return Status::Ok();
}

size_t FaissCpuIndex::size(const HeadKey& key) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = heads_.find(key);
  return it == heads_.end() ? 0 : it->second->block_nos.size();
}

}  // namespace lmkv
