#include "experiment/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

namespace lmkv {
namespace {

using nlohmann::json;

const char* device_name(AttentionDevice d) { return d == AttentionDevice::kGpu ? "gpu" : "cpu"; }

std::string bytes_text(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  return fmt::format("{:.1f} {}", bytes, units[u]);
}

json report_object(const ExperimentReport& r) {
  const ExperimentConfig& c = r.config;
  json j;
  j["config"] = {{"tokens", c.tokens},
                 {"layers", c.layers},
                 {"heads", c.heads},
                 {"kv_heads", c.kv_heads},
                 {"head_dim", c.head_dim},
                 {"block", c.block_tokens},
                 {"top_k", c.top_k},
                 {"chunk", c.chunk_tokens},
                 {"device", device_name(c.device)},
                 {"gpu_capacity_bytes", c.gpu_capacity_bytes},
                 {"host_capacity_bytes", c.host_capacity_bytes},
                 {"data_dir", c.data_dir},
                 {"backend", index_backend_name(c.backend)},
                 {"int8_screening", c.int8_screening},
                 {"landmark", landmark_source_name(c.landmark)},
                 {"queries", c.queries},
                 {"exact_queries", c.exact_queries},
                 {"seed", c.seed}};
  j["device"] = r.device;
  j["index_backend"] = r.index_backend;
  j["blocks_per_head"] = r.blocks_per_head;
  j["ingest"] = {{"seconds", r.ingest_seconds}, {"tokens_per_s", r.ingest_tokens_per_s}};
  json recall = json::array();
  for (size_t i = 0; i < r.needle_depths.size(); ++i) {
    recall.push_back({{"depth", r.needle_depths[i]}, {"recall", r.needle_recall[i]}});
  }
  j["needle_recall"] = recall;
  j["relative_error"] = {{"max", r.max_relative_error}, {"mean", r.mean_relative_error}};
  j["decode_step_us"] = {{"p50", r.step_p50_us}, {"p99", r.step_p99_us}};
  j["store"] = json::parse(r.store.to_json());
  json peaks;
  for (int t = 0; t < kTierCount; ++t) peaks[tier_name(Tier(t))] = r.peak_bytes[t];
  peaks["disk"] = r.store.tier(Tier::kDisk).bytes_in;  // everything written to disk
  j["peak_bytes"] = peaks;
  json hit_rate;
  uint64_t lookups = 0;
  for (int t = 0; t < kTierCount; ++t) lookups += r.store.tiers[t].hits;
  for (int t = 0; t < kTierCount; ++t) {
    hit_rate[tier_name(Tier(t))] = lookups ? double(r.store.tiers[t].hits) / lookups : 0.0;
  }
  j["hit_rate"] = hit_rate;
  j["total_seconds"] = r.total_seconds;
  return j;
}

}  // namespace

std::string report_json(const std::vector<ExperimentReport>& reports) {
  if (reports.size() == 1) return report_object(reports.front()).dump(2) + "\n";
  json runs = json::array();
  for (const ExperimentReport& r : reports) runs.push_back(report_object(r));
  return json{{"runs", runs}}.dump(2) + "\n";
}

std::string report_csv(const std::vector<ExperimentReport>& reports) {
  std::string out =
      "tokens,query,kind,needle,depth,step_us,search_us,page_in_us,attention_us,blocks_paged,"
      "needle_recall,relative_error\n";
  for (const ExperimentReport& r : reports) {
    for (const QueryRecord& q : r.queries) {
      out += fmt::format("{},{},{},{},{},{:.1f},{:.1f},{:.1f},{:.1f},{},{},{}\n", r.config.tokens,
                         q.query, q.needle >= 0 ? "needle" : "topic", q.needle, q.depth, q.step_us,
                         q.search_us, q.page_in_us, q.attention_us, q.blocks_paged,
                         q.needle_recall >= 0 ? fmt::format("{:.4f}", q.needle_recall) : "",
                         q.relative_error >= 0 ? fmt::format("{:.3e}", q.relative_error) : "");
    }
  }
  return out;
}

std::string report_svg(const std::vector<ExperimentReport>& reports) {
  // The CDFs come from the longest run; recall from every run.
  const ExperimentReport& r = *std::max_element(
      reports.begin(), reports.end(), [](const ExperimentReport& a, const ExperimentReport& b) {
        return a.config.tokens < b.config.tokens;
      });
  // Two panels side by side, 420 x 300 each: recall by depth (bars) and latency CDFs (lines).
  std::string s =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"880\" height=\"330\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"880\" height=\"330\" "
      "fill=\"white\"/>\n";
  const double x0 = 50, y0 = 270, w = 360, h = 220;
  auto axes = [&](double left, const std::string& title, const std::string& xlabel,
                  const std::string& ylabel) {
    s += fmt::format("<text x=\"{}\" y=\"30\" font-size=\"13\">{}</text>\n", left, title);
    s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", left,
                     y0, left + w);
    s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", left,
                     y0, y0 - h);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + w / 2,
                     y0 + 30, xlabel);
    s += fmt::format(
        "<text x=\"{}\" y=\"{}\" transform=\"rotate(-90 {} {})\" "
        "text-anchor=\"middle\">{}</text>\n",
        left - 35, y0 - h / 2, left - 35, y0 - h / 2, ylabel);
    for (int i = 0; i <= 4; ++i) {
      s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.2f}</text>\n", left - 4,
                       y0 - h * i / 4 + 4, i / 4.0);
    }
  };
  if (reports.size() == 1) {
    axes(x0, fmt::format("Needle recall@{} by depth ({} tokens)", r.config.top_k, r.config.tokens),
         "depth in the context", "recall");
    const size_t n = r.needle_depths.size();
    for (size_t i = 0; i < n; ++i) {
      const double bw = w / std::max<size_t>(n, 1);
      const double bh = h * r.needle_recall[i];
      s += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
          "fill=\"#3b75af\"/>\n",
          x0 + i * bw + 2, y0 - bh, bw - 4, bh);
      s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:g}</text>\n",
                       x0 + i * bw + bw / 2, y0 + 14, r.needle_depths[i]);
    }
  } else {
    // Heat map: a row per context length (shortest at the bottom), a column per depth, white
    // for recall 0 to dark blue for 1, the value written in each cell.
    s += fmt::format(
        "<text x=\"{}\" y=\"30\" font-size=\"13\">Needle recall@{} heat map: depth x "
        "context length</text>\n",
        x0, r.config.top_k);
    const size_t rows = reports.size();
    const size_t cols = std::max<size_t>(1, reports.front().needle_depths.size());
    const double cw = w / cols, ch = h / rows;
    for (size_t row = 0; row < rows; ++row) {
      const ExperimentReport& run = reports[row];
      const double y = y0 - (row + 1) * ch;
      s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", x0 - 4,
                       y + ch / 2 + 4, run.config.tokens);
      for (size_t col = 0; col < run.needle_recall.size() && col < cols; ++col) {
        const double v = run.needle_recall[col];
        const int shade = int(255 - 200 * v);
        s += fmt::format(
            "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
            "fill=\"rgb({},{},255)\" stroke=\"white\"/>\n",
            x0 + col * cw, y, cw, ch, shade, shade);
        s += fmt::format(
            "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"{}\">{:.2f}</text>\n",
            x0 + col * cw + cw / 2, y + ch / 2 + 4, v > 0.5 ? "white" : "black", v);
      }
    }
    for (size_t col = 0; col < reports.front().needle_depths.size(); ++col) {
      s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:g}</text>\n",
                       x0 + col * cw + cw / 2, y0 + 14, reports.front().needle_depths[col]);
    }
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">depth in the context</text>\n",
                     x0 + w / 2, y0 + 30);
  }
  // Swap-in latency CDFs: log-scaled x from 1 us to the largest p99.9.
  const double x1 = 490;
  axes(x1, "Swap-in latency CDF per source tier", "latency (us, log scale)", "fraction");
  double top_us = 10;
  for (int t = 0; t < kTierCount; ++t) {
    if (r.store.swap_in_latency[t].count() > 0) {
      top_us = std::max(top_us, r.store.swap_in_latency[t].quantile_ns(0.999) / 1e3);
    }
  }
  const double decades = std::max(1.0, std::ceil(std::log10(top_us)));
  for (int i = 0; i <= int(decades); ++i) {
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">1e{}</text>\n",
                     x1 + w * i / decades, y0 + 14, i);
  }
  const char* colours[] = {"#2a9d3f", "#3b75af", "#c4432b"};
  for (int t = 0; t < kTierCount; ++t) {
    const LatencyHistogram& hist = r.store.swap_in_latency[t];
    if (hist.count() == 0) continue;
    std::string points;
    for (int p = 0; p <= 100; ++p) {
      const double q = std::min(0.999, p / 100.0);
      const double us = std::max(1.0, hist.quantile_ns(q) / 1e3);
      points += fmt::format("{:.1f},{:.1f} ", x1 + w * std::log10(us) / decades, y0 - h * q);
    }
    s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                     points, colours[t]);
    s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"{}\">{} ({} page-ins)</text>\n", x1 + 10,
                     y0 - h + 14 * t + 10, colours[t], tier_name(Tier(t)), hist.count());
  }
  s += "</svg>\n";
  return s;
}

std::string report_summary(const ExperimentReport& r) {
  const ExperimentConfig& c = r.config;
  std::string s;
  s += fmt::format(
      "lmkv experiment: {} tokens, {} layers x {} heads ({} KV) x {}, B={}, top-k={}, "
      "{} landmarks, index {}, device {}\n",
      c.tokens, c.layers, c.heads, c.kv_heads, c.head_dim, c.block_tokens, c.top_k,
      landmark_source_name(c.landmark), r.index_backend, r.device);
  s += fmt::format("  ingest          {:.1f} s, {:.0f} tokens/s ({} blocks per head)\n",
                   r.ingest_seconds, r.ingest_tokens_per_s, r.blocks_per_head);
  s += "  needle recall   ";
  for (size_t i = 0; i < r.needle_depths.size(); ++i) {
    s += fmt::format("{:g}:{:.2f} ", r.needle_depths[i], r.needle_recall[i]);
  }
  s += "\n";
  if (r.max_relative_error >= 0) {
    s += fmt::format("  vs exact        relative error max {:.2e}, mean {:.2e}\n",
                     r.max_relative_error, r.mean_relative_error);
  }
  s += fmt::format("  decode step     p50 {:.0f} us, p99 {:.0f} us ({} layers)\n", r.step_p50_us,
                   r.step_p99_us, c.layers);
  s += "  tier      hits      bytes in     bytes out    swap-in p50 / p99      peak\n";
  for (int t = 0; t < kTierCount; ++t) {
    const TierCounters& tc = r.store.tiers[t];
    const LatencyHistogram& h = r.store.swap_in_latency[t];
    const double peak = t == int(Tier::kDisk) ? double(tc.bytes_in) : double(r.peak_bytes[t]);
    s += fmt::format("  {:<6} {:>8}  {:>12} {:>12}  {:>9.1f} / {:<9.1f} us {:>10}\n",
                     tier_name(Tier(t)), tc.hits, bytes_text(double(tc.bytes_in)),
                     bytes_text(double(tc.bytes_out)), h.count() ? h.quantile_ns(0.5) / 1e3 : 0.0,
                     h.count() ? h.quantile_ns(0.99) / 1e3 : 0.0, bytes_text(peak));
  }
  s += fmt::format("  total           {:.1f} s\n", r.total_seconds);
  return s;
}

Status write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out || !(out << text) || !out.flush()) {
    return Status::IOError(fmt::format("cannot write {}", path));
  }
  return Status::Ok();
}

}  // namespace lmkv
