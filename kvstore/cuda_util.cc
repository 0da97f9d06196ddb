// CUDA error formatting, RAII owners and device discovery.
#include "kvstore/cuda_util.h"

#ifdef LMKV_WITH_CUDA
#include <cuda.h>  // driver API types only: the one driver call is looked up through the runtime
#include <fmt/format.h>
#endif

namespace lmkv {

#ifdef LMKV_WITH_CUDA
int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error for later callers
    return 0;
  }
  return count;
}

namespace {

// Whether `device`'s primary context is active (true when the driver cannot say). Looked up
// through the runtime, so that lmkv does not link the driver library, which machines without a
// GPU lack.
bool primary_context_active(int device) {
  using GetState = CUresult (*)(CUdevice, unsigned int*, int*);
  static const GetState get_state = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuDevicePrimaryCtxGetState", &fn, 12000,
                                         cudaEnableDefault, &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return GetState{nullptr};
    }
    return reinterpret_cast<GetState>(fn);
  }();
  unsigned int flags = 0;
  int active = 1;
  return !get_state || get_state(device, &flags, &active) != CUDA_SUCCESS || active != 0;
}

}  // namespace

ScopedCudaDevice::ScopedCudaDevice(int device) {
  if (device < 0) return;
  int current = 0;
  cudaError_t error = cudaGetDevice(&current);
  if (error == cudaSuccess && current == device) return;
  if (error == cudaSuccess) error = cudaSetDevice(device);
  if (error != cudaSuccess) {
    status_ = cuda_status(error, "making the store's device current", __FILE__, __LINE__);
    cudaGetLastError();
    return;
  }
  if (primary_context_active(current)) previous_ = current;
}

ScopedCudaDevice::~ScopedCudaDevice() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}

Status cuda_status(cudaError_t error, const char* call, const char* file, int line) {
  return Status::CudaError(fmt::format("{} failed: {} ({}) at {}:{}", call,
                                       cudaGetErrorString(error), cudaGetErrorName(error), file,
                                       line));
}

CudaEvent::~CudaEvent() {
  if (event_) cudaEventDestroy(event_);
}

Status CudaEvent::create(EventTiming timing) {
  LMKV_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(
      &event_, timing == EventTiming::kTimed ? cudaEventDefault : cudaEventDisableTiming));
  return Status::Ok();
}

bool is_device_pointer(const void* p) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    cudaGetLastError();  // an unregistered host pointer: clear the error
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

DeviceBuffer::~DeviceBuffer() { release(); }

void DeviceBuffer::release() {
  if (data_ == nullptr) return;
  if (kind_ == Kind::kDevice) {
    cudaFree(data_);
  } else {
    cudaFreeHost(data_);
  }
  data_ = nullptr;
  bytes_ = 0;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    kind_ = other.kind_;
    data_ = other.data_;
    bytes_ = other.bytes_;
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

Status DeviceBuffer::reserve(size_t bytes) {
  if (bytes <= bytes_) return Status::Ok();
  void* fresh = nullptr;
  if (kind_ == Kind::kDevice) {
    LMKV_CUDA_RETURN_IF_ERROR(cudaMalloc(&fresh, bytes));
  } else {
    LMKV_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&fresh, bytes, cudaHostAllocDefault));
  }
  release();
  data_ = fresh;
  bytes_ = bytes;
  return Status::Ok();
}

Result<std::shared_ptr<CudaEvent>> EventPool::acquire(EventTiming timing) {
  std::vector<std::unique_ptr<CudaEvent>>& free = free_[static_cast<int>(timing)];
  std::unique_ptr<CudaEvent> event;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free.empty()) {
      event = std::move(free.back());
      free.pop_back();
    }
  }
  if (!event) {
    event = std::make_unique<CudaEvent>();
    LMKV_RETURN_IF_ERROR(event->create(timing));
  }
  return std::shared_ptr<CudaEvent>(event.release(), [this, &free](CudaEvent* e) {
    std::lock_guard<std::mutex> lock(mu_);
    free.emplace_back(e);
  });
}

Result<std::shared_ptr<CudaEvent>> EventPool::record(cudaStream_t stream, EventTiming timing) {
  LMKV_ASSIGN_OR_RETURN(std::shared_ptr<CudaEvent> event, acquire(timing));
  LMKV_CUDA_RETURN_IF_ERROR(cudaEventRecord(event->get(), stream));
  return event;
}

CudaStream::~CudaStream() {
  if (stream_) cudaStreamDestroy(stream_);
}

Status CudaStream::create() {
  LMKV_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  return Status::Ok();
}
#else
int cuda_device_count() { return 0; }
ScopedCudaDevice::ScopedCudaDevice(int) {}
ScopedCudaDevice::~ScopedCudaDevice() = default;
#endif

}  // namespace lmkv
