// The evaluation harness on a tiny random model: JSONL reading, the runner (baseline and
// schedules on the same prompts, truncation), and resuming from the per-sample log.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <span>

#include "eval/report.h"
#include "eval/runner.h"
#include "eval/sample.h"
#include "lazyllm/tokenizer.h"
#include "test_models.h"

namespace lazyllm::eval {
namespace {

std::string write_file(const std::string& name, const std::string& text) {
  const auto p = test::temp_path(name);
  std::ofstream(p, std::ios::binary) << text;
  return p.string();
}

std::string sample_line(int i, const std::string& dataset, const std::string& context, const std::string& answer) {
  nlohmann::json j = {{"input", "What is the key " + std::to_string(i) + "?"},
                      {"context", context},
                      {"answers", {answer}},
                      {"all_classes", nullptr},
                      {"length", 12},
                      {"dataset", dataset},
                      {"_id", "s" + std::to_string(i)}};
  return j.dump() + "\n";
}

std::string data_text(int n) {
  std::string t;
  for (int i = 0; i < n; ++i)
    t += sample_line(i, i % 2 ? "kv_count" : "needle",
                     "the quick brown fox number " + std::to_string(i) + " jumps over the lazy dog again and again",
                     i % 2 ? "3" : "fox");
  return t;
}

TEST(EvalJsonl, ReadsFieldsAndRejectsBadLines) {
  const auto path =
      write_file("ok.jsonl", data_text(2) + "\n" + sample_line(2, "trec", "c", "LOC") +
                                 R"({"input":"q","context":"c","answers":["a"],"dataset":"d","_id":"g","group":"pkg"})"
                                 "\n"
                                 R"({"input":"q","context":"c","answers":["a"],"dataset":"d","_id":"n","group":null})"
                                 "\n");
  const auto s = read_jsonl(path);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0].group, "");  // the optional group: absent, given, null
  EXPECT_EQ(s[3].group, "pkg");
  EXPECT_EQ(s[4].group, "");
  EXPECT_EQ(s[1].id, "s1");
  EXPECT_EQ(s[1].dataset, "kv_count");
  EXPECT_EQ(s[1].answers, std::vector<std::string>{"3"});
  EXPECT_EQ(s[2].index, 2);  // blank lines do not count
  EXPECT_EQ(s[0].length, 12);
  const std::pair<std::string, std::string> bad[] = {
      {"{\"input\": 1", "not valid JSON"},
      {R"({"input":"q","context":"c","answers":["a"],"dataset":"d"})", "missing field '_id'"},
      {R"({"input":"q","context":"c","answers":"a","dataset":"d","_id":"x"})", "'answers' must be a list"},
      {R"({"input":"q","context":"c","answers":[],"dataset":"d","_id":"x"})", "'answers' is empty"},
      {R"({"input":"q","context":5,"answers":["a"],"dataset":"d","_id":"x"})", "'context' must be a string"},
      {R"({"input":"q","context":"c","answers":["a"],"dataset":"d","_id":"x","length":-3})", "'length'"},
      {R"({"input":"q","context":"c","answers":["a"],"dataset":"d","_id":"x","all_classes":[1]})", "all_classes"},
      {R"({"input":"q","context":"c","answers":["a"],"dataset":"d","_id":"x","group":3})", "'group' must be a string"},
      {"[1, 2]", "expected a JSON object"},
  };
  for (const auto& [line, want] : bad) {
    const auto p = write_file("bad.jsonl", data_text(1) + line + "\n");
    try {
      read_jsonl(p);
      ADD_FAILURE() << "accepted: " << line;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(":2: "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(read_jsonl(write_file("empty.jsonl", "\n\n")), Error);
  EXPECT_THROW(read_jsonl("/nonexistent/data.jsonl"), Error);
}

struct Fixture {
  std::shared_ptr<Model> model = test::make_model(test::arch_variants()[0], DType::F32);
  // Where make_model wrote it (the run's identity includes the model file).
  std::string model_path =
      test::temp_path(test::arch_variants()[0].name + "-" + std::string(dtype_name(DType::F32)) + "-42.gguf").string();

  RunOptions options(const std::string& data, const std::string& log) const {
    RunOptions o;
    o.model_path = model_path;
    o.data_path = data;
    o.n_threads = 1;
    o.max_new_tokens = 4;
    o.log_path = log;
    const int L = model->config().n_layers;
    o.schedules = {{"baseline", {}}, {"lazy", PruneSchedule::parse("1:0.5", L)},
                   {"static:1:0.5", PruneSchedule::parse("static:1:0.5", L)}};
    return o;
  }
};

TEST(EvalRunner, BaselineAndSchedulesOnTheSamePrompts) {
  Fixture f;
  const auto data = write_file("run.jsonl", data_text(3));
  RunOptions o = f.options(data, "");
  const auto results = run_eval(f.model, read_jsonl(data), o);
  ASSERT_EQ(results.size(), 9u);
  for (int i = 0; i < 3; ++i) {
    const SampleResult& base = results[3 * i];
    EXPECT_EQ(base.schedule, "baseline");
    EXPECT_EQ(base.index, i);
    EXPECT_DOUBLE_EQ(base.computed_fraction, 1.0);
    for (int k = 1; k < 3; ++k) {
      EXPECT_EQ(results[3 * i + k].prompt_tokens, base.prompt_tokens);
      EXPECT_LT(results[3 * i + k].computed_fraction, 1.0);
    }
    // Static prunes exactly like LazyLLM in prefill, so the first token and the work agree.
    EXPECT_DOUBLE_EQ(results[3 * i + 2].computed_fraction, results[3 * i + 1].computed_fraction);
    EXPECT_FALSE(base.truncated);
    EXPECT_LE(base.generated_tokens, 4);
    EXPECT_GE(base.score, 0.0);
    EXPECT_LE(base.score, 1.0);
  }
  const Report rep = summarize(results, {"baseline", "lazy", "static:1:0.5"});
  EXPECT_EQ(rep.datasets, (std::vector<std::string>{"needle", "kv_count"}));
  EXPECT_DOUBLE_EQ(rep.schedules[0].overall.speedup, 1.0);
  EXPECT_EQ(rep.schedules[0].datasets.at("needle").samples, 2);
  const auto j = to_json(rep);
  EXPECT_EQ(j["results"].size(), 3u);
  EXPECT_TRUE(j["results"][1]["datasets"].contains("kv_count"));
  EXPECT_NE(to_markdown(rep).find("| lazy |"), std::string::npos);
}

TEST(EvalRunner, OverLongPromptsAreCutInTheMiddleToFit) {
  Fixture f;
  std::string ctx;
  for (int i = 0; i < 60; ++i) ctx += "word" + std::to_string(i) + " ";
  const auto data = write_file("long.jsonl", sample_line(0, "needle", ctx, "x"));
  RunOptions o = f.options(data, "");
  o.n_ctx = 40;
  const auto results = run_eval(f.model, read_jsonl(data), o);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].truncated);
  EXPECT_EQ(results[0].prompt_tokens, 36);  // 40 - 4 new tokens, 18 from each end
  o.n_ctx = 5;  // no room for a prompt next to 4 new tokens
  EXPECT_THROW(run_eval(f.model, read_jsonl(data), o), Error);
}

// With the document cached, each prompt's document is computed without pruning first and only
// the rest runs under each schedule: the baseline answers as from the whole prompt, a schedule's
// computed fraction is its rest's, as a session that keeps the document and prefills the rest.
TEST(EvalRunner, CachedContextRunsOnlyTheRestUnderEachSchedule) {
  Fixture f;
  const auto data = write_file("cached.jsonl", data_text(3));
  const auto samples = read_jsonl(data);
  RunOptions o = f.options(data, "");
  const auto whole = run_eval(f.model, samples, o);
  o.cached_context = true;
  const auto cached = run_eval(f.model, samples, o);
  ASSERT_EQ(cached.size(), whole.size());
  const Tokenizer& tok = f.model->tokenizer();
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE("sample " + std::to_string(i));
    EXPECT_EQ(cached[3 * i].prediction, whole[3 * i].prediction);  // the baseline, in two chunks
    EXPECT_DOUBLE_EQ(cached[3 * i].computed_fraction, 1.0);
    // The reference: the document kept, the question and the rest pruned by "1:0.5".
    const std::vector<int32_t> prompt = tok.encode(render_prompt(kGenericTemplate, samples[i]), tok.add_bos(), false);
    const std::vector<int32_t> doc =
        tok.encode(render_through_context(kGenericTemplate, samples[i]), tok.add_bos(), false);
    size_t k = 0;
    while (k < doc.size() && prompt[k] == doc[k]) ++k;
    ASSERT_GT(k, 8u);
    ASSERT_LT(k + 4, prompt.size());
    SessionOptions so;
    so.n_threads = 1;
    so.prune_policy = PrunePolicy::kAlways;
    Session s(f.model, so);
    s.prefill(std::span<const int32_t>(prompt).first(k));
    ASSERT_TRUE(s.keep_prefix(static_cast<int>(k), o.schedules[1].schedule));
    s.prefill(std::span<const int32_t>(prompt).subspan(k));
    EXPECT_DOUBLE_EQ(cached[3 * i + 1].computed_fraction, s.stats().prefill_computed_fraction);
    EXPECT_NE(cached[3 * i + 1].computed_fraction, whole[3 * i + 1].computed_fraction);
    EXPECT_EQ(cached[3 * i + 1].prompt_tokens, whole[3 * i + 1].prompt_tokens);
  }
  // Cut in the middle, the document's end moves with the cut and the run still computes a rest.
  o.n_ctx = 20;
  for (const SampleResult& r : run_eval(f.model, samples, o)) {
    EXPECT_TRUE(r.truncated);
    EXPECT_GT(r.generated_tokens, 0);
  }
  // A log of whole prompts does not resume a run with the document cached.
  const auto log = test::temp_path("cached-samples.jsonl").string();
  std::filesystem::remove(log);
  o = f.options(data, log);
  o.limit = 1;
  run_eval(f.model, samples, o);
  o.cached_context = true;
  EXPECT_THROW(run_eval(f.model, samples, o), Error);
}

TEST(EvalRunner, RejectsSamplesTheMetricCannotScore) {
  Fixture f;
  const auto data = write_file("cls.jsonl", sample_line(0, "trec", "c", "LOC"));  // no all_classes
  EXPECT_THROW(run_eval(f.model, read_jsonl(data), f.options(data, "")), Error);
  RunOptions o = f.options(data, "");
  o.metric = Metric::kRetrieval;  // "LOC" names no paragraph
  EXPECT_THROW(run_eval(f.model, read_jsonl(data), o), Error);
  o = f.options(data, "");
  o.schedules.push_back(o.schedules[1]);
  EXPECT_THROW(run_eval(f.model, read_jsonl(data), o), Error);  // a schedule twice
}

TEST(EvalResume, InterruptedRunContinuesFromItsLog) {
  Fixture f;
  const auto data = write_file("resume.jsonl", data_text(4));
  const auto log = test::temp_path("resume-samples.jsonl").string();
  std::filesystem::remove(log);
  const auto samples = read_jsonl(data);
  RunOptions o = f.options(data, log);
  o.limit = 2;
  const auto first = run_eval(f.model, samples, o);
  ASSERT_EQ(first.size(), 6u);
  // An interruption mid-write leaves a cut-off line: it is dropped.
  std::ofstream(log, std::ios::app) << R"({"index": 2, "id": "s2", "data)";
  o.limit = 4;
  Progress last;
  o.on_progress = [&](const Progress& p) { last = p; };
  const auto all = run_eval(f.model, samples, o);
  ASSERT_EQ(all.size(), 12u);
  EXPECT_EQ(last.resumed, 2);
  EXPECT_EQ(last.done, 4);
  for (size_t i = 0; i < first.size(); ++i) {
    // Read back, not run again: the very same TTFT and prediction.
    EXPECT_EQ(all[i].ttft_ms, first[i].ttft_ms);
    EXPECT_EQ(all[i].prediction, first[i].prediction);
    EXPECT_EQ(all[i].schedule, first[i].schedule);
  }
  int lines = 0;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    ++lines;
    EXPECT_TRUE(nlohmann::json::accept(line)) << line;
  }
  EXPECT_EQ(lines, 1 + 12);
  // A finished run resumes to the same results without running anything.
  last = {};
  EXPECT_EQ(run_eval(f.model, samples, o).size(), 12u);
  EXPECT_EQ(last.total, 0);  // no sample ran, so no progress was reported
  // ... and without making a session: settings a session would refuse (not part of the run's
  // identity) do not matter, as a device that is not there would not (GPU scores read back on a
  // CPU machine).
  RunOptions read_back = o;
  read_back.n_threads = -1;
  EXPECT_EQ(run_eval(f.model, samples, read_back).size(), 12u);
  read_back.log_path = test::temp_path("resume-none.jsonl").string();  // all to run: sessions made, and refuse
  std::filesystem::remove(read_back.log_path);
  EXPECT_THROW(run_eval(f.model, samples, read_back), Error);
  // Another run's log is refused, saying what differs.
  RunOptions other = o;
  other.schedules.pop_back();
  try {
    run_eval(f.model, samples, other);
    ADD_FAILURE() << "resumed a log of other schedules";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("different run (its schedules"), std::string::npos) << e.what();
  }
  const auto data2 = write_file("resume2.jsonl", data_text(5));
  other = o;
  other.data_path = data2;
  EXPECT_THROW(run_eval(f.model, read_jsonl(data2), other), Error);
  other = o;
  other.max_new_tokens = 5;
  EXPECT_THROW(run_eval(f.model, samples, other), Error);
}

}  // namespace
}  // namespace lazyllm::eval
