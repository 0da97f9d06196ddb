// The streamed gather against a host memcpy reference: pairs published while its kernel runs (with
// pauses, so that thread blocks wait), lists closed short of their bound or empty, a list that
// follows another as its dependent, lists reused from the pool, and slots of several chunks.
// Skips (reported as skipped) without a CUDA device.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "kvstore/cuda_util.h"
#include "test_util.h"

#ifdef LMKV_WITH_CUDA
#include "gpu_test.h"
#include "kvstore/streamed_gather.h"
#endif

namespace lmkv {
namespace {

#ifdef LMKV_WITH_CUDA

class StreamedGather : public test::GpuTest {};

// Random slots in mapped pinned memory and as many device slots.
struct Slots {
  size_t slot_bytes = 0;
  int count = 0;
  char* host = nullptr;
  const char* host_view = nullptr;
  char* device = nullptr;

  Slots(size_t bytes, int n, std::mt19937_64& rng) : slot_bytes(bytes), count(n) {
    EXPECT_EQ(cudaHostAlloc(reinterpret_cast<void**>(&host), n * bytes, cudaHostAllocMapped),
              cudaSuccess);
    for (size_t i = 0; i + 8 <= n * bytes; i += 8) {
      const uint64_t v = rng();
      std::memcpy(host + i, &v, 8);
    }
    EXPECT_EQ(
        cudaHostGetDevicePointer(reinterpret_cast<void**>(const_cast<char**>(&host_view)), host, 0),
        cudaSuccess);
    EXPECT_EQ(cudaMalloc(&device, n * bytes), cudaSuccess);
  }
  ~Slots() {
    cudaFree(device);
    cudaFreeHost(host);
  }
};

// One round: `lists` lists of bound max_pairs[l], each given published[l] pairs (pausing now and
// then so that the kernel waits for the host), the later ones launched as dependents of the one
// before. Checks every copied slot against its source and every other slot still poisoned.
void gather_round(GatherListPool& pool, EventPool& events, Slots& slots, std::mt19937_64& rng,
                  const std::vector<uint32_t>& max_pairs, const std::vector<uint32_t>& published,
                  cudaStream_t stream) {
  std::vector<int32_t> src(slots.count), dst(slots.count);
  for (int i = 0; i < slots.count; ++i) src[i] = dst[i] = i;
  std::shuffle(src.begin(), src.end(), rng);
  std::shuffle(dst.begin(), dst.end(), rng);
  ASSERT_CUDA(cudaMemset(slots.device, 0xFF, slots.count * slots.slot_bytes));  // poison
  ASSERT_CUDA(cudaDeviceSynchronize());
  std::vector<GatherListPool::List> used;
  size_t next = 0;
  for (size_t l = 0; l < max_pairs.size(); ++l) {
    Result<GatherListPool::List> list = pool.acquire();
    ASSERT_TRUE(list.ok()) << list.status().to_string();
    list->max_pairs = max_pairs[l];
    Status launched = launch_streamed_gather(slots.host_view, slots.device, slots.slot_bytes, *list,
                                             stream, /*overlap_previous=*/l > 0);
    ASSERT_TRUE(launched.ok()) << launched.to_string();
    for (uint32_t p = 0; p < published[l]; ++p, ++next) {
      if (rng() % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
      publish_gather_pair(*list, src[next], dst[next]);
    }
    close_gather_list(*list);
    used.push_back(*list);
  }
  Result<std::shared_ptr<CudaEvent>> done = events.record(stream);
  ASSERT_TRUE(done.ok()) << done.status().to_string();
  for (const auto& list : used) pool.retire(list, *done);
  std::vector<char> back(slots.count * slots.slot_bytes);
  ASSERT_CUDA(
      cudaMemcpyAsync(back.data(), slots.device, back.size(), cudaMemcpyDeviceToHost, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  for (size_t i = 0; i < next; ++i) {
    ASSERT_EQ(0, std::memcmp(back.data() + dst[i] * slots.slot_bytes,
                             slots.host + src[i] * slots.slot_bytes, slots.slot_bytes))
        << "pair " << i << " of " << next;
  }
  for (size_t i = next; i < static_cast<size_t>(slots.count); ++i) {
    const char* slot = back.data() + dst[i] * slots.slot_bytes;
    ASSERT_TRUE(std::all_of(slot, slot + slots.slot_bytes, [](char c) { return c == '\xFF'; }))
        << "slot written without a pair: " << dst[i];
  }
}

TEST_F(StreamedGather, CopiesWhatIsPublishedWhileItRuns) {
  const uint64_t seed = test::fresh_seed();
  std::mt19937_64 rng(seed);
  // One block of the default shape (one chunk per slot), and a slot of four chunks, the last short.
  for (size_t slot_bytes : {BlockShape{}.payload_bytes(), size_t{3 * 32768 + 16}}) {
    SCOPED_TRACE(testing::Message() << "slot_bytes " << slot_bytes << ", seed " << seed);
    Slots slots(slot_bytes, 1200, rng);
    EventPool events;  // first: the pool holds its events until it goes
    GatherListPool pool;
    CudaStream stream;
    ASSERT_TRUE(stream.create().ok());
    // Full lists, lists closed short of their bound, an empty list, a list of one.
    ASSERT_NO_FATAL_FAILURE(
        gather_round(pool, events, slots, rng, {1024, 100}, {1024, 100}, stream.get()));
    for (int round = 0; round < 3; ++round) {  // the same lists again, from the pool
      ASSERT_NO_FATAL_FAILURE(
          gather_round(pool, events, slots, rng, {300, 200, 5, 1}, {150, 199, 0, 1}, stream.get()));
    }
  }
}

TEST_F(StreamedGather, RefusesBadArguments) {
  GatherListPool pool;
  Result<GatherListPool::List> list = pool.acquire();
  ASSERT_TRUE(list.ok()) << list.status().to_string();
  for (uint32_t bad : {0u, GatherList::kCapacity + 1}) {
    list->max_pairs = bad;
    Status s = launch_streamed_gather(nullptr, nullptr, 1024, *list, nullptr, false);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("max_pairs=" + std::to_string(bad)), std::string::npos)
        << s.message();
  }
  list->max_pairs = 1;
  Status s = launch_streamed_gather(nullptr, nullptr, 1000, *list, nullptr, false);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("slot_bytes=1000"), std::string::npos) << s.message();
  pool.retire(*list, nullptr);
}

#else
TEST(StreamedGather, NeedsACudaBuild) { GTEST_SKIP() << "lmkv was built without CUDA"; }
#endif

}  // namespace
}  // namespace lmkv
