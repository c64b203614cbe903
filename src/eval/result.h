// The outcome of one sample under one schedule: what the per-sample log stores and reports read.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace lazyllm::eval {

struct SampleResult {
  int index = 0;          // the sample's position in the data file
  std::string id;         // its _id
  std::string dataset;
  std::string schedule;   // "baseline", "lazy" or the --prune spec as given
  double score = 0;       // 0-1, the best over the sample's answers
  double ttft_ms = 0;     // prefill + choosing the first token
  double computed_fraction = 1;  // SessionStats::prefill_computed_fraction
  int prompt_tokens = 0;  // after truncation
  bool truncated = false;
  int generated_tokens = 0;
  std::string prediction;
};

nlohmann::json to_json(const SampleResult& r);
// Throws Error naming `where` when a field is missing or mistyped.
SampleResult result_from_json(const nlohmann::json& j, const std::string& where);

}  // namespace lazyllm::eval
