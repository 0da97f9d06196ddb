// libFuzzer target: the stored block value decoder. Any input must decode or be refused cleanly,
// and a value it accepts must be exactly what the encoder writes for the payload it returned.
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_shapes.h"
#include "kvstore/value_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lmkv;
  const std::string_view stored(reinterpret_cast<const char*>(data), size);
  std::vector<char> payload(fuzz::kShape.payload_bytes());
  if (!decode_block_value(fuzz::kKey, fuzz::kShape, stored, payload.data()).ok()) return 0;
  std::string again;
  encode_block_value(fuzz::kKey, fuzz::kShape, payload.data(), &again);
  if (again != stored) std::abort();  // an accepted value that is not canonical
  return 0;
}
