// Backend selection by configuration.
#include "index/index_factory.h"

#include <gtest/gtest.h>

#include "kvstore/cuda_util.h"

namespace lmkv {
namespace {

TEST(IndexFactory, NamesRoundTripAndUnknownNamesAreErrors) {
  for (IndexBackend b : {IndexBackend::kAuto, IndexBackend::kFaissFlat, IndexBackend::kFaissIvf,
                         IndexBackend::kFaissHnsw, IndexBackend::kGpuFused,
                         IndexBackend::kFaissGpuFlat, IndexBackend::kFaissGpuIvf}) {
    Result<IndexBackend> parsed = parse_index_backend(index_backend_name(b));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, b);
  }
  const Status s = parse_index_backend("faiss-pq").status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'faiss-pq'"), std::string::npos);
  EXPECT_NE(s.message().find("faiss-gpu-ivf"), std::string::npos) << "lists the known names";
}

TEST(IndexFactory, AutoPicksTheGpuSearchOnlyWithADevice) {
  auto index = make_landmark_index({IndexBackend::kAuto, 128});
  ASSERT_TRUE(index.ok()) << index.status().to_string();
  EXPECT_EQ((*index)->name(), cuda_device_count() > 0 ? "gpu-fused" : "faiss-flat");
  EXPECT_EQ((*index)->dim(), 128u);
}

TEST(IndexFactory, NamedBackendsAreMade) {
  for (auto [backend, name] : {std::pair{IndexBackend::kFaissFlat, "faiss-flat"},
                               std::pair{IndexBackend::kFaissIvf, "faiss-ivf"},
                               std::pair{IndexBackend::kFaissHnsw, "faiss-hnsw"}}) {
    auto index = make_landmark_index({backend, 64});
    ASSERT_TRUE(index.ok()) << name;
    EXPECT_EQ((*index)->name(), name);
  }
  auto gpu = make_landmark_index({IndexBackend::kGpuFused, 128});
  if (cuda_device_count() == 0) {
    EXPECT_EQ(gpu.status().code(), StatusCode::kFailedPrecondition);
  } else {
    EXPECT_TRUE(gpu.ok());
  }
  // FAISS GPU needs both a FAISS built with GPU support and a device.
  for (auto [backend, name] : {std::pair{IndexBackend::kFaissGpuFlat, "faiss-gpu-flat"},
                               std::pair{IndexBackend::kFaissGpuIvf, "faiss-gpu-ivf"}}) {
    auto faiss_gpu = make_landmark_index({backend, 128});
    if (!faiss_gpu_available() || cuda_device_count() == 0) {
      EXPECT_EQ(faiss_gpu.status().code(), StatusCode::kFailedPrecondition) << name;
      EXPECT_FALSE(faiss_gpu.status().message().empty());
    } else {
      ASSERT_TRUE(faiss_gpu.ok()) << faiss_gpu.status().to_string();
      EXPECT_EQ((*faiss_gpu)->name(), name);
    }
  }
  EXPECT_EQ(make_landmark_index({IndexBackend::kFaissFlat, 0}).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lmkv
