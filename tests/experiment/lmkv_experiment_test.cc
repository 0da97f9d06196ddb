// `lmkv experiment` through the real binary: a small run's JSON holds every field, needles are all
// found with exact retrieval and given landmarks, the error against exact attention is within the
// attention tests' CPU bound, and bad flags exit non-zero with one line naming the flag.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"

namespace lmkv {
namespace {

struct Outcome {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

Outcome run_lmkv(const std::string& args) {
  const std::string command = std::string(LMKV_BINARY) + " " + args + " 2>&1";
  Outcome o;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return o;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) o.output.append(buffer, n);
  const int status = pclose(pipe);
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(LmkvExperiment, SmallRunReportsEveryFieldAndFindsEveryNeedle) {
  test::TempDir dir;
  const std::string json_path = dir.sub("report.json"), csv_path = dir.sub("queries.csv");
  // 20,000 tokens = 400 blocks; top-k 400 retrieves every block: exact retrieval.
  const Outcome o = run_lmkv(
      "experiment --tokens 20000 --layers 2 --heads 4 --kv-heads 2 "
      "--top-k 400 --queries 12 --exact-queries 2 --host-capacity 12M "
      "--device cpu --landmark given --no-int8-screening --quiet --data-dir " +
      dir.sub("data") + " --json " + json_path + " --csv " + csv_path);
  ASSERT_EQ(o.exit_code, 0) << o.output;
  EXPECT_NE(o.output.find("needle recall"), std::string::npos) << o.output;
  const nlohmann::json j = nlohmann::json::parse(read_file(json_path));
  EXPECT_FALSE(j["config"]["int8_screening"].get<bool>());
  for (const char* field :
       {"config", "device", "index_backend", "blocks_per_head", "ingest", "needle_recall",
        "relative_error", "decode_step_us", "store", "peak_bytes", "hit_rate", "total_seconds"}) {
    EXPECT_TRUE(j.contains(field)) << field;
  }
  EXPECT_GT(j["ingest"]["tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(j["blocks_per_head"].get<int>(), 400);
  ASSERT_EQ(j["needle_recall"].size(), 9u);
  for (const auto& r : j["needle_recall"]) EXPECT_EQ(r["recall"].get<double>(), 1.0) << r;
  // The CPU path's bound in the attention tests (retrieval_fixture.h).
  EXPECT_LE(j["relative_error"]["max"].get<double>(), 1e-5);
  EXPECT_GE(j["relative_error"]["max"].get<double>(), 0.0);
  EXPECT_GT(j["decode_step_us"]["p50"].get<double>(), 0);
  // A 12 MiB host tier (983 blocks of 12.8 KB) under 1,600 blocks: the disk tier served reads.
  EXPECT_GT(j["store"]["tiers"]["disk"]["hits"].get<uint64_t>(), 0u);
  EXPECT_GT(j["peak_bytes"]["host"].get<uint64_t>(), 0u);
  for (const char* tier : {"gpu", "host", "disk"}) EXPECT_TRUE(j["hit_rate"].contains(tier));
  // One CSV row per query, plus the header; the SVG beside the JSON.
  const std::string csv = read_file(csv_path);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 13);
  const std::string svg = read_file(dir.sub("report.svg"));
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("Needle recall"), std::string::npos);
  EXPECT_NE(svg.find("Swap-in latency"), std::string::npos);
}

TEST(LmkvExperiment, SeveralLengthsGiveOneRunEachAndARecallHeatMap) {
  test::TempDir dir;
  const std::string json_path = dir.sub("multi.json"), csv_path = dir.sub("multi.csv");
  const Outcome o = run_lmkv(
      "experiment --tokens 5000 12000 --top-k 8 --queries 9 --device cpu "
      "--quiet --data-dir " +
      dir.sub("data") + " --json " + json_path + " --csv " + csv_path);
  ASSERT_EQ(o.exit_code, 0) << o.output;
  const nlohmann::json j = nlohmann::json::parse(read_file(json_path));
  ASSERT_EQ(j["runs"].size(), 2u);
  EXPECT_EQ(j["runs"][0]["config"]["tokens"].get<int>(), 5000);
  EXPECT_TRUE(j["runs"][0]["config"]["int8_screening"].get<bool>());
  EXPECT_EQ(j["runs"][1]["config"]["tokens"].get<int>(), 12000);
  for (const auto& run : j["runs"]) EXPECT_EQ(run["needle_recall"].size(), 9u);
  const std::string csv = read_file(csv_path);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 2 * 9);
  const std::string svg = read_file(dir.sub("multi.svg"));
  EXPECT_NE(svg.find("heat map"), std::string::npos);
  // A cell per (length, depth).
  size_t cells = 0;
  for (size_t at = svg.find("fill=\"rgb("); at != std::string::npos;
       at = svg.find("fill=\"rgb(", at + 1)) {
    ++cells;
  }
  EXPECT_EQ(cells, 2u * 9u);
}

TEST(LmkvExperiment, BadFlagsExitNonZeroWithOneLineNamingTheFlag) {
  test::TempDir dir;
  const std::string data = " --data-dir " + dir.sub("data");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--tokens -5" + data, "--tokens"},
      {"--tokens 100 --block 200" + data, "--block 200"},
      {"--block 0" + data, "--block 0"},
      {"--host-capacity 1K" + data, "--host-capacity"},
      {"--host-capacity lots" + data, "--host-capacity"},
      {"--host-capacity 2222222222222222222222222222M" + data, "--host-capacity"},  // > 2^64
      {"--gpu-capacity 1" + std::string(400, '0') + data, "--gpu-capacity"},        // > a double
      {"--top-k 0" + data, "--top-k 0"},
      {"--heads 5 --kv-heads 2" + data, "--heads 5"},
      {"--data-dir /proc/lmkv-cannot-write-here", "--data-dir"},
      {"--backend nonsense" + data, "--backend"},
  };
  for (const auto& [args, flag] : cases) {
    const Outcome o = run_lmkv("experiment --quiet " + args);
    EXPECT_NE(o.exit_code, 0) << args;
    EXPECT_NE(o.output.find(flag), std::string::npos) << args << " -> " << o.output;
    // One line (CLI11's own parse errors add a "Run with --help" hint line).
    EXPECT_LE(std::count(o.output.begin(), o.output.end(), '\n'), 2) << o.output;
  }
}

}  // namespace
}  // namespace lmkv
