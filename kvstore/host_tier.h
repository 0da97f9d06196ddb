// The host tier's memory: one arena of fixed-size slots. With a CUDA device it is pinned and mapped
// (cudaHostAlloc), so copies to the GPU run at link speed and a gather kernel can read it directly;
// without one it is plain page-aligned memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "lmkv/status.h"

namespace lmkv {

class HostArena {
 public:
  // `pinned` asks for cudaHostAlloc; it needs a CUDA device.
  static Result<std::unique_ptr<HostArena>> allocate(int32_t slot_count, size_t slot_bytes,
                                                     bool pinned);
  ~HostArena();
  HostArena(const HostArena&) = delete;
  HostArena& operator=(const HostArena&) = delete;

  char* slot(int32_t s) { return base_ + static_cast<size_t>(s) * slot_bytes_; }
  const char* slot(int32_t s) const { return base_ + static_cast<size_t>(s) * slot_bytes_; }
  // The arena's address as seen from the GPU (mapped pinned memory), or null when not pinned.
  const char* device_view() const { return device_view_; }
  bool pinned() const { return pinned_; }

 private:
  HostArena() = default;
  char* base_ = nullptr;
  const char* device_view_ = nullptr;
  size_t slot_bytes_ = 0;
  bool pinned_ = false;
};

}  // namespace lmkv
