// lazyllm bench: TTFT, prefill/decode throughput and the end-to-end time of the whole answer
// (TTFT + every decode step), repeated; baseline and LazyLLM alternate within one run so their
// ratios are measured under the same machine conditions. --cold measures what the first request
// at a new length sees (a fresh session, a prompt length not run before in the process).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <span>
#include <thread>

#include "bench_batch.h"
#include "commands.h"
#include "common.h"

namespace lazyllm::cli {
namespace {

struct BenchArgs {
  std::string model;
  std::vector<int> prompt_lens{512};
  int gen_len = 32;
  std::vector<int> e2e_at;  // answer lengths (<= gen_len) whose end-to-end time is reported too
  int reps = 3;
  int warmup = 1;
  int threads = 0;
  bool json = false;
  bool cold = false;
  bool f32_math = false;
  uint64_t seed = 1;
  std::vector<int> batches;  // --batch: aggregate decode of this many sequences stepped together
  bool batch_serial = false;
  PruneFlags prune;
  DeviceFlag device;
};

struct Samples {
  std::vector<double> ttft_ms, prefill_tok_s, decode_tok_s, decode_ms_per_token, e2e_ms, computed_fraction,
      prefill_computed_fraction;
  std::vector<std::vector<double>> e2e_at_ms;  // per BenchArgs::e2e_at
  std::string lazy_decode;  // "reselect" or "complete" (SessionStats::lazy_decode)
  // Decode steps that ran entirely on the device (SessionStats::device_decode_steps), their
  // times, and attempts handed back to the host plan.
  std::vector<double> device_step_ms;
  int64_t device_misses = 0;
  std::string pruning;  // the session's word on whether its schedule ran (see SessionStats::pruning)
  Session::DeviceMemory memory;  // after the last run
};

// One measured run: prefill the prompt, pick the first token (TTFT), then decode gen_len-1 more.
void run_once(Session& s, std::span<const int32_t> prompt, int gen_len, const std::vector<int>& e2e_at,
              Samples& out) {
  s.reset();
  auto t0 = std::chrono::steady_clock::now();
  s.prefill(prompt);
  int32_t next = greedy_token(s.logits());
  const double ttft = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const double prefill_ms = s.stats().prefill_ms;
  out.prefill_computed_fraction.push_back(s.stats().prefill_computed_fraction);
  auto t1 = std::chrono::steady_clock::now();
  out.e2e_at_ms.resize(e2e_at.size());
  auto checkpoint = [&](int tokens) {  // the answer so far has `tokens` tokens
    for (size_t k = 0; k < e2e_at.size(); ++k)
      if (e2e_at[k] == tokens)
        out.e2e_at_ms[k].push_back(ttft + std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count());
  };
  checkpoint(1);
  for (int i = 1; i < gen_len; ++i) {
    const int64_t on_device = s.stats().device_decode_steps;
    const auto ts = std::chrono::steady_clock::now();
    s.decode(next);
    next = greedy_token(s.logits());
    if (s.stats().device_decode_steps != on_device)
      out.device_step_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - ts).count());
    checkpoint(i + 1);
  }
  out.device_misses += s.stats().device_decode_misses;
  const double decode_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  out.ttft_ms.push_back(ttft);
  out.e2e_ms.push_back(ttft + decode_ms);
  out.prefill_tok_s.push_back(prompt.size() / (prefill_ms / 1000.0));
  if (gen_len > 1) {
    out.decode_tok_s.push_back((gen_len - 1) / (decode_ms / 1000.0));
    out.decode_ms_per_token.push_back(decode_ms / (gen_len - 1));
  }
  out.computed_fraction.push_back(s.stats().computed_fraction);
  out.pruning = s.stats().pruning;
  out.lazy_decode = s.stats().lazy_decode;
  out.memory = s.device_memory();
}

// Bytes a session holds on the GPU after its last run.
nlohmann::json gpu_memory_json(const Session::DeviceMemory& m) {
  return {{"weights", m.weights},
          {"dequant_scratch", m.dequant_scratch},
          {"weight_copies", m.weight_copies},
          {"kv_cache", m.kv_cache},
          {"aux_cache", m.aux_cache},
          {"scratch", m.scratch}};
}

nlohmann::json samples_json(const Samples& s) {
  nlohmann::json j = {{"ttft_ms", to_json(summarize(s.ttft_ms))},
                       {"prefill_tok_s", to_json(summarize(s.prefill_tok_s))},
                       {"e2e_ms", to_json(summarize(s.e2e_ms))}};
  if (!s.decode_tok_s.empty()) {
    j["decode_tok_s"] = to_json(summarize(s.decode_tok_s));
    j["decode_ms_per_token"] = to_json(summarize(s.decode_ms_per_token));
  }
  if (!s.pruning.empty()) j["pruning"] = s.pruning;
  if (!s.lazy_decode.empty()) j["lazy_decode"] = s.lazy_decode;
  if (!s.device_step_ms.empty() || s.device_misses > 0) {
    j["device_decode_steps"] = s.device_step_ms.size();
    j["device_decode_misses"] = s.device_misses;
    if (!s.device_step_ms.empty()) j["device_step_ms"] = to_json(summarize(s.device_step_ms));
  }
  j["computed_fraction"] = summarize(s.computed_fraction).median;
  j["prefill_computed_fraction"] = summarize(s.prefill_computed_fraction).median;
  return j;
}

// End-to-end medians at each requested answer length, keyed by the length.
nlohmann::json e2e_at_json(const std::vector<int>& at, const Samples& s) {
  nlohmann::json j = nlohmann::json::object();
  for (size_t k = 0; k < at.size() && k < s.e2e_at_ms.size(); ++k) j[std::to_string(at[k])] = summarize(s.e2e_at_ms[k]).median;
  return j;
}

int bench(const BenchArgs& a) {
  if (!a.batches.empty()) {
    if (a.cold || !a.e2e_at.empty()) throw Error("--batch measures decode steps: it takes no --cold or --e2e-at");
    return bench_batch({a.model, a.prompt_lens, a.batches, a.gen_len, a.reps, a.warmup, a.threads, a.json, a.f32_math,
                        a.seed, a.device.resolve(), a.device.weights(), a.device.host_weights(), a.batch_serial,
                        a.prune});
  }
  for (int k : a.e2e_at)
    if (k > a.gen_len) throw Error("--e2e-at " + std::to_string(k) + " is past --gen-len " + std::to_string(a.gen_len));
  auto model = Model::load(a.model, a.device.host_weights());
  const ModelConfig& c = model->config();
  const auto schedules = a.prune.resolve_all(c.n_layers, a.model);
  std::mt19937_64 rng(a.seed);
  // --cold: the measured runs at prompt length n use n, n+1, ... (one length each), after one
  // untimed run per schedule at warm_len, a length none of them uses.
  const int runs_per_len = (a.warmup + a.reps) * (1 + static_cast<int>(schedules.size()));
  int warm_len = 257;
  for (bool clash = true; a.cold && clash;) {
    clash = false;
    for (int n : a.prompt_lens) clash = clash || (warm_len >= n && warm_len < n + runs_per_len);
    if (clash) ++warm_len;
  }
  bool process_warmed = false;
  // The process's first Session puts the weights on the device (and on a GPU loads the product
  // kernels): what a user waits for before the first request, reported apart.
  double first_session_ms = -1;
  auto make_session = [&](const SessionOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    auto s = std::make_unique<Session>(model, o);
    if (first_session_ms < 0)
      first_session_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return s;
  };
  for (int n : a.prompt_lens) {
    SessionOptions base_opt;
    base_opt.n_ctx = std::max(n + a.gen_len + (a.cold ? runs_per_len : 0), a.cold ? warm_len + a.gen_len : 0);
    base_opt.n_threads = a.threads;
    base_opt.fast_math = !a.f32_math;
    base_opt.device = a.device.resolve();
    base_opt.gpu_weights = a.device.weights();
    base_opt.gpu_warmup = a.device.gpu_warmup;
    base_opt.gpu_weight_copies = a.device.gpu_weight_copies;
    std::vector<SessionOptions> opts{base_opt};
    for (const auto& [name, sched] : schedules) {
      SessionOptions lo = base_opt;
      lo.prune = sched;
      lo.prune_policy = a.prune.policy();
      opts.push_back(lo);
    }
    // Warm: one session per schedule, reused by every repetition. Cold: a fresh one per run.
    std::vector<std::unique_ptr<Session>> sessions;
    if (!a.cold)
      for (const auto& o : opts) sessions.push_back(make_session(o));
    // Random token ids stand in for text: speed does not depend on which tokens they are.
    std::vector<int32_t> prompt(n + (a.cold ? runs_per_len : 0));
    std::uniform_int_distribution<int32_t> dist(0, c.n_vocab - 1);
    for (auto& t : prompt) t = dist(rng);
    if (a.cold && !process_warmed) {
      // What a long-running process has done before its first request at a new length (module
      // loading, library handles, the pruning kernels) stays out of the cold numbers.
      process_warmed = true;
      const std::vector<int32_t> other(warm_len, 1);
      for (size_t i = 0; i < opts.size(); ++i) {
        SessionOptions o = opts[i];
        o.prune_policy = PrunePolicy::kAlways;
        auto warm = make_session(o);
        Samples ignored;
        run_once(*warm, other, std::min(a.gen_len, 4), {}, ignored);
      }
    }
    int cold_offset = 0;
    auto run = [&](size_t i, Samples& out) {
      const std::span<const int32_t> all(prompt);
      if (!a.cold) return run_once(*sessions[i], all.first(n), a.gen_len, a.e2e_at, out);
      Session fresh(model, opts[i]);
      run_once(fresh, all.first(n + cold_offset++), a.gen_len, a.e2e_at, out);
    };

    // Baseline and every schedule alternate within each repetition.
    Samples sb, discard;
    std::vector<Samples> sl(schedules.size());
    for (int r = 0; r < a.warmup + a.reps; ++r) {
      const bool keep = r >= a.warmup;
      run(0, keep ? sb : discard);
      for (size_t i = 0; i < sl.size(); ++i) run(i + 1, keep ? sl[i] : discard);
      if (!a.json) std::fprintf(stderr, "\rprompt %d: rep %d/%d", n, r + 1, a.warmup + a.reps);
    }
    if (!a.json) std::fprintf(stderr, "\r\033[K");

    nlohmann::json common = {
        {"model", a.model},
        {"architecture", c.architecture},
        {"cpu", device_description(Device::Cpu)},
        {"cpu_kernels", to_json(cpu_kernels())},
        {"device", device_name(base_opt.device)},
        {"gpu", base_opt.device == Device::Cuda ? device_description(Device::Cuda) : "none"},
        {"threads", a.threads > 0 ? a.threads : static_cast<int>(std::thread::hardware_concurrency())},
        {"prompt_len", n},
        {"gen_len", a.gen_len},
        {"reps", a.reps},
        {"mode", a.cold ? "cold" : "warm"},
        {"first_session_ms", first_session_ms},
        {"baseline", samples_json(sb)},
        {"memory_estimate", to_json(estimate_memory(*model, base_opt))}};
    if (base_opt.device == Device::Cpu) common["host_weights"] = model->host_weights();
    if (base_opt.device == Device::Cuda) {
      // Bytes on the GPU: the model's weights (in their form on it) and the baseline session's own.
      common["gpu_weights"] = gpu_weights_name(base_opt.gpu_weights);
      common["gpu_memory"] = gpu_memory_json(sb.memory);
    }
    const Summary tb = summarize(sb.ttft_ms);
    common["ttft_ms"] = tb.median;
    common["prefill_tok_s"] = summarize(sb.prefill_tok_s).median;
    common["decode_tok_s"] = summarize(sb.decode_tok_s).median;
    common["e2e_ms"] = summarize(sb.e2e_ms).median;
    if (!a.e2e_at.empty()) common["e2e_ms_at"] = e2e_at_json(a.e2e_at, sb);
    auto print_base = [&] {
      std::printf("prompt %6d%s | baseline ttft %9.1f ms | prefill %8.1f tok/s | decode %7.2f tok/s | e2e %9.1f ms", n,
                  a.cold ? " cold" : "", tb.median, common["prefill_tok_s"].get<double>(),
                  common["decode_tok_s"].get<double>(), common["e2e_ms"].get<double>());
    };
    if (sl.empty()) {
      if (a.json) std::cout << common.dump() << std::endl;
      else print_base(), std::printf("\n");
      continue;
    }
    for (size_t i = 0; i < sl.size(); ++i) {
      nlohmann::json j = common;
      const Summary tl = summarize(sl[i].ttft_ms);
      const double e2e_lazy = summarize(sl[i].e2e_ms).median;
      j["schedule_name"] = schedules[i].first;
      j["schedule"] = schedules[i].second.to_string();
      j["lazy"] = samples_json(sl[i]);
      j["lazy"]["memory_estimate"] = to_json(estimate_memory(*model, opts[i + 1]));
      if (base_opt.device == Device::Cuda) j["lazy"]["gpu_memory"] = gpu_memory_json(sl[i].memory);
      j["ttft_ms_baseline"] = tb.median;
      j["ttft_ms_lazy"] = tl.median;
      j["speedup"] = tb.median / tl.median;
      // The whole answer (TTFT + gen_len - 1 decode steps): LazyLLM's time over the baseline's.
      j["e2e_ms_baseline"] = common["e2e_ms"];
      j["e2e_ms_lazy"] = e2e_lazy;
      j["e2e_ratio"] = e2e_lazy / common["e2e_ms"].get<double>();
      if (!a.e2e_at.empty()) {
        j["e2e_ms_at_lazy"] = e2e_at_json(a.e2e_at, sl[i]);
        nlohmann::json r = nlohmann::json::object();
        for (auto& [k, v] : j["e2e_ms_at_lazy"].items()) r[k] = v.get<double>() / common["e2e_ms_at"][k].get<double>();
        j["e2e_ratio_at"] = r;
      }
      // At first token (what the TTFT speedup should track) and after the generated tokens.
      j["computed_fraction"] = summarize(sl[i].prefill_computed_fraction).median;
      j["computed_fraction_after_generation"] = summarize(sl[i].computed_fraction).median;
      if (a.json) {
        std::cout << j.dump() << std::endl;
      } else {
        print_base();
        std::printf(" | %s: ttft %9.1f ms, speedup %.2fx, decode %7.2f tok/s, e2e %9.1f ms (%.3f of baseline), "
                    "computed %.1f%% (%.1f%% after %d tokens)%s%s\n",
                    schedules[i].first.c_str(), tl.median, j["speedup"].get<double>(),
                    sl[i].decode_tok_s.empty() ? 0.0 : summarize(sl[i].decode_tok_s).median, e2e_lazy,
                    j["e2e_ratio"].get<double>(), 100 * j["computed_fraction"].get<double>(),
                    100 * j["computed_fraction_after_generation"].get<double>(), a.gen_len,
                    sl[i].pruning.empty() ? "" : ", pruning ", sl[i].pruning.c_str());
      }
    }
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "Measure prefill/decode throughput and TTFT");
  cmd->add_option("-m,--model", a->model, "GGUF model file")->required();
  cmd->add_option("--prompt-len", a->prompt_lens, "Prompt lengths, comma-separated")->delimiter(',')->check(CLI::Range(1, 1 << 22));
  cmd->add_option("--gen-len", a->gen_len, "Tokens generated per run")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--e2e-at", a->e2e_at,
                  "Also report the end-to-end time at these answer lengths (comma-separated, each <= --gen-len)")
      ->delimiter(',')
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--reps", a->reps, "Measured repetitions")->check(CLI::Range(1, 1000));
  cmd->add_option("--warmup", a->warmup, "Unmeasured warm-up repetitions")->check(CLI::Range(0, 100));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_option("--seed", a->seed, "Seed of the random prompt");
  cmd->add_flag("--json", a->json, "Print one JSON object per prompt length");
  cmd->add_option("--batch", a->batches,
                  "Instead: aggregate decode tokens/s of this many sequences stepped together, per prompt length "
                  "(comma-separated batch sizes), without pruning or each under the --lazy/--prune schedule")
      ->delimiter(',')
      ->check(CLI::Range(1, 256));
  cmd->add_flag(
      "--batch-serial", a->batch_serial,
      "With --batch: step each sequence on its own, one after another (the reference for the batched forward)");
  cmd->add_flag("--cold", a->cold,
                "Measure first requests: a fresh session and a prompt length not run before for every run (lengths n, n+1, "
                "...), after one untimed run per schedule at another length (what a running process has already loaded)");
  cmd->add_flag("--f32-math", a->f32_math,
                "Keep every product in f32 (default: bf16 prefill and 8-bit decode activations for quantized weights where the CPU has them)");
  a->device.add_to(cmd);
  a->prune.add_to(cmd, /*allow_many=*/true);
  cmd->callback([a, &exit_code] { exit_code = bench(*a); });
}

}  // namespace lazyllm::cli
