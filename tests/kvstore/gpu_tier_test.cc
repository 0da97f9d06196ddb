// The GPU tier: the slot gather kernel against a host memcpy reference, device page-in from each
// source tier, puts from device memory, pinning, concurrent page-ins on several streams, and a
// store on a second device.
// Skips (reported as skipped) without a CUDA device.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <thread>

#include "kvstore/cuda_util.h"
#include "kvstore/tiered_store.h"
#include "test_util.h"

#ifdef LMKV_WITH_CUDA
#include "faulty_disk.h"
#include "gpu_test.h"
#include "kvstore/gpu_tier.h"
#include "kvstore/streamed_gather.h"
#endif

namespace lmkv {
namespace {

#ifdef LMKV_WITH_CUDA

class GpuTier : public test::GpuTest {};

// Copies block i of a device page-in back to the host (on the page-in's stream).
std::vector<char> device_payload(const PageIn& page, size_t i, size_t bytes, cudaStream_t stream) {
  std::vector<char> out(bytes);
  EXPECT_EQ(cudaMemcpyAsync(out.data(), page.payload(i), bytes, cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  return out;
}

// Checks that block i of a device page-in came from `source` and holds keys[i]'s test payload,
// copying each back on `stream`. Callers wrap it in ASSERT_NO_FATAL_FAILURE.
void check_page_in(const TieredStore& store, const PageIn& page, const std::vector<BlockKey>& keys,
                   uint64_t seed, Tier source, cudaStream_t stream, const std::string& context) {
  const size_t bytes = store.shape().payload_bytes();
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_EQ(page.source(i), source) << keys[i].to_string() << ", " << context;
    const std::vector<char> got = device_payload(page, i, bytes, stream);
    ASSERT_TRUE(test::payload_matches(store.shape(), keys[i], seed, got.data()))
        << keys[i].to_string() << " from " << tier_name(source) << ", " << context;
  }
}

StoreOptions gpu_options(const std::string& dir, int32_t gpu_blocks, int32_t host_blocks) {
  StoreOptions o = test::test_store_options(dir, host_blocks);
  o.gpu_capacity_bytes = static_cast<size_t>(gpu_blocks) * o.shape.payload_bytes();
  o.latency_sample_period = 1;  // time every page-in
  return o;
}

void poison_gpu_tier(TieredStore& store) {
  ASSERT_CUDA(cudaMemset(const_cast<char*>(store.gpu_slot_base()), 0xFF,
                         store.gpu_slot_count() * store.shape().payload_bytes()));
  ASSERT_CUDA(cudaDeviceSynchronize());
}

// Evicts every GPU copy and poisons the slots they leave.
void empty_gpu_tier(TieredStore& store) {
  ASSERT_TRUE(store.evict_all(Tier::kGpu).ok());
  ASSERT_NO_FATAL_FAILURE(poison_gpu_tier(store));
}

// Pages `keys` in to the device and checks that each came from the host tier, whole.
void page_in_from_host(TieredStore& store, const std::vector<BlockKey>& keys, uint64_t seed,
                       cudaStream_t stream, const std::string& context) {
  Result<PageIn> page = store.page_in(keys, PageInTarget::kDevice, stream);
  ASSERT_TRUE(page.ok()) << page.status().to_string() << ", " << context;
  ASSERT_NO_FATAL_FAILURE(check_page_in(store, *page, keys, seed, Tier::kHost, stream, context));
}

// Puts `keys` into a store with room for all of them in each tier; then, for each n in `sizes`,
// empties the GPU tier and pages in n of the keys, shuffled, checking each block from the host.
void page_in_shuffled_prefixes(std::vector<BlockKey> keys, const std::vector<size_t>& sizes) {
  test::TempDir dir;
  const auto blocks = static_cast<int32_t>(keys.size());
  auto opened = TieredStore::open(gpu_options(dir.path(), blocks, blocks));
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();
  std::mt19937_64 rng(seed);
  for (const auto& k : keys) ASSERT_TRUE(test::put_test_block(store, k, seed).ok());
  CudaStream stream;
  ASSERT_TRUE(stream.create().ok());
  for (size_t n : sizes) {
    ASSERT_NO_FATAL_FAILURE(empty_gpu_tier(store));
    std::shuffle(keys.begin(), keys.end(), rng);
    const std::vector<BlockKey> request(keys.begin(),
                                        keys.begin() + static_cast<std::ptrdiff_t>(n));
    ASSERT_NO_FATAL_FAILURE(
        page_in_from_host(store, request, seed, stream.get(), "page-in of " + std::to_string(n)));
  }
}

TEST_F(GpuTier, GatherKernelEqualsHostCopyAcrossLaunchesInEveryShape) {
  const uint64_t seed = test::fresh_seed();
  std::mt19937_64 rng(seed);
  constexpr int kSlots = 2500;  // more than one launch's 1024 pairs
  const size_t slot_bytes = BlockShape{}.payload_bytes();
  char* host = nullptr;
  ASSERT_CUDA(
      cudaHostAlloc(reinterpret_cast<void**>(&host), kSlots * slot_bytes, cudaHostAllocMapped));
  for (size_t i = 0; i < kSlots * slot_bytes; i += 8) {
    const uint64_t v = rng();
    std::memcpy(host + i, &v, 8);
  }
  char* host_view = nullptr;
  ASSERT_CUDA(cudaHostGetDevicePointer(reinterpret_cast<void**>(&host_view), host, 0));
  char* device = nullptr;
  ASSERT_CUDA(cudaMalloc(&device, kSlots * slot_bytes));
  std::vector<int32_t> src(kSlots), dst(kSlots);
  for (int i = 0; i < kSlots; ++i) src[i] = dst[i] = i;
  const size_t count = kSlots - 7;  // leave a few destination slots poisoned
  std::vector<char> back(kSlots * slot_bytes);
  for (const GatherShape shape : kSupportedGatherShapes) {
    SCOPED_TRACE(testing::Message()
                 << shape.threads << " threads x " << shape.loads_per_thread << " loads");
    ASSERT_CUDA(cudaMemset(device, 0xFF, kSlots * slot_bytes));  // poison
    std::shuffle(src.begin(), src.end(), rng);
    std::shuffle(dst.begin(), dst.end(), rng);
    ASSERT_TRUE(launch_slot_gather(host_view, device, slot_bytes, src.data(), dst.data(), count,
                                   nullptr, shape)
                    .ok());
    ASSERT_CUDA(cudaMemcpy(back.data(), device, back.size(), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < count; ++i) {
      ASSERT_EQ(
          0, std::memcmp(back.data() + dst[i] * slot_bytes, host + src[i] * slot_bytes, slot_bytes))
          << "pair " << i;
    }
    for (size_t i = count; i < kSlots; ++i) {
      ASSERT_EQ(static_cast<uint8_t>(back[dst[i] * slot_bytes]), 0xFF)
          << "slot written: " << dst[i];
    }
  }
  ASSERT_CUDA(cudaFree(device));
  ASSERT_CUDA(cudaFreeHost(host));
}

TEST_F(GpuTier, DevicePageInFromEachSourceTierIsBitExact) {
  test::TempDir dir;
  auto opened = TieredStore::open(gpu_options(dir.path(), 16, 32));
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();
  std::vector<BlockKey> keys;
  for (uint64_t b = 0; b < 12; ++b) keys.push_back({0, 3, 1, b});
  for (const auto& k : keys) ASSERT_TRUE(test::put_test_block(store, k, seed).ok());
  ASSERT_TRUE(store.evict_all(Tier::kHost).ok());
  poison_gpu_tier(store);
  cudaStream_t stream;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (Tier expected : {Tier::kDisk, Tier::kGpu, Tier::kHost}) {
    if (expected == Tier::kHost) ASSERT_TRUE(store.evict_all(Tier::kGpu).ok());
    Result<PageIn> page = store.page_in(keys, PageInTarget::kDevice, stream);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    ASSERT_NO_FATAL_FAILURE(
        check_page_in(store, *page, keys, seed, expected, stream, "paged in from each tier"));
  }
  const StoreStatsSnapshot s = store.stats();
  EXPECT_EQ(s.tier(Tier::kGpu).hits, keys.size());
  EXPECT_EQ(s.tier(Tier::kGpu).misses, 2 * keys.size());
  ASSERT_TRUE(store.close().ok());  // waits for the latency callbacks
  EXPECT_EQ(store.stats().latency(Tier::kDisk).count(), 1u);
  EXPECT_EQ(store.stats().latency(Tier::kHost).count(), 1u);
  EXPECT_EQ(store.stats().latency(Tier::kGpu).count(), 1u);
  ASSERT_CUDA(cudaStreamDestroy(stream));
}

// A page-in of host-resident blocks publishes each to a streamed gather as it plans it; one or two
// blocks go by the copy engine instead. Every size must deliver each block whole.
TEST_F(GpuTier, HostPageInsOfEverySizeAreBitExact) {
  constexpr size_t kMaxBlocks = 114;
  std::vector<BlockKey> keys;
  for (uint64_t b = 0; b < kMaxBlocks; ++b) keys.push_back({2, 1, 0, b});
  std::vector<size_t> sizes(kMaxBlocks);
  std::iota(sizes.begin(), sizes.end(), size_t{1});
  page_in_shuffled_prefixes(keys, sizes);
}

// One page-in in latency_sample_period is timed (timed events); the others wait on untimed ones.
// Either way wait() must return only once every block has landed: the copies back run on a
// second stream, ordered after the page-in by nothing but wait().
TEST_F(GpuTier, WaitCoversTimedAndUntimedPageIns) {
  test::TempDir dir;
  constexpr size_t kBlocks = 60;
  constexpr int kPageIns = 12;
  StoreOptions options = gpu_options(dir.path(), kBlocks, kBlocks);
  options.latency_sample_period = 4;
  auto opened = TieredStore::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();
  std::mt19937_64 rng(seed);
  std::vector<BlockKey> keys;
  for (uint64_t b = 0; b < kBlocks; ++b) keys.push_back({5, 0, 2, b});
  for (const auto& k : keys) ASSERT_TRUE(test::put_test_block(store, k, seed).ok());
  cudaStream_t stream, reader;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ASSERT_CUDA(cudaStreamCreateWithFlags(&reader, cudaStreamNonBlocking));
  for (int round = 0; round < kPageIns; ++round) {
    ASSERT_NO_FATAL_FAILURE(empty_gpu_tier(store));
    std::shuffle(keys.begin(), keys.end(), rng);
    Result<PageIn> page = store.page_in(keys, PageInTarget::kDevice, stream);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    ASSERT_TRUE(page->wait().ok());
    ASSERT_NO_FATAL_FAILURE(check_page_in(store, *page, keys, seed, Tier::kHost, reader,
                                          "page-in " + std::to_string(round)));
  }
  ASSERT_TRUE(store.close().ok());  // waits for the latency callbacks
  EXPECT_EQ(store.stats().latency(Tier::kHost).count(), static_cast<uint64_t>(kPageIns / 4));
  ASSERT_CUDA(cudaStreamDestroy(stream));
  ASSERT_CUDA(cudaStreamDestroy(reader));
}

// Large batches start copying while they are planned; batches of one or two blocks use the copy
// engine. Both, with blocks from every tier mixed in one request, must deliver every byte.
TEST_F(GpuTier, MixedSourcesInLargeAndSmallBatches) {
  test::TempDir dir;
  auto opened = TieredStore::open(gpu_options(dir.path(), 700, 400));
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();
  std::mt19937_64 rng(seed);
  std::vector<BlockKey> keys;
  for (uint64_t b = 0; b < 600; ++b) keys.push_back({b % 3, 2, static_cast<uint32_t>(b % 5), b});
  for (const auto& k : keys) ASSERT_TRUE(test::put_test_block(store, k, seed).ok());
  // The last 400 puts are in the host tier, the first 200 on disk; put 100 of each on the GPU.
  cudaStream_t stream;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    std::vector<BlockKey> warm(keys.begin() + 100, keys.begin() + 300);
    Result<PageIn> page = store.page_in(warm, PageInTarget::kDevice, stream);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
  }
  poison_gpu_tier(store);  // the GPU copies are garbage now: re-fill them from host and disk
  ASSERT_TRUE(store.evict_all(Tier::kGpu).ok());
  {
    std::vector<BlockKey> warm(keys.begin() + 150, keys.begin() + 250);
    Result<PageIn> page = store.page_in(warm, PageInTarget::kDevice, stream);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
  }
  const size_t bytes = store.shape().payload_bytes();
  for (size_t batch : {size_t{1}, size_t{2}, size_t{3}, size_t{33}, size_t{500}}) {
    std::vector<BlockKey> request;
    for (size_t i = 0; i < batch; ++i) request.push_back(keys[rng() % keys.size()]);
    Result<PageIn> page = store.page_in(request, PageInTarget::kDevice, stream);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    std::vector<char> all(bytes * request.size());
    for (size_t i = 0; i < request.size(); ++i) {
      ASSERT_CUDA(cudaMemcpyAsync(all.data() + i * bytes, page->payload(i), bytes,
                                  cudaMemcpyDeviceToHost, stream));
    }
    ASSERT_CUDA(cudaStreamSynchronize(stream));
    std::array<int, kTierCount> sources{};
    for (size_t i = 0; i < request.size(); ++i) {
      ++sources[static_cast<int>(page->source(i))];
      ASSERT_TRUE(test::payload_matches(store.shape(), request[i], seed, all.data() + i * bytes))
          << request[i].to_string() << " from " << tier_name(page->source(i)) << ", batch "
          << batch;
    }
    if (batch == 500) {
      for (int t = 0; t < kTierCount; ++t) EXPECT_GT(sources[t], 0) << tier_name(Tier(t));
    }
  }
  ASSERT_CUDA(cudaStreamDestroy(stream));
}

// More host-resident blocks than one gather list holds (1024): the page-in chains three lists.
TEST_F(GpuTier, PageInsLongerThanOneGatherListAreBitExact) {
  constexpr size_t kList = GatherList::kCapacity;
  constexpr size_t kBlocks = 2 * kList + 52;
  std::vector<BlockKey> keys;
  for (uint64_t b = 0; b < kBlocks; ++b) keys.push_back({b % 7, 0, 1, b});
  page_in_shuffled_prefixes(keys, {kList, kList + 1, kBlocks});
}

void CUDART_CB sleep_20ms(void*) { std::this_thread::sleep_for(std::chrono::milliseconds(20)); }

// A page-in that runs out of GPU slots while it plans waits for an earlier page-in's pins to be
// given back, which needs the GPU. It closes its streamed gather first, publishes the rest to a
// new one, and delivers every block.
TEST_F(GpuTier, PlanningThatWaitsForTheGpuDeliversEveryBlock) {
  test::TempDir dir;
  constexpr size_t kBatch = 32;
  auto opened = TieredStore::open(gpu_options(dir.path(), kBatch + kBatch / 2, 2 * kBatch));
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();
  std::vector<BlockKey> first, second;
  for (uint64_t b = 0; b < 2 * kBatch; ++b) {
    (b < kBatch ? first : second).push_back({3, 0, 0, b});
    ASSERT_TRUE(test::put_test_block(store, {3, 0, 0, b}, seed).ok());
  }
  CudaStream stream;
  ASSERT_TRUE(stream.create().ok());
  for (int round = 0; round < 3; ++round) {
    ASSERT_NO_FATAL_FAILURE(empty_gpu_tier(store));
    Result<PageIn> held = store.page_in(first, PageInTarget::kDevice, stream.get());
    ASSERT_TRUE(held.ok()) << held.status().to_string();
    // The stream is busy when the first page-in is released: its pins are given back only once
    // the GPU gets past the host function, and the second page-in needs half of its slots.
    ASSERT_CUDA(cudaLaunchHostFunc(stream.get(), sleep_20ms, nullptr));
    held->release();
    ASSERT_NO_FATAL_FAILURE(
        page_in_from_host(store, second, seed, stream.get(), "round " + std::to_string(round)));
  }
}

// Under write-back, a device page-in that reads blocks from disk evicts host blocks that are not on
// disk yet, writing them first, while its streamed gather is open. It closes the gather before the
// write, publishes the rest to a new one, and every block, written back or paged in, stays whole.
TEST_F(GpuTier, WriteBackEvictionsDuringADevicePageIn) {
  test::TempDir dir;
  constexpr uint64_t kBatch = 20;
  StoreOptions options = gpu_options(dir.path(), 4 * kBatch, 2 * kBatch);
  options.write_policy = WritePolicy::kWriteBack;
  auto opened = TieredStore::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();
  std::vector<BlockKey> on_disk, in_host, written_back;
  for (uint64_t b = 0; b < kBatch; ++b) on_disk.push_back({4, 0, 0, b});
  for (const auto& k : on_disk) ASSERT_TRUE(test::put_test_block(store, k, seed).ok());
  ASSERT_TRUE(store.evict_all(Tier::kHost).ok());  // written to disk
  for (uint64_t b = 0; b < 2 * kBatch; ++b) {
    (b < kBatch ? in_host : written_back).push_back({4, 1, 0, b});
    ASSERT_TRUE(test::put_test_block(store, {4, 1, 0, b}, seed).ok());
  }
  CudaStream stream;
  ASSERT_TRUE(stream.create().ok());
  ASSERT_NO_FATAL_FAILURE(empty_gpu_tier(store));
  // Host blocks first, so that they are published before the disk blocks need host slots.
  std::vector<BlockKey> request = in_host;
  request.insert(request.end(), on_disk.begin(), on_disk.end());
  Result<PageIn> page = store.page_in(request, PageInTarget::kDevice, stream.get());
  ASSERT_TRUE(page.ok()) << page.status().to_string();
  for (size_t i = 0; i < request.size(); ++i) {
    const auto got = device_payload(*page, i, store.shape().payload_bytes(), stream.get());
    ASSERT_TRUE(test::payload_matches(store.shape(), request[i], seed, got.data()))
        << request[i].to_string() << " from " << tier_name(page->source(i));
  }
  page->release();
  EXPECT_GE(store.stats().tier(Tier::kHost).evictions, kBatch);
  for (const auto& k : written_back) {
    Result<PageIn> back = store.page_in({k}, PageInTarget::kHost);
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_TRUE(test::payload_matches(store.shape(), k, seed, back->payload(0))) << k.to_string();
  }
}

// A page-in whose disk read fails after its host-resident blocks were published gives up its slots
// only once those copies have landed: the next page-ins, into the same slots, deliver every block.
TEST_F(GpuTier, FailedDiskReadInALargePageInSparesTheOtherBlocks) {
  test::TempDir dir;
  constexpr size_t kBlocks = 300;
  StoreOptions options = gpu_options(dir.path(), kBlocks + 1, kBlocks + 1);
  auto faults = std::make_shared<test::Faults>();
  options.open_disk = test::faulty_disk(faults);
  auto opened = TieredStore::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();
  const BlockKey bad{8, 0, 0, kBlocks};
  ASSERT_TRUE(test::put_test_block(store, bad, seed).ok());
  ASSERT_TRUE(store.evict_all(Tier::kHost).ok());  // the bad block is on disk only
  std::vector<BlockKey> keys;
  for (uint64_t b = 0; b < kBlocks; ++b) {
    keys.push_back({8, 0, 0, b});
    ASSERT_TRUE(test::put_test_block(store, keys.back(), seed).ok());
  }
  faults->flip_bit = [bad](const BlockKey& k) { return k == bad; };
  CudaStream stream;
  ASSERT_TRUE(stream.create().ok());
  for (int round = 0; round < 3; ++round) {
    ASSERT_NO_FATAL_FAILURE(empty_gpu_tier(store));
    std::vector<BlockKey> request = keys;
    request.push_back(bad);
    Result<PageIn> failed = store.page_in(request, PageInTarget::kDevice, stream.get());
    ASSERT_EQ(failed.status().code(), StatusCode::kCorruption) << failed.status().to_string();
    EXPECT_NE(failed.status().message().find(bad.to_string()), std::string::npos);
    ASSERT_NO_FATAL_FAILURE(
        page_in_from_host(store, keys, seed, stream.get(), "round " + std::to_string(round)));
  }
}

TEST_F(GpuTier, PutFromDevicePointers) {
  test::TempDir dir;
  auto opened = TieredStore::open(gpu_options(dir.path(), 4, 4));
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();
  const BlockKey key{9, 0, 0, 1};
  const std::vector<char> payload = test::block_payload(store.shape(), key, seed);
  char* device = nullptr;
  ASSERT_CUDA(cudaMalloc(&device, payload.size()));
  ASSERT_CUDA(cudaMemcpy(device, payload.data(), payload.size(), cudaMemcpyHostToDevice));
  ASSERT_TRUE(store.put(key, device, device + store.shape().tensor_bytes()).ok());
  std::vector<char> out(payload.size());
  ASSERT_TRUE(store.read(key, out.data(), out.data() + store.shape().tensor_bytes()).ok());
  EXPECT_EQ(out, payload);
  ASSERT_CUDA(cudaFree(device));
}

TEST_F(GpuTier, PinnedSlotsAreNotEvictedUntilReleased) {
  test::TempDir dir;
  auto opened = TieredStore::open(gpu_options(dir.path(), 4, 16));
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();
  for (uint64_t b = 0; b < 8; ++b)
    ASSERT_TRUE(test::put_test_block(store, {0, 0, 0, b}, seed).ok());
  cudaStream_t stream;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  Result<PageIn> held = store.page_in({{0, 0, 0, 0}, {0, 0, 0, 1}, {0, 0, 0, 2}, {0, 0, 0, 3}},
                                      PageInTarget::kDevice, stream);
  ASSERT_TRUE(held.ok()) << held.status().to_string();
  Result<PageIn> blocked = store.page_in({{0, 0, 0, 4}}, PageInTarget::kDevice, stream);
  EXPECT_EQ(blocked.status().code(), StatusCode::kResourceExhausted);
  Result<PageIn> too_big =
      store.page_in({{0, 0, 0, 0}, {0, 0, 0, 1}, {0, 0, 0, 2}, {0, 0, 0, 3}, {0, 0, 0, 4}},
                    PageInTarget::kDevice, stream);
  EXPECT_EQ(too_big.status().code(), StatusCode::kResourceExhausted);
  for (size_t i = 0; i < 4; ++i) {
    const auto got = device_payload(*held, i, store.shape().payload_bytes(), stream);
    EXPECT_TRUE(test::payload_matches(store.shape(), {0, 0, 0, i}, seed, got.data()));
  }
  held->release();
  Result<PageIn> after = store.page_in({{0, 0, 0, 4}}, PageInTarget::kDevice, stream);
  ASSERT_TRUE(after.ok()) << after.status().to_string();
  const auto got = device_payload(*after, 0, store.shape().payload_bytes(), stream);
  EXPECT_TRUE(test::payload_matches(store.shape(), {0, 0, 0, 4}, seed, got.data()));
  after->release();
  ASSERT_CUDA(cudaStreamDestroy(stream));
}

TEST_F(GpuTier, ConcurrentPageInsOnSeveralStreams) {
  test::TempDir dir;
  // 64 blocks over 24 GPU slots and 20 host slots: every source tier is used all the time. Every
  // other page-in goes through page_in_async, on two workers for the four threads.
  StoreOptions options = gpu_options(dir.path(), 24, 20);
  options.async_page_in_threads = 2;
  auto opened = TieredStore::open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  TieredStore& store = **opened;
  const uint64_t seed = test::fresh_seed();
  for (uint64_t b = 0; b < 64; ++b) {
    ASSERT_TRUE(test::put_test_block(store, {b % 4, 0, 0, b}, seed).ok());
  }
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      cudaStream_t stream;
      cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
      std::mt19937_64 rng(seed + t);
      const size_t bytes = store.shape().payload_bytes();
      for (int i = 0; i < 60 && !failed; ++i) {
        std::vector<BlockKey> batch;
        for (int j = 0; j < 5; ++j) {
          const uint64_t b = rng() % 64;
          batch.push_back({b % 4, 0, 0, b});
        }
        Result<PageIn> page = i % 2 == 1
                                  ? store.page_in_async(batch, PageInTarget::kDevice, stream).get()
                                  : store.page_in(batch, PageInTarget::kDevice, stream);
        if (!page.ok()) {
          // 4 threads x 5 pinned blocks fit in 24 GPU slots and 20 host slots: no exhaustion.
          ADD_FAILURE() << page.status().to_string();
          failed = true;
          break;
        }
        for (size_t j = 0; j < batch.size(); ++j) {
          const auto got = device_payload(*page, j, bytes, stream);
          if (!test::payload_matches(store.shape(), batch[j], seed, got.data())) {
            ADD_FAILURE() << "wrong bytes for " << batch[j].to_string() << " from "
                          << tier_name(page->source(j));
            failed = true;
          }
        }
      }
      cudaStreamSynchronize(stream);
      cudaStreamDestroy(stream);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(failed);
  const StoreStatsSnapshot s = store.stats();
  EXPECT_GT(s.tier(Tier::kGpu).hits, 0u);
  EXPECT_GT(s.tier(Tier::kHost).hits, 0u);
  EXPECT_GT(s.tier(Tier::kDisk).hits, 0u);
  EXPECT_LE(s.tier(Tier::kGpu).resident_blocks, 24u);
}

int current_device() {
  int device = -1;
  EXPECT_EQ(cudaGetDevice(&device), cudaSuccess);
  return device;
}

size_t free_device_memory(int device) {
  const ScopedCudaDevice on_device(device);
  size_t free = 0, total = 0;
  EXPECT_EQ(cudaMemGetInfo(&free, &total), cudaSuccess);
  return free;
}

// A store on device 1, called from threads with device 0 current: the store's GPU work runs on
// device 1, every caller keeps its own device, and a stream of the wrong device is refused.
TEST_F(GpuTier, AStoreOnTheSecondDeviceServesCallersOnTheFirst) {
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs two CUDA devices";
  ASSERT_CUDA(cudaSetDevice(0));
  const size_t free_before = free_device_memory(1);
  test::TempDir dir;
  StoreOptions options = gpu_options(dir.path(), 4096, 64);  // a 105 MB GPU arena
  options.cuda_device = 1;
  options.async_page_in_threads = 1;
  const uint64_t seed = test::fresh_seed();
  {
    auto opened = TieredStore::open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    TieredStore& store = **opened;
    EXPECT_EQ(current_device(), 0);
    cudaPointerAttributes arena{};
    ASSERT_CUDA(cudaPointerGetAttributes(&arena, store.gpu_slot_base()));
    EXPECT_EQ(arena.device, 1);
    EXPECT_LE(free_device_memory(1) + (90u << 20), free_before);  // the arena is 100 MiB

    // Blocks 0 to 127, the last one put from device 1's memory with device 0 current.
    const BlockKey from_device{3, 0, 0, 127};
    for (uint64_t b = 0; b < 127; ++b) {
      ASSERT_TRUE(test::put_test_block(store, {3, 0, 0, b}, seed).ok());
    }
    const std::vector<char> payload = test::block_payload(store.shape(), from_device, seed);
    void* on_device_1 = nullptr;
    {
      const ScopedCudaDevice device_1(1);
      ASSERT_CUDA(cudaMalloc(&on_device_1, payload.size()));
      ASSERT_CUDA(cudaMemcpy(on_device_1, payload.data(), payload.size(), cudaMemcpyHostToDevice));
    }
    const size_t tensor = store.shape().tensor_bytes();
    ASSERT_TRUE(
        store.put(from_device, on_device_1, static_cast<const char*>(on_device_1) + tensor).ok());
    EXPECT_EQ(current_device(), 0);

    std::atomic<bool> failed{false};
    std::vector<std::thread> callers;
    for (int t = 0; t < 2; ++t) {
      callers.emplace_back([&, t] {
        cudaStream_t stream = nullptr;
        {
          const ScopedCudaDevice device_1(1);
          ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        }
        std::vector<BlockKey> batch;  // host, disk and (for one caller) the device-put block
        for (uint64_t b = t; b < 128; b += 8) batch.push_back({3, 0, 0, b});
        for (bool async : {false, true}) {
          Result<PageIn> page =
              async ? store.page_in_async(batch, PageInTarget::kDevice, stream).get()
                    : store.page_in(batch, PageInTarget::kDevice, stream);
          if (!page.ok()) {
            ADD_FAILURE() << page.status().to_string();
            failed = true;
            break;
          }
          EXPECT_EQ(current_device(), 0) << "after page_in";
          {
            const ScopedCudaDevice device_1(1);
            for (size_t i = 0; i < batch.size(); ++i) {
              const auto got = device_payload(*page, i, store.shape().payload_bytes(), stream);
              EXPECT_TRUE(test::payload_matches(store.shape(), batch[i], seed, got.data()))
                  << batch[i].to_string() << (async ? ", async" : "");
            }
          }
          page->release();
          EXPECT_EQ(current_device(), 0) << "after release";
        }
        const ScopedCudaDevice device_1(1);
        EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
      });
    }
    for (auto& c : callers) c.join();
    EXPECT_FALSE(failed);

    cudaStream_t wrong = nullptr;  // a stream of device 0
    ASSERT_CUDA(cudaStreamCreateWithFlags(&wrong, cudaStreamNonBlocking));
    const Status refused = store.page_in({{3, 0, 0, 0}}, PageInTarget::kDevice, wrong).status();
    EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(refused.message().find("stream of device 0"), std::string::npos) << refused.message();
    EXPECT_NE(refused.message().find("on device 1"), std::string::npos) << refused.message();
    ASSERT_CUDA(cudaStreamDestroy(wrong));
    const ScopedCudaDevice device_1(1);
    ASSERT_CUDA(cudaFree(on_device_1));
  }
  // Closed and destroyed from device 0: the arena went back to device 1.
  EXPECT_GT(free_device_memory(1) + (16u << 20), free_before);
  EXPECT_EQ(current_device(), 0);
}

#else
TEST(GpuTier, NeedsACudaBuild) { GTEST_SKIP() << "lmkv was built without CUDA"; }
#endif

}  // namespace
}  // namespace lmkv
