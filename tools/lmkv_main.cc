// The `lmkv` command. `lmkv experiment` runs the landmark-attention experiment (see
// experiment/experiment.h) and reports it on the terminal, as JSON, CSV and SVG.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "experiment/experiment.h"
#include "experiment/report.h"
#include "kvstore/cuda_util.h"

namespace {

using namespace lmkv;

// "64M", "1.5GiB", "4096": a byte count (K/M/G/T are powers of 1024).
Result<size_t> parse_bytes(const std::string& flag, const std::string& text) {
  static const std::regex pattern(R"(^\s*([0-9]+(\.[0-9]+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$)");
  std::smatch m;
  if (!std::regex_match(text, m, pattern)) {
    return Status::InvalidArgument(
        fmt::format("{} {}: not a byte count (examples: 4096, 64M, 2GiB)", flag, text));
  }
  double value = std::stod(m[1].str());
  const std::string unit = m[3].str();
  const std::string units = "kmgt";
  if (!unit.empty()) value *= std::pow(1024.0, double(units.find(char(std::tolower(unit[0]))) + 1));
  return size_t(value);
}

// A progress bar with rate and ETA on a terminal; a plain line per 10% otherwise.
class Progress {
 public:
  explicit Progress(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO) == 1) {}

  void operator()(const std::string& phase, uint64_t done, uint64_t total) {
    if (quiet_) return;
    const auto now = std::chrono::steady_clock::now();
    if (phase != phase_) {
      if (tty_ && !phase_.empty()) std::fputc('\n', stderr);
      phase_ = phase;
      start_ = now;
      last_decile_ = -1;
    }
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double fraction = total ? double(done) / double(total) : 1.0;
    const double rate = elapsed > 0 ? double(done) / elapsed : 0.0;
    const double eta = rate > 0 ? double(total - done) / rate : 0.0;
    if (tty_) {
      const int width = 30, filled = int(fraction * width);
      std::fprintf(stderr, "\r%-7s [%s%s] %5.1f%%  %10.0f /s  ETA %5.0f s", phase.c_str(),
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                   100 * fraction, rate, eta);
      if (done == total) std::fputc('\n', stderr);
      std::fflush(stderr);
    } else {
      const int decile = int(fraction * 10);
      if (decile != last_decile_) {
        last_decile_ = decile;
        std::fprintf(stderr, "%s: %llu/%llu (%.0f%%), %.0f /s, ETA %.0f s\n", phase.c_str(),
                     static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                     100 * fraction, rate, eta);
      }
    }
  }

 private:
  bool quiet_, tty_;
  std::string phase_;
  std::chrono::steady_clock::time_point start_;
  int last_decile_ = -1;
};

int fail(const std::string& message) {
  std::fprintf(stderr, "lmkv: %s\n", message.c_str());
  return 2;
}

int run_experiment_command(ExperimentConfig config, const std::string& device,
                           const std::string& gpu_capacity, const std::string& host_capacity,
                           const std::string& backend, const std::string& landmark,
                           const std::string& json_path, const std::string& csv_path,
                           bool quiet) {
  const bool have_gpu = cuda_device_count() > 0;
  if (device == "gpu" && !have_gpu) return fail("--device gpu: no usable CUDA device");
  config.device = (device == "gpu" || (device == "auto" && have_gpu)) ? AttentionDevice::kGpu
                                                                      : AttentionDevice::kCpu;
  auto host = parse_bytes("--host-capacity", host_capacity);
  if (!host.ok()) return fail(host.status().message());
  config.host_capacity_bytes = *host;
  auto gpu = parse_bytes("--gpu-capacity", gpu_capacity);
  if (!gpu.ok()) return fail(gpu.status().message());
  config.gpu_capacity_bytes = *gpu;
  auto parsed_backend = parse_index_backend(backend);
  if (!parsed_backend.ok()) return fail("--backend " + backend + ": " + parsed_backend.status().message());
  config.backend = *parsed_backend;
  if (landmark == "given") {
    config.landmark = LandmarkSource::kGiven;
  } else if (landmark == "mean") {
    config.landmark = LandmarkSource::kMean;
  } else {
    config.landmark = LandmarkSource::kRepresentative;
  }
  if (Status s = validate_experiment_config(config); !s.ok()) return fail(s.message());

  Progress progress(quiet);
  auto report = run_experiment(config, std::ref(progress));
  if (!report.ok()) return fail(report.status().to_string());
  std::fputs(report_summary(*report).c_str(), stdout);
  if (!json_path.empty()) {
    if (Status s = write_text_file(json_path, report_json(*report)); !s.ok()) {
      return fail("--json: " + s.message());
    }
    const std::string svg = std::filesystem::path(json_path).replace_extension(".svg").string();
    if (Status s = write_text_file(svg, report_svg(*report)); !s.ok()) return fail(s.message());
  }
  if (!csv_path.empty()) {
    if (Status s = write_text_file(csv_path, report_csv(*report)); !s.ok()) {
      return fail("--csv: " + s.message());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lmkv: tiered KV-cache store and landmark attention"};
  app.require_subcommand(1);
  CLI::App* experiment = app.add_subcommand(
      "experiment",
      "Ingest a synthetic context (drifting topics, planted needles) through the tiered store and "
      "the landmark index, decode queries through retrieval attention, and report needle recall "
      "by depth, error against exact attention, latency and tier traffic");
  ExperimentConfig c;
  std::string device = "auto", gpu_capacity = "1G", host_capacity = "64M", backend = "auto",
              landmark = "given", json_path, csv_path;
  bool quiet = false;
  auto* e = experiment;
  e->add_option("--tokens", c.tokens, "Context length in tokens")->check(CLI::NonNegativeNumber)->capture_default_str();
  e->add_option("--layers", c.layers, "Layers, each with its own blocks and index")->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--heads", c.heads, "Query heads per layer")->check(CLI::NonNegativeNumber)->capture_default_str();
  e->add_option("--kv-heads", c.kv_heads, "KV heads per layer (heads must be a multiple)")->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--head-dim", c.head_dim, "Head dimension (a multiple of 8; 64/128/256 on GPU)")->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--block", c.block_tokens, "Tokens per block (the paper uses 50)")->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--top-k", c.top_k, "Blocks each head retrieves per query")->check(CLI::NonNegativeNumber)->capture_default_str();
  e->add_option("--chunk", c.chunk_tokens, "Tokens generated and sealed per ingest step")->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--device", device, "Where attention runs: auto (GPU when present), cpu or gpu")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
  e->add_option("--gpu-capacity", gpu_capacity, "GPU tier capacity (bytes; K/M/G suffixes)")
      ->capture_default_str();
  e->add_option("--host-capacity", host_capacity,
                "Pinned host tier capacity; small enough by default that the disk tier is used")
      ->capture_default_str();
  e->add_option("--data-dir", c.data_dir, "RocksDB directory of the disk tier")
      ->capture_default_str();
  e->add_flag("--keep-data", c.keep_data, "Keep the experiment's blocks in --data-dir afterwards");
  e->add_option("--backend", backend,
                "Landmark index: auto, faiss-flat, faiss-ivf, faiss-hnsw or gpu-fused")
      ->capture_default_str();
  e->add_option("--landmark", landmark,
                "Landmark keys: given (the generator's block direction), mean (of the block's "
                "keys) or representative (its most central key)")
      ->check(CLI::IsMember({"given", "mean", "representative"}))
      ->capture_default_str();
  e->add_option("--queries", c.queries,
                "Decode queries; the first ones look for the needles, the rest for topics")->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--exact-queries", c.exact_queries,
                "Queries also computed by exact attention over every block (streams the context)")->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  e->add_option("--needle-depths", c.needle_depths, "Needle depths, fractions of the context")
      ->capture_default_str();
  e->add_option("--seed", c.seed, "Seed of the synthetic context")->check(CLI::NonNegativeNumber)->capture_default_str();
  e->add_option("--json", json_path, "Write the full report as JSON (and an SVG beside it)");
  e->add_option("--csv", csv_path, "Write one row per query as CSV");
  e->add_flag("--quiet", quiet, "No progress output");

  int rc = 0;
  experiment->callback([&] {
    rc = run_experiment_command(c, device, gpu_capacity, host_capacity, backend, landmark,
                                json_path, csv_path, quiet);
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  return rc;
}
