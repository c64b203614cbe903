// `lazyllm eval` end to end on a tiny generated model and a JSONL written here: JSON shape,
// output files, resume, scoring through the binary, and clear errors for bad input.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "eval/metrics.h"

namespace lazyllm {
namespace {

using test::run_cli;

struct EvalCli : ::testing::Test {
  std::string model = test::temp_path("eval-cli.gguf").string();
  std::string data = test::temp_path("eval-cli.jsonl").string();

  void SetUp() override {
    auto r = run_cli("gen-model --dims embd=64,layers=4,heads=4,kv_heads=2,ff=128,vocab=512,ctx=256 --seed 3 -o " + model);
    ASSERT_EQ(r.code, 0) << r.err;
    std::ofstream out(data);
    for (int i = 0; i < 4; ++i) {
      nlohmann::json j = {{"input", "Which animal is number " + std::to_string(i) + "?"},
                          {"context", "There is a fox, a dog and a cat. The fox is number " + std::to_string(i) +
                                          ". The dog sleeps all day and the cat watches the birds outside."},
                          {"answers", {"fox"}},
                          {"all_classes", nullptr},
                          {"length", 20},
                          {"dataset", i < 2 ? "animals" : "animal_count"},
                          {"_id", "id" + std::to_string(i)}};
      out << j.dump() << "\n";
    }
  }
};

TEST_F(EvalCli, JsonReportsEverySchedule) {
  auto r = run_cli("eval -m " + model + " --data " + data +
                   " --lazy --prune 0.5:0.5 --prune static:0.5:0.5 --prune random@3:0.5:0.5 --limit 3 --max-new-tokens 4 -t 1 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["samples"], 3);
  ASSERT_EQ(j["results"].size(), 5u);
  const char* names[] = {"baseline", "lazy", "0.5:0.5", "static:0.5:0.5", "random@3:0.5:0.5"};
  for (size_t i = 0; i < 5; ++i) {
    const auto& s = j["results"][i];
    EXPECT_EQ(s["name"], names[i]);
    for (const char* k : {"score", "ttft_ms", "computed_fraction", "speedup"}) EXPECT_TRUE(s[k].is_number()) << k;
    EXPECT_GE(s["score"].get<double>(), 0.0);
    EXPECT_LE(s["score"].get<double>(), 100.0);
    EXPECT_GT(s["ttft_ms"].get<double>(), 0.0);
    ASSERT_TRUE(s["datasets"].contains("animals") && s["datasets"].contains("animal_count"));
    EXPECT_EQ(s["datasets"]["animals"]["samples"], 2);
    EXPECT_EQ(s["datasets"]["animal_count"]["samples"], 1);
  }
  EXPECT_DOUBLE_EQ(j["results"][0]["speedup"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["results"][0]["computed_fraction"].get<double>(), 1.0);
  EXPECT_LT(j["results"][1]["computed_fraction"].get<double>(), 1.0);
  // Same counts of computed (token, layer) pairs in every selection mode of one schedule.
  EXPECT_LT(j["results"][2]["computed_fraction"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["results"][3]["computed_fraction"].get<double>(), j["results"][2]["computed_fraction"].get<double>());
  EXPECT_DOUBLE_EQ(j["results"][4]["computed_fraction"].get<double>(), j["results"][2]["computed_fraction"].get<double>());
  EXPECT_EQ(j["results"][1]["spec"], "1:0.5,2:0.5,3:0.5");
  EXPECT_EQ(j["results"][3]["spec"], "static:2:0.5");
}

// --cached-context runs only each prompt's rest under the schedule (its computed fraction is the
// rest's); --cost-model lets the cost model leave prompts unpruned, which only adds work.
TEST_F(EvalCli, CachedContextAndCostModelFlags) {
  const std::string base = "eval -m " + model + " --data " + data + " --lazy --limit 3 --max-new-tokens 4 -t 1 --json";
  auto whole = run_cli(base);
  auto cached = run_cli(base + " --cached-context");
  auto served = run_cli(base + " --cached-context --cost-model");
  for (const auto* r : {&whole, &cached, &served}) ASSERT_EQ(r->code, 0) << r->err;
  const auto jw = nlohmann::json::parse(whole.out), jc = nlohmann::json::parse(cached.out),
             js = nlohmann::json::parse(served.out);
  EXPECT_EQ(jw["cached_context"], false);
  EXPECT_EQ(jc["cached_context"], true);
  EXPECT_EQ(jc["cost_model"], false);
  EXPECT_EQ(js["cost_model"], true);
  const double fw = jw["results"][1]["computed_fraction"], fc = jc["results"][1]["computed_fraction"],
               fs = js["results"][1]["computed_fraction"];
  EXPECT_LT(fc, 1.0);
  EXPECT_NE(fc, fw);
  EXPECT_GE(fs, fc);
  EXPECT_LE(fs, 1.0);
  EXPECT_DOUBLE_EQ(jc["results"][0]["computed_fraction"].get<double>(), 1.0);
}

TEST_F(EvalCli, OutDirResumesAndScoresThroughTheBinary) {
  const auto out = test::temp_path("eval-out");
  std::filesystem::remove_all(out);
  const std::string base = "eval -m " + model + " --data " + data + " --lazy --max-new-tokens 4 -t 1 --out " + out.string();
  auto r = run_cli(base + " --limit 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("| baseline |"), std::string::npos) << r.out;  // Markdown on stdout
  EXPECT_NE(r.err.find("eval: 2/2 samples"), std::string::npos) << r.err;
  for (const char* f : {"samples.jsonl", "results.json", "results.md"})
    EXPECT_TRUE(std::filesystem::exists(out / f)) << f;
  if (!std::filesystem::exists(out / "plot.png")) {
    EXPECT_NE(r.err.find("warning: no plot"), std::string::npos) << r.err;
  }
  r = run_cli(base);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("(2 resumed)"), std::string::npos) << r.err;
  auto j = nlohmann::json::parse(test::slurp(out / "results.json"));
  EXPECT_EQ(j["samples"], 4);
  r = run_cli("eval -m " + model + " --data " + data + " --prune 0.5:0.5 --max-new-tokens 4 -t 1 --out " + out.string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("different run"), std::string::npos) << r.err;

  // Scoring through the binary: the same prompts with the baseline's own predictions as answers
  // score 100 (greedy decoding is deterministic; answers are not part of the prompt).
  std::map<int, std::string> pred;
  std::ifstream log(out / "samples.jsonl");
  std::string line;
  std::getline(log, line);  // header
  while (std::getline(log, line)) {
    auto rec = nlohmann::json::parse(line);
    if (rec["schedule"] == "baseline") pred[rec["index"].get<int>()] = rec["prediction"];
  }
  ASSERT_EQ(pred.size(), 4u);
  std::ifstream in(data);
  const auto self = test::temp_path("eval-self.jsonl");
  std::ofstream self_out(self);
  for (int i = 0; std::getline(in, line); ++i) {
    ASSERT_FALSE(eval::normalize_answer(pred[i]).empty()) << "prediction '" << pred[i] << "' scores 0 against itself";
    auto s = nlohmann::json::parse(line);
    s["answers"] = {pred[i]};
    self_out << s.dump() << "\n";
  }
  self_out.close();
  r = run_cli("eval -m " + model + " --data " + self.string() + " --metric qa_f1 --max-new-tokens 4 -t 1 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_DOUBLE_EQ(j["results"][0]["score"].get<double>(), 100.0);
}

TEST_F(EvalCli, BadInputGivesClearErrors) {
  const std::string m = "eval -m " + model + " --max-new-tokens 4 -t 1 --data ";
  auto r = run_cli(m + "/nonexistent.jsonl");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cannot read data file"), std::string::npos) << r.err;
  const auto bad = test::temp_path("eval-bad.jsonl");
  std::ofstream(bad) << "{\"input\": \"q\"}\n";
  r = run_cli(m + bad.string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(":1: missing field"), std::string::npos) << r.err;
  r = run_cli(m + data + " --metric f1");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unknown metric 'f1'"), std::string::npos) << r.err;
  r = run_cli(m + data + " --prune frob:1:0.5");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unknown selection 'frob'"), std::string::npos) << r.err;
  r = run_cli(m + data + " --config /nonexistent.json");
  EXPECT_EQ(r.code, 1);
  r = run_cli(m + data + " --ctx 4");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("leaves no room"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lazyllm
