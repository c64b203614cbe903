// The ablation selection modes of PruneSchedule: static (importance-chosen in prefill, never
// revived) and random (same counts, seeded random tokens), against LazyLLM's dynamic choice.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>

#include "lazyllm/lazyllm.h"
#include "runtime/cpu/cpu_forward.h"
#include "runtime/session_internals.h"
#include "test_models.h"

namespace lazyllm {
namespace {

using test::argmax;
using test::random_tokens;

std::unique_ptr<Session> session(const std::shared_ptr<Model>& model, const std::string& spec) {
  SessionOptions opt;
  opt.n_threads = 2;
  opt.prune = PruneSchedule::parse(spec, model->config().n_layers);
  return std::make_unique<Session>(model, opt);
}

// Tokens with KV at layer l (those prefill computed that deep).
std::set<int> computed_at(Session& s, int l, int n) {
  std::set<int> out;
  for (int t = 0; t < n; ++t)
    if (SessionInternals::cpu(s).kv().depth(t) > l) out.insert(t);
  return out;
}

bool same_logits(Session& a, Session& b) {
  return a.logits().size() == b.logits().size() &&
         std::memcmp(a.logits().data(), b.logits().data(), a.logits().size() * sizeof(float)) == 0;
}

TEST(PruneModesParse, PrefixesParseAndRoundTrip) {
  for (const char* spec :
       {"static:1:0.5,3:0.25", "random:2:0.4", "random@42:1:0.7,2:0.3", "1:0.5,2:0.1", "reselect@4:1:0.5,3:0.5"}) {
    SCOPED_TRACE(spec);
    const PruneSchedule s = PruneSchedule::parse(spec, 4);
    EXPECT_EQ(s.to_string(), spec);
    const PruneSchedule back = PruneSchedule::parse(s.to_string(), 4);
    EXPECT_EQ(back.selection, s.selection);
    EXPECT_EQ(back.seed, s.seed);
    EXPECT_EQ(back.revive_budget, s.revive_budget);
    ASSERT_EQ(back.points.size(), s.points.size());
    for (size_t i = 0; i < s.points.size(); ++i) {
      EXPECT_EQ(back.points[i].layer, s.points[i].layer);
      EXPECT_EQ(back.points[i].keep, s.points[i].keep);
    }
  }
  EXPECT_EQ(PruneSchedule::parse("static:1:0.5", 4).selection, PruneSelection::kStatic);
  EXPECT_EQ(PruneSchedule::parse("random@7:1:0.5", 4).seed, 7u);
  EXPECT_EQ(PruneSchedule::parse("lazy:1:0.5", 4).to_string(), "1:0.5");
  EXPECT_EQ(PruneSchedule::parse("reselect@0:1:0.5", 4).revive_budget, 0);
  EXPECT_EQ(PruneSchedule::parse("reselect@0:1:0.5", 4).decode, LazyDecode::kReselect);
  EXPECT_EQ(PruneSchedule::parse("reselect:1:0.5", 4).revive_budget, -1);
  // Fractions of depth resolve to layers; a fraction that is not a short decimal survives exactly.
  EXPECT_EQ(PruneSchedule::parse("random:0.5:0.5", 4).to_string(), "random:2:0.5");
  EXPECT_EQ(PruneSchedule::parse(PruneSchedule::parse("1:0.3333333333333333", 4).to_string(), 4).points[0].keep,
            0.3333333333333333);
  for (const char* bad :
       {"frob:1:0.5", "static", "static:", "static@3:1:0.5", "random@:1:0.5", "random@x:1:0.5", "random@-1:1:0.5",
        "Static:1:0.5", "static:static:1:0.5", "reselect@:1:0.5", "reselect@-1:1:0.5", "reselect@x:1:0.5",
        "reselect@2x:1:0.5", "complete@3:1:0.5", "lazy@2:1:0.5"})
    EXPECT_THROW(PruneSchedule::parse(bad, 4), Error) << bad;
}

TEST(PruneModesStatic, SamePrefillAsLazyButNeverRevives) {
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  const int L = model->config().n_layers, n = 60;
  auto prompt = random_tokens(n, model->config().n_vocab, 17);
  auto lazy = session(model, "1:0.5,2:0.5");
  auto stat = session(model, "static:1:0.5,2:0.5");
  lazy->prefill(prompt);
  stat->prefill(prompt);
  // Prefill chooses by importance in both: identical work, tokens and logits.
  EXPECT_EQ(stat->stats().alive_per_layer, lazy->stats().alive_per_layer);
  EXPECT_TRUE(same_logits(*stat, *lazy));
  const int64_t prompt_work = stat->stats().prompt_token_layers_computed;
  const int64_t aux_entries = stat->stats().aux_cache_entries;
  ASSERT_GT(aux_entries, 0);
  SessionInternals::cpu(*stat).set_record_selection(true);
  for (int step = 0; step < 6; ++step) {
    const int32_t next = argmax(stat->logits());
    stat->decode(next);
    lazy->decode(next);
    // Decode attends at each layer to exactly what prefill computed that deep (plus decoded tokens).
    const auto& sel = SessionInternals::cpu(*stat).last_selection();
    for (int l = 0; l < L; ++l) {
      std::set<int> want = computed_at(*stat, l, n + step);
      EXPECT_EQ(std::set<int>(sel[l].begin(), sel[l].end()), want) << "step " << step << " layer " << l;
    }
  }
  EXPECT_EQ(stat->stats().revived, 0);
  EXPECT_EQ(stat->stats().prompt_token_layers_computed, prompt_work);
  EXPECT_EQ(stat->stats().aux_cache_entries, aux_entries);
  // The same decode steps make LazyLLM revive tokens, so the test tells the two apart.
  EXPECT_GT(lazy->stats().revived, 0);
}

// A revival budget (reselect@N) bounds the tokens each decode step revives: none at 0, at most N
// per step (a revived token is computed from where it stopped through the last layer at most),
// while the paper's rule revives more on the same steps; prefill is the paper's in every case.
TEST(PruneModesReviveBudget, BoundsTheRevivalsOfEachStep) {
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  const int L = model->config().n_layers, n = 80, steps = 8;
  auto prompt = random_tokens(n, model->config().n_vocab, 29);
  auto paper = session(model, "reselect:1:0.5,2:0.5,3:0.5");
  auto none = session(model, "reselect@0:1:0.5,2:0.5,3:0.5");
  auto two = session(model, "reselect@2:1:0.5,2:0.5,3:0.5");
  for (Session* s : {paper.get(), none.get(), two.get()}) s->prefill(prompt);
  EXPECT_EQ(none->stats().alive_per_layer, paper->stats().alive_per_layer);
  EXPECT_EQ(two->stats().alive_per_layer, paper->stats().alive_per_layer);
  int64_t most_paper = 0, most_two = 0;
  for (int step = 0; step < steps; ++step) {
    const int32_t next = argmax(paper->logits());
    const int64_t before_paper = paper->stats().revived, before_two = two->stats().revived;
    for (Session* s : {paper.get(), none.get(), two.get()}) s->decode(next);
    most_paper = std::max(most_paper, paper->stats().revived - before_paper);
    most_two = std::max(most_two, two->stats().revived - before_two);
  }
  EXPECT_EQ(none->stats().revived, 0);
  EXPECT_GT(two->stats().revived, 0);
  EXPECT_LE(most_two, 2 * (L - 1));  // two tokens, each computed at most from layer 1 on
  EXPECT_GT(most_paper, most_two);
}

TEST(PruneModesRandom, SameCountsOtherTokensReproducible) {
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  const int L = model->config().n_layers, n = 80;
  auto prompt = random_tokens(n, model->config().n_vocab, 23);
  auto lazy = session(model, "1:0.5,2:0.5,3:0.5");
  auto rnd = session(model, "random:1:0.5,2:0.5,3:0.5");
  auto rnd_again = session(model, "random:1:0.5,2:0.5,3:0.5");
  auto rnd_other_seed = session(model, "random@99:1:0.5,2:0.5,3:0.5");
  for (auto* s : {lazy.get(), rnd.get(), rnd_again.get(), rnd_other_seed.get()}) s->prefill(prompt);

  EXPECT_EQ(rnd->stats().alive_per_layer, lazy->stats().alive_per_layer);
  EXPECT_DOUBLE_EQ(rnd->stats().prefill_computed_fraction, lazy->stats().prefill_computed_fraction);
  EXPECT_NE(computed_at(*rnd, L - 1, n), computed_at(*lazy, L - 1, n));
  // Reproducible: same seed, same tokens and bitwise-same logits, in a fresh or a reset session.
  EXPECT_EQ(computed_at(*rnd_again, L - 1, n), computed_at(*rnd, L - 1, n));
  EXPECT_TRUE(same_logits(*rnd_again, *rnd));
  rnd_again->reset();
  rnd_again->prefill(prompt);
  EXPECT_TRUE(same_logits(*rnd_again, *rnd));
  EXPECT_NE(computed_at(*rnd_other_seed, L - 1, n), computed_at(*rnd, L - 1, n));
  // The last prompt token is always kept.
  EXPECT_EQ(SessionInternals::cpu(*rnd).kv().depth(n - 1), L);
  // Like static, random never revives at decode.
  for (int step = 0; step < 4; ++step) rnd->decode(argmax(rnd->logits()));
  EXPECT_EQ(rnd->stats().revived, 0);
}

}  // namespace
}  // namespace lazyllm
