// lazyllm run: generate text from a prompt, streaming it, or print one JSON object.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "lazyllm/tokenizer.h"

namespace lazyllm::cli {
namespace {

struct RunArgs {
  std::string model, prompt, prompt_file;
  int n_predict = 128;
  SamplingParams sampling;
  int threads = 0;
  int ctx = 0;
  bool json = false;
  bool f32_math = false;
  bool special = false;
  PruneFlags prune;
  DeviceFlag device{.mmap = true, .gpu_warmup = false};  // one answer: start-up costs are not won back
};

nlohmann::json lazy_json(const SessionStats& s) {
  return {{"computed_fraction", s.computed_fraction},
          {"prefill_computed_fraction", s.prefill_computed_fraction},
          {"alive_per_layer", s.alive_per_layer},
          {"revived", s.revived},
          {"pruning", s.pruning},
          {"lazy_decode", s.lazy_decode},
          {"aux_cache_bytes", s.aux_cache_bytes}};
}

int run(const RunArgs& a, bool have_prompt) {
  auto model = Model::load(a.model, a.device.host_weights());
  const ModelConfig& c = model->config();
  const Tokenizer& tok = model->tokenizer();
  if (a.ctx > c.n_ctx_train)
    std::fprintf(stderr, "warning: context %d is larger than the model's trained context %d; quality may suffer\n",
                 a.ctx, c.n_ctx_train);

  const std::string text = read_prompt(a.prompt, a.prompt_file, have_prompt);
  std::vector<int32_t> prompt = tok.encode(text, tok.add_bos(), a.special);
  if (prompt.empty()) throw Error("the prompt is empty");
  SessionOptions opt;
  opt.n_ctx = a.ctx;
  opt.n_threads = a.threads;
  opt.device = a.device.resolve();
  opt.gpu_weights = a.device.weights();
  opt.gpu_warmup = a.device.gpu_warmup;
  opt.gpu_weight_copies = a.device.gpu_weight_copies;
  std::string prune_source;
  opt.prune = a.prune.resolve(c.n_layers, a.model, &prune_source);
  opt.prune_policy = a.prune.policy();
  opt.fast_math = !a.f32_math;
  ProgressBar bar("prefill");
  if (prompt.size() >= 256) opt.on_prefill_progress = [&](int done, int total) { bar.update(done, total); };
  Session session(model, opt);
  if (static_cast<int>(prompt.size()) >= session.n_ctx())
    throw Error("prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
                std::to_string(session.n_ctx()) + " tokens (use --ctx)");

  auto t0 = std::chrono::steady_clock::now();
  session.prefill(prompt);
  bar.finish();
  Sampler sampler(a.sampling);
  double ttft_ms = 0;
  bool first = true;
  StreamDecoder stream(tok);
  std::string out_text;
  auto on_token = [&](int32_t id) {
    if (first) {
      ttft_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      first = false;
    }
    std::string piece = stream.feed(id);
    out_text += piece;
    if (!a.json) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    return true;
  };
  std::vector<int32_t> generated = session.generate(a.n_predict, sampler, on_token);
  if (first) ttft_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::string tail = stream.flush();
  out_text += tail;

  const SessionStats& s = session.stats();
  const double prefill_tok_s = s.prompt_tokens / (s.prefill_ms / 1000.0);
  const double decode_tok_s = s.generated_tokens > 0 ? s.generated_tokens / (s.decode_ms / 1000.0) : 0.0;
  if (a.json) {
    nlohmann::json j = {{"prompt_tokens", s.prompt_tokens}, {"tokens", generated},   {"text", out_text},
                        {"ttft_ms", ttft_ms},               {"prefill_tok_s", prefill_tok_s},
                        {"decode_tok_s", decode_tok_s}};
    if (!opt.prune.empty()) {
      j["lazy"] = lazy_json(s);
      j["lazy"]["schedule"] = opt.prune.to_string();
      j["lazy"]["schedule_source"] = prune_source;
    }
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::printf("\n");
    std::fprintf(stderr, "\nprompt %d tokens, ttft %.1f ms, prefill %.1f tok/s, decode %.1f tok/s (%zu tokens)\n",
                 s.prompt_tokens, ttft_ms, prefill_tok_s, decode_tok_s, generated.size());
    if (!opt.prune.empty())
      std::fprintf(stderr, "lazyllm: schedule %s (%s; pruning %s), computed %.1f%% of prompt token-layers, %lld revived, aux cache %lld bytes\n",
                   opt.prune.to_string().c_str(), prune_source.c_str(), s.pruning.c_str(), 100.0 * s.computed_fraction,
                   static_cast<long long>(s.revived), static_cast<long long>(s.aux_cache_bytes));
  }
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt");
  cmd->add_option("-m,--model", a->model, "GGUF model file")->required();
  auto* p = cmd->add_option("-p,--prompt", a->prompt, "Prompt text");
  cmd->add_option("-f,--file", a->prompt_file, "Read the prompt from a file")->excludes(p);
  cmd->add_option("-n,--n-predict", a->n_predict, "Tokens to generate")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temp", a->sampling.temperature, "Temperature (0 = greedy)")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", a->sampling.top_k, "Top-k (0 = off)")->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--top-p", a->sampling.top_p, "Top-p (1 = off)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--min-p", a->sampling.min_p, "Min-p (0 = off)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--repeat-penalty", a->sampling.repeat_penalty, "Repeat penalty (1 = off)")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--seed", a->sampling.seed, "Sampling seed");
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_option("-c,--ctx", a->ctx, "Context size (default: the model's trained context)")->check(CLI::Range(1, 1 << 22));
  cmd->add_flag("--special", a->special, "Parse special tokens such as <|im_start|> in the prompt");
  cmd->add_flag("--json", a->json, "Print one JSON object instead of streaming text");
  cmd->add_flag("--f32-math", a->f32_math,
                "Keep every product in f32 (default: bf16 prefill and 8-bit decode activations for quantized weights where the CPU has them)");
  a->device.add_to(cmd);
  a->prune.add_to(cmd);
  cmd->callback([a, p, &exit_code] { exit_code = run(*a, p->count() > 0); });
}

}  // namespace lazyllm::cli
