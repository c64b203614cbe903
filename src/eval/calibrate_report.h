// A calibration's results as JSON, Markdown tables and the score-vs-speedup plot of its Pareto
// front (eval/report.h draws it).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "eval/calibrate_run.h"

namespace lazyllm::eval {

nlohmann::json to_json(const Measurement& m);
nlohmann::json to_json(const Calibration& c, const Goal& goal);
std::string to_markdown(const Calibration& c, const Goal& goal);
// The refinement's Pareto front, one point per schedule. Throws Error as write_plot does.
void write_front_plot(const Calibration& c, const std::string& png_path, const std::string& title);

}  // namespace lazyllm::eval
