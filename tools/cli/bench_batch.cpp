#include "bench_batch.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <tuple>

#include "common.h"
#include "runtime/batch.h"

namespace lazyllm::cli {
namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// Per prompt length and batch size B: B sessions of one SessionBatch prefill their own random
// prompts in one step, then decode gen_len - 1 greedy tokens each, all B in every step, each
// under the schedule (LazyLLM's decode steps re-select and revive per sequence). Reports the
// decode steps' aggregate tokens/s (B tokens a step) and the time per step.
int bench_batch(const BatchBenchArgs& a) {
  if (a.gen_len < 2) throw Error("--batch needs --gen-len of at least 2 (it measures decode steps)");
  auto model = Model::load(a.model, a.host_weights);
  const ModelConfig& c = model->config();
  SessionBatch batch(model,
                     SessionBatchOptions{
                         .n_threads = a.threads, .device = a.device, .gpu_weights = a.gpu_weights, .serial = a.serial});
  std::string schedule_name = "baseline";
  PruneSchedule prune;
  if (a.prune.enabled()) {
    const auto schedules = a.prune.resolve_all(c.n_layers, a.model);
    if (schedules.size() != 1)
      throw Error("--batch runs every sequence under one schedule: give --lazy or one --prune");
    std::tie(schedule_name, prune) = schedules[0];
  }
  std::mt19937_64 rng(a.seed);
  std::uniform_int_distribution<int32_t> dist(0, c.n_vocab - 1);
  for (int n : a.prompt_lens) {
    for (int b : a.batches) {
      SessionOptions o;
      o.n_ctx = n + a.gen_len;
      o.fast_math = !a.f32_math;
      o.device = a.device;
      o.prune = prune;
      o.prune_policy = a.prune.policy();
      std::vector<std::unique_ptr<Session>> sessions;
      std::vector<std::vector<int32_t>> prompts(b, std::vector<int32_t>(n));
      for (int i = 0; i < b; ++i) {
        sessions.push_back(batch.new_session(o));
        for (auto& t : prompts[i]) t = dist(rng);
      }
      std::vector<double> tok_s, step_ms;
      for (int rep = 0; rep < a.warmup + a.reps; ++rep) {
        std::vector<SequenceStep> steps(b);
        std::vector<int32_t> next(b);
        for (int i = 0; i < b; ++i) {
          sessions[i]->reset();
          steps[i] = {sessions[i].get(), prompts[i], true};
        }
        batch.step(steps);
        const auto t0 = std::chrono::steady_clock::now();
        for (int k = 1; k < a.gen_len; ++k) {
          for (int i = 0; i < b; ++i) {
            next[i] = greedy_token(sessions[i]->logits());
            steps[i] = {sessions[i].get(), std::span(&next[i], 1), false};
          }
          batch.step(steps);
        }
        const double ms = ms_since(t0);
        if (rep < a.warmup) continue;
        tok_s.push_back(b * (a.gen_len - 1) / (ms / 1000.0));
        step_ms.push_back(ms / (a.gen_len - 1));
      }
      const Summary ts = summarize(tok_s), sm = summarize(step_ms);
      if (a.json) {
        nlohmann::json j = {{"model", a.model},
                            {"prompt_len", n},
                            {"batch", b},
                            {"gen_len", a.gen_len},
                            {"reps", a.reps},
                            {"threads", batch.threads()},
                            {"fast_math", !a.f32_math},
                            {"decode_tok_s_aggregate", to_json(ts)},
                            {"decode_step_ms", to_json(sm)},
                            {"cpu_kernels", to_json(cpu_kernels())},
                            {"host_weights", a.device == Device::Cpu ? model->host_weights() : "none"},
                            {"device", device_name(a.device)},
                            {"gpu", a.device == Device::Cuda ? device_description(Device::Cuda) : "none"},
                            {"serial", a.serial},
                            {"schedule", schedule_name},
                            {"spec", prune.to_string()},
                            {"pruning", sessions[0]->stats().pruning}};
        std::cout << j.dump() << std::endl;
      } else {
        std::printf("prompt %6d | batch %3d%s | %s | decode %9.2f tok/s aggregate (%.2f per sequence), %8.2f ms/step\n",
                    n, b, a.serial ? " (serial)" : "", schedule_name.c_str(), ts.median, ts.median / b, sm.median);
      }
    }
  }
  return 0;
}

}  // namespace lazyllm::cli
