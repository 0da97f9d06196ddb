// The `lmkv` command. `lmkv experiment` runs the landmark-attention experiment (see
// experiment/experiment.h) and reports it on the terminal, as JSON, CSV and SVG.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "experiment/experiment.h"
#include "experiment/experiment_cli.h"
#include "experiment/report.h"
#include "kvstore/cuda_util.h"

namespace {

using namespace lmkv;

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

int run_experiment_command(const ExperimentFlags& flags) {
  auto command = flags.finish(cuda_device_count() > 0);
  if (!command.ok()) return fail(command.status().message());
  ExperimentConfig config = command->config;
  const std::string &json_path = command->json_path, &csv_path = command->csv_path;
  Progress progress(command->quiet);
  std::vector<ExperimentReport> reports;
  for (uint64_t tokens : command->token_counts) {
    config.tokens = tokens;
    auto report = run_experiment(config, std::ref(progress));
    if (!report.ok()) return fail(report.status().to_string());
    std::fputs(report_summary(*report).c_str(), stdout);
    reports.push_back(std::move(report).value());
  }
  if (!json_path.empty()) {
    if (Status s = write_text_file(json_path, report_json(reports)); !s.ok()) {
      return fail("--json: " + s.message());
    }
    const std::string svg = std::filesystem::path(json_path).replace_extension(".svg").string();
    if (Status s = write_text_file(svg, report_svg(reports)); !s.ok()) return fail(s.message());
  }
  if (!csv_path.empty()) {
    if (Status s = write_text_file(csv_path, report_csv(reports)); !s.ok()) {
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
  ExperimentFlags flags(experiment);
  int rc = 0;
  experiment->callback([&] { rc = run_experiment_command(flags); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  return rc;
}
