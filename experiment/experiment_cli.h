// The flags of `lmkv experiment` (CLI11), and their conversion into an ExperimentConfig: shared
// by the tool and the configuration fuzz target.
#pragma once

#include <string>
#include <vector>

#include "experiment/experiment.h"

namespace CLI {
class App;
}

namespace lmkv {

struct ExperimentCommand {
  ExperimentConfig config;             // config.tokens is the first length
  std::vector<uint64_t> token_counts;  // every context length to run, in order
  std::string json_path, csv_path;
  bool quiet = false;
};

// "64M", "1.5GiB", "4096": a byte count (K/M/G/T are powers of 1024); the error names `flag`.
Result<size_t> parse_bytes(const std::string& flag, const std::string& text);

// Declares the experiment's flags on `experiment` (a CLI11 subcommand); after parsing, finish()
// converts and checks them (all but the data directory, which run_experiment checks).
class ExperimentFlags {
 public:
  explicit ExperimentFlags(CLI::App* experiment);
  Result<ExperimentCommand> finish(bool have_gpu) const;

 private:
  ExperimentCommand command_;
  std::vector<uint64_t> tokens_ = {1'000'000};
  std::string device_ = "auto", gpu_capacity_ = "1G", host_capacity_ = "64M", backend_ = "auto",
              landmark_ = "given";
};

// Parses the arguments after `lmkv experiment`; a parse error is InvalidArgument with CLI11's
// message (which names the flag).
Result<ExperimentCommand> parse_experiment_args(const std::vector<std::string>& args,
                                                bool have_gpu);

}  // namespace lmkv
