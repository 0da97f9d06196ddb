// The C++ API directly: a LandmarkCache, one layer, a sequence with a planted needle block, and
// the retrieval trace showing that a query along the needle retrieves it.
//   cpp_api DATA_DIR
#include <attention/landmark_cache.h>
#include <kvstore/dtype_convert.h>

#include <cmath>
#include <cstdio>
#include <random>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: cpp_api DATA_DIR\n");
    return 2;
  }
  constexpr uint32_t kHeads = 4, kDim = 64, kBlock = 50, kBlocks = 200, kNeedle = 37;
  lmkv::CacheOptions options;
  options.store.shape = {kBlock, kDim, lmkv::DType::kFloat16};
  options.store.disk_path = argv[1];
  options.store.host_capacity_bytes = 2 << 20;
  options.heads = options.kv_heads = kHeads;
  options.backend = lmkv::IndexBackend::kFaissFlat;
  options.retrieval.top_k = 4;
  auto opened = lmkv::LandmarkCache::open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().to_string().c_str());
    return 1;
  }
  lmkv::LandmarkCache& cache = **opened;
  (void)cache.erase(1);

  // Random keys, except the needle block whose keys all point one way.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> needle(kDim);
  for (auto& x : needle) x = normal(rng);
  std::vector<uint16_t> k(size_t{kBlock} * kHeads * kDim), v(k.size());
  std::vector<float> row(kDim);
  for (uint32_t b = 0; b < kBlocks; ++b) {
    for (size_t i = 0; i < k.size(); ++i) {
      const float key = b == kNeedle ? 3 * needle[i % kDim] : normal(rng);
      k[i] = lmkv::float_to_half_bits(key);
      v[i] = lmkv::float_to_half_bits(normal(rng));
    }
    if (auto s = cache.append(1, 0, kBlock, k.data(), v.data()); !s.ok()) {
      std::fprintf(stderr, "append: %s\n", s.to_string().c_str());
      return 1;
    }
  }
  // One decode step along the needle.
  for (size_t i = 0; i < k.size() / kBlock; ++i) k[i] = lmkv::float_to_half_bits(normal(rng));
  if (auto s = cache.append(1, 0, 1, k.data(), v.data()); !s.ok()) return 1;
  std::vector<float> query(kHeads * kDim), out(query.size());
  for (size_t i = 0; i < query.size(); ++i) query[i] = needle[i % kDim];
  lmkv::RetrievalTrace trace;
  if (auto s = cache.attend(1, 0, 1, query.data(), out.data(), &trace); !s.ok()) {
    std::fprintf(stderr, "attend: %s\n", s.to_string().c_str());
    return 1;
  }
  std::printf("%llu tokens; head 0 retrieved blocks:", (unsigned long long)cache.length(1, 0));
  for (uint32_t i = 0; i < trace.k; ++i) std::printf(" %lld", (long long)trace.block_nos[i]);
  std::printf(" (needle at %u)\n", kNeedle);
  const bool found = trace.block_nos[0] == kNeedle;
  (void)cache.close();
  return found ? 0 : 1;
}
