// Writes the seed corpus of the codec fuzz targets (valid encodings) into the directory given.
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_shapes.h"
#include "kvstore/key_codec.h"
#include "kvstore/value_codec.h"

namespace {

void write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lmkv;
  if (argc != 2) return 64;
  const std::string dir = argv[1];
  std::vector<char> payload(fuzz::kShape.payload_bytes());
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 37);
  std::string value;
  encode_block_value(fuzz::kKey, fuzz::kShape, payload.data(), &value);
  write(dir + "/value_decoder/valid", value);
  write(dir + "/value_decoder/truncated", value.substr(0, value.size() / 2));
  const std::vector<float> landmark = {1.5f, -2.0f, 0.25f, 8.0f};
  std::string encoded;
  encode_landmark_value(fuzz::kKey, landmark.data(), 4, &encoded);
  write(dir + "/landmark_decoder/valid", encoded);
  write(dir + "/key_decoder/block", encode_block_key(fuzz::kKey));
  write(dir + "/key_decoder/landmark", encode_block_key({~0ull, 7, 0, 1}, kLandmarkKeyTag));
  return 0;
}
