// Host side of the landmark attention kernels: checks, the split of rows over warps, dispatch on
// dtype and head dim, and the partial-state scratch.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "attention/gpu_attention.h"
#include "attention/gpu_attention_args.h"
#include "attention/kernels/landmark_attention.cuh"
#include "attention/kernels/staged_attention.cuh"
#include "kvstore/cuda_util.h"
#include "kvstore/dependent_launch.cuh"

namespace lmkv {

struct GpuAttention::Scratch {
  DeviceBuffer partial;
  DeviceBuffer parts_done;  // one counter per row, zero between launches
  int device = -1;
  int sm_count = 0;
  int max_shared_bytes = 0;  // a block's dynamic shared memory limit (opt-in)
};

GpuAttention::GpuAttention() : scratch_(std::make_unique<Scratch>()) {}
GpuAttention::~GpuAttention() = default;

namespace {

constexpr int kThreads = kernels::kPartsWarps * 32;

template <typename T, int D>
Status launch(const kernels::AttentionParams& p, cudaStream_t stream) {
  const int64_t warps = int64_t(p.rows) * p.parts;
  const int64_t ctas = (warps * 32 + kThreads - 1) / kThreads;
  // The launch overlaps the kernel before it (kvstore/dependent_launch.cuh): decode steps are
  // short enough for launch latency to matter.
  LMKV_CUDA_RETURN_IF_ERROR(launch_dependent(kernels::landmark_attention_parts<T, D>,
                                             dim3(unsigned(ctas)), dim3(kThreads), 0, stream, p));
  return Status::Ok();
}

// Rows of a head sharing their blocks: token groups stage each block in shared memory once.
template <typename T, int D>
Status launch_staged(const kernels::AttentionParams& p, bool tensor, int64_t shared_bytes,
                     cudaStream_t stream) {
  auto kernel = tensor ? kernels::landmark_attention_staged<T, D, true>
                       : kernels::landmark_attention_staged<T, D, false>;
  LMKV_CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes)));
  const dim3 grid((p.tokens + kernels::kStagedTokens - 1) / kernels::kStagedTokens, p.heads);
  kernel<<<grid, kernels::kStagedTokens * 32, size_t(shared_bytes), stream>>>(p);
  LMKV_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

// How a launch runs: per-row warps, or staged blocks with or without tensor-core scores (in
// `shared_bytes` of dynamic shared memory).
enum class Path { kRows, kStaged, kStagedTensor };
struct Plan {
  Path path = Path::kRows;
  int64_t shared_bytes = 0;
};

template <typename T, int D>
Status launch_plan(const kernels::AttentionParams& p, const Plan& plan, cudaStream_t stream) {
  if (plan.path == Path::kRows) return launch<T, D>(p, stream);
  return launch_staged<T, D>(p, plan.path == Path::kStagedTensor, plan.shared_bytes, stream);
}

template <typename T>
Status launch_dim(const kernels::AttentionParams& p, uint32_t dim, const Plan& plan,
                  cudaStream_t stream) {
  switch (dim) {
    case 64:
      return launch_plan<T, 64>(p, plan, stream);
    case 128:
      return launch_plan<T, 128>(p, plan, stream);
    default:
      return launch_plan<T, 256>(p, plan, stream);
  }
}

}  // namespace

Status GpuAttention::run(const GpuAttentionArgs& a, CUstream_st* stream) {
  LMKV_RETURN_IF_ERROR(validate_gpu_attention_args(a));
  Scratch& s = *scratch_;
  int device = 0;
  LMKV_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  if (device != s.device) {
    LMKV_CUDA_RETURN_IF_ERROR(
        cudaDeviceGetAttribute(&s.sm_count, cudaDevAttrMultiProcessorCount, device));
    LMKV_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(
        &s.max_shared_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    s.device = device;
  }

  kernels::AttentionParams p;
  p.rows = int32_t(a.tokens * a.heads);
  p.heads = int32_t(a.heads);
  p.group = int32_t(a.heads / a.kv_heads);
  p.tokens = int32_t(a.tokens);
  p.block_tokens = int32_t(a.block_tokens);
  p.window_tokens = int32_t(a.window_tokens);
  p.window_stride = int32_t(a.window_stride_tokens ? a.window_stride_tokens : a.window_tokens);
  // Window tokens are taken in runs of one 32-key tile.
  p.local_chunk = kernels::kTile;
  p.queries = a.queries;
  p.window_keys = a.window_keys;
  p.window_values = a.window_values;
  p.slot_base = a.slot_base;
  p.payload_bytes = int64_t(2) * a.block_tokens * a.dim * dtype_bytes(a.dtype);
  p.indptr = a.indptr;
  p.slots = a.slots;
  p.landmark_scores = a.landmark_scores;
  p.block_nos = a.block_nos;
  p.scale = a.scale > 0 ? a.scale : float(1.0 / std::sqrt(double(a.dim)));
  p.rope = a.rope.mode == RopeMode::kStored     ? kernels::kRopeStored
           : a.rope.mode == RopeMode::kRemapped ? kernels::kRopeRemapped
                                                : kernels::kRopeNone;
  p.rope_theta = a.rope.theta;
  p.window_start = a.window_start;
  p.out = a.out;

  // Staging pays when several tokens share blocks and the staged layout fits in shared memory;
  // tensor cores score the staged keys where no rotation must come first.
  Plan plan;
  if (a.rows_share_blocks && a.tokens > 1 && a.max_blocks_per_row > 0) {
    const bool tensor = p.rope == kernels::kRopeNone && a.block_tokens >= 16 &&
                        a.block_tokens <= uint32_t(kernels::kMaxTensorBlockTokens);
    const kernels::StagedLayout layout(p.payload_bytes, p.block_tokens, int(a.dim),
                                       int(dtype_bytes(a.dtype)), tensor);
    if (layout.bytes <= s.max_shared_bytes) {
      plan = {tensor ? Path::kStagedTensor : Path::kStaged, layout.bytes};
    }
  }

  if (plan.path == Path::kRows) {
    // Enough warps to fill the GPU a few times over: a row's items are split over `parts` warps
    // when rows alone are too few (decode), never more parts than a row has items.
    const int64_t max_items =
        int64_t(a.max_blocks_per_row) + (a.window_tokens + p.local_chunk - 1) / p.local_chunk;
    const int64_t target_warps = int64_t(s.sm_count) * 64;
    p.parts = int32_t(std::clamp<int64_t>((target_warps + p.rows - 1) / p.rows, 1, max_items));
    if (p.parts > 1) {
      LMKV_RETURN_IF_ERROR(s.partial.reserve(size_t(p.rows) * p.parts *
                                             (a.dim + kernels::kPartialPad) * sizeof(float)));
      p.partial = static_cast<float*>(s.partial.get());
      // New counters start at zero; each launch leaves them so.
      const size_t counter_bytes = size_t(p.rows) * sizeof(int32_t);
      if (counter_bytes > s.parts_done.bytes()) {
        LMKV_RETURN_IF_ERROR(s.parts_done.reserve(counter_bytes));
        LMKV_CUDA_RETURN_IF_ERROR(
            cudaMemsetAsync(s.parts_done.get(), 0, s.parts_done.bytes(), stream));
      }
      p.parts_done = static_cast<int32_t*>(s.parts_done.get());
    }
  }
  if (a.dtype == DType::kFloat16) return launch_dim<__half>(p, a.dim, plan, stream);
  return launch_dim<__nv_bfloat16>(p, a.dim, plan, stream);
}

}  // namespace lmkv
