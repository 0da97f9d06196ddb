// The C API over LandmarkCache: handle registry (so closed or foreign handles are errors, not
// crashes), status translation, the thread-local last error, and device-pointer staging.
#include <fmt/format.h>

#include <cstddef>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <unordered_set>

#include "attention/landmark_cache.h"
#include "kvstore/cuda_util.h"
#include "lmkv/lmkv.h"

struct lmkv_cache {
  std::unique_ptr<lmkv::LandmarkCache> cache;
  uint32_t heads = 0, head_dim = 0;
};

namespace {

using lmkv::Status;
using lmkv::StatusCode;

thread_local std::string last_error;

std::mutex registry_mu;
std::unordered_set<lmkv_cache*>& registry() {
  static auto* live = new std::unordered_set<lmkv_cache*>();
  return *live;
}

lmkv_status fail(lmkv_status code, std::string message) {
  last_error = std::move(message);
  return code;
}

lmkv_status translate(const Status& s) {
  if (s.ok()) return LMKV_OK;
  last_error = s.to_string();
  switch (s.code()) {
    case StatusCode::kOk:
      return LMKV_OK;
    case StatusCode::kInvalidArgument:
      return LMKV_INVALID_ARGUMENT;
    case StatusCode::kNotFound:
      return LMKV_NOT_FOUND;
    case StatusCode::kAlreadyExists:
      return LMKV_ALREADY_EXISTS;
    case StatusCode::kCorruption:
      return LMKV_CORRUPTION;
    case StatusCode::kIOError:
      return LMKV_IO_ERROR;
    case StatusCode::kResourceExhausted:
      return LMKV_RESOURCE_EXHAUSTED;
    case StatusCode::kFailedPrecondition:
      return LMKV_FAILED_PRECONDITION;
    case StatusCode::kCudaError:
      return LMKV_CUDA_ERROR;
    default:
      return LMKV_INTERNAL;
  }
}

// Runs `body` for a live handle, turning exceptions into LMKV_INTERNAL.
template <typename Body>
lmkv_status with_cache(lmkv_cache* cache, const char* call, Body&& body) {
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    if (cache == nullptr || registry().count(cache) == 0) {
      return fail(
          LMKV_INVALID_ARGUMENT,
          fmt::format("{}: {} handle", call, cache == nullptr ? "null" : "closed or unknown"));
    }
  }
  try {
    const lmkv_status code = body(*cache);
    if (code == LMKV_OK) last_error.clear();
    return code;
  } catch (const std::exception& e) {
    return fail(LMKV_INTERNAL, fmt::format("{}: {}", call, e.what()));
  } catch (...) {
    return fail(LMKV_INTERNAL, fmt::format("{}: unknown exception", call));
  }
}

// A C caller may store any int in an enum field; in C++ loading a value outside the enum's range
// is undefined, so the fields are read as the integers they hold.
template <typename Enum>
int enum_value(const Enum& field) {
  static_assert(sizeof(Enum) == sizeof(int), "C enums are int-sized");
  int value;
  std::memcpy(&value, &field, sizeof value);
  return value;
}

// The size of lmkv_config in 0.1.0, the first release: every field up to `retrieval`.
constexpr size_t kFirstConfigSize = offsetof(lmkv_config, retrieval);

}  // namespace

extern "C" {

lmkv_config lmkv_default_config(void) {
  lmkv_config c;
  std::memset(&c, 0, sizeof c);
  c.struct_size = sizeof(lmkv_config);
  c.layers = 1;
  c.heads = 32;
  c.kv_heads = 32;
  c.head_dim = 128;
  c.block_tokens = 50;
  c.dtype = LMKV_FLOAT16;
  c.top_k = 32;
  c.device = LMKV_DEVICE_AUTO;
  c.gpu_capacity_bytes = size_t{1} << 30;
  c.host_capacity_bytes = size_t{256} << 20;
  c.data_dir = nullptr;
  c.index_backend = "auto";
  c.landmark = LMKV_LANDMARK_MEAN;
  c.write_policy = LMKV_WRITE_THROUGH;
  c.reserved = 0;
  c.retrieval = LMKV_RETRIEVAL_PER_TOKEN;
  return c;
}

lmkv_status lmkv_open(const lmkv_config* config, lmkv_cache** out) {
  if (config == nullptr || out == nullptr) {
    return fail(LMKV_INVALID_ARGUMENT, "lmkv_open: null config or out");
  }
  *out = nullptr;
  if (config->struct_size < kFirstConfigSize) {
    return fail(LMKV_INVALID_ARGUMENT,
                fmt::format("lmkv_open: config.struct_size {} is smaller than {}; start from "
                            "lmkv_default_config()",
                            config->struct_size, kFirstConfigSize));
  }
  // Fields a caller's struct does not reach take their defaults.
  auto covers = [&](size_t offset, size_t size) { return config->struct_size >= offset + size; };
  const int retrieval = covers(offsetof(lmkv_config, retrieval), sizeof(config->retrieval))
                            ? enum_value(config->retrieval)
                            : LMKV_RETRIEVAL_PER_TOKEN;
  if (retrieval != LMKV_RETRIEVAL_PER_TOKEN && retrieval != LMKV_RETRIEVAL_PER_CHUNK) {
    return fail(LMKV_INVALID_ARGUMENT, fmt::format("lmkv_open: config.retrieval {}", retrieval));
  }
  if (config->data_dir == nullptr || config->data_dir[0] == '\0') {
    return fail(LMKV_INVALID_ARGUMENT, "lmkv_open: config.data_dir is required");
  }
  const int dtype = enum_value(config->dtype), device = enum_value(config->device);
  const int landmark = enum_value(config->landmark), policy = enum_value(config->write_policy);
  if (dtype != LMKV_FLOAT16 && dtype != LMKV_BFLOAT16) {
    return fail(LMKV_INVALID_ARGUMENT, fmt::format("lmkv_open: config.dtype {}", dtype));
  }
  if (device != LMKV_DEVICE_AUTO && device != LMKV_DEVICE_CPU && device != LMKV_DEVICE_GPU) {
    return fail(LMKV_INVALID_ARGUMENT, fmt::format("lmkv_open: config.device {}", device));
  }
  if (policy != LMKV_WRITE_THROUGH && policy != LMKV_WRITE_BACK) {
    return fail(LMKV_INVALID_ARGUMENT, fmt::format("lmkv_open: config.write_policy {}", policy));
  }
  try {
    lmkv::CacheOptions o;
    o.store.shape = {config->block_tokens, config->head_dim,
                     dtype == LMKV_FLOAT16 ? lmkv::DType::kFloat16 : lmkv::DType::kBFloat16};
    o.store.disk_path = config->data_dir;
    o.store.host_capacity_bytes = config->host_capacity_bytes;
    o.store.write_policy = policy == LMKV_WRITE_BACK ? lmkv::WritePolicy::kWriteBack
                                                     : lmkv::WritePolicy::kWriteThrough;
    const bool have_gpu = lmkv::cuda_device_count() > 0;
    if (device == LMKV_DEVICE_GPU && !have_gpu) {
      return fail(LMKV_FAILED_PRECONDITION, "lmkv_open: config.device is GPU but none is usable");
    }
    const bool gpu = device == LMKV_DEVICE_GPU || (device == LMKV_DEVICE_AUTO && have_gpu);
    o.store.gpu_capacity_bytes = gpu ? config->gpu_capacity_bytes : 0;
    o.retrieval.device = gpu ? lmkv::AttentionDevice::kGpu : lmkv::AttentionDevice::kCpu;
    o.retrieval.top_k = config->top_k;
    o.retrieval.retrieval = retrieval == LMKV_RETRIEVAL_PER_CHUNK ? lmkv::Retrieval::kPerChunk
                                                                  : lmkv::Retrieval::kPerToken;
    o.layers = config->layers;
    o.heads = config->heads;
    o.kv_heads = config->kv_heads;
    auto backend =
        lmkv::parse_index_backend(config->index_backend ? config->index_backend : "auto");
    if (!backend.ok()) return translate(backend.status());
    o.backend = *backend;
    switch (landmark) {
      case LMKV_LANDMARK_MEAN:
        o.landmark = lmkv::LandmarkSource::kMean;
        break;
      case LMKV_LANDMARK_REPRESENTATIVE:
        o.landmark = lmkv::LandmarkSource::kRepresentative;
        break;
      case LMKV_LANDMARK_GIVEN:
        o.landmark = lmkv::LandmarkSource::kGiven;
        break;
      default:
        return fail(LMKV_INVALID_ARGUMENT, fmt::format("lmkv_open: config.landmark {}", landmark));
    }
    auto opened = lmkv::LandmarkCache::open(std::move(o));
    if (!opened.ok()) return translate(opened.status());
    auto handle = std::make_unique<lmkv_cache>();
    handle->cache = std::move(opened).value();
    handle->heads = config->heads;
    handle->head_dim = config->head_dim;
    std::lock_guard<std::mutex> lock(registry_mu);
    registry().insert(handle.get());
    *out = handle.release();
    last_error.clear();
    return LMKV_OK;
  } catch (const std::exception& e) {
    return fail(LMKV_INTERNAL, fmt::format("lmkv_open: {}", e.what()));
  }
}

lmkv_status lmkv_blocks_sealed_by(lmkv_cache* cache, uint64_t sequence, uint32_t layer,
                                  uint32_t tokens, uint32_t* out) {
  return with_cache(cache, "lmkv_blocks_sealed_by", [&](lmkv_cache& c) {
    if (out == nullptr) return fail(LMKV_INVALID_ARGUMENT, "lmkv_blocks_sealed_by: null out");
    auto n = c.cache->blocks_sealed_by(sequence, layer, tokens);
    if (!n.ok()) return translate(n.status());
    *out = *n;
    return LMKV_OK;
  });
}

lmkv_status lmkv_append(lmkv_cache* cache, uint64_t sequence, uint32_t layer, uint32_t tokens,
                        const void* keys, const void* values, const float* landmarks) {
  return with_cache(cache, "lmkv_append", [&](lmkv_cache& c) {
    return translate(c.cache->append(sequence, layer, tokens, keys, values, landmarks));
  });
}

lmkv_status lmkv_attend(lmkv_cache* cache, uint64_t sequence, uint32_t layer, uint32_t tokens,
                        const float* queries, float* out, void* cuda_stream) {
  return with_cache(cache, "lmkv_attend", [&](lmkv_cache& c) {
    if (queries == nullptr || out == nullptr) {
      return fail(LMKV_INVALID_ARGUMENT, "lmkv_attend: null queries or out");
    }
    const size_t n = size_t{tokens} * c.heads * c.head_dim;
#ifdef LMKV_WITH_CUDA
    const bool device_in = lmkv::is_device_pointer(queries),
               device_out = lmkv::is_device_pointer(out);
    if (device_in || device_out) {
      auto stream = static_cast<cudaStream_t>(cuda_stream);
      std::vector<float> host_queries(n), host_out(n);
      if (device_in) {
        if (cudaMemcpyAsync(host_queries.data(), queries, n * sizeof(float), cudaMemcpyDeviceToHost,
                            stream) != cudaSuccess ||
            cudaStreamSynchronize(stream) != cudaSuccess) {
          return fail(LMKV_CUDA_ERROR, "lmkv_attend: copying device queries failed");
        }
      } else {
        std::memcpy(host_queries.data(), queries, n * sizeof(float));
      }
      const lmkv_status code =
          translate(c.cache->attend(sequence, layer, tokens, host_queries.data(), host_out.data()));
      if (code != LMKV_OK) return code;
      if (!device_out) {
        std::memcpy(out, host_out.data(), n * sizeof(float));
      } else if (cudaMemcpyAsync(out, host_out.data(), n * sizeof(float), cudaMemcpyHostToDevice,
                                 stream) != cudaSuccess ||
                 cudaStreamSynchronize(stream) != cudaSuccess) {
        return fail(LMKV_CUDA_ERROR, "lmkv_attend: copying the output to the device failed");
      }
      return LMKV_OK;
    }
#else
    (void)cuda_stream;
    (void)n;
#endif
    return translate(c.cache->attend(sequence, layer, tokens, queries, out));
  });
}

lmkv_status lmkv_stats_json(lmkv_cache* cache, char* buffer, size_t capacity, size_t* needed) {
  return with_cache(cache, "lmkv_stats_json", [&](lmkv_cache& c) {
    if (needed == nullptr) return fail(LMKV_INVALID_ARGUMENT, "lmkv_stats_json: null needed");
    if (buffer == nullptr && capacity > 0) {
      return fail(LMKV_INVALID_ARGUMENT, "lmkv_stats_json: null buffer with a capacity");
    }
    const std::string json = c.cache->stats_json();
    *needed = json.size() + 1;
    if (capacity < *needed) {
      return fail(LMKV_RESOURCE_EXHAUSTED,
                  fmt::format("lmkv_stats_json: {} bytes needed, {} given", *needed, capacity));
    }
    std::memcpy(buffer, json.c_str(), *needed);
    return LMKV_OK;
  });
}

lmkv_status lmkv_sync(lmkv_cache* cache) {
  return with_cache(cache, "lmkv_sync", [](lmkv_cache& c) { return translate(c.cache->sync()); });
}

lmkv_status lmkv_erase_sequence(lmkv_cache* cache, uint64_t sequence) {
  return with_cache(cache, "lmkv_erase_sequence",
                    [&](lmkv_cache& c) { return translate(c.cache->erase(sequence)); });
}

lmkv_status lmkv_close(lmkv_cache* cache) {
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    if (cache == nullptr || registry().erase(cache) == 0) {
      return fail(
          LMKV_INVALID_ARGUMENT,
          fmt::format("lmkv_close: {} handle", cache == nullptr ? "null" : "closed or unknown"));
    }
  }
  lmkv_status code = LMKV_OK;
  try {
    code = translate(cache->cache->close());
  } catch (const std::exception& e) {
    code = fail(LMKV_INTERNAL, fmt::format("lmkv_close: {}", e.what()));
  }
  delete cache;
  if (code == LMKV_OK) last_error.clear();
  return code;
}

const char* lmkv_last_error(void) { return last_error.c_str(); }

const char* lmkv_version(void) { return LMKV_VERSION_STRING; }

}  // extern "C"
