// LazyLLM's backend-neutral plan and index (prune/lazy_plan.h, cache/kv_index.h): the forced
// pruning path (selection, compaction and the revival walk while keeping every token) against
// the baseline bit for bit, the index's refusal to store a (token, layer) pair twice, selection
// on NaN scores, batched revival rows against the float64 reference, and the steady decode
// plan (what a device runs without the host) against DecodeStep.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include "cache/kv_index.h"
#include "lazyllm/lazyllm.h"
#include "model/gen_model.h"
#include "prune/cost_model.h"
#include "prune/lazy_plan.h"
#include "prune/select.h"
#include "reference_forward.h"
#include "runtime/cpu/cpu_forward.h"
#include "runtime/gpu_weight_plan.h"
#include "runtime/session_internals.h"
#include "test_models.h"
#include "test_util.h"

namespace lazyllm {
namespace {

using test::argmax;
using test::random_tokens;

TEST(LazyForcedPath, KeepingEveryTokenThroughSelectionIsBitwiseBaseline) {
  for (const auto& spec : test::arch_variants()) {
    SCOPED_TRACE(spec.name);
    auto model = test::make_model(spec, DType::F32);
    const ModelConfig& c = model->config();
    // Two prefills: the second selects among its own tokens on top of cached keys.
    auto prompt = random_tokens(45, c.n_vocab, 7);
    for (bool f16 : {true, false}) {
      SessionOptions base_opt;
      base_opt.n_threads = 2;
      base_opt.kv_f16 = f16;
      SessionOptions forced = base_opt;
      forced.prune = test::keep_all_schedule(c.n_layers);
      forced.force_selection = true;
      Session base(model, base_opt), lazy(model, forced);
      std::span<const int32_t> all(prompt);
      base.prefill(all.first(30));
      lazy.prefill(all.first(30));
      base.prefill(all.subspan(30));
      lazy.prefill(all.subspan(30));
      // The machinery ran: a selection at every named layer of both prefills.
      EXPECT_EQ(lazy.stats().selections, 2 * (c.n_layers - 1));
      EXPECT_EQ(base.stats().selections, 0);
      for (int step = 0; step < 6; ++step) {
        ASSERT_EQ(0, std::memcmp(base.logits().data(), lazy.logits().data(), base.logits().size() * sizeof(float)))
            << "step " << step;
        const int32_t next = argmax(base.logits());
        base.decode(next);
        lazy.decode(next);
      }
      EXPECT_EQ(lazy.stats().selections, 2 * (c.n_layers - 1) + 6 * (c.n_layers - 1));
      EXPECT_DOUBLE_EQ(lazy.stats().computed_fraction, 1.0);
      EXPECT_EQ(lazy.stats().revived, 0);
      EXPECT_EQ(lazy.stats().aux_cache_entries, 0);
    }
  }
}

// The forced path is not a copy of the baseline's: the same run with one token really pruned
// differs, so the comparison above can fail.
TEST(LazyForcedPath, PruningOneTokenChangesTheLogits) {
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  const ModelConfig& c = model->config();
  auto prompt = random_tokens(45, c.n_vocab, 7);
  SessionOptions base_opt;
  base_opt.n_threads = 2;
  SessionOptions pruned = base_opt;
  pruned.prune = PruneSchedule::parse("1:0.95", c.n_layers);  // ceil(0.95 * 45) = 43 of 45 kept
  Session base(model, base_opt), lazy(model, pruned);
  base.prefill(prompt);
  lazy.prefill(prompt);
  EXPECT_EQ(lazy.stats().alive_per_layer[1], 43);
  EXPECT_NE(0, std::memcmp(base.logits().data(), lazy.logits().data(), base.logits().size() * sizeof(float)));
}

TEST(KVIndex, StoresEachTokenLayerPairOnceInLayerOrder) {
  KVIndex idx(3, 8);
  EXPECT_EQ(idx.store(0, 5), 0);
  EXPECT_EQ(idx.store(0, 2), 1);
  EXPECT_EQ(idx.store(1, 5), 0);
  EXPECT_THROW(idx.store(0, 5), std::logic_error);  // twice
  EXPECT_THROW(idx.store(1, 5), std::logic_error);  // twice, deeper
  EXPECT_THROW(idx.store(2, 2), std::logic_error);  // skips layer 1
  EXPECT_THROW(idx.store(0, 8), std::logic_error);  // outside the context
  EXPECT_EQ(idx.depth(5), 2);
  EXPECT_EQ(idx.slot(1, 2), -1);
  EXPECT_EQ(idx.store(2, 5), 0);
  EXPECT_EQ(idx.tokens(), 2);
  EXPECT_EQ(idx.full_depth_tokens(), 1);
  EXPECT_FALSE(idx.all_full());
  idx.aux_put(2);
  idx.aux_put(2);
  EXPECT_EQ(idx.aux_entries(), 1);
  idx.aux_erase(2);
  EXPECT_EQ(idx.aux_entries(), 0);
  idx.clear();
  EXPECT_EQ(idx.size(0), 0);
  EXPECT_EQ(idx.store(0, 5), 0);
}

// Keeping a prefix is exact where its tokens are at every layer in slot = position: it forgets
// every later token (its K/V at every layer, its Aux Cache entry), and the next tokens take the
// next slots; anything else is refused without a change.
TEST(KVIndex, KeepsOnlyAPrefixInPlace) {
  KVCache kv(2, 4, 8, false);
  const float k[4] = {1, 2, 3, 4}, v[4] = {4, 3, 2, 1};
  for (int t = 0; t < 5; ++t)
    for (int l = 0; l < 2; ++l) kv.write(l, kv.index().store(l, t), t, k, v);
  EXPECT_FALSE(kv.keep_prefix(6));  // more than it holds
  EXPECT_FALSE(kv.keep_prefix(-1));
  ASSERT_TRUE(kv.keep_prefix(3));
  EXPECT_EQ(kv.index().tokens(), 3);
  EXPECT_TRUE(kv.index().all_full());
  for (int l = 0; l < 2; ++l) {
    EXPECT_EQ(kv.index().size(l), 3);
    EXPECT_EQ(kv.layer(l).size(), 3);
    EXPECT_EQ(kv.index().slot(l, 3), -1);
  }
  EXPECT_EQ(kv.index().depth(4), 0);
  EXPECT_EQ(kv.index().store(0, 3), 3);  // token 3 again, computed anew, in the next slot
  kv.write(0, 3, 3, k, v);
  // Token 3 has K/V at layer 0 only (pruned at layer 1): tokens [0, 3) are still in place.
  EXPECT_FALSE(kv.keep_prefix(4));
  EXPECT_EQ(kv.index().tokens(), 4);
  EXPECT_TRUE(kv.keep_prefix(3));
  EXPECT_TRUE(kv.index().baseline_state());

  // Token 1 pruned at layer 1 (in the Aux Cache), token 2 after it in slot 1 there, then token 1
  // revived into slot 2: only token 0 is in place.
  KVIndex pruned(2, 8);
  pruned.store(0, 0), pruned.store(1, 0), pruned.store(0, 1), pruned.aux_put(1);
  pruned.store(0, 2), pruned.store(1, 2);
  EXPECT_FALSE(pruned.prefix_in_place(2));
  EXPECT_FALSE(pruned.keep_prefix(2));
  EXPECT_EQ(pruned.aux_entries(), 1);
  pruned.aux_erase(1), pruned.store(1, 1);
  EXPECT_EQ(pruned.slot(1, 1), 2);
  EXPECT_FALSE(pruned.keep_prefix(3));  // every token at every layer, but out of place
  EXPECT_FALSE(pruned.baseline_state());
  pruned.store(0, 3), pruned.aux_put(3);
  ASSERT_TRUE(pruned.keep_prefix(1));
  EXPECT_EQ(pruned.aux_entries(), 0);
  EXPECT_TRUE(pruned.baseline_state());
  EXPECT_EQ(pruned.tokens(), 1);
  for (int l = 0; l < 2; ++l) EXPECT_EQ(pruned.size(l), 1);
  EXPECT_THROW(pruned.store(1, 1), std::logic_error);  // token 1 is forgotten: no layer 0 to resume after
  EXPECT_EQ(pruned.store(0, 1), 1);
}

// A copy takes only a prefix in place, from a source of the same shape.
TEST(KVIndex, CopiesOnlyAPrefixInPlace) {
  KVIndex src(2, 8), dst(2, 8), other(3, 8);
  src.store(0, 0), src.store(1, 0), src.store(0, 1), src.aux_put(1);
  src.store(0, 2), src.store(1, 2);
  EXPECT_FALSE(dst.copy_prefix(src, 2));
  EXPECT_FALSE(other.copy_prefix(src, 1));
  ASSERT_TRUE(dst.copy_prefix(src, 1));
  EXPECT_TRUE(dst.baseline_state());
  EXPECT_EQ(dst.tokens(), 1);
  EXPECT_EQ(dst.aux_entries(), 0);
  EXPECT_EQ(src.aux_entries(), 1);
}

// A plan that computes a (token, layer) pair the KV cache already holds is refused by the
// CPU's storage as well as by the index.
TEST(KVIndex, CpuStorageFollowsTheIndex) {
  KVCache kv(2, 4, 8, false);
  const float k[4] = {1, 2, 3, 4}, v[4] = {4, 3, 2, 1};
  EXPECT_THROW(kv.write(0, 1, 3, k, v), std::logic_error);  // not the next slot
  const int s = kv.index().store(0, 3);
  kv.write(0, s, 3, k, v);
  EXPECT_THROW(kv.write(0, s, 3, k, v), std::logic_error);  // the slot is taken
  EXPECT_THROW(kv.write(0, s + 1, 3, k, v), std::logic_error);  // the pair is stored already
  EXPECT_EQ(kv.layer(0).pos(s), 3);
  EXPECT_NO_THROW(kv.check_follows_index(0, 0));
  // Prefill writes before booking: a write the index then books elsewhere is caught.
  kv.write(0, 1, 5, k, v);
  kv.write(0, 2, 4, k, v);
  kv.index().store(0, 4);
  kv.index().store(0, 5);
  EXPECT_THROW(kv.check_follows_index(0, 1), std::logic_error);
}

// A prefill of 20 tokens on 6 layers, pruning at layers 2 and 4 (keep 0.5): even positions and
// the last one go on past layer 2, every fourth and the last past layer 4.
KVIndex steady_test_index(LayerSchedule& s) {
  PruneSchedule ps;
  ps.points = {{2, 0.5}, {4, 0.5}};
  s = LayerSchedule::from(ps, 6);
  KVIndex index(6, 64);
  ForwardCounters k;
  std::vector<int32_t> all, half, quarter;
  for (int t = 0; t < 20; ++t) {
    all.push_back(t);
    if (t % 2 == 0 && t <= 16) half.push_back(t);
    if (t % 4 == 0 && t <= 12) quarter.push_back(t);
  }
  half.push_back(19), quarter.push_back(19);
  for (int l = 0; l < 6; ++l) {
    const std::vector<int32_t>& alive = l < 2 ? all : l < 4 ? half : quarter;
    const std::vector<int32_t>& prev = l == 2 ? all : l == 4 ? half : std::vector<int32_t>{};
    record_prefill_layer(index, k, l, prev, alive);
  }
  return index;
}

void expect_same_index(const KVIndex& a, const KVIndex& b) {
  for (int l = 0; l < a.n_layers(); ++l) {
    ASSERT_EQ(a.size(l), b.size(l)) << "layer " << l;
    for (int t = 0; t < a.n_ctx(); ++t) ASSERT_EQ(a.slot(l, t), b.slot(l, t)) << "layer " << l << " token " << t;
  }
  for (int t = 0; t < a.n_ctx(); ++t) ASSERT_EQ(a.depth(t), b.depth(t)) << "token " << t;
}

TEST(SteadyDecode, PlanAndBookingMatchDecodeStepWhenNothingRevives) {
  LayerSchedule s;
  KVIndex host = steady_test_index(s), device = host;
  const std::optional<SteadyDecodePlan> plan = plan_steady_decode(device, s);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->first_listed, 2);
  EXPECT_EQ(plan->need_depth[2], 4);
  EXPECT_EQ(plan->need_depth[4], 6);
  // Scores that keep, at each selection, only tokens with K/V down to the next pruning layer.
  ForwardCounters kh, kd;
  DecodeStep step(host, kh, s, 20);
  std::vector<float> imp;
  for (int l = 0; l < 6; ++l) {
    const DecodeLayerPlan& lp = step.next_layer(imp);
    EXPECT_EQ(lp.rows, std::vector<int32_t>{20}) << "layer " << l;
    EXPECT_EQ(lp.slot0, plan->slot[l]) << "layer " << l;
    EXPECT_EQ(static_cast<int>(lp.keys.size()), plan->n_keys[l]) << "layer " << l;
    if (l < plan->first_listed) {
      EXPECT_TRUE(lp.all_keys) << "layer " << l;
    }
    imp.assign(lp.keys.size(), 0.0f);
    for (size_t i = 0; i + 1 < lp.keys.size(); ++i) imp[i] = host.depth(lp.keys[i]) >= (l < 3 ? 4 : 6) ? 1.0f : 0.0f;
  }
  record_steady_decode(device, kd, *plan);
  expect_same_index(host, device);
  EXPECT_EQ(kh.token_layers, kd.token_layers);
  EXPECT_EQ(kh.selections, kd.selections);
  EXPECT_EQ(kh.revived, 0);
}

// The device's test for a miss (a kept token short of need_depth) is exactly "DecodeStep revives".
TEST(SteadyDecode, ShortDepthAtASelectionIsExactlyWhenDecodeStepRevives) {
  std::mt19937 rng(5);
  int misses = 0, steady = 0;
  for (int trial = 0; trial < 200; ++trial) {
    LayerSchedule s;
    KVIndex host = steady_test_index(s);
    const std::optional<SteadyDecodePlan> plan = plan_steady_decode(host, s);
    ASSERT_TRUE(plan.has_value());
    const KVIndex before = host;
    ForwardCounters k;
    DecodeStep step(host, k, s, 20);
    std::vector<float> imp;
    bool predicted_miss = false, revived = false;
    for (int l = 0; l < 6; ++l) {
      const DecodeLayerPlan& lp = step.next_layer(imp);
      revived = revived || lp.n_revived() > 0 || !lp.stop_rows.empty();
      if (plan->selects[l])
        for (int32_t t : step.selected()) predicted_miss = predicted_miss || before.depth(t) < plan->need_depth[l];
      imp.resize(lp.keys.size());
      // Tokens deep enough for the next selection mostly score higher, so both outcomes occur.
      const int deep = l < 3 ? 4 : 6;
      for (size_t i = 0; i < imp.size(); ++i)
        imp[i] = std::uniform_real_distribution<float>(0, 1)(rng) + (before.depth(lp.keys[i]) >= deep ? 0.8f : 0.0f);
    }
    EXPECT_EQ(predicted_miss, revived) << "trial " << trial;
    (revived ? misses : steady) += 1;
  }
  EXPECT_GT(misses, 0);
  EXPECT_GT(steady, 0);
}

TEST(SteadyDecode, NoPlanWhereTheStepCannotBeSteadyByConstruction) {
  LayerSchedule s;
  KVIndex index = steady_test_index(s);
  // Static selection never re-selects; a schedule pruning before this index's first pruned
  // layer would revive there.
  PruneSchedule stat;
  stat.points = {{2, 0.5}};
  stat.selection = PruneSelection::kStatic;
  EXPECT_FALSE(plan_steady_decode(index, LayerSchedule::from(stat, 6)).has_value());
  EXPECT_FALSE(plan_steady_decode(index, LayerSchedule::baseline(6)).has_value());
  PruneSchedule deeper;
  deeper.points = {{3, 0.5}};
  EXPECT_FALSE(plan_steady_decode(index, LayerSchedule::from(deeper, 6)).has_value());
  EXPECT_TRUE(plan_steady_decode(index, s).has_value());
}

TEST(SelectTop, NaNScoresRankLowestAndTheChoiceIsDeterministic) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> s = {0.1f, nan, 0.5f, -nan, 0.3f, nan, -std::numeric_limits<float>::infinity()};
  EXPECT_EQ(select_top(s, 3), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(select_top(s, 4), (std::vector<int>{0, 2, 4, 6}));
  EXPECT_EQ(select_top(s, 5), (std::vector<int>{0, 1, 2, 4, 6}));  // NaNs tie: the lower index wins
  std::vector<float> all_nan(1000, nan);
  EXPECT_EQ(select_top(all_nan, 2), (std::vector<int>{0, 1}));
}

// The choice under a revival budget: the ranking of select_top, not-ready candidates taken only
// while the budget lasts; a budget that covers the top's not-ready ones changes nothing.
TEST(SelectTop, WithinABudgetTakesNotReadyOnesInRankOrderWhileItLasts) {
  const std::vector<float> s = {0.9f, 0.1f, 0.8f, 0.7f, 0.2f, 0.6f, 0.3f};
  const std::vector<uint8_t> ready = {0, 1, 0, 1, 1, 0, 1};
  EXPECT_EQ(select_top(s, 3), (std::vector<int>{0, 2, 3}));
  EXPECT_EQ(select_top_within(s, 3, ready, 2), select_top(s, 3));
  EXPECT_EQ(select_top_within(s, 3, ready, 0), (std::vector<int>{3, 4, 6}));     // the best ready ones
  EXPECT_EQ(select_top_within(s, 3, ready, 1), (std::vector<int>{0, 3, 6}));     // 0 ranks first, 2 waits
  EXPECT_EQ(select_top_within(s, 6, ready, 0), (std::vector<int>{1, 3, 4, 6}));  // fewer: 4 are ready
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(select_top_within(std::vector<float>{nan, 0.5f, nan, 0.1f}, 2, std::vector<uint8_t>{1, 0, 1, 0}, 0),
            (std::vector<int>{0, 2}));
}

// The partial selections give what walking the whole ranking gives, on random scores with ties
// and NaNs, every budget from 0 to past the not-ready count.
TEST(SelectTop, WithinABudgetEqualsWalkingTheWholeRanking) {
  std::mt19937 rng(11);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 60);
    std::vector<float> s(n);
    std::vector<uint8_t> ready(n);
    for (int i = 0; i < n; ++i) {
      const unsigned r = rng() % 10;
      s[i] = r == 0 ? nan : static_cast<float>(rng() % 8);  // few values: many ties
      ready[i] = rng() % 3 != 0;
    }
    const int n_keep = static_cast<int>(rng() % (n + 1));
    for (int budget = 0; budget <= n; budget += 1 + budget / 4) {
      std::vector<int> order(n);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        const bool an = std::isnan(s[a]), bn = std::isnan(s[b]);
        if (an != bn) return bn;
        return !an && s[a] > s[b];
      });
      std::vector<int> want;
      int left = budget;
      for (int i : order) {
        if (static_cast<int>(want.size()) == n_keep) break;
        if (!ready[i] && left-- <= 0) continue;
        want.push_back(i);
      }
      std::sort(want.begin(), want.end());
      ASSERT_EQ(select_top_within(s, n_keep, ready, budget), want) << "trial " << trial << " budget " << budget;
    }
  }
}

// What one decode step on steady_test_index revives under scores that rank every token short of
// the next pruning layer first: per selecting layer the kept keys, and the tokens computed besides
// the new one.
struct BudgetStep {
  std::vector<std::vector<int32_t>> kept;  // at layers 2 and 4
  std::set<int32_t> revived;
  int64_t revived_pairs = 0;
};
BudgetStep step_with_budget(int budget) {
  LayerSchedule s;
  KVIndex index = steady_test_index(s);
  s.revive_budget = budget;
  ForwardCounters k;
  DecodeStep step(index, k, s, 20);
  BudgetStep out;
  std::vector<float> imp;
  for (int l = 0; l < 6; ++l) {
    const DecodeLayerPlan& lp = step.next_layer(imp);
    if (l == 2 || l == 4) out.kept.emplace_back(step.selected().begin(), step.selected().end());
    out.revived.insert(lp.rows.begin(), lp.rows.end() - 1);
    // Not-ready tokens (short of the next pruning layer's depth) first, later positions higher.
    const int need = l < 3 ? 4 : 6;
    imp.assign(lp.keys.size(), 0.0f);
    for (size_t i = 0; i + 1 < lp.keys.size(); ++i)
      imp[i] = (index.depth(lp.keys[i]) < need ? 100.0f : 0.0f) + static_cast<float>(lp.keys[i]);
  }
  out.revived_pairs = k.revived;
  return out;
}

// A budget bounds the tokens a step revives and keeps the same number of keys (the next-ranked
// tokens with K/V already); without a budget, or with one that does not bind, the step is the
// paper's.
TEST(ReviveBudget, BoundsTheTokensAStepRevivesAndKeepsTheKeyCount) {
  const BudgetStep paper = step_with_budget(-1), loose = step_with_budget(100);
  const BudgetStep none = step_with_budget(0), one = step_with_budget(1), three = step_with_budget(3);
  EXPECT_GE(paper.revived.size(), 5u);
  EXPECT_EQ(loose.kept, paper.kept);
  EXPECT_EQ(loose.revived, paper.revived);
  EXPECT_EQ(loose.revived_pairs, paper.revived_pairs);
  EXPECT_TRUE(none.revived.empty());
  EXPECT_EQ(none.revived_pairs, 0);
  EXPECT_EQ(one.revived.size(), 1u);
  EXPECT_EQ(three.revived.size(), 3u);
  for (const BudgetStep* b : {&none, &one, &three})
    for (size_t i = 0; i < paper.kept.size(); ++i) EXPECT_EQ(b->kept[i].size(), paper.kept[i].size());
  // Budget 0 keeps the tokens prefill carried past each layer: even positions at layer 2, every
  // fourth at layer 4 (and never the new token, which selected() leaves out).
  EXPECT_EQ(none.kept[0], (std::vector<int32_t>{0, 2, 4, 6, 8, 10, 12, 14, 16, 19}));
  EXPECT_EQ(none.kept[1], (std::vector<int32_t>{0, 4, 8, 12, 19}));
  // Budget 1 revives the best-ranked short token at layer 2 (the latest position that stopped at
  // layer 2, 18) and carries it on past layer 4 for free.
  EXPECT_EQ(one.revived, (std::set<int32_t>{18}));
  EXPECT_EQ(one.kept[1], (std::vector<int32_t>{4, 8, 12, 18, 19}));
}

// Long prompts under an aggressive schedule revive many tokens per layer in one decode step:
// the batched revival rows (matrix-product attention over the gathered keys) against the
// float64 reference of the procedure.
TEST(LazyPlanDecode, BatchedRevivalsMatchTheFloat64Reference) {
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  const ModelConfig& c = model->config();
  const PruneSchedule sched = PruneSchedule::parse("1:0.3,2:0.5", c.n_layers);
  test::ReferenceModel ref_model(*model);
  test::ReferenceLazy ref(ref_model, sched.keep_per_layer(c.n_layers));
  SessionOptions opt;
  opt.n_threads = 2;
  opt.kv_f16 = false;
  opt.prune = sched;
  Session s(model, opt);
  auto prompt = random_tokens(150, c.n_vocab, 21);
  std::vector<int> pv(prompt.begin(), prompt.end());
  test::Vec want = ref.prefill(pv);
  s.prefill(prompt);
  int64_t revived_before = 0, most_in_a_step = 0;
  for (int step = 0; step < 4; ++step) {
    const int32_t next = argmax(s.logits());
    s.decode(next);
    want = ref.decode(next);
    double scale = 0;
    for (double x : want) scale = std::max(scale, std::fabs(x));
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(s.logits()[i], want[i], 1e-4 * std::max(1.0, scale)) << "step " << step << " logit " << i;
    most_in_a_step = std::max(most_in_a_step, s.stats().revived - revived_before);
    revived_before = s.stats().revived;
  }
  EXPECT_EQ(s.stats().revived, ref.revived);
  EXPECT_GE(most_in_a_step, 8) << "too few revivals to exercise the batched path";
}

}  // namespace
}  // namespace lazyllm

namespace lazyllm {
namespace {

std::string eval_model_path() { return std::string(LAZYLLM_SOURCE_DIR) + "/eval/models/synth-llama-6l-256d.gguf"; }

// The trained 6-layer model: on a GPU the default schedule's pruning layers cost more than a
// short prompt's saved work (measured break-even near 2300 tokens), not at 4K; on the CPU the
// saving always dominates.
TEST(CostModel, TinyModelShortPromptsStayUnprunedOnGpuOnly) {
  auto model = Model::load(eval_model_path());
  const LayerSchedule s = LayerSchedule::from(PruneSchedule::default_for(model->config().n_layers), model->config().n_layers);
  const DeviceCost gpu = device_cost(Device::Cuda, *model, 1), cpu = device_cost(Device::Cpu, *model, 2);
  const PruneVerdict short_gpu = judge_prefill(*model, plan_prefill(512, s), 0, gpu);
  EXPECT_FALSE(short_gpu.prune);
  EXPECT_NE(short_gpu.why.find("off: estimated saving"), std::string::npos) << short_gpu.why;
  EXPECT_TRUE(judge_prefill(*model, plan_prefill(4000, s), 0, gpu).prune);
  // Completing the deferred pairs in the first decode step has a fixed cost of its own.
  const PruneVerdict completing = judge_prefill(*model, plan_prefill(4000, s), 0, gpu, /*completes=*/true);
  EXPECT_FALSE(completing.prune);
  EXPECT_NE(completing.why.find("completing step"), std::string::npos) << completing.why;
  EXPECT_TRUE(judge_prefill(*model, plan_prefill(512, s), 0, cpu, true).prune);
  EXPECT_TRUE(judge_prefill(*model, plan_prefill(512, s), 0, cpu).prune);
  // The saving grows with the prompt.
  EXPECT_LT(judge_prefill(*model, plan_prefill(1000, s), 0, gpu).saved_ms,
            judge_prefill(*model, plan_prefill(2000, s), 0, gpu).saved_ms);
}

// A gen-model shape without weights, for the estimate: bf16-sized layers of a Llama.
struct CostShape {
  ModelConfig config;
  std::vector<LayerSize> layers;
};
CostShape cost_shape(const GenModelSpec& g) {
  CostShape s;
  s.config.n_embd = g.embd, s.config.n_layers = g.layers, s.config.n_heads = g.heads;
  s.config.n_kv_heads = g.kv_heads, s.config.head_dim = g.embd / g.heads, s.config.n_ff = g.ff;
  const double kvd = double(g.kv_heads) * (g.embd / g.heads);
  const double params = double(g.embd) * g.embd * 2 + 2.0 * g.embd * kvd + 3.0 * g.embd * g.ff;
  s.layers.assign(g.layers, {params, 2 * params});
  return s;
}

// With the completing step, a GPU prunes only where its fixed costs are a small share of the
// prefill: answers of two tokens were measured slower beyond it (llama2-7b at 512 tokens, the
// 12-layer code model at 4000) and no slower within it (llama2-7b at 1024-4096).
TEST(CostModel, CompletingGpuPrefillsPruneOnlyWhereWholeAnswersKeepUp) {
  const CostShape l7 = cost_shape(named_shape("llama2-7b"));
  const CostShape code = cost_shape(parse_dims("embd=384,layers=12,heads=6,kv_heads=2,ff=1024"));
  auto verdict = [](const CostShape& m, int n, bool completes) {
    const LayerSchedule s = LayerSchedule::from(PruneSchedule::default_for(m.config.n_layers), m.config.n_layers);
    return judge_prefill(m.config, m.layers, plan_prefill(n, s), 0, device_cost(Device::Cuda, m.config, 1), completes);
  };
  const PruneVerdict short7 = verdict(l7, 512, true);
  EXPECT_FALSE(short7.prune);
  EXPECT_NE(short7.why.find("whole answers would be slower"), std::string::npos) << short7.why;
  EXPECT_GT(short7.saved_ms, kPruneMargin * short7.overhead_ms);  // the TTFT alone would prune
  for (int n : {1024, 2048, 4096, 16384, 32768}) EXPECT_TRUE(verdict(l7, n, true).prune) << n;
  const PruneVerdict code4k = verdict(code, 4000, true);
  EXPECT_FALSE(code4k.prune) << code4k.why;
  EXPECT_NE(code4k.why.find("whole answers would be slower"), std::string::npos) << code4k.why;
  // Re-selecting decode has no completing step: the bound does not apply.
  EXPECT_TRUE(verdict(l7, 512, false).prune);
  EXPECT_TRUE(verdict(code, 4000, false).prune);
  // Nor on the CPU, whose completing step was measured no slower (docs/benchmarks.md).
  DeviceCost cpu = device_cost(Device::Cpu, l7.config, 2);
  EXPECT_EQ(cpu.completion_share_max, 0);
  // The shape-only estimate is the model's: a loaded model gives the same numbers.
  auto model = Model::load(eval_model_path());
  const LayerSchedule es =
      LayerSchedule::from(PruneSchedule::default_for(model->config().n_layers), model->config().n_layers);
  const DeviceCost gpu = device_cost(Device::Cuda, *model, 1);
  const PruneVerdict a = judge_prefill(*model, plan_prefill(3000, es), 0, gpu, true);
  const PruneVerdict b = judge_prefill(model->config(), layer_sizes(*model), plan_prefill(3000, es), 0, gpu, true);
  EXPECT_EQ(a.saved_ms, b.saved_ms);
  EXPECT_EQ(a.prefill_ms, b.prefill_ms);
  EXPECT_GT(a.prefill_ms, a.saved_ms);
  EXPECT_THROW(judge_prefill(model->config(), std::span<const LayerSize>{}, plan_prefill(3000, es), 0, gpu), Error);
}

// Quantized weights on a GPU: the completing step copies each layer it completes into bf16 a
// second time (batches over 64 rows), which the verdict counts: only when the step completes,
// only at layers with more than 64 deferred rows, by the bytes each layer moves, and not when the
// prefill's copies are kept for it.
TEST(CostModel, CompletingStepCountsTheSecondDequantization) {
  auto model = Model::load(eval_model_path());
  const int L = model->config().n_layers;
  const LayerSchedule s = LayerSchedule::from(PruneSchedule::default_for(L), L);
  const DeviceCost plain = device_cost(Device::Cuda, *model, 1);
  DeviceCost quant = plain;
  quant.dequant_bytes.assign(L, 0);
  for (int l = 0; l < L; ++l) quant.dequant_bytes[l] = 1e9 * (l + 1);  // distinct per layer
  for (int n : {64, 4000}) {
    SCOPED_TRACE(n);
    const PrefillPlan plan = plan_prefill(n, s);
    double expect_ms = 0;
    for (int l = 0; l < L; ++l)
      if (n - plan.count[l] > 64) expect_ms += 1e3 * quant.dequant_bytes[l] / quant.dequant_bytes_per_s;
    if (n == 4000) {
      EXPECT_GT(expect_ms, 0);
    } else {
      EXPECT_EQ(expect_ms, 0);  // at most 56 deferred rows at a layer: the products read the blocks
    }
    const PruneVerdict base = judge_prefill(*model, plan, 0, plain, true);
    EXPECT_NEAR(judge_prefill(*model, plan, 0, quant, true).overhead_ms - base.overhead_ms, expect_ms, 1e-9);
    EXPECT_EQ(judge_prefill(*model, plan, 0, quant, false).overhead_ms,
              judge_prefill(*model, plan, 0, plain, false).overhead_ms);
    EXPECT_EQ(judge_prefill(*model, plan, 0, quant, true).saved_ms, base.saved_ms);
    // With the prefill's copies kept for it, the completing step pays no second copy.
    DeviceCost copies = quant;
    copies.completion_reads_copies = true;
    EXPECT_EQ(judge_prefill(*model, plan, 0, copies, true).overhead_ms, base.overhead_ms);
  }
}

// The bytes per layer behind it: the blocks read and 2 bytes an element written, for the layer
// matrices that stay quantized; none in bf16 mode or for unquantized weights.
TEST(CostModel, DequantizationBytesFollowTheGpuWeightPlan) {
  const test::ArchSpec spec{.name = "dq", .embd = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ff = 128};
  auto q8 = test::make_model(spec, DType::Q8_0);
  const ModelConfig& c = q8->config();
  const double qd = double(c.n_heads) * c.head_dim, kvd = double(c.n_kv_heads) * c.head_dim;
  const double elems = c.n_embd * (qd + 2 * kvd) + qd * c.n_embd + 3.0 * c.n_ff * c.n_embd;
  const std::vector<double> native = plan_gpu_weights(c, q8->weights(), GpuWeights::kNative).dequant_bytes;
  ASSERT_EQ(native.size(), static_cast<size_t>(c.n_layers));
  for (double b : native) EXPECT_EQ(b, elems * (34.0 / 32 + 2));  // Q8_0: 34 bytes per 32 values
  for (double b : plan_gpu_weights(c, q8->weights(), GpuWeights::kBf16).dequant_bytes) EXPECT_EQ(b, 0);
  auto f32 = test::make_model(spec, DType::F32);
  for (double b : plan_gpu_weights(f32->config(), f32->weights(), GpuWeights::kNative).dequant_bytes) EXPECT_EQ(b, 0);
}

// A session whose cost model turns pruning off computes the baseline, prefill and decode, and
// says why.
TEST(CostModel, SessionLeftUnprunedRunsTheBaselineAndSaysWhy) {
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  auto prompt = random_tokens(12, model->config().n_vocab, 4);
  SessionOptions base_opt;
  base_opt.n_threads = 1;
  SessionOptions auto_opt = base_opt;
  auto_opt.prune = PruneSchedule::parse("1:0.5,2:0.5", model->config().n_layers);
  auto_opt.prune_policy = PrunePolicy::kAuto;
  Session base(model, base_opt), lazy(model, auto_opt);
  base.prefill(prompt);
  lazy.prefill(prompt);
  EXPECT_EQ(lazy.stats().pruning.rfind("off: ", 0), 0u) << lazy.stats().pruning;
  EXPECT_TRUE(base.stats().pruning.empty());
  for (int step = 0; step < 3; ++step) {
    ASSERT_EQ(0, std::memcmp(base.logits().data(), lazy.logits().data(), base.logits().size() * sizeof(float)));
    const int32_t next = argmax(base.logits());
    base.decode(next);
    lazy.decode(next);
  }
  EXPECT_EQ(lazy.stats().selections, 0);
  // The same session told to always prune does.
  auto_opt.prune_policy = PrunePolicy::kAlways;
  Session forced(model, auto_opt);
  forced.prefill(prompt);
  EXPECT_EQ(forced.stats().pruning, "on");
  EXPECT_GT(forced.stats().selections, 0);
}

}  // namespace
}  // namespace lazyllm

namespace lazyllm {
namespace {

// LazyDecode::kComplete: the first decode step computes every deferred (token, layer) pair in
// one batch (the float64 reference running a keep-everything step after the pruned prefill),
// leaves the Aux Cache empty and every token at full depth; later steps select nothing.
// Two runs of slots (0, 1, ... and slot0, slot0 + 1, ...), interleaved by position: each row's
// keys split between the runs; anything else is not two runs.
TEST(KeyRuns, SplitsEachRowsKeysBetweenTheRuns) {
  DecodeLayerPlan p;
  p.slot0 = 5;
  p.rows = {10, 20, 30};
  p.key_slots = {0, 5, 1, 2, 6, 3, 4, 7};
  p.row_keys = {2, 5, 8};
  std::vector<int32_t> ends;
  ASSERT_TRUE(key_runs(p, ends));
  EXPECT_EQ(ends, (std::vector<int32_t>{1, 3, 5, 1, 2, 3}));

  p.key_slots = {5, 6, 0, 1, 7, 2, 3, 4};  // the second run may come first
  ASSERT_TRUE(key_runs(p, ends));
  EXPECT_EQ(ends, (std::vector<int32_t>{0, 2, 5, 2, 3, 3}));

  for (const std::vector<int32_t>& bad : {std::vector<int32_t>{1, 5, 0, 2, 6, 3, 4, 7},     // first run out of order
                                          std::vector<int32_t>{0, 6, 1, 2, 5, 3, 4, 7},     // second run out of order
                                          std::vector<int32_t>{0, 5, 1, 2, 6, 3, 4, 8},     // a gap in the second
                                          std::vector<int32_t>{0, 5, 2, 3, 6, 4, 1, 7}}) {  // a gap in the first
    p.key_slots = bad;
    EXPECT_FALSE(key_runs(p, ends));
  }
  p.key_slots = {0, 5, 1, 2, 6, 3, 4, 7};
  p.row_keys = {2, 5, 9};  // more keys than listed
  EXPECT_FALSE(key_runs(p, ends));
  p.row_keys = {5, 2, 8};  // counts in any order
  ASSERT_TRUE(key_runs(p, ends));
  EXPECT_EQ(ends, (std::vector<int32_t>{3, 1, 5, 2, 1, 3}));
  p.row_keys = {0, 0, 8};  // rows that see no key yet
  ASSERT_TRUE(key_runs(p, ends));
  EXPECT_EQ(ends, (std::vector<int32_t>{0, 0, 5, 0, 0, 3}));
}

TEST(LazyComplete, FirstStepComputesEveryDeferredPairThenDecodesAsBaseline) {
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  const ModelConfig& c = model->config();
  const int L = c.n_layers, n = 90;
  const PruneSchedule sched = PruneSchedule::parse("complete:1:0.3,2:0.5", L);
  EXPECT_EQ(sched.to_string(), "complete:1:0.3,2:0.5");
  test::ReferenceModel ref_model(*model);
  test::ReferenceLazy ref(ref_model, sched.keep_per_layer(L));
  SessionOptions opt;
  opt.n_threads = 2;
  opt.kv_f16 = false;
  opt.prune = sched;
  Session s(model, opt);
  auto prompt = random_tokens(n, c.n_vocab, 8);
  std::vector<int> pv(prompt.begin(), prompt.end());
  ref.prefill(pv);
  s.prefill(prompt);
  const int64_t prefill_pairs = s.stats().token_layers_computed;
  const int64_t selections = s.stats().selections;
  ASSERT_GT(s.stats().aux_cache_entries, 0);
  ref.set_keep(std::vector<double>(L, 1.0));
  for (int step = 0; step < 3; ++step) {
    const int32_t next = argmax(s.logits());
    s.decode(next);
    const test::Vec want = ref.decode(next);
    double scale = 0;
    for (double x : want) scale = std::max(scale, std::fabs(x));
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(s.logits()[i], want[i], 1e-4 * std::max(1.0, scale)) << "step " << step << " logit " << i;
    if (step == 0) {
      EXPECT_EQ(s.stats().aux_cache_entries, 0);
      EXPECT_EQ(s.stats().token_layers_computed, int64_t{n + 1} * L);
      EXPECT_EQ(s.stats().revived, int64_t{n} * L - prefill_pairs);
      EXPECT_EQ(s.stats().lazy_decode, "complete");
      for (int t = 0; t <= n; ++t) ASSERT_EQ(SessionInternals::cpu(s).kv().depth(t), L) << "token " << t;
    }
  }
  EXPECT_EQ(s.stats().selections, selections);  // decode selected nothing
  EXPECT_EQ(s.stats().revived, ref.revived);
}

// The default decode rule on the CPU is the paper's re-selection; under the cost model it
// completes instead below kReselectMinContext tokens.
TEST(LazyComplete, AutoReselectsOnTheCpu) {
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  SessionOptions opt;
  opt.n_threads = 1;
  opt.prune = PruneSchedule::parse("1:0.3,2:0.5", model->config().n_layers);
  Session s(model, opt);
  s.prefill(random_tokens(60, model->config().n_vocab, 2));
  const int64_t before = s.stats().selections;
  s.decode(argmax(s.logits()));
  EXPECT_EQ(s.stats().lazy_decode, "reselect");
  EXPECT_GT(s.stats().selections, before);

  auto eval_model = Model::load(std::string(LAZYLLM_SOURCE_DIR) + "/eval/models/synth-llama-6l-256d.gguf");
  SessionOptions ao;
  ao.n_threads = 2;
  ao.n_ctx = 4096;
  ao.prune_policy = PrunePolicy::kAuto;
  ao.prune = PruneSchedule::default_for(eval_model->config().n_layers);
  static_assert(512 < kReselectMinContext && 3200 >= kReselectMinContext);
  for (int n : {512, 3200}) {
    Session a(eval_model, ao);
    a.prefill(random_tokens(n, eval_model->config().n_vocab, 2));
    ASSERT_EQ(a.stats().pruning, "on") << n;
    a.decode(argmax(a.logits()));
    EXPECT_EQ(a.stats().lazy_decode, n == 3200 ? "reselect" : "complete") << n;
  }
}

}  // namespace
}  // namespace lazyllm
