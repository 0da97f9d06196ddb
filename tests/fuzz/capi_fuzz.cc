// Fuzzes sequences of C API calls on one cache: appends and attends of any sizes (keys and values
// taken from the input, NaNs included), wrong layers, null pointers, stats into small buffers,
// syncs, erases, closes followed by use of the closed handle, reopens, and opens with broken
// configs. Every call must return a status; nothing may crash or corrupt memory.
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "lmkv/lmkv.h"

namespace {

constexpr uint32_t kHeads = 4, kKv = 2, kDim = 64, kMaxTokens = 40;

std::string data_dir() {
  static const std::string dir = [] {
    char path[] = "/tmp/lmkv-capi-fuzz-XXXXXX";
    return std::string(mkdtemp(path));
  }();
  return dir;
}

lmkv_config config() {
  lmkv_config c = lmkv_default_config();
  c.layers = 2;
  c.heads = kHeads;
  c.kv_heads = kKv;
  c.head_dim = kDim;
  c.block_tokens = 16;
  c.top_k = 4;
  c.device = LMKV_DEVICE_CPU;
  c.host_capacity_bytes = 1 << 20;
  c.index_backend = "faiss-flat";
  static const std::string dir = data_dir();
  c.data_dir = dir.c_str();
  return c;
}

// Reads bytes off the front of the input.
struct Input {
  const uint8_t* data;
  size_t size;
  uint8_t byte() {
    if (size == 0) return 0;
    --size;
    return *data++;
  }
  void fill(void* out, size_t bytes) {
    const size_t n = bytes < size ? bytes : size;
    std::memcpy(out, data, n);
    std::memset(static_cast<char*>(out) + n, 0, bytes - n);
    data += n;
    size -= n;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  lmkv_config c = config();
  // One cache for the whole run (opening RocksDB per input would leave little time to fuzz);
  // each input starts from empty sequences, and may close and reopen it.
  static lmkv_cache* cache = nullptr;
  if (cache == nullptr && lmkv_open(&c, &cache) != LMKV_OK) return 0;
  for (uint64_t s = 0; s < 4; ++s) lmkv_erase_sequence(cache, s);
  std::vector<uint16_t> keys(kMaxTokens * kKv * kDim), values(keys.size());
  std::vector<float> queries(kMaxTokens * kHeads * kDim), out(queries.size());
  std::vector<float> landmarks(kMaxTokens * kKv * kDim);
  bool closed = false;
  for (int step = 0; step < 32 && in.size > 0; ++step) {
    const uint8_t op = in.byte() % 9;
    const uint64_t sequence = in.byte() % 4;
    const uint32_t layer = in.byte() % 3;  // 2 is out of range
    const uint32_t tokens = in.byte() % (kMaxTokens + 1);
    const bool null_pointer = in.byte() % 8 == 0;
    switch (op) {
      case 0:
        in.fill(keys.data(), tokens * kKv * kDim * 2);
        in.fill(values.data(), tokens * kKv * kDim * 2);
        lmkv_append(cache, sequence, layer, tokens, null_pointer ? nullptr : keys.data(),
                    values.data(), nullptr);
        break;
      case 1:
        in.fill(queries.data(), tokens * kHeads * kDim * 4);
        lmkv_attend(cache, sequence, layer, tokens, null_pointer ? nullptr : queries.data(),
                    out.data(), nullptr);
        break;
      case 2: {
        uint32_t sealing = 0;
        lmkv_blocks_sealed_by(cache, sequence, layer, tokens, null_pointer ? nullptr : &sealing);
        break;
      }
      case 3: {
        std::vector<char> buffer(tokens * 64);
        size_t needed = 0;
        lmkv_stats_json(cache, buffer.empty() ? nullptr : buffer.data(), buffer.size(), &needed);
        break;
      }
      case 4:
        lmkv_sync(cache);
        break;
      case 5:
        lmkv_erase_sequence(cache, sequence);
        break;
      case 6:  // close, use the closed handle, close it again, reopen
        lmkv_close(cache);
        lmkv_sync(cache);
        lmkv_append(cache, sequence, layer, tokens, keys.data(), values.data(), nullptr);
        lmkv_close(cache);
        cache = nullptr;
        closed = lmkv_open(&c, &cache) != LMKV_OK;
        if (closed) cache = nullptr;
        break;
      case 7: {  // an open with a broken config must fail cleanly (or succeed and close)
        lmkv_config broken = config();
        uint8_t field = in.byte();
        broken.heads = field % 3 == 0 ? 0 : broken.heads + field % 5;
        broken.head_dim = field % 7 == 0 ? 12 : broken.head_dim;
        broken.block_tokens = field % 11 == 0 ? 0 : broken.block_tokens;
        const int dtype = 1 + field % 3;  // 3 is no dtype; stored as a C caller would
        std::memcpy(&broken.dtype, &dtype, sizeof dtype);
        broken.struct_size = field % 13 == 0 ? 4 : broken.struct_size;
        broken.index_backend = field % 17 == 0 ? "unknown" : "faiss-flat";
        const std::string other = data_dir() + "-other";
        broken.data_dir = other.c_str();
        lmkv_cache* extra = nullptr;
        if (lmkv_open(&broken, &extra) == LMKV_OK) lmkv_close(extra);
        break;
      }
      case 8: {  // given landmarks on a cache that computes its own: refused
        in.fill(landmarks.data(), landmarks.size() * 4);
        lmkv_append(cache, sequence, layer, tokens, keys.data(), values.data(), landmarks.data());
        break;
      }
    }
    if (closed) return 0;
    lmkv_last_error();
  }
  return 0;
}
