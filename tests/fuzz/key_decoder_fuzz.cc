// libFuzzer target: the disk key decoder, for both tags, with the round-trip property.
#include <cstdlib>
#include <string>

#include "kvstore/key_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lmkv;
  const std::string_view encoded(reinterpret_cast<const char*>(data), size);
  for (char tag : {kBlockKeyTag, kLandmarkKeyTag}) {
    Result<BlockKey> key = decode_block_key(encoded, tag);
    if (key.ok() && encode_block_key(*key, tag) != encoded) std::abort();
  }
  return 0;
}
