// Runs the baseline and LazyLLM schedules on the same samples: prompt from the dataset's
// template, LongBench's middle truncation, greedy generation, score, TTFT and computed fraction.
// Schedules alternate within each sample, so machine noise hits them alike.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eval/datasets.h"
#include "eval/result.h"
#include "eval/sample.h"
#include "lazyllm/lazyllm.h"

namespace lazyllm::eval {

struct NamedSchedule {
  std::string name;        // "baseline", "lazy" or the spec as given
  PruneSchedule schedule;  // empty for the baseline
};

struct Progress {
  int done = 0, total = 0;  // samples (every schedule run), resumed ones included
  int resumed = 0;          // samples found complete in the log at start
  double elapsed_s = 0;     // in this process
  double eta_s = -1;        // -1 until a sample has run here
};

struct RunOptions {
  std::string model_path, data_path;  // identify the run in the log
  std::vector<NamedSchedule> schedules;  // the first must be the baseline (empty schedule)
  int n_ctx = 0;      // 0: the model's trained context
  int n_threads = 0;  // 0: all cores
  Device device = Device::Cpu;
  GpuWeights gpu_weights = GpuWeights::kNative;
  bool gpu_warmup = true;                           // SessionOptions::gpu_warmup
  bool gpu_weight_copies = true;                    // SessionOptions::gpu_weight_copies
  PrunePolicy prune_policy = PrunePolicy::kAlways;  // a schedule's quality is measured as given
  // Each prompt's document (the template through its last {context} before {input}) computed
  // without pruning first, then the rest under each schedule, as the server's prefix cache serves
  // a question about a document it holds (Session::keep_prefix); TTFT and computed fraction are
  // the rest's.
  bool cached_context = false;
  int limit = 0;      // 0: every sample; else the first `limit`
  std::optional<Metric> metric;         // overrides every dataset's metric
  std::optional<int> max_new_tokens;    // overrides every dataset's generation length
  DatasetConfigs configs;
  std::string config_text;  // the dataset config file's contents (part of the run's identity)
  std::string log_path;     // per-sample log to resume from and append to; empty: none
  // Which of the data file's samples `samples` holds, when not all in order (part of the run's
  // identity, so a log of another subset is refused); their indices must be 0, 1, ...
  std::string subset;
  std::function<void(const Progress&)> on_progress;
};

// The settings a sample runs with, overrides applied.
DatasetConfig settings_for(const Sample& s, const RunOptions& o);

// Checks every sample before anything runs (template, metric applicable to its answers and
// classes, a budget for the prompt) and throws Error naming the first bad one.
void validate(const std::vector<Sample>& samples, const RunOptions& o, int n_ctx);

// Results for the first `limit` samples x every schedule, in sample then schedule order; those
// already in the log are read back instead of run.
std::vector<SampleResult> run_eval(const std::shared_ptr<const Model>& model, const std::vector<Sample>& samples,
                                   const RunOptions& o);

// The run's identity as stored in the log header ("check" must match to resume).
nlohmann::json run_header(const Model& model, const RunOptions& o, int n_ctx, size_t n_samples);

}  // namespace lazyllm::eval
