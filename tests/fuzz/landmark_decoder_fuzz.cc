// libFuzzer target: the stored landmark decoder, with the same round-trip property.
#include <cstdlib>
#include <string>

#include "fuzz_shapes.h"
#include "kvstore/value_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lmkv;
  const std::string_view stored(reinterpret_cast<const char*>(data), size);
  Result<std::vector<float>> values = decode_landmark_value(fuzz::kKey, stored);
  if (!values.ok()) return 0;
  std::string again;
  encode_landmark_value(fuzz::kKey, values->data(), static_cast<uint32_t>(values->size()), &again);
  if (again != stored) std::abort();
  return 0;
}
