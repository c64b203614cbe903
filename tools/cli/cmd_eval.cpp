// lazyllm eval: task scores of the baseline and LazyLLM schedules on LongBench-format JSONL,
// with TTFT speedup and computed fraction; resumable through --out DIR. The work is in src/eval/.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

#include "commands.h"
#include "common.h"
#include "eval/report.h"
#include "eval/runner.h"

namespace lazyllm::cli {
namespace {

struct EvalArgs {
  std::string model, data, config, metric, out;
  int ctx = 0, threads = 0, limit = 0, max_new_tokens = 0;
  bool json = false, cached_context = false, cost_model = false;
  PruneFlags prune;
  DeviceFlag device;
};

std::string duration(double s) {
  char buf[32];
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  return buf;
}

// On a terminal one line redrawn in place; otherwise a line every 10 s and at the end.
void show_progress(const eval::Progress& p) {
  static double last_line = -1e9;
  const bool tty = isatty(STDERR_FILENO);
  if (!tty && p.done < p.total && p.elapsed_s - last_line < 10) return;
  last_line = p.elapsed_s;
  std::fprintf(stderr, "%seval: %d/%d samples", tty ? "\r\033[K" : "", p.done, p.total);
  if (p.resumed) std::fprintf(stderr, " (%d resumed)", p.resumed);
  std::fprintf(stderr, ", %s elapsed", duration(p.elapsed_s).c_str());
  if (p.eta_s >= 0 && p.done < p.total) std::fprintf(stderr, ", ETA %s", duration(p.eta_s).c_str());
  std::fprintf(stderr, tty ? "" : "\n");
  std::fflush(stderr);
}

int run_eval_command(const EvalArgs& a) {
  namespace fs = std::filesystem;
  eval::RunOptions o;
  o.model_path = a.model;
  o.data_path = a.data;
  o.n_ctx = a.ctx;
  o.n_threads = a.threads;
  o.device = a.device.resolve();
  o.gpu_weights = a.device.weights();
  o.gpu_warmup = a.device.gpu_warmup;
  o.gpu_weight_copies = a.device.gpu_weight_copies;
  o.prune_policy = a.cost_model ? PrunePolicy::kAuto : a.prune.policy();
  o.limit = a.limit;
  o.cached_context = a.cached_context;
  if (!a.metric.empty()) {
    o.metric = eval::metric_from_name(a.metric);
    if (!o.metric) throw Error("unknown metric '" + a.metric + "' (" + eval::metric_names() + ")");
  }
  if (a.max_new_tokens > 0) o.max_new_tokens = a.max_new_tokens;
  if (!a.config.empty()) {
    std::ifstream in(a.config, std::ios::binary);
    if (!in) throw Error("cannot read dataset config '" + a.config + "'");
    o.config_text.assign(std::istreambuf_iterator<char>(in), {});
    o.configs = eval::DatasetConfigs::from_json_text(o.config_text, a.config);
  }
  const auto samples = eval::read_jsonl(a.data);
  auto model = Model::load(a.model, a.device.host_weights());
  o.schedules.push_back({"baseline", {}});
  for (auto& [name, sched] : a.prune.resolve_all(model->config().n_layers, a.model)) o.schedules.push_back({name, sched});
  if (!a.out.empty()) {
    std::error_code ec;
    fs::create_directories(a.out, ec);
    if (ec) throw Error("cannot create output directory '" + a.out + "': " + ec.message());
    o.log_path = (fs::path(a.out) / "samples.jsonl").string();
  }
  o.on_progress = show_progress;

  const auto results = eval::run_eval(model, samples, o);
  if (isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
  std::vector<std::string> names;
  for (const auto& s : o.schedules) names.push_back(s.name);
  const eval::Report report = eval::summarize(results, names);
  nlohmann::json j = eval::to_json(report);
  j["model"] = a.model;
  j["data"] = a.data;
  j["device"] = device_name(o.device);
  if (o.device == Device::Cuda) j["gpu"] = device_description(Device::Cuda);
  j["samples"] = results.size() / o.schedules.size();
  j["cached_context"] = o.cached_context;
  j["cost_model"] = a.cost_model;
  for (size_t i = 0; i < o.schedules.size(); ++i) j["results"][i]["spec"] = o.schedules[i].schedule.to_string();
  const std::string markdown = eval::to_markdown(report);
  if (!a.out.empty()) {
    write_file((fs::path(a.out) / "results.json").string(), j.dump(2) + "\n");
    write_file((fs::path(a.out) / "results.md").string(), markdown);
    try {
      eval::write_plot(report, (fs::path(a.out) / "plot.png").string(),
                       "score vs TTFT speedup: " + fs::path(a.data).filename().string());
    } catch (const Error& e) {
      std::fprintf(stderr, "warning: no plot: %s\n", e.what());  // the tables are still written
    }
  }
  if (a.json) std::cout << j.dump() << std::endl;
  else std::cout << markdown;
  return 0;
}

}  // namespace

void add_eval_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Score the baseline and LazyLLM schedules on LongBench-format JSONL");
  cmd->add_option("-m,--model", a->model, "GGUF model file")->required();
  cmd->add_option("--data", a->data, "JSONL samples (input, context, answers, all_classes, length, dataset, _id)")
      ->required();
  cmd->add_option("--config", a->config, "JSON of per-dataset template / metric / max_new_tokens / first_line_only");
  cmd->add_option("--metric", a->metric, "Score every dataset with this metric (" + eval::metric_names() + ")");
  cmd->add_option("--max-new-tokens", a->max_new_tokens, "Generation length for every dataset")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("-c,--ctx", a->ctx, "Context size; longer prompts are cut in the middle (default: the model's)")
      ->check(CLI::Range(1, 1 << 22));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_option("--limit", a->limit, "Evaluate only the first N samples")->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--out", a->out, "Directory for results.json/.md, plot.png and the resumable samples.jsonl");
  cmd->add_flag("--cached-context", a->cached_context,
                "Compute each document without pruning first, untimed (as a server's prefix cache holds it), "
                "then the rest under each schedule");
  cmd->add_flag("--cost-model", a->cost_model,
                "Let the cost model leave unpruned the prompts where pruning cannot pay, as run and serve do "
                "(default: every schedule prunes every prompt it can)");
  cmd->add_flag("--json", a->json, "Print one JSON object instead of Markdown tables");
  a->prune.add_to(cmd, /*allow_many=*/true, /*with_policy=*/false);
  a->device.add_to(cmd);
  cmd->callback([a, &exit_code] { exit_code = run_eval_command(*a); });
}

}  // namespace lazyllm::cli
