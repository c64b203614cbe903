// lazyllm agree: how closely LazyLLM schedules follow the baseline (no pruning) on a prompt set.
//  - top-1 agreement, teacher-forced: the baseline generates n tokens greedily; the LazyLLM session
//    then runs the same prompt and, at every generated position, its argmax is compared with the
//    baseline's token, and the BASELINE's token is fed next (so positions stay aligned). The first
//    position (the prefill's own next token) is also reported on its own.
//  - greedy agreement: the LazyLLM session generates n tokens greedily on its own; the fraction of
//    prompts whose whole continuation equals the baseline's, and the mean common-prefix length.
//  - the mean computed fraction (Session::stats().computed_fraction after the free-running
//    generation) and the mean prefill time of both (noise on tiny models; reported anyway).
// Generation never stops early at an end-of-generation token: both sides always produce n tokens,
// so every prompt contributes exactly n positions.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "lazyllm/tokenizer.h"

namespace lazyllm::cli {
namespace {

struct AgreeArgs {
  std::string model, prompts;
  int ctx = 0, n = 64, threads = 0;
  bool json = false;
  PruneFlags prune;
  DeviceFlag device;
};

struct Prompt {
  int line = 0;
  std::vector<int32_t> tokens;
};

// Greedy continuation of n tokens from a fresh context (never stops early).
std::vector<int32_t> greedy(Session& s, const std::vector<int32_t>& prompt, int n) {
  s.reset();
  s.prefill(prompt);
  std::vector<int32_t> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) {
    out.push_back(greedy_token(s.logits()));
    if (i + 1 < n) s.decode(out.back());
  }
  return out;
}

// One prompt a line; every line must be a prompt that fits the context with n generated tokens.
std::vector<Prompt> read_prompts(const std::string& path, const Tokenizer& tok, int ctx, int n) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read prompt file '" + path + "'");
  std::vector<Prompt> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos)
      throw Error("prompt file '" + path + "': line " + std::to_string(lineno) +
                  " is empty (one prompt a line, no blank lines)");
    Prompt p{lineno, tok.encode(line, tok.add_bos(), false)};
    // The prompt fills positions [0, P); the n-1 fed-back tokens fill [P, P + n - 1).
    const int need = static_cast<int>(p.tokens.size()) + n - 1;
    if (need > ctx)
      throw Error("prompt file '" + path + "': the prompt on line " + std::to_string(lineno) + " has " +
                  std::to_string(p.tokens.size()) + " tokens; with " + std::to_string(n) +
                  " generated tokens it needs " + std::to_string(need) + " positions, more than the context of " +
                  std::to_string(ctx) + " (use a larger --ctx, a smaller -n or a shorter prompt)");
    out.push_back(std::move(p));
  }
  if (in.bad()) throw Error("error reading prompt file '" + path + "'");
  if (out.empty()) throw Error("prompt file '" + path + "' has no prompts");
  return out;
}

struct Result {
  std::string name, spec;
  int64_t agree_pos = 0, total_pos = 0, first_agree = 0, whole_match = 0, common_prefix = 0;
  double computed_fraction = 0, prefill_computed_fraction = 0, prefill_ms = 0;
};

int agree(const AgreeArgs& a) {
  auto model = Model::load(a.model, a.device.host_weights());
  const ModelConfig& c = model->config();
  // Schedules first, so a bad --prune fails before any work.
  const auto schedules = a.prune.resolve_all(c.n_layers, a.model);
  if (schedules.empty()) throw Error("nothing to compare: give --lazy and/or --prune SPEC");
  const int ctx = a.ctx > 0 ? a.ctx : c.n_ctx_train;
  const auto prompts = read_prompts(a.prompts, model->tokenizer(), ctx, a.n);
  const double np = static_cast<double>(prompts.size());

  SessionOptions base_opt;
  base_opt.n_ctx = ctx;
  base_opt.n_threads = a.threads;
  base_opt.device = a.device.resolve();
  base_opt.gpu_weights = a.device.weights();
  base_opt.gpu_warmup = a.device.gpu_warmup;
  base_opt.gpu_weight_copies = a.device.gpu_weight_copies;
  ProgressBar progress("agree");
  const int total_steps = static_cast<int>(prompts.size() * (1 + schedules.size()));
  int step = 0;

  // Baseline: greedy reference continuations.
  std::vector<std::vector<int32_t>> reference;
  double base_prefill_ms = 0;
  {
    Session base(model, base_opt);
    base.prefill(prompts[0].tokens);  // warm-up (page faults, thread start), not timed
    for (const auto& p : prompts) {
      reference.push_back(greedy(base, p.tokens, a.n));
      base_prefill_ms += base.stats().prefill_ms;
      progress.update(++step, total_steps);
    }
  }

  std::vector<Result> results;
  for (const auto& [name, sched] : schedules) {
    SessionOptions opt = base_opt;
    opt.prune = sched;
    opt.prune_policy = a.prune.policy();
    Session lazy(model, opt);
    lazy.prefill(prompts[0].tokens);  // warm-up, not timed
    Result r{name, sched.to_string()};
    for (size_t i = 0; i < prompts.size(); ++i) {
      const auto& ref = reference[i];
      // Teacher-forced top-1 agreement: always feed the baseline's token.
      lazy.reset();
      lazy.prefill(prompts[i].tokens);
      r.prefill_ms += lazy.stats().prefill_ms;
      r.prefill_computed_fraction += lazy.stats().prefill_computed_fraction;
      for (int t = 0; t < a.n; ++t) {
        const bool same = greedy_token(lazy.logits()) == ref[t];
        r.agree_pos += same;
        if (t == 0) r.first_agree += same;
        ++r.total_pos;
        if (t + 1 < a.n) lazy.decode(ref[t]);
      }
      // Free-running greedy continuation.
      const auto own = greedy(lazy, prompts[i].tokens, a.n);
      r.computed_fraction += lazy.stats().computed_fraction;
      const auto diff = std::mismatch(own.begin(), own.end(), ref.begin());
      const int64_t k = diff.first - own.begin();
      r.common_prefix += k;
      r.whole_match += k == static_cast<int64_t>(own.size());
      progress.update(++step, total_steps);
    }
    results.push_back(std::move(r));
  }
  progress.finish();

  nlohmann::json jr = nlohmann::json::array();
  for (const auto& r : results)
    jr.push_back({{"schedule", r.name},
                  {"layers", r.spec},
                  {"top1_agreement", static_cast<double>(r.agree_pos) / static_cast<double>(r.total_pos)},
                  {"first_token_agreement", static_cast<double>(r.first_agree) / np},
                  {"greedy_match", static_cast<double>(r.whole_match) / np},
                  {"mean_common_prefix", static_cast<double>(r.common_prefix) / np},
                  {"computed_fraction", r.computed_fraction / np},
                  {"prefill_computed_fraction", r.prefill_computed_fraction / np},
                  {"prefill_ms_baseline", base_prefill_ms / np},
                  {"prefill_ms_lazy", r.prefill_ms / np}});
  if (a.json) {
    nlohmann::json j = {{"model", a.model}, {"prompts", prompts.size()}, {"n", a.n}, {"ctx", ctx}, {"results", jr}};
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  size_t min_len = SIZE_MAX, max_len = 0;
  for (const auto& p : prompts) min_len = std::min(min_len, p.tokens.size()), max_len = std::max(max_len, p.tokens.size());
  std::printf("%s: %zu prompts (%zu-%zu tokens), %d generated tokens each, context %d\n", a.model.c_str(),
              prompts.size(), min_len, max_len, a.n, ctx);
  std::printf("%-28s %8s %8s %8s %8s %9s %9s %9s\n", "schedule (layer:keep)", "top-1", "first", "greedy=", "prefix",
              "computed", "base ms", "lazy ms");
  for (const auto& j : jr) {
    std::string label = j["schedule"].get<std::string>();
    if (label != j["layers"].get<std::string>()) label += " (" + j["layers"].get<std::string>() + ")";
    std::printf("%-28s %7.2f%% %7.1f%% %7.1f%% %8.1f %8.1f%% %9.3f %9.3f\n", label.c_str(),
                100 * j["top1_agreement"].get<double>(), 100 * j["first_token_agreement"].get<double>(),
                100 * j["greedy_match"].get<double>(), j["mean_common_prefix"].get<double>(),
                100 * j["computed_fraction"].get<double>(), j["prefill_ms_baseline"].get<double>(),
                j["prefill_ms_lazy"].get<double>());
  }
  std::printf("top-1: teacher-forced argmax agreement over all %d positions; first: at the first generated token;\n"
              "greedy=: whole %d-token greedy continuation identical; prefix: mean common-prefix length;\n"
              "computed: mean computed fraction of prompt (token, layer) work after generation; ms: mean prefill.\n",
              a.n, a.n);
  return 0;
}

}  // namespace

void add_agree_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<AgreeArgs>();
  CLI::App* cmd = app.add_subcommand("agree", "Measure how closely LazyLLM schedules follow the baseline on a prompt set");
  cmd->add_option("-m,--model", a->model, "GGUF model file")->required();
  cmd->add_option("--prompts", a->prompts, "Prompt file, one prompt a line")->required();
  cmd->add_option("-c,--ctx", a->ctx, "Context size (default: the model's trained context)")->check(CLI::Range(1, 1 << 22));
  cmd->add_option("-n,--n-predict", a->n, "Tokens generated per prompt")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_flag("--json", a->json, "Print one JSON object");
  a->device.add_to(cmd);
  a->prune.add_to(cmd, /*allow_many=*/true, /*with_policy=*/false);
  cmd->callback([a, &exit_code] { exit_code = agree(*a); });
}

}  // namespace lazyllm::cli
