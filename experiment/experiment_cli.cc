#include "experiment/experiment_cli.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdlib>
#include <regex>

namespace lmkv {

Result<size_t> parse_bytes(const std::string& flag, const std::string& text) {
  static const std::regex pattern(R"(^\s*([0-9]+(\.[0-9]+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$)");
  std::smatch m;
  if (!std::regex_match(text, m, pattern)) {
    return Status::InvalidArgument(
        fmt::format("{} {}: not a byte count (examples: 4096, 64M, 2GiB)", flag, text));
  }
  // strtod gives infinity where a number overflows a double (stod would throw).
  double value = std::strtod(m[1].str().c_str(), nullptr);
  const std::string unit = m[3].str();
  const std::string units = "kmgt";
  if (!unit.empty()) value *= std::pow(1024.0, double(units.find(char(std::tolower(unit[0]))) + 1));
  // Converting a double at or above 2^64 to size_t is undefined: refuse it first.
  if (!(value < 18446744073709551616.0)) {
    return Status::InvalidArgument(fmt::format("{} {}: more bytes than 2^64", flag, text));
  }
  return size_t(value);
}

ExperimentFlags::ExperimentFlags(CLI::App* e) {
  e->add_option("--tokens", tokens_,
                "Context length in tokens; several lengths run one after another, and the SVG "
                "then draws needle recall as a heat map over depth and length")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--layers", command_.config.layers, "Layers, each with its own blocks and index")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--heads", command_.config.heads, "Query heads per layer")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--kv-heads", command_.config.kv_heads,
                "KV heads per layer (heads must be a multiple)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--head-dim", command_.config.head_dim,
                "Head dimension (a multiple of 8; 64/128/256 on GPU)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--block", command_.config.block_tokens, "Tokens per block (the paper uses 50)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--top-k", command_.config.top_k, "Blocks each head retrieves per query")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--chunk", command_.config.chunk_tokens,
                "Tokens generated and sealed per ingest step")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--device", device_, "Where attention runs: auto (GPU when present), cpu or gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
  e->add_option("--gpu-capacity", gpu_capacity_, "GPU tier capacity (bytes; K/M/G suffixes)")
      ->capture_default_str();
  e->add_option("--host-capacity", host_capacity_,
                "Pinned host tier capacity; small enough by default that the disk tier is used")
      ->capture_default_str();
  e->add_option("--data-dir", command_.config.data_dir, "RocksDB directory of the disk tier")
      ->capture_default_str();
  e->add_flag("--keep-data", command_.config.keep_data,
              "Keep the experiment's blocks in --data-dir afterwards");
  e->add_option("--backend", backend_,
                "Landmark index: auto, faiss-flat, faiss-ivf, faiss-hnsw, gpu-fused, "
                "faiss-gpu-flat or faiss-gpu-ivf")
      ->capture_default_str();
  e->add_flag("!--no-int8-screening", command_.config.int8_screening,
              "Score every fp16 landmark key in the fused GPU search, without its int8 first "
              "pass (the results are the same; only the time differs)");
  e->add_option("--landmark", landmark_,
                "Landmark keys: given (the generator's block direction), mean (of the block's "
                "keys) or representative (its most central key)")
      ->check(CLI::IsMember({"given", "mean", "representative"}))
      ->capture_default_str();
  e->add_option("--queries", command_.config.queries,
                "Decode queries; the first ones look for the needles, the rest for topics")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--exact-queries", command_.config.exact_queries,
                "Queries also computed by exact attention over every block (streams the context)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--needle-depths", command_.config.needle_depths,
                "Needle depths, fractions of the context")
      ->capture_default_str();
  e->add_option("--seed", command_.config.seed, "Seed of the synthetic context")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--json", command_.json_path,
                "Write the full report as JSON (and an SVG beside it)");
  e->add_option("--csv", command_.csv_path, "Write one row per query as CSV");
  e->add_flag("--quiet", command_.quiet, "No progress output");
}

Result<ExperimentCommand> ExperimentFlags::finish(bool have_gpu) const {
  ExperimentCommand command = command_;
  ExperimentConfig& config = command.config;
  if (tokens_.empty()) return Status::InvalidArgument("--tokens: give at least one length");
  command.token_counts = tokens_;
  if (device_ == "gpu" && !have_gpu) {
    return Status::InvalidArgument("--device gpu: no usable CUDA device");
  }
  config.device = (device_ == "gpu" || (device_ == "auto" && have_gpu)) ? AttentionDevice::kGpu
                                                                        : AttentionDevice::kCpu;
  LMKV_ASSIGN_OR_RETURN(config.host_capacity_bytes, parse_bytes("--host-capacity", host_capacity_));
  LMKV_ASSIGN_OR_RETURN(config.gpu_capacity_bytes, parse_bytes("--gpu-capacity", gpu_capacity_));
  Result<IndexBackend> backend = parse_index_backend(backend_);
  if (!backend.ok()) {
    return Status::InvalidArgument("--backend " + backend_ + ": " + backend.status().message());
  }
  config.backend = *backend;
  config.landmark = landmark_ == "given"  ? LandmarkSource::kGiven
                    : landmark_ == "mean" ? LandmarkSource::kMean
                                          : LandmarkSource::kRepresentative;
  for (uint64_t tokens : tokens_) {
    config.tokens = tokens;
    LMKV_RETURN_IF_ERROR(validate_experiment_config(config, /*check_data_dir=*/false));
  }
  config.tokens = tokens_.front();
  return command;
}

Result<ExperimentCommand> parse_experiment_args(const std::vector<std::string>& args,
                                                bool have_gpu) {
  CLI::App app{"lmkv experiment"};
  ExperimentFlags flags(&app);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them reversed
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& error) {
    return Status::InvalidArgument(error.what());
  }
  return flags.finish(have_gpu);
}

}  // namespace lmkv
