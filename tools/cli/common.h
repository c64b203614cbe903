// Pieces shared by the CLI commands.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "lazyllm/lazyllm.h"

namespace lazyllm::cli {

// --lazy / --prune flags, resolved against a model's depth.
struct PruneFlags {
  bool lazy = false;
  std::string spec;
  void add_to(CLI::App* cmd);
  bool enabled() const { return lazy || !spec.empty(); }
  PruneSchedule resolve(int n_layers) const;  // empty schedule when disabled
};

// Reads -p TEXT, -f FILE or standard input (in that order of preference).
std::string read_prompt(const std::string& text, const std::string& file, bool have_text);

// A one-line description of this machine's CPU for benchmark reports.
std::string cpu_description();

// A progress bar on stderr (only when stderr is a terminal).
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  void update(int done, int total);
  void finish();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
};

struct Summary {
  double median = 0, min = 0, max = 0;
};
Summary summarize(std::vector<double> v);
nlohmann::json to_json(const Summary& s);

}  // namespace lazyllm::cli
