// CUDA plumbing shared by the GPU code: one macro that turns a failed runtime call into a Status
// naming the call, RAII owners for streams and events, and device discovery that is safe to call in
// builds and on machines without CUDA.
#pragma once

#include "lmkv/status.h"

namespace lmkv {

// Number of CUDA devices usable by this process; 0 in a build without CUDA or on a machine
// without a GPU (never aborts).
int cuda_device_count();

// Makes `device` current on the calling thread while it lives, then gives the thread its own
// device back: the runtime's current device is per thread, and a store may be called from any
// thread with any device current. A negative device does nothing (a store without devices). When
// the thread's device was only the default, never used (its primary context inactive), the new
// device stays current, since switching back would create a context there.
class ScopedCudaDevice {
 public:
  explicit ScopedCudaDevice(int device);
  ~ScopedCudaDevice();
  ScopedCudaDevice(const ScopedCudaDevice&) = delete;
  ScopedCudaDevice& operator=(const ScopedCudaDevice&) = delete;
  // Why `device` could not be made current, if it could not.
  const Status& status() const { return status_; }

 private:
  int previous_ = -1;  // made current again on destruction
  Status status_;
};

}  // namespace lmkv

#ifdef LMKV_WITH_CUDA
#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <vector>

namespace lmkv {

Status cuda_status(cudaError_t error, const char* call, const char* file, int line);

// Whether `p` is device (or managed) memory; plain host pointers, which older drivers report as
// an error, are not.
bool is_device_pointer(const void* p);

// Whether an event records a time stamp. Only timed events can be measured between, and a thread
// waiting on one wakes about a microsecond later than on an untimed event.
enum class EventTiming { kUntimed, kTimed };

// Owns a cudaEvent_t.
class CudaEvent {
 public:
  CudaEvent() = default;
  ~CudaEvent();
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  Status create(EventTiming timing = EventTiming::kUntimed);
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// Owns one cudaMalloc allocation (or, made with kPinnedHost, one cudaHostAlloc allocation: host
// memory that copies reach asynchronously); grows by reallocating (contents are not kept).
class DeviceBuffer {
 public:
  enum class Kind { kDevice, kPinnedHost };
  explicit DeviceBuffer(Kind kind = Kind::kDevice) : kind_(kind) {}
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  // Makes the buffer at least `bytes` long.
  Status reserve(size_t bytes);
  void* get() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void release();

  Kind kind_ = Kind::kDevice;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Recycles events: creating one per page-in costs more than the page-in's bookkeeping. Events
// return to the pool when their last shared_ptr goes; the pool must outlive them.
class EventPool {
 public:
  Result<std::shared_ptr<CudaEvent>> acquire(EventTiming timing);
  // acquire() and cudaEventRecord on `stream`.
  Result<std::shared_ptr<CudaEvent>> record(cudaStream_t stream,
                                            EventTiming timing = EventTiming::kUntimed);

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<CudaEvent>> free_[2];  // by EventTiming
};

// Owns a non-blocking cudaStream_t.
class CudaStream {
 public:
  CudaStream() = default;
  ~CudaStream();
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  Status create();
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace lmkv

#define LMKV_CUDA_RETURN_IF_ERROR(call)                                        \
  do {                                                                         \
    cudaError_t lmkv_cuda_error_ = (call);                                     \
    if (lmkv_cuda_error_ != cudaSuccess)                                       \
      return ::lmkv::cuda_status(lmkv_cuda_error_, #call, __FILE__, __LINE__); \
  } while (0)
#endif  // LMKV_WITH_CUDA
