// An experiment's outputs: the full report as JSON, per-query rows as CSV, an SVG with needle
// recall by depth and swap-in latency CDFs per tier, and the short human summary.
#pragma once

#include <string>

#include "experiment/experiment.h"

namespace lmkv {

std::string report_json(const ExperimentReport& report);
std::string report_csv(const ExperimentReport& report);
std::string report_svg(const ExperimentReport& report);
std::string report_summary(const ExperimentReport& report);

// Writes `text` to `path`; the error names the path.
Status write_text_file(const std::string& path, const std::string& text);

}  // namespace lmkv
