// lazyllm calibrate: searches LazyLLM schedules for a model on calibration data with the eval
// harness and prints the fastest within a loss budget (or the best reaching a target speedup)
// and the Pareto front; --save leaves it beside the model for --lazy. The search is in
// src/eval/calibrate*.
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

#include "commands.h"
#include "common.h"
#include "eval/calibrate_report.h"
#include "eval/calibrate_run.h"
#include "prune/saved_schedule.h"
#include "util/file_identity.h"

namespace lazyllm::cli {
namespace {

struct CalibrateArgs {
  std::string model, data, config, metric, out;
  int ctx = 0, threads = 0, max_new_tokens = 0;
  eval::SearchBudget budget;
  int per_run = 8;
  double max_loss = 1.0;
  double target = 0;
  double confidence = 0.9;
  CLI::Option* max_loss_opt = nullptr;
  CLI::Option* target_opt = nullptr;
  bool save = false, json = false;
  DeviceFlag device;
  std::string time_device;
  int time_samples = 16;
};

// On a terminal one line redrawn in place; otherwise a line when a run ends.
void show_calibrate_progress(const std::string& stage, int run, int runs, const eval::Progress& p) {
  const bool tty = isatty(STDERR_FILENO);
  if (!tty && p.done < p.total) return;
  std::fprintf(stderr, "%scalibrate: %s run %d/%d, %d/%d samples%s", tty ? "\r\033[K" : "", stage.c_str(), run, runs,
               p.done, p.total, tty ? "" : "\n");
  std::fflush(stderr);
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

SavedSchedule to_saved(const eval::Calibration& c, const CalibrateArgs& a, const eval::Goal& goal, Device device,
                       int n_layers) {
  const eval::Measurement& m = *c.choice.chosen;
  SavedSchedule s;
  s.schedule = m.spec;
  s.n_layers = n_layers;
  set_model_identity(s, a.model);
  const nlohmann::json data = file_identity(a.data, true);
  s.data_file = std::filesystem::path(a.data).filename().string();
  s.data_bytes = data.at("bytes").get<int64_t>();
  s.data_hash = data.at("fnv1a").get<std::string>();
  s.samples = c.refine.samples;
  s.score = m.score;
  s.baseline_score = c.refine.baseline.score;
  s.speedup = m.speedup;
  s.computed_fraction = m.computed_fraction;
  s.goal = goal.describe();
  s.device = c.timed_on.empty() ? std::string(device_name(device)) : c.timed_on;  // where the speedup holds
  s.date = utc_now();
  return s;
}

int calibrate(const CalibrateArgs& a) {
  namespace fs = std::filesystem;
  eval::Goal goal;
  goal.max_loss = a.max_loss;
  goal.max_loss_given = a.max_loss_opt->count() > 0;
  if (a.target_opt->count() > 0) goal.target_speedup = a.target;
  goal.confidence = a.confidence;
  goal.check();  // before the model loads: bad flags fail at once
  eval::CalibrateOptions o;
  o.goal = goal;
  o.budget = a.budget;
  o.schedules_per_run = a.per_run;
  eval::RunOptions& r = o.run;
  r.model_path = a.model;
  r.data_path = a.data;
  r.n_ctx = a.ctx;
  r.n_threads = a.threads;
  r.device = a.device.resolve();
  r.gpu_weights = a.device.weights();
  r.gpu_warmup = a.device.gpu_warmup;
  r.gpu_weight_copies = a.device.gpu_weight_copies;
  r.prune_policy = PrunePolicy::kAlways;  // a schedule's effect is measured as given
  if (!a.metric.empty()) {
    r.metric = eval::metric_from_name(a.metric);
    if (!r.metric) throw Error("unknown metric '" + a.metric + "' (" + eval::metric_names() + ")");
  }
  if (a.max_new_tokens > 0) r.max_new_tokens = a.max_new_tokens;
  if (!a.config.empty()) {
    std::ifstream in(a.config, std::ios::binary);
    if (!in) throw Error("cannot read dataset config '" + a.config + "'");
    r.config_text.assign(std::istreambuf_iterator<char>(in), {});
    r.configs = eval::DatasetConfigs::from_json_text(r.config_text, a.config);
  }
  const auto samples = eval::read_jsonl(a.data);
  auto model = Model::load(a.model, a.device.host_weights());
  const int n_layers = model->config().n_layers;
  if (n_layers < 2) throw Error("a model with one layer cannot be pruned: nothing to calibrate");
  o.out_dir = a.out;
  o.on_progress = show_calibrate_progress;
  if (!a.time_device.empty()) {
    o.time_device = parse_device(a.time_device);
    o.time_samples = a.time_samples;
  }

  const eval::Calibration c = eval::calibrate(model, samples, o);
  if (isatty(STDERR_FILENO)) std::fprintf(stderr, "\r\033[K");
  nlohmann::json j = eval::to_json(c, goal);
  j["model"] = a.model;
  j["data"] = a.data;
  j["device"] = device_name(r.device);
  if (r.device == Device::Cuda) j["gpu"] = device_description(Device::Cuda);
  if (c.timed_on == "cpu" || r.device == Device::Cpu) {
    j["cpu"] = device_description(Device::Cpu);
    j["threads"] = a.threads;  // 0: all cores
  }
  j["n_layers"] = n_layers;
  const std::string markdown = eval::to_markdown(c, goal);
  std::string saved;
  if (a.save) {
    if (!c.choice.chosen) throw Error("nothing to save: " + c.choice.why);
    saved = saved_schedule_path(a.model);
    write_saved_schedule(saved, to_saved(c, a, goal, r.device, n_layers));
    j["saved"] = saved;
  }
  if (!a.out.empty()) {
    write_file((fs::path(a.out) / "results.json").string(), j.dump(2) + "\n");
    write_file((fs::path(a.out) / "results.md").string(), markdown);
    try {
      eval::write_front_plot(c, (fs::path(a.out) / "plot.png").string(),
                             "Pareto front, score vs TTFT speedup: " + fs::path(a.data).filename().string());
    } catch (const Error& e) {
      std::fprintf(stderr, "warning: no plot: %s\n", e.what());  // the tables are still written
    }
  }
  if (a.json) std::cout << j.dump() << std::endl;
  else std::cout << markdown;
  if (!saved.empty()) std::fprintf(stderr, "saved %s: run, bench, eval and serve use it with --lazy\n", saved.c_str());
  return 0;
}

}  // namespace

void add_calibrate_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<CalibrateArgs>();
  CLI::App* cmd = app.add_subcommand("calibrate", "Search LazyLLM schedules for a model on calibration data");
  cmd->add_option("-m,--model", a->model, "GGUF model file")->required();
  cmd->add_option("--data", a->data, "Calibration samples, LongBench-format JSONL (as eval reads)")->required();
  a->max_loss_opt = cmd->add_option("--max-loss", a->max_loss,
                                    "Score points (0-100) the chosen schedule may lose against the baseline")
                        ->capture_default_str();
  a->target_opt = cmd->add_option("--target-speedup", a->target,
                                  "Choose the best score among schedules reaching this TTFT speedup instead "
                                  "(within --max-loss too when it is given)");
  cmd->add_option("--confidence", a->confidence,
                  "Judge the loss by its one-sided upper bound at this level (loss + z x its paired standard "
                  "error over the samples), so luck on few samples does not pass; 0 judges the measured loss")
      ->capture_default_str();
  cmd->add_option("--max-samples", a->budget.max_samples,
                  "Samples the refinement runs on (the coarse grid: a quarter), spread over the file")
      ->capture_default_str();
  cmd->add_option("--max-candidates", a->budget.max_candidates, "Distinct schedules measured in all")
      ->capture_default_str();
  cmd->add_option("--schedules-per-run", a->per_run,
                  "Schedules measured together with the baseline (each holds a KV cache)")
      ->capture_default_str();
  cmd->add_option("--config", a->config, "JSON of per-dataset template / metric / max_new_tokens / first_line_only");
  cmd->add_option("--metric", a->metric, "Score every dataset with this metric (" + eval::metric_names() + ")");
  cmd->add_option("--max-new-tokens", a->max_new_tokens, "Generation length for every dataset")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("-c,--ctx", a->ctx, "Context size; longer prompts are cut in the middle (default: the model's)")
      ->check(CLI::Range(1, 1 << 22));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_option("--out", a->out,
                  "Directory for results.json/.md, plot.png and the per-run logs a repeated command resumes from");
  cmd->add_flag("--save", a->save, "Write the chosen schedule beside the model (MODEL.lazy.json) for --lazy");
  cmd->add_flag("--json", a->json, "Print one JSON object instead of Markdown");
  a->device.add_to(cmd);
  cmd->add_option("--time-device", a->time_device,
                  "Time TTFT on this device instead (cpu, cuda or auto), for a model that will run elsewhere "
                  "than the scores are computed: each stage is rerun there with one generated token")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  cmd->add_option("--time-samples", a->time_samples, "Samples per stage that --time-device times")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->callback([a, &exit_code] { exit_code = calibrate(*a); });
}

}  // namespace lazyllm::cli
