// The streamed gather kernel and its list pool.
#include <fmt/format.h>

#include <algorithm>
#include <cuda/atomic>

#include "kvstore/dependent_launch.cuh"
#include "kvstore/gpu_tier.h"
#include "kvstore/slot_copy.cuh"
#include "kvstore/streamed_gather.h"

namespace lmkv {
namespace {

// Each thread block copies kThreads * kLoads 16-byte vectors at a time (the shape that
// launch_slot_gather uses by default), looping over the list's pairs with a stride of the grid.
constexpr int kThreads = GatherShape{}.threads;
constexpr int kLoads = GatherShape{}.loads_per_thread;
constexpr int kChunkVecs = kThreads * kLoads;
// At most this many thread blocks, each copying one chunk at a time: 256 moved 256 and 1024 blocks
// as fast as 512 or 1024 did, and faster than 128 (bench/page_in_bench.cc on an H100).
constexpr uint32_t kMaxThreadBlocks = 256;
// Polls of the host's list cross the link: back off while a pair is not there yet, so that
// waiting thread blocks leave the link to the copies. Pauses of up to 4 us made 1024-block
// page-ins steadier than pauses of up to 1 us.
constexpr unsigned kFirstPauseNs = 32;
constexpr unsigned kLongestPauseNs = 4096;

// Pair `index` of `list` once the host publishes it, or kClosed.
__device__ uint64_t await_pair(const GatherList* list, uint32_t index) {
  // The host publishes with release stores; an acquire load at system scope sees them in order.
  cuda::atomic_ref<uint64_t, cuda::thread_scope_system> pair(
      const_cast<uint64_t&>(list->pairs[index]));
  unsigned pause = kFirstPauseNs;
  for (;;) {
    if (const uint64_t p = pair.load(cuda::memory_order_acquire)) return p;
    __nanosleep(pause);
    pause = min(2 * pause, kLongestPauseNs);
  }
}

__global__ void __launch_bounds__(kThreads)
    streamed_gather_kernel(const uint4* __restrict__ src_base, uint4* __restrict__ dst_base,
                           size_t slot_vecs, int chunks_per_slot, const GatherList* list,
                           uint32_t max_pairs) {
  kernels::let_dependent_grid_launch();
  __shared__ uint64_t shared_pair;
  for (uint32_t item = blockIdx.x;; item += gridDim.x) {
    const uint32_t index = item / chunks_per_slot;
    if (index >= max_pairs) break;
    if (threadIdx.x == 0) shared_pair = await_pair(list, index);
    __syncthreads();
    const uint64_t pair = shared_pair;
    __syncthreads();  // every thread has read it before thread 0 writes the next
    if (pair == GatherList::kClosed) break;
    const int32_t src_slot = static_cast<int32_t>((pair >> 32) - 1);
    const int32_t dst_slot = static_cast<int32_t>(pair & 0xFFFFFFFFu);
    const size_t begin = static_cast<size_t>(item % chunks_per_slot) * kChunkVecs;
    kernels::copy_slot_chunk<kThreads, kLoads>(src_base + static_cast<size_t>(src_slot) * slot_vecs,
                                               dst_base + static_cast<size_t>(dst_slot) * slot_vecs,
                                               begin, slot_vecs);
  }
  kernels::wait_for_prerequisite_grid();
}

}  // namespace

Status launch_streamed_gather(const char* src_base, char* dst_base, size_t slot_bytes,
                              const GatherListPool::List& list, cudaStream_t stream,
                              bool overlap_previous) {
  LMKV_RETURN_IF_ERROR(check_gather_slot_bytes(slot_bytes));
  if (list.max_pairs == 0 || list.max_pairs > GatherList::kCapacity) {
    return Status::InvalidArgument(fmt::format("a streamed gather of max_pairs={} (1 to {})",
                                               list.max_pairs, GatherList::kCapacity));
  }
  const size_t slot_vecs = slot_bytes / sizeof(uint4);
  const int chunks_per_slot = static_cast<int>((slot_vecs + kChunkVecs - 1) / kChunkVecs);
  const auto blocks = static_cast<uint32_t>(
      std::min<uint64_t>(uint64_t{list.max_pairs} * chunks_per_slot, kMaxThreadBlocks));
  const auto* src = reinterpret_cast<const uint4*>(src_base);
  auto* dst = reinterpret_cast<uint4*>(dst_base);
  LMKV_CUDA_RETURN_IF_ERROR(launch_kernel(streamed_gather_kernel, dim3(blocks), dim3(kThreads), 0,
                                          stream, overlap_previous, src, dst, slot_vecs,
                                          chunks_per_slot, list.device, list.max_pairs));
  return Status::Ok();
}

void publish_gather_pair(GatherListPool::List& list, int32_t src_slot, int32_t dst_slot) {
  const uint64_t pair = (static_cast<uint64_t>(static_cast<uint32_t>(src_slot) + 1) << 32) |
                        static_cast<uint32_t>(dst_slot);
  __atomic_store_n(&list.host->pairs[list.published++], pair, __ATOMIC_RELEASE);
}

void close_gather_list(const GatherListPool::List& list) {
  // Thread blocks wait only for pairs below max_pairs: mark those that will not come.
  for (uint32_t i = list.published; i < list.max_pairs; ++i) {
    __atomic_store_n(&list.host->pairs[i], GatherList::kClosed, __ATOMIC_RELEASE);
  }
}

// --- GatherListPool ---

GatherListPool::~GatherListPool() {
  for (auto& [list, done] : retiring_) {
    if (done) cudaEventSynchronize(done->get());
  }
  retiring_.clear();
  for (void* p : allocations_) cudaFreeHost(p);
}

Result<GatherListPool::List> GatherListPool::acquire() {
  while (!retiring_.empty()) {
    auto& [list, done] = retiring_.front();
    // Any other error than NotReady means the device is unusable and reads the list no more.
    const cudaError_t state = done ? cudaEventQuery(done->get()) : cudaSuccess;
    if (state == cudaErrorNotReady) break;
    if (state != cudaSuccess) cudaGetLastError();
    free_.push_back(list);
    retiring_.pop_front();
  }
  if (free_.empty()) {
    void* p = nullptr;
    LMKV_CUDA_RETURN_IF_ERROR(
        cudaHostAlloc(&p, kListsPerAllocation * sizeof(GatherList), cudaHostAllocMapped));
    allocations_.push_back(p);
    void* device = nullptr;
    LMKV_CUDA_RETURN_IF_ERROR(cudaHostGetDevicePointer(&device, p, 0));
    for (int i = 0; i < kListsPerAllocation; ++i) {
      List list;
      list.host = static_cast<GatherList*>(p) + i;
      list.device = static_cast<const GatherList*>(device) + i;
      list.max_pairs = GatherList::kCapacity;  // cleared below like any used list
      free_.push_back(list);
    }
  }
  List list = free_.back();
  free_.pop_back();
  std::fill(list.host->pairs, list.host->pairs + list.max_pairs, uint64_t{0});
  list.max_pairs = list.published = 0;
  // The kernel launched next must see the cleared list.
  __atomic_thread_fence(__ATOMIC_RELEASE);
  return list;
}

void GatherListPool::retire(const List& list, std::shared_ptr<CudaEvent> done) {
  retiring_.emplace_back(list, std::move(done));
}

}  // namespace lmkv
