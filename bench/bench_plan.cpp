// Benchmark of LazyLLM's host-side decode plan (prune/lazy_plan.h): what DecodeStep costs a step
// after a pruned prefill, the same for every backend (a GPU waits for it between layers).
//
// Built by CMake as build/lazyllm_bench_plan.
// Run: build/lazyllm_bench_plan [--layers L,...] [--prompt-len N,...] [--reps R]
//   Each (layers, prompt) pair: a prefill pruned by the default schedule (random importance, so
//   the choice is spread over the prompt), then
//     "complete": the step that computes every deferred pair (LazyDecode::kComplete's first step);
//     "reselect": the paper's first decode step, random importance at each pruning layer.
//   Each is timed R times on a fresh copy of the index (the copy outside the timing), alone and
//   with key_runs() over each plan of more than 16 rows (what the CUDA backend adds).
// Prints one JSON line per case: best and median microseconds, rows and keys planned.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cache/kv_index.h"
#include "lazyllm/lazyllm.h"
#include "prune/lazy_plan.h"
#include "prune/select.h"

namespace {

using namespace lazyllm;

std::vector<int> parse_list(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    char* end = nullptr;
    out.push_back(static_cast<int>(std::strtol(p, &end, 10)));
    if (end == p) break;
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

std::vector<float> random_scores(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> s(n);
  for (float& x : s) x = u(rng);
  return s;
}

// The index after a prefill of n tokens under `sched`, the selection made from random scores.
KVIndex pruned_prefill(const LayerSchedule& sched, int n, int n_ctx, std::mt19937& rng) {
  KVIndex index(sched.n_layers(), n_ctx);
  ForwardCounters counters;
  for (int t = 0; t < n; ++t) index.mark_prompt(t, true);
  std::vector<int32_t> alive(n), prev;
  for (int t = 0; t < n; ++t) alive[t] = t;
  const PrefillPlan plan = plan_prefill(n, sched);
  for (int l = 0; l < sched.n_layers(); ++l) {
    prev.clear();
    if (plan.selects[l]) {
      prev = alive;
      const std::vector<int> kept = select_top(random_scores(alive.size() - 1, rng), plan.count[l] - 1);
      std::vector<int32_t> next;
      next.reserve(plan.count[l]);
      for (int i : kept) next.push_back(alive[i]);
      next.push_back(alive.back());
      alive = std::move(next);
    }
    record_prefill_layer(index, counters, l, prev, alive);
  }
  return index;
}

struct Timing {
  double best_us = 0, median_us = 0;
  int64_t rows = 0, keys = 0;
};

// `runs`: also split each plan of more than 16 rows into its two runs of key slots (key_runs), as
// the CUDA backend does for its attention kernels.
Timing time_step(const KVIndex& start, const LayerSchedule& sched, int reps, bool runs, std::mt19937& rng) {
  std::vector<double> us;
  std::vector<int32_t> ends;
  Timing t;
  const std::vector<float> scores = random_scores(start.n_ctx() + 1, rng);
  for (int r = 0; r < reps; ++r) {
    KVIndex index = start;
    ForwardCounters counters;
    int64_t rows = 0, keys = 0;
    const auto t0 = std::chrono::steady_clock::now();
    DecodeStep step(index, counters, sched, start.tokens());
    std::span<const float> importance;
    for (int l = 0; l < sched.n_layers(); ++l) {
      const DecodeLayerPlan& plan = step.next_layer(importance);
      rows += static_cast<int64_t>(plan.rows.size());
      keys += static_cast<int64_t>(plan.keys.size());
      if (runs && plan.rows.size() > 16) key_runs(plan, ends);
      importance =
          plan.want_importance ? std::span<const float>(scores.data(), plan.keys.size()) : std::span<const float>();
    }
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    t.rows = rows, t.keys = keys;
  }
  std::sort(us.begin(), us.end());
  t.best_us = us.front(), t.median_us = us[us.size() / 2];
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> layers = {6, 22, 32}, prompts = {4096, 16384, 32768};
  int reps = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--layers" && i + 1 < argc) layers = parse_list(argv[++i]);
    else if (a == "--prompt-len" && i + 1 < argc) prompts = parse_list(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: %s [--layers L,...] [--prompt-len N,...] [--reps R]\n", argv[0]);
      return 2;
    }
  }
  std::mt19937 rng(7);
  for (int L : layers) {
    const LayerSchedule lazy = LayerSchedule::from(PruneSchedule::default_for(L), L);
    const LayerSchedule full = LayerSchedule::baseline(L);
    for (int n : prompts) {
      const KVIndex start = pruned_prefill(lazy, n, n + 1, rng);
      for (const char* rule : {"complete", "reselect"}) {
        const bool complete = rule[0] == 'c';
        const LayerSchedule& s = complete ? full : lazy;
        const Timing t = time_step(start, s, reps, false, rng), r = time_step(start, s, reps, true, rng);
        nlohmann::json j = {{"layers", L},
                            {"prompt", n},
                            {"rule", rule},
                            {"reps", reps},
                            {"best_us", t.best_us},
                            {"median_us", t.median_us},
                            {"with_key_runs_best_us", r.best_us},
                            {"rows", t.rows},
                            {"keys", t.keys},
                            {"ns_per_key", t.keys ? 1000.0 * t.best_us / static_cast<double>(t.keys) : 0.0}};
        std::printf("%s\n", j.dump().c_str());
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
