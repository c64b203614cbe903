// Aggregates per-sample results into per-schedule and per-dataset figures, and writes them as
// JSON, a Markdown table and a PNG plot (score against TTFT speedup, one point per schedule).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/result.h"

namespace lazyllm::eval {

struct Aggregate {
  int samples = 0;
  double score = 0;              // 0-100: mean over samples (overall: mean over datasets)
  double ttft_ms = 0;            // mean over samples
  double computed_fraction = 0;  // mean over samples
  double speedup = 0;            // baseline's mean TTFT / this mean TTFT (same samples)
};

struct ScheduleReport {
  std::string name;
  Aggregate overall;
  std::map<std::string, Aggregate> datasets;
};

struct Report {
  std::vector<std::string> datasets;       // in order of first appearance
  std::vector<ScheduleReport> schedules;   // baseline first
};

// `schedule_names` in report order, the baseline first. Every sample must have a result for
// every schedule (run_eval guarantees it).
Report summarize(const std::vector<SampleResult>& results, const std::vector<std::string>& schedule_names);

nlohmann::json to_json(const Report& r);
std::string to_markdown(const Report& r);
// Writes `png_path` with gnuplot (data and script beside it). Throws Error if gnuplot cannot
// be run or fails.
void write_plot(const Report& r, const std::string& png_path, const std::string& title);

}  // namespace lazyllm::eval
