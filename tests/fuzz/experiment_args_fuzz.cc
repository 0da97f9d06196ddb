// Fuzzes the parsing of `lmkv experiment` arguments: the input, split at newlines, is the argument
// list. Any input must give a config or an error, never a crash (the data directory is not
// touched: it is checked only when an experiment runs).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "experiment/experiment_cli.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args(1);
  for (size_t i = 0; i < size && args.size() < 64; ++i) {
    if (data[i] == '\n') {
      args.emplace_back();
    } else {
      args.back().push_back(char(data[i]));
    }
  }
  auto parsed = lmkv::parse_experiment_args(args, /*have_gpu=*/false);
  if (parsed.ok()) {
    // A config that parses must also be one the experiment accepts.
    (void)lmkv::validate_experiment_config(parsed->config, /*check_data_dir=*/false);
  }
  return 0;
}
