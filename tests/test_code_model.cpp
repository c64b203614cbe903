// The code model trained the ordinary way (eval/models/code-llama-12l-384d.gguf, trained by
// tools/codemodel/train_lm.py; docs/quality.md): the file loads with the shape and tokenizer it
// was trained with, and it predicts C and Python it never saw (tests/data/codemodel/test-000.txt,
// written for the project's tests) far better than chance and than the same tokens in a scrambled
// order, so a damaged or untrained file fails here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "lazyllm/lazyllm.h"
#include "lazyllm/tokenizer.h"

namespace lazyllm {
namespace {

const std::filesystem::path kCodeRepo = LAZYLLM_SOURCE_DIR;
const std::filesystem::path kCodeModel = kCodeRepo / "eval/models/code-llama-12l-384d.gguf";
constexpr int kTokens = 320;

std::vector<int32_t> held_out_code(const Model& model) {
  std::ifstream in(kCodeRepo / "tests/data/codemodel/test-000.txt");
  std::stringstream text;
  text << in.rdbuf();
  std::vector<int32_t> ids = model.tokenizer().encode(text.str(), /*add_bos=*/true, /*parse_special=*/false);
  if (ids.size() > kTokens) ids.resize(kTokens);
  return ids;
}

// Mean negative log-likelihood (nats per token) of ids[1..] under teacher forcing.
double mean_nll(const std::shared_ptr<Model>& model, const std::vector<int32_t>& ids) {
  Session session(model, SessionOptions{});
  session.prefill(std::span<const int32_t>(ids.data(), 1));
  double total = 0;
  for (size_t i = 1; i < ids.size(); ++i) {
    const auto logits = session.logits();
    const float top = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (float l : logits) sum += std::exp(double(l) - top);
    total += std::log(sum) + top - logits[ids[i]];
    if (i + 1 < ids.size()) session.decode(ids[i]);
  }
  return total / double(ids.size() - 1);
}

TEST(CodeModel, ShapeAndTokenizer) {
  auto model = Model::load(kCodeModel.string());
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.n_layers, 12);
  EXPECT_EQ(c.n_embd, 384);
  EXPECT_EQ(c.n_heads, 6);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.n_vocab, 8192);
  EXPECT_EQ(c.n_ctx_train, 4096);
  // Indentation runs are single pieces and no space is added in front of the text.
  const auto ids = model->tokenizer().encode("        return x\n", false, false);
  EXPECT_LE(ids.size(), 5u);
  EXPECT_EQ(model->tokenizer().decode(ids), "        return x\n");
}

TEST(CodeModel, PredictsCodeItNeverSaw) {
  auto model = Model::load(kCodeModel.string());
  const std::vector<int32_t> ids = held_out_code(*model);
  ASSERT_EQ(ids.size(), size_t(kTokens));
  std::vector<int32_t> scrambled = ids;
  std::shuffle(scrambled.begin() + 1, scrambled.end(), std::mt19937(7));
  const double nll = mean_nll(model, ids), nll_scrambled = mean_nll(model, scrambled);
  std::cout << "[ code model ] " << kTokens << " tokens: " << nll << " nats/token, scrambled " << nll_scrambled
            << ", uniform " << std::log(8192.0) << "\n";
  EXPECT_LT(nll, 2.5);
  EXPECT_GT(nll_scrambled, nll + 3.0);
}

}  // namespace
}  // namespace lazyllm
