// The `lazyllm` command: real runs through the binary, and clear errors with nonzero exit codes.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_runner.h"

namespace lazyllm {
namespace {

using Result = test::CliResult;
using test::run_cli;

std::string shared(const std::string& rel) { return (test::shared_dir() / rel).string(); }

TEST(Cli, BadInputGivesClearErrorAndNonzeroExit) {
  Result r = run_cli("run -m /nonexistent/model.gguf -p hi");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cannot open '/nonexistent/model.gguf'"), std::string::npos) << r.err;
  r = run_cli("run --no-such-flag");
  EXPECT_NE(r.code, 0);
  r = run_cli("frobnicate");
  EXPECT_NE(r.code, 0);
  r = run_cli("run -m /etc/hostname -p hi");  // not a GGUF file
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("error:"), std::string::npos) << r.err;
}

TEST(Cli, PromptLongerThanContext) {
  LAZYLLM_REQUIRE_SHARED("models/stories260K.gguf");
  Result r = run_cli("run -m " + shared("models/stories260K.gguf") +
                     " --ctx 8 -p 'Once upon a time there was a little girl named Lily who loved to play'");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("does not fit the context"), std::string::npos) << r.err;
}

TEST(Cli, RunJsonMatchesGoldenGreedy) {
  LAZYLLM_REQUIRE_SHARED("models/stories260K.gguf");
  LAZYLLM_REQUIRE_SHARED("golden/stories260K.golden.json");
  std::ifstream in(test::shared_dir() / "golden/stories260K.golden.json");
  auto golden = nlohmann::json::parse(in)[0];
  Result r = run_cli("run -m " + shared("models/stories260K.gguf") + " --ctx 512 -p 'Once upon a time' -n 16 --temp 0 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt_tokens"], 5);
  auto want = golden["greedy"].get<std::vector<int>>();
  want.resize(16);
  EXPECT_EQ(j["tokens"].get<std::vector<int>>(), want);
  EXPECT_GT(j["ttft_ms"].get<double>(), 0);
  EXPECT_TRUE(j.contains("prefill_tok_s") && j.contains("decode_tok_s") && j.contains("text"));
  EXPECT_FALSE(j.contains("lazy"));

  // A 17-token prompt on a 260K-parameter model: the cost model leaves it unpruned and says why;
  // --prune-always prunes it.
  const std::string lazy_run = "run -m " + shared("models/stories260K.gguf") +
                               " --ctx 512 -p 'Once upon a time, Lily and Tom went to the park to play with a ball' -n 8 --temp 0 --prune 2:0.5 --json";
  r = run_cli(lazy_run);
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("lazy"));
  EXPECT_EQ(j["lazy"]["pruning"].get<std::string>().rfind("off: ", 0), 0u) << j["lazy"]["pruning"];
  EXPECT_EQ(j["lazy"]["prefill_computed_fraction"].get<double>(), 1.0);
  r = run_cli(lazy_run + " --prune-always");
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("lazy"));
  EXPECT_EQ(j["lazy"]["pruning"], "on");
  EXPECT_LT(j["lazy"]["prefill_computed_fraction"].get<double>(), 1.0);
  EXPECT_EQ(j["lazy"]["alive_per_layer"].size(), 5u);
  EXPECT_TRUE(j["lazy"].contains("revived") && j["lazy"].contains("aux_cache_bytes"));
}

TEST(Cli, AgreeIdentityScheduleIsExact) {
  LAZYLLM_REQUIRE_SHARED("models/stories260K.gguf");
  const auto prompts = test::temp_path("agree-prompts.txt");
  std::ofstream(prompts) << "Once upon a time, there was a little dog named Max.\n"
                            "Lily and Tom went to the park. They saw a big red ball and wanted to play.\n";
  Result r = run_cli("agree -m " + shared("models/stories260K.gguf") + " --prompts " + prompts.string() +
                     " --ctx 512 -n 8 -t 1 --prune 1:1.0,2:1.0,3:1.0,4:1.0 --prune 2:0.5 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_DOUBLE_EQ(j["results"][0]["top1_agreement"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["results"][0]["greedy_match"].get<double>(), 1.0);
  EXPECT_LT(j["results"][1]["prefill_computed_fraction"].get<double>(), 1.0);
  r = run_cli("agree -m " + shared("models/stories260K.gguf") + " --prompts /nonexistent --lazy");
  EXPECT_EQ(r.code, 1);
}

TEST(Cli, TokenizeWorksOnVocabularyOnlyFiles) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf");
  Result r = run_cli("tokenize -m " + shared("vocab/ggml-vocab-llama-spm.gguf") + " -p 'Hello world' --ids");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "[1, 15043, 3186]\n");
  r = run_cli("tokenize -m " + shared("vocab/ggml-vocab-llama-spm.gguf") + " -p 'Hello world'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("15043 -> \" Hello\""), std::string::npos) << r.out;
}

TEST(Cli, TokenizeByteLevelBpe) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
  const std::string vocab = shared("vocab/ggml-vocab-gpt-2.gguf");
  Result r = run_cli("tokenize -m " + vocab + " -p 'Hello world' --ids");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "[15496, 995]\n");  // GPT-2 adds no BOS
  r = run_cli("tokenize -m " + vocab + " -p 'Hello world'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("995 -> \" world\""), std::string::npos) << r.out;
  r = run_cli("tokenize -m " + vocab + " -p 'a<|endoftext|>' --ids --special");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "[64, 50256]\n");
  r = run_cli("tokenize -m " + vocab + " -p 'a<|endoftext|>' --special");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("50256 -> \"<|endoftext|>\""), std::string::npos) << r.out;
}

TEST(Cli, GenModelWithByteLevelBpeVocabularyRuns) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-starcoder.gguf");
  const auto path = test::temp_path("cli-bpe.gguf").string();
  Result r = run_cli("gen-model --dims embd=32,layers=2,heads=2,ff=64,ctx=64 --dtype f32 --vocab-from " +
                     shared("vocab/ggml-vocab-starcoder.gguf") + " -o " + path);
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli("info -m " + path);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("gpt2 (byte-level BPE, pre: starcoder)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("vocabulary:    49152"), std::string::npos) << r.out;
  r = run_cli("run -m " + path + " -p 'def main():' -n 4 --temp 0 --lazy");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(Cli, UnknownPreTokenizerIsAClearError) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
  // The same vocabulary with tokenizer.ggml.pre renamed: bytes of the same length, so the
  // file stays well-formed.
  std::ifstream in(shared("vocab/ggml-vocab-gpt-2.gguf"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string key = std::string("tokenizer.ggml.pre") + std::string("\x08\0\0\0\x05\0\0\0\0\0\0\0", 12) + "gpt-2";
  const size_t at = bytes.find(key);
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at + key.size() - 5, 5, "zork9");
  const auto path = test::temp_path("bad-pre.gguf").string();
  std::ofstream(path, std::ios::binary) << bytes;
  Result r = run_cli("tokenize -m " + path + " -p 'Hello'");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unknown pre-tokenizer type 'zork9'"), std::string::npos) << r.err;
}

TEST(Cli, InfoAndGenModel) {
  const auto path = test::temp_path("cli-gen.gguf").string();
  Result r = run_cli("gen-model --dims embd=64,layers=2,heads=4,kv_heads=2,ff=128,vocab=512,ctx=128 --dtype q8_0 -o " + path);
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli("info -m " + path);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("layers:        2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("q8_0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gpu weights:   native "), std::string::npos) << r.out;
  // The memory a session needs on each device, at the model's context or --ctx.
  EXPECT_NE(r.out.find("memory:        a session of 128 tokens"), std::string::npos) << r.out;
  for (const char* line : {"  cpu:         weights ", "  cuda native: weights ", "  cuda bf16:   weights "})
    EXPECT_NE(r.out.find(line), std::string::npos) << line << "\n" << r.out;
  EXPECT_EQ(r.out.find("Aux Cache"), std::string::npos) << r.out;
  r = run_cli("info -m " + path + " --ctx 64 --lazy");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("a session of 64 tokens (f16 KV cache, LazyLLM)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Aux Cache"), std::string::npos) << r.out;
  r = run_cli("run -m " + path + " -p hi -n 1 --gpu-weights int4");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--gpu-weights"), std::string::npos) << r.err;
  r = run_cli("bench -m " + path + " --prompt-len 16,32 --gen-len 3 --reps 1 --warmup 0 --lazy --json");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("ttft_ms_baseline") && j.contains("ttft_ms_lazy") && j.contains("speedup") &&
                j.contains("computed_fraction"));
    // The estimate for the bench's context: the lazy session adds the Aux Cache.
    const auto& base = j["memory_estimate"];
    const auto& lazy = j["lazy"]["memory_estimate"];
    EXPECT_GT(base["weights"].get<int64_t>(), 0);
    EXPECT_GT(base["kv_cache"].get<int64_t>(), 0);
    EXPECT_EQ(base["aux_cache"].get<int64_t>(), 0);
    EXPECT_GT(lazy["aux_cache"].get<int64_t>(), 0);
    EXPECT_EQ(base["total"].get<int64_t>(), base["weights"].get<int64_t>() + base["kv_cache"].get<int64_t>() +
                                                base["scratch"].get<int64_t>());
    ++n;
  }
  EXPECT_EQ(n, 2);
  // Several sequences stepped together, each under the schedule (the cost model bypassed: these
  // prompts are short).
  r = run_cli("bench -m " + path + " --batch 3 --prompt-len 40 --gen-len 3 --reps 1 --warmup 0 -t 2 --json --prune " +
              "reselect:0.5:0.5 --prune-always");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["batch"], 3);
  EXPECT_EQ(j["schedule"], "reselect:0.5:0.5");
  EXPECT_EQ(j["pruning"], "on");
  EXPECT_GT(j["decode_tok_s_aggregate"]["median"].get<double>(), 0);
  r = run_cli("bench -m " + path + " --batch 2 --prompt-len 40 --gen-len 3 --reps 1 --warmup 0 -t 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["schedule"], "baseline");
  EXPECT_EQ(j["pruning"], "");
  r = run_cli("bench -m " + path + " --batch 2 --prompt-len 40 --gen-len 3 --prune 0.5:0.5 --prune 0.5:0.3");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("one schedule"), std::string::npos) << r.err;
  r = run_cli("gen-model --shape no-such-shape -o " + path);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unknown shape"), std::string::npos);
}

}  // namespace
}  // namespace lazyllm
