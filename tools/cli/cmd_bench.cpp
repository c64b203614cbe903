// lazyllm bench: prefill/decode throughput and TTFT, repeated; baseline and LazyLLM alternate
// within one run so their ratio is measured under the same machine conditions.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <thread>

#include "commands.h"
#include "common.h"

namespace lazyllm::cli {
namespace {

struct BenchArgs {
  std::string model;
  std::vector<int> prompt_lens{512};
  int gen_len = 32;
  int reps = 3;
  int warmup = 1;
  int threads = 0;
  bool json = false;
  uint64_t seed = 1;
  PruneFlags prune;
};

struct Samples {
  std::vector<double> ttft_ms, prefill_tok_s, decode_tok_s, computed_fraction;
};

int32_t argmax(std::span<const float> v) {
  int32_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = static_cast<int32_t>(i);
  return best;
}

// One measured run: prefill the prompt, pick the first token (TTFT), then decode gen_len-1 more.
void run_once(Session& s, const std::vector<int32_t>& prompt, int gen_len, Samples& out) {
  s.reset();
  auto t0 = std::chrono::steady_clock::now();
  s.prefill(prompt);
  int32_t next = argmax(s.logits());
  const double ttft = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const double prefill_ms = s.stats().prefill_ms;
  auto t1 = std::chrono::steady_clock::now();
  for (int i = 1; i < gen_len; ++i) {
    s.decode(next);
    next = argmax(s.logits());
  }
  const double decode_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  out.ttft_ms.push_back(ttft);
  out.prefill_tok_s.push_back(prompt.size() / (prefill_ms / 1000.0));
  if (gen_len > 1) out.decode_tok_s.push_back((gen_len - 1) / (decode_ms / 1000.0));
  out.computed_fraction.push_back(s.stats().computed_fraction);
}

nlohmann::json samples_json(const Samples& s) {
  nlohmann::json j = {{"ttft_ms", to_json(summarize(s.ttft_ms))}, {"prefill_tok_s", to_json(summarize(s.prefill_tok_s))}};
  if (!s.decode_tok_s.empty()) j["decode_tok_s"] = to_json(summarize(s.decode_tok_s));
  j["computed_fraction"] = summarize(s.computed_fraction).median;
  return j;
}

int bench(const BenchArgs& a) {
  auto model = Model::load(a.model);
  const ModelConfig& c = model->config();
  const PruneSchedule schedule = a.prune.resolve(c.n_layers);
  const bool lazy = !schedule.empty();
  std::mt19937_64 rng(a.seed);
  for (int n : a.prompt_lens) {
    SessionOptions base_opt;
    base_opt.n_ctx = n + a.gen_len;
    base_opt.n_threads = a.threads;
    Session base(model, base_opt);
    std::unique_ptr<Session> lz;
    if (lazy) {
      SessionOptions lo = base_opt;
      lo.prune = schedule;
      lz = std::make_unique<Session>(model, lo);
    }
    // Random token ids stand in for text: speed does not depend on which tokens they are.
    std::vector<int32_t> prompt(n);
    std::uniform_int_distribution<int32_t> dist(0, c.n_vocab - 1);
    for (auto& t : prompt) t = dist(rng);

    Samples sb, sl, discard;
    for (int r = 0; r < a.warmup + a.reps; ++r) {
      const bool keep = r >= a.warmup;
      run_once(base, prompt, a.gen_len, keep ? sb : discard);
      if (lz) run_once(*lz, prompt, a.gen_len, keep ? sl : discard);
      if (!a.json) std::fprintf(stderr, "\rprompt %d: rep %d/%d", n, r + 1, a.warmup + a.reps);
    }
    if (!a.json) std::fprintf(stderr, "\r\033[K");

    nlohmann::json j = {{"model", a.model},
                        {"architecture", c.architecture},
                        {"cpu", cpu_description()},
                        {"threads", a.threads > 0 ? a.threads : static_cast<int>(std::thread::hardware_concurrency())},
                        {"prompt_len", n},
                        {"gen_len", a.gen_len},
                        {"reps", a.reps},
                        {"baseline", samples_json(sb)}};
    const Summary tb = summarize(sb.ttft_ms);
    j["ttft_ms"] = tb.median;
    j["prefill_tok_s"] = summarize(sb.prefill_tok_s).median;
    j["decode_tok_s"] = summarize(sb.decode_tok_s).median;
    if (lz) {
      const Summary tl = summarize(sl.ttft_ms);
      j["schedule"] = schedule.to_string();
      j["lazy"] = samples_json(sl);
      j["ttft_ms_baseline"] = tb.median;
      j["ttft_ms_lazy"] = tl.median;
      j["speedup"] = tb.median / tl.median;
      j["computed_fraction"] = summarize(sl.computed_fraction).median;
    }
    if (a.json) {
      std::cout << j.dump() << std::endl;
    } else {
      std::printf("prompt %6d | ttft %9.1f ms | prefill %8.1f tok/s | decode %7.2f tok/s", n, tb.median,
                  j["prefill_tok_s"].get<double>(), j["decode_tok_s"].get<double>());
      if (lz)
        std::printf(" | lazy ttft %9.1f ms, speedup %.2fx, computed %.1f%%", j["ttft_ms_lazy"].get<double>(),
                    j["speedup"].get<double>(), 100 * j["computed_fraction"].get<double>());
      std::printf("\n");
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
  cmd->add_option("--reps", a->reps, "Measured repetitions")->check(CLI::Range(1, 1000));
  cmd->add_option("--warmup", a->warmup, "Unmeasured warm-up repetitions")->check(CLI::Range(0, 100));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_option("--seed", a->seed, "Seed of the random prompt");
  cmd->add_flag("--json", a->json, "Print one JSON object per prompt length");
  a->prune.add_to(cmd);
  cmd->callback([a, &exit_code] { exit_code = bench(*a); });
}

}  // namespace lazyllm::cli
