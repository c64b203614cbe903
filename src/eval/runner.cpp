#include "eval/runner.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <span>

#include "eval/sample_log.h"
#include "eval/text.h"
#include "eval/truncate.h"
#include "lazyllm/tokenizer.h"
#include "util/file_identity.h"

namespace lazyllm::eval {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Greedy generation after prefill; the model's first token is already chosen.
std::vector<int32_t> generate_greedy(Session& s, int32_t first, const DatasetConfig& cfg) {
  const Tokenizer& tok = s.model().tokenizer();
  std::vector<int32_t> out;
  int32_t next = first;
  for (int i = 0; i < cfg.max_new_tokens; ++i) {
    if (tok.is_eog(next)) break;
    out.push_back(next);
    // Only the first line is scored: stop once it is complete (saves decode time, same score).
    if (cfg.first_line_only && lstrip(tok.decode(out), '\n').find('\n') != std::string_view::npos) break;
    if (i + 1 == cfg.max_new_tokens || s.n_past() >= s.n_ctx()) break;
    s.decode(next);
    next = greedy_token(s.logits());
  }
  return out;
}

// Prediction text: as HF's decode of a SentencePiece model, without the first piece's leading
// space; invalid UTF-8 (a cut multi-byte character) replaced, so the JSON stays valid.
std::string prediction_text(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::string text = tok.decode(ids);
  if (!text.empty() && text[0] == ' ') text.erase(0, 1);
  return to_utf8(to_code_points(text));
}

// Where the document ends in a prompt: the tokens it shares with the prompt cut after its
// document, through truncate_middle's cut; at least the last token is left to compute.
int document_end(const std::vector<int32_t>& full, const std::vector<int32_t>& through_context, size_t cut) {
  size_t k = 0;
  while (k < full.size() && k < through_context.size() && full[k] == through_context[k]) ++k;
  return static_cast<int>(std::min(prefix_after_cut(k, full.size(), cut), cut == 0 ? 0 : cut - 1));
}

// `cached` > 0: tokens [0, cached) are computed without pruning first and kept, untimed, as a
// prefix cache holds them; the rest runs under the session's schedule.
SampleResult run_one(Session& s, const Sample& sample, const std::vector<int32_t>& prompt, int cached, bool truncated,
                     const DatasetConfig& cfg, const std::string& schedule) {
  const std::span<const int32_t> tokens(prompt);
  if (cached > 0) {
    const PruneSchedule own = s.options().prune;
    s.reset(PruneSchedule{});
    s.prefill(tokens.first(static_cast<size_t>(cached)));
    if (!s.keep_prefix(cached, own)) throw Error("evaluation: a document computed without pruning was not kept");
  } else {
    s.reset();
  }
  const auto t0 = Clock::now();
  s.prefill(tokens.subspan(static_cast<size_t>(cached)));
  const int32_t first = greedy_token(s.logits());
  SampleResult r;
  r.ttft_ms = ms_since(t0);
  r.computed_fraction = s.stats().prefill_computed_fraction;
  const std::vector<int32_t> gen = generate_greedy(s, first, cfg);
  r.index = sample.index;
  r.id = sample.id;
  r.dataset = sample.dataset;
  r.schedule = schedule;
  r.prompt_tokens = static_cast<int>(prompt.size());
  r.truncated = truncated;
  r.generated_tokens = static_cast<int>(gen.size());
  r.prediction = prediction_text(s.model().tokenizer(), gen);
  r.score = sample_score(cfg.metric, r.prediction, sample.answers, sample.all_classes, cfg.first_line_only);
  return r;
}

}  // namespace

DatasetConfig settings_for(const Sample& s, const RunOptions& o) {
  DatasetConfig c = o.configs.lookup(s.dataset);
  if (o.metric) c.metric = *o.metric;
  if (o.max_new_tokens) c.max_new_tokens = *o.max_new_tokens;
  return c;
}

void validate(const std::vector<Sample>& samples, const RunOptions& o, int n_ctx) {
  if (o.schedules.empty() || !o.schedules[0].schedule.empty())
    throw Error("evaluation: the first schedule must be the baseline");
  std::set<std::string> names;
  for (const auto& s : o.schedules)
    if (!names.insert(s.name).second) throw Error("schedule '" + s.name + "' is given twice");
  const size_t n = o.limit > 0 ? std::min<size_t>(o.limit, samples.size()) : samples.size();
  for (size_t i = 0; i < n; ++i) {
    const Sample& s = samples[i];
    const std::string where = "sample " + std::to_string(i + 1) + " (_id " + s.id + ", dataset " + s.dataset + ")";
    const DatasetConfig c = settings_for(s, o);
    if (c.metric == Metric::kClassification && s.all_classes.empty())
      throw Error(where + ": the classification metric needs 'all_classes'");
    try {
      render_prompt(c.prompt_template, s);
      for (const auto& a : s.answers) score(c.metric, a, a, s.all_classes);  // e.g. no "Paragraph N"
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    if (n_ctx - c.max_new_tokens < 2)
      throw Error(where + ": a context of " + std::to_string(n_ctx) + " tokens leaves no room for a prompt with " +
                  std::to_string(c.max_new_tokens) + " new tokens (use a larger --ctx or --max-new-tokens)");
  }
}

nlohmann::json run_header(const Model& model, const RunOptions& o, int n_ctx, size_t n_samples) {
  nlohmann::json schedules = nlohmann::json::array();
  for (const auto& s : o.schedules) schedules.push_back({{"name", s.name}, {"spec", s.schedule.to_string()}});
  nlohmann::json check = {
      {"model", file_identity(o.model_path, false)},
      {"data", file_identity(o.data_path, true)},
      {"schedules", schedules},
      {"ctx", n_ctx},
      {"device", std::string(device_name(o.device))},
      {"metric", o.metric ? std::string(metric_name(*o.metric)) : "per dataset"},
      {"max_new_tokens", o.max_new_tokens ? *o.max_new_tokens : 0},
      {"config", hex64(fnv1a(o.config_text.data(), o.config_text.size()))},
  };
  if (!o.subset.empty()) check["subset"] = o.subset;
  if (o.cached_context) check["cached_context"] = true;
  if (o.prune_policy != PrunePolicy::kAlways) check["cost_model"] = true;
  return {{"format", "lazyllm-eval-log/1"},
          {"model_path", o.model_path},
          {"data_path", o.data_path},
          {"samples_in_data", n_samples},
          {"check", check}};
}

std::vector<SampleResult> run_eval(const std::shared_ptr<const Model>& model, const std::vector<Sample>& samples,
                                   const RunOptions& o) {
  const int n_ctx = o.n_ctx > 0 ? o.n_ctx : model->config().n_ctx_train;
  validate(samples, o, n_ctx);
  const int n = o.limit > 0 ? std::min(o.limit, static_cast<int>(samples.size())) : static_cast<int>(samples.size());
  std::unique_ptr<SampleLog> log;
  if (!o.log_path.empty()) log = std::make_unique<SampleLog>(o.log_path, run_header(*model, o, n_ctx, samples.size()));

  auto complete = [&](int i) {
    if (!log) return false;
    for (const auto& s : o.schedules)
      if (!log->has(i, s.name)) return false;
    return true;
  };
  Progress p;
  p.total = n;
  for (int i = 0; i < n; ++i) p.resumed += complete(i);
  p.done = p.resumed;
  const Tokenizer& tok = model->tokenizer();
  auto prompt_of = [&](const Sample& sample, const DatasetConfig& cfg, bool* truncated, int* cached) {
    const std::vector<int32_t> full = tok.encode(render_prompt(cfg.prompt_template, sample), tok.add_bos(), false);
    std::vector<int32_t> prompt = truncate_middle(full, n_ctx - cfg.max_new_tokens);
    *truncated = prompt.size() < full.size();
    *cached = 0;
    if (o.cached_context) {
      const std::string document = render_through_context(cfg.prompt_template, sample);
      if (!document.empty()) *cached = document_end(full, tok.encode(document, tok.add_bos(), false), prompt.size());
    }
    return prompt;
  };
  // One untimed run of every schedule first, on the longest prompt to come: the first prefill of
  // a session pays one-time costs (on a GPU the CUDA context, library handles and graph captures;
  // on a CPU page faults on the mapped weights), and buffers grow to the longest prompt seen: a
  // warm-up on a short prompt left that growth to the timed sessions of longer samples (GPU, eval
  // model: 1.3 ms against 0.7 on the first family's samples, docs/quality.md). The prompts still
  // to run are tokenized once, here, for that choice and for the run.
  std::vector<std::vector<int32_t>> prompts(n);
  std::vector<char> truncated(n, 0);
  std::vector<int> cached(n, 0);
  int longest = -1;
  for (int i = 0; i < n; ++i) {
    if (complete(i)) continue;
    bool cut = false;
    prompts[i] = prompt_of(samples[i], settings_for(samples[i], o), &cut, &cached[i]);
    truncated[i] = cut;
    if (longest < 0 || prompts[i].size() > prompts[longest].size()) longest = i;
  }
  // Sessions only when something is left to run: a run read back whole from its log needs no
  // device (scores computed on a GPU can be read back where there is none).
  std::vector<std::unique_ptr<Session>> sessions;
  if (longest >= 0) {
    for (const auto& s : o.schedules) {
      SessionOptions so;
      so.n_ctx = n_ctx;
      so.n_threads = o.n_threads;
      so.device = o.device;
      so.gpu_weights = o.gpu_weights;
      so.gpu_warmup = o.gpu_warmup;
      so.gpu_weight_copies = o.gpu_weight_copies;
      so.prune_policy = o.prune_policy;
      so.prune = s.schedule;
      sessions.push_back(std::make_unique<Session>(model, so));
    }
    const DatasetConfig cfg = settings_for(samples[longest], o);
    for (size_t k = 0; k < o.schedules.size(); ++k)
      run_one(*sessions[k], samples[longest], prompts[longest], cached[longest], truncated[longest], cfg,
              o.schedules[k].name);
  }
  const auto start = Clock::now();
  std::vector<SampleResult> results;
  for (int i = 0; i < n; ++i) {
    const Sample& sample = samples[i];
    if (complete(i)) continue;
    const DatasetConfig cfg = settings_for(sample, o);
    const std::vector<int32_t> prompt = std::move(prompts[i]);
    // On a GPU a prefill of a small model takes under a millisecond, and the first one after the
    // host's work between samples ran 2-4x slower whatever its schedule (docs/quality.md): an
    // untimed prefill first keeps that off the baseline, the first to run. On a CPU a prefill
    // takes far longer than that work, and an extra one would cost a tenth more time.
    if (o.device == Device::Cuda) {
      sessions[0]->reset();
      sessions[0]->prefill(prompt);
    }
    for (size_t k = 0; k < o.schedules.size(); ++k) {
      if (log && log->has(i, o.schedules[k].name)) continue;
      SampleResult r = run_one(*sessions[k], sample, prompt, cached[i], truncated[i], cfg, o.schedules[k].name);
      if (log) log->append(r);
      else results.push_back(std::move(r));
    }
    ++p.done;
    p.elapsed_s = ms_since(start) / 1000.0;
    p.eta_s = p.elapsed_s / (p.done - p.resumed) * (n - p.done);
    if (o.on_progress) o.on_progress(p);
  }
  if (!log) return results;
  // Everything for the first n samples, from the log, in sample then schedule order.
  std::map<std::pair<int, std::string>, const SampleResult*> by_key;
  for (const auto& r : log->records()) by_key[{r.index, r.schedule}] = &r;
  for (int i = 0; i < n; ++i)
    for (const auto& s : o.schedules) results.push_back(*by_key.at({i, s.name}));
  return results;
}

}  // namespace lazyllm::eval
