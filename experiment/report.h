// An experiment's outputs: the full report as JSON, per-query rows as CSV, an SVG with needle
// recall by depth and swap-in latency CDFs per tier, and the short human summary.
#pragma once

#include <string>
#include <vector>

#include "experiment/experiment.h"

namespace lmkv {

// One run: the report object. Several context lengths: {"runs": [report, ...]}.
std::string report_json(const std::vector<ExperimentReport>& reports);
// One row per query of every run, with the run's context length.
std::string report_csv(const std::vector<ExperimentReport>& reports);
// Needle recall by depth (bars for one run; a heat map over depth and length for several) and
// the swap-in latency CDFs of the longest run.
std::string report_svg(const std::vector<ExperimentReport>& reports);
std::string report_summary(const ExperimentReport& report);

// Writes `text` to `path`; the error names the path.
Status write_text_file(const std::string& path, const std::string& text);

}  // namespace lmkv
