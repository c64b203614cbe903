#include "eval/calibrate_run.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>

#include "eval/report.h"

namespace lazyllm::eval {
namespace {

Measurement measurement(const std::string& spec, const Aggregate& a) {
  Measurement m;
  m.spec = spec;
  m.score = a.score;
  m.ttft_ms = a.ttft_ms;
  m.speedup = a.speedup;
  m.computed_fraction = a.computed_fraction;
  return m;
}

// The standard error of `schedule`'s loss against the baseline in one run's results on
// `subset`: counting groups when the samples carry them (grouped_loss_se, `df` = groups - 1),
// else samples (paired_loss_se, `df` = 0).
double loss_se(const std::vector<SampleResult>& results, const std::vector<Sample>& subset, const std::string& schedule,
               int& df) {
  std::map<int, double> base;
  for (const auto& r : results)
    if (r.schedule == "baseline") base[r.index] = 100 * r.score;
  std::vector<double> b, s;
  std::vector<std::string> datasets, groups;
  bool grouped = false;
  for (const auto& r : results) {
    if (r.schedule != schedule || !base.count(r.index)) continue;
    b.push_back(base[r.index]);
    s.push_back(100 * r.score);
    datasets.push_back(r.dataset);
    groups.push_back(r.index >= 0 && r.index < static_cast<int>(subset.size()) ? subset[r.index].group : "");
    grouped = grouped || !groups.back().empty();
  }
  df = 0;
  return grouped ? grouped_loss_se(b, s, datasets, groups, df) : paired_loss_se(b, s, datasets);
}

// `n` of `all`, spread over it, renumbered from 0 as the harness's log counts.
std::vector<Sample> spread_subset(const std::vector<Sample>& all, int n) {
  std::vector<Sample> subset;
  for (int i : spread(static_cast<int>(all.size()), n)) {
    subset.push_back(all[i]);
    subset.back().index = static_cast<int>(subset.size()) - 1;
  }
  return subset;
}

// Runs `schedules` on `subset`, `per_run` at a time with the baseline alongside, and hands each
// run's results and summary to `take`. Logs go to DIR/STAGE/PREFIX-N.jsonl.
void run_in_groups(const std::shared_ptr<const Model>& model, const std::vector<Sample>& subset,
                   const std::string& which, const std::vector<PruneSchedule>& schedules, const CalibrateOptions& o,
                   const RunOptions& base, const std::string& stage, const std::string& prefix,
                   const std::function<void(int run, const std::vector<SampleResult>&, const Report&)>& take) {
  const int per_run = std::max(1, o.schedules_per_run);
  const int runs = std::max<int>(1, (static_cast<int>(schedules.size()) + per_run - 1) / per_run);
  for (int k = 0; k < runs; ++k) {
    RunOptions ro = base;
    ro.limit = 0;
    ro.subset = which;
    ro.schedules = {{"baseline", {}}};
    const size_t begin = static_cast<size_t>(k) * per_run, end = std::min(schedules.size(), begin + per_run);
    for (size_t i = begin; i < end; ++i) ro.schedules.push_back({schedules[i].to_string(), schedules[i]});
    if (!o.out_dir.empty()) {
      const std::filesystem::path dir = std::filesystem::path(o.out_dir) / stage;
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      if (ec) throw Error("cannot create '" + dir.string() + "': " + ec.message());
      ro.log_path = (dir / (prefix + "-" + std::to_string(k + 1) + ".jsonl")).string();
    }
    const std::string label = prefix == "run" ? stage : stage + " timing";
    if (o.on_progress) ro.on_progress = [&, k, label](const Progress& p) { o.on_progress(label, k + 1, runs, p); };
    std::vector<std::string> names;
    for (const auto& s : ro.schedules) names.push_back(s.name);
    const std::vector<SampleResult> results = run_eval(model, subset, ro);
    take(k, results, summarize(results, names));
  }
}

// Measures `schedules` on the spread subset of `n` samples; with a timing device, their TTFTs and
// speedups then come from a second pass there (one generated token, time_samples spread over the
// subset).
StageResult run_stage(const std::shared_ptr<const Model>& model, const std::vector<Sample>& all, int n,
                      const std::vector<PruneSchedule>& schedules, const CalibrateOptions& o,
                      const std::string& stage) {
  const std::vector<Sample> subset = spread_subset(all, n);
  const std::string which = "spread " + std::to_string(subset.size()) + " of " + std::to_string(all.size());
  StageResult r;
  r.samples = static_cast<int>(subset.size());
  double baseline_ttft = 0;
  int runs = 0;
  run_in_groups(model, subset, which, schedules, o, o.run, stage, "run",
                [&](int k, const std::vector<SampleResult>& results, const Report& rep) {
                  if (k == 0) r.baseline = measurement("", rep.schedules[0].overall);  // scores: the same every run
                  baseline_ttft += rep.schedules[0].overall.ttft_ms;
                  ++runs;
                  for (size_t i = 1; i < rep.schedules.size(); ++i) {
                    r.schedules.push_back(measurement(rep.schedules[i].name, rep.schedules[i].overall));
                    r.schedules.back().loss_se =
                        loss_se(results, subset, rep.schedules[i].name, r.schedules.back().loss_df);
                  }
                });
  if (o.time_device) {
    RunOptions timing = o.run;
    timing.device = *o.time_device;
    timing.max_new_tokens = 1;
    const std::vector<Sample> timed = spread_subset(subset, std::min(o.time_samples, r.samples));
    baseline_ttft = 0;
    runs = 0;
    run_in_groups(model, timed, "spread " + std::to_string(timed.size()) + " of " + which, schedules, o, timing, stage,
                  "time", [&](int, const std::vector<SampleResult>&, const Report& rep) {
                    baseline_ttft += rep.schedules[0].overall.ttft_ms;
                    ++runs;
                    for (size_t i = 1; i < rep.schedules.size(); ++i)
                      for (auto& m : r.schedules)
                        if (m.spec == rep.schedules[i].name) {
                          m.ttft_ms = rep.schedules[i].overall.ttft_ms;
                          m.speedup = rep.schedules[i].overall.speedup;
                        }
                  });
  }
  r.baseline.ttft_ms = baseline_ttft / std::max(1, runs);
  r.baseline.speedup = 1;
  return r;
}

}  // namespace

Calibration calibrate(const std::shared_ptr<const Model>& model, const std::vector<Sample>& samples,
                      const CalibrateOptions& o) {
  o.goal.check();
  if (o.schedules_per_run < 1) throw Error("--schedules-per-run must be at least 1");
  const int n_layers = model->config().n_layers;
  Calibration c;
  if (o.time_device && o.time_samples < 1) throw Error("--time-samples must be at least 1");
  c.plan = plan_search(o.budget, static_cast<int>(samples.size()));
  c.timed_on = std::string(device_name(o.time_device ? *o.time_device : o.run.device));
  if (o.time_device) c.timed_samples = o.time_samples;
  // Every sample is checked up front, so a bad one fails before the first stage runs.
  RunOptions check = o.run;
  check.schedules = {{"baseline", {}}};
  check.limit = 0;
  validate(samples, check, o.run.n_ctx > 0 ? o.run.n_ctx : model->config().n_ctx_train);

  const std::vector<PruneSchedule> grid = coarse_grid(n_layers, c.plan.coarse_candidates);
  c.coarse = run_stage(model, samples, c.plan.coarse_samples, grid, o, "coarse");
  c.seeds = pick_seeds(c.coarse.baseline, c.coarse.schedules, o.goal, c.plan.seeds);
  std::set<std::string> measured;
  for (const auto& s : grid) measured.insert(s.to_string());
  const int left = o.budget.max_candidates - static_cast<int>(grid.size());
  const std::vector<PruneSchedule> refine = refinement(c.seeds, n_layers, measured, std::max(0, left));
  c.refine = run_stage(model, samples, c.plan.refine_samples, refine, o, "refine");

  std::vector<Measurement> points = c.refine.schedules;
  points.push_back(c.refine.baseline);
  c.front = pareto_front(points);
  c.choice = choose(c.refine.baseline, c.refine.schedules, o.goal);
  return c;
}

}  // namespace lazyllm::eval
