// Per-dataset settings: prompt template, metric and generation length. LongBench's 21 datasets
// come with LongBench's own (config/dataset2prompt.json, dataset2maxlen.json, eval.py); any
// other dataset gets the generic template, a metric chosen from its name (see
// metric_for_name) and 32 new tokens, unless a JSON config says otherwise.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "eval/metrics.h"
#include "eval/sample.h"

namespace lazyllm::eval {

struct DatasetConfig {
  std::string prompt_template;  // with {context} and {input}; {{ and }} are literal braces
  Metric metric = Metric::kQaF1;
  int max_new_tokens = 32;
  bool first_line_only = false;  // score only the prediction's first line
  bool longbench = false;        // from LongBench's table
};

constexpr std::string_view kGenericTemplate = "{context}\n\n{input}";

// The metric for a dataset outside LongBench's table, from its name (first match wins):
// "count" -> count, "retrieval" -> retrieval, "summ" -> rouge_l, "code" -> code_sim,
// "class" -> classification, anything else -> qa_f1.
Metric metric_for_name(std::string_view dataset);

// LongBench's settings for one of its datasets, or nullopt.
std::optional<DatasetConfig> longbench_config(std::string_view dataset);

class DatasetConfigs {
 public:
  DatasetConfigs() = default;
  // Reads {"NAME": {"template": "...", "metric": "qa_f1", "max_new_tokens": 32,
  // "first_line_only": false}, ...}; every key optional. Throws Error on anything else.
  static DatasetConfigs from_json_file(const std::string& path);
  static DatasetConfigs from_json_text(const std::string& text, const std::string& where);

  // Settings for a dataset: the config file's entry over LongBench's table over the generic
  // defaults, field by field.
  DatasetConfig lookup(const std::string& dataset) const;

 private:
  struct Override {
    std::optional<std::string> prompt_template;
    std::optional<Metric> metric;
    std::optional<int> max_new_tokens;
    std::optional<bool> first_line_only;
  };
  std::map<std::string, Override> overrides_;
};

// Fills the template's {context} and {input} (as Python's str.format with those two fields).
// Throws Error on any other placeholder or an unmatched brace.
std::string render_prompt(std::string_view prompt_template, const Sample& s);
// The prompt up to the end of its document: the template rendered through its last {context}
// before any {input}. Empty when there is none (the prompt then starts with no document that
// several questions share).
std::string render_through_context(std::string_view prompt_template, const Sample& s);
// Throws Error if the template is not renderable (checked when a config is loaded).
void check_template(std::string_view prompt_template, const std::string& where);

}  // namespace lazyllm::eval
