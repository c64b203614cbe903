// `lazyllm calibrate` end to end on the trained eval model (eval/models/) with a few samples of
// one eval set: it prints a schedule, --save leaves it beside (a copy of) the model, `run --lazy`
// and `info` then use and report it, a repeated command resumes from --out, and a corrupt saved
// file or bad flags give clear messages. Small budgets keep it to seconds.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cli_runner.h"
#include "eval/calibrate.h"
#include "lazyllm/lazyllm.h"

namespace lazyllm {
namespace {

namespace fs = std::filesystem;
using test::run_cli;

const fs::path kCalibrateRepo = LAZYLLM_SOURCE_DIR;
const fs::path kCalibrateModel = kCalibrateRepo / "eval/models/synth-llama-6l-256d.gguf";

struct CalibrateCli : ::testing::Test {
  fs::path dir = test::temp_path("calibrate");
  std::string model = (dir / "model.gguf").string();
  std::string data = (dir / "calib.jsonl").string();
  std::string common;

  void SetUp() override {
    if (!fs::exists(kCalibrateModel)) GTEST_SKIP() << "eval model not found: " << kCalibrateModel;
    fs::remove_all(dir);
    fs::create_directories(dir);
    // A copy: --save writes beside the model, and the repository's stays untouched.
    fs::copy_file(kCalibrateModel, model);
    std::ifstream in(kCalibrateRepo / "eval/data/synth_multidoc_qa.jsonl");
    std::ofstream out(data);
    std::string line;
    for (int i = 0; i < 4 && std::getline(in, line); ++i) out << line << "\n";
    common = "calibrate -m " + model + " --data " + data + " --config " +
             (kCalibrateRepo / "eval/synth_config.json").string() + " --ctx 768 -t 1";
  }
};

TEST_F(CalibrateCli, SavesAScheduleThatLazyThenUses) {
  const std::string out = (dir / "out").string();
  // Any loss allowed: the choice then depends only on pruning being faster, not on 4 answers.
  const std::string cmd = common + " --max-samples 4 --max-candidates 6 --max-loss 100 --json --save --out " + out;
  auto r = run_cli(cmd);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j["chosen"].is_object()) << j.dump(2);
  const std::string spec = j["chosen"]["spec"];
  EXPECT_EQ(PruneSchedule::parse(spec, 6).to_string(), spec);
  EXPECT_GT(j["chosen"]["speedup"].get<double>(), 1.0);
  EXPECT_EQ(j["coarse"]["samples"], 1);
  EXPECT_EQ(j["refine"]["samples"], 4);
  const size_t measured = j["coarse"]["schedules"].size() + j["refine"]["schedules"].size() - j["seeds"].size();
  EXPECT_LE(measured, 6u);
  EXPECT_EQ(j["coarse"]["schedules"][0]["spec"], PruneSchedule::default_for(6).to_string());
  ASSERT_FALSE(j["pareto"].empty());
  for (const char* f : {"results.json", "results.md", "coarse/run-1.jsonl", "refine/run-1.jsonl"})
    EXPECT_TRUE(fs::exists(fs::path(out) / f)) << f;
  EXPECT_NE(r.err.find("saved " + model + ".lazy.json"), std::string::npos) << r.err;

  const auto saved = nlohmann::json::parse(test::slurp(model + ".lazy.json"));
  EXPECT_EQ(saved["format"], "lazyllm-schedule/1");
  EXPECT_EQ(saved["schedule"], spec);
  EXPECT_EQ(saved["model"]["bytes"], fs::file_size(model));
  EXPECT_EQ(saved["data"]["file"], "calib.jsonl");
  EXPECT_EQ(saved["samples"], 4);
  EXPECT_DOUBLE_EQ(saved["score"].get<double>(), j["chosen"]["score"].get<double>());

  // run --lazy takes it, and says where from.
  r = run_cli("run -m " + model + " --lazy --prune-always --json -n 2 -t 1 -p 'document 1: the fox is red.'");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto run = nlohmann::json::parse(r.out);
  EXPECT_EQ(run["lazy"]["schedule"], spec);
  EXPECT_EQ(run["lazy"]["schedule_source"], "calibrated: " + model + ".lazy.json");
  EXPECT_NE(r.err.find("--lazy uses the schedule calibrated for this model: " + spec), std::string::npos) << r.err;
  // --prune still wins.
  r = run_cli("run -m " + model + " --prune 1:0.5 --json -n 1 -t 1 -p 'x'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["lazy"]["schedule"], "1:0.5");
  r = run_cli("info -m " + model);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("lazy schedule: " + spec + ", calibrated"), std::string::npos) << r.out;

  // The same command again reads every result back from --out: the same figures.
  r = run_cli(cmd);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto again = nlohmann::json::parse(r.out);
  EXPECT_EQ(again["refine"], j["refine"]);
  EXPECT_EQ(again["chosen"], j["chosen"]);

  // A corrupt file: a warning, and the default schedule.
  std::ofstream(model + ".lazy.json", std::ios::trunc) << "{";
  r = run_cli("run -m " + model + " --lazy --prune-always --json -n 1 -t 1 -p 'x'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["lazy"]["schedule"], PruneSchedule::default_for(6).to_string());
  EXPECT_EQ(nlohmann::json::parse(r.out)["lazy"]["schedule_source"], "default");
  EXPECT_NE(r.err.find("warning: ignoring " + model + ".lazy.json"), std::string::npos) << r.err;
  r = run_cli("info -m " + model);
  EXPECT_NE(r.out.find("is ignored"), std::string::npos) << r.out;
}

// --time-device: scores from the scoring runs, TTFTs and speedups from a second pass with one
// generated token over --time-samples of each stage's samples (on a machine without a GPU both
// are the CPU, which still separates the passes: their logs and figures).
TEST_F(CalibrateCli, TimesOnAnotherDevice) {
  const std::string out = (dir / "out").string();
  auto r = run_cli(common + " --device cpu --time-device cpu --time-samples 2 --max-samples 4 --max-candidates 3" +
                   " --max-loss 100 --json --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["timed_on"], "cpu");
  EXPECT_EQ(j["timed_samples"], 2);
  // Mean TTFT per schedule in the refinement's timing log, whose samples generated one token.
  std::map<std::string, std::pair<double, int>> ttft;
  std::ifstream log(fs::path(out) / "refine/time-1.jsonl");
  ASSERT_TRUE(log) << "no timing log";
  std::string line;
  std::getline(log, line);  // the header
  EXPECT_EQ(nlohmann::json::parse(line)["check"]["max_new_tokens"], 1);
  std::set<int> indices;
  while (std::getline(log, line)) {
    const auto rec = nlohmann::json::parse(line);
    EXPECT_LE(rec["generated_tokens"].get<int>(), 1);
    indices.insert(rec["index"].get<int>());
    auto& [sum, n] = ttft[rec["schedule"].get<std::string>()];
    sum += rec["ttft_ms"].get<double>();
    ++n;
  }
  EXPECT_EQ(indices.size(), 2u);
  const double base = ttft["baseline"].first / ttft["baseline"].second;
  ASSERT_FALSE(j["refine"]["schedules"].empty());
  for (const auto& m : j["refine"]["schedules"]) {
    const auto& [sum, n] = ttft[m["spec"].get<std::string>()];
    ASSERT_EQ(n, 2) << m.dump();
    EXPECT_NEAR(m["ttft_ms"].get<double>(), sum / n, 1e-6 * sum) << m.dump();
    EXPECT_NEAR(m["speedup"].get<double>(), base / (sum / n), 1e-6) << m.dump();
  }
  EXPECT_NEAR(j["refine"]["baseline"]["ttft_ms"].get<double>(), base, 1e-6 * base);
  EXPECT_TRUE(fs::exists(fs::path(out) / "coarse/time-1.jsonl"));
  // Scores still come from the scoring runs, which generated whole answers.
  std::ifstream scored(fs::path(out) / "refine/run-1.jsonl");
  std::getline(scored, line);
  EXPECT_EQ(nlohmann::json::parse(line)["check"]["max_new_tokens"], 0);
}

// Samples with a `group` (their package or source): the refinement's loss errors count the
// groups (here 2: one degree of freedom) and are grouped_loss_se of the logged scores; without
// groups they count samples (df 0).
TEST_F(CalibrateCli, LossErrorsCountTheSamplesGroups) {
  std::vector<std::string> lines;
  {
    std::ifstream in(data);
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 4u);
  const std::vector<std::string> groups = {"pkg-a", "pkg-a", "pkg-b", "pkg-b"};
  {
    std::ofstream out(data, std::ios::trunc);
    for (size_t i = 0; i < lines.size(); ++i) {
      auto j = nlohmann::json::parse(lines[i]);
      j["group"] = groups[i];
      out << j.dump() << "\n";
    }
  }
  const std::string out = (dir / "out").string();
  auto r = run_cli(common + " --max-samples 4 --max-candidates 3 --max-loss 100 --json --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  std::map<std::string, std::vector<double>> scores;  // schedule -> score (0-100) by sample index
  std::map<int, std::string> dataset;
  std::ifstream log(fs::path(out) / "refine/run-1.jsonl");
  std::string line;
  std::getline(log, line);  // the header
  while (std::getline(log, line)) {
    const auto rec = nlohmann::json::parse(line);
    auto& v = scores[rec["schedule"].get<std::string>()];
    const int i = rec["index"].get<int>();
    v.resize(std::max<size_t>(v.size(), i + 1));
    v[i] = 100 * rec["score"].get<double>();
    dataset[i] = rec["dataset"].get<std::string>();
  }
  std::vector<std::string> ds;
  for (int i = 0; i < 4; ++i) ds.push_back(dataset[i]);
  ASSERT_FALSE(j["refine"]["schedules"].empty());
  for (const auto& m : j["refine"]["schedules"]) {
    EXPECT_EQ(m["loss_df"], 1) << m.dump();
    int df = 0;
    const double se = eval::grouped_loss_se(scores["baseline"], scores[m["spec"].get<std::string>()], ds, groups, df);
    EXPECT_NEAR(m["loss_se"].get<double>(), se, 1e-9) << m.dump();
  }
  EXPECT_NE(test::slurp((fs::path(out) / "results.md").string()).find("over the samples' 2 groups"), std::string::npos);

  // The same data without groups: errors over samples.
  {
    std::ofstream plain(data, std::ios::trunc);
    for (const auto& l : lines) plain << l << "\n";
  }
  r = run_cli(common + " --max-samples 4 --max-candidates 3 --max-loss 100 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto plain_json = nlohmann::json::parse(r.out);
  for (const auto& m : plain_json["refine"]["schedules"]) EXPECT_EQ(m["loss_df"], 0) << m.dump();
}

TEST_F(CalibrateCli, BadFlagsAndNothingToSave) {
  auto r = run_cli(common + " --max-loss -1");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--max-loss must be"), std::string::npos) << r.err;
  r = run_cli(common + " --target-speedup 0.5");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--target-speedup must be above 1"), std::string::npos) << r.err;
  r = run_cli(common + " --max-samples 0");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--max-samples must be at least 1"), std::string::npos) << r.err;
  r = run_cli(common + " --time-device gpu");  // refused by the flag parser, before anything loads
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--time-device: gpu not in"), std::string::npos) << r.err;
  r = run_cli(common + " --time-device cpu --time-samples 0");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--time-samples"), std::string::npos) << r.err;
  r = run_cli(common + " --schedules-per-run 0");
  EXPECT_EQ(r.code, 1);
  r = run_cli("calibrate -m " + model + " --data /nonexistent.jsonl");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cannot read data file"), std::string::npos) << r.err;
  // An unreachable target: nothing chosen, so nothing saved.
  r = run_cli(common + " --max-samples 1 --max-candidates 1 --target-speedup 1000 --save");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("nothing to save"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(model + ".lazy.json"));
}

}  // namespace
}  // namespace lazyllm
