// DecodeStep's one-pass layer plans (prune/lazy_plan.cpp) against a plain walk of the same rules,
// written here one field at a time over an index that stores pair by pair, on random schedules,
// selection modes, revival budgets, importance (with ties) and several steps, with key_runs'
// split of each plan against counting; and select_top's threshold scan against a full stable
// sort, with NaN, signed zeros and infinities.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "cache/kv_index.h"
#include "lazyllm/lazyllm.h"
#include "prune/lazy_plan.h"
#include "prune/select.h"

namespace lazyllm {
namespace {

// One decode step by the rules of lazy_plan.h, each list built in its own loop.
class WalkedStep {
 public:
  WalkedStep(KVIndex& index, ForwardCounters& k, const LayerSchedule& s, int32_t p)
      : index_(index), k_(k), s_(s), p_(p), budget_(s.revive_budget) {
    index_.mark_prompt(p_, false);
    for (int t = 0; t < p_; ++t) sel_.push_back(t);
  }

  DecodeLayerPlan next(std::span<const float> importance, bool asked) {
    const int l = next_++;
    if (l > 0 && s_.prunes[l] && !sel_.empty()) {
      ++k_.selections;
      if (!s_.selector.reselects_at_decode()) {
        std::erase_if(sel_, [&](int32_t t) { return index_.depth(t) <= l; });
      } else {
        EXPECT_TRUE(asked);
        const int n_keep = keep_count(static_cast<int>(sel_.size()) + 1, s_.keep[l]) - 1;
        if (n_keep < static_cast<int>(sel_.size())) {
          std::vector<int> kept;
          if (budget_ < 0) {
            kept = select_top(importance.first(sel_.size()), n_keep);
          } else {
            const int need = s_.next_pruning_layer(l);
            std::vector<uint8_t> ready(sel_.size());
            for (size_t i = 0; i < sel_.size(); ++i)
              ready[i] = index_.depth(sel_[i]) >= need || std::count(carry_.begin(), carry_.end(), sel_[i]) > 0;
            kept = select_top_within(importance.first(sel_.size()), n_keep, ready, budget_);
            for (int i : kept) budget_ -= !ready[i];
          }
          std::vector<int32_t> next;
          for (int i : kept) next.push_back(sel_[i]);
          sel_ = next;
        }
      }
    }
    DecodeLayerPlan plan;
    plan.layer = l;
    // Carried rows not selected stop; selected tokens whose depth is this layer are rows.
    for (size_t i = 0; i < carry_.size(); ++i)
      if (std::find(sel_.begin(), sel_.end(), carry_[i]) == sel_.end()) {
        plan.stop_rows.push_back(static_cast<int32_t>(i));
        plan.stop_tokens.push_back(carry_[i]);
      }
    for (int32_t t : sel_) {
      if (index_.depth(t) != l) continue;
      const auto c = std::find(carry_.begin(), carry_.end(), t);
      plan.rows.push_back(t);
      plan.row_src.push_back(c == carry_.end() ? -1 : static_cast<int32_t>(c - carry_.begin()));
    }
    plan.rows.push_back(p_);
    plan.row_src.push_back(static_cast<int32_t>(carry_.size()));
    for (int32_t t : plan.stop_tokens) index_.aux_put(t);
    for (int32_t t : plan.rows) index_.aux_erase(t);
    plan.slot0 = index_.size(l);
    for (int32_t t : plan.rows) {
      index_.store(l, t);
      k_.prompt_token_layers += index_.is_prompt(t);
    }
    k_.token_layers += static_cast<int64_t>(plan.rows.size());
    k_.revived += plan.n_revived();
    plan.keys = sel_;
    plan.keys.push_back(p_);
    for (int32_t t : plan.keys) plan.key_slots.push_back(index_.slot(l, t));
    plan.all_keys = static_cast<int>(plan.keys.size()) == index_.size(l);
    for (size_t i = 0; i < plan.key_slots.size(); ++i)
      plan.all_keys = plan.all_keys && plan.key_slots[i] == static_cast<int32_t>(i);
    for (int32_t r : plan.rows)
      plan.row_keys.push_back(
          static_cast<int32_t>(std::count_if(plan.keys.begin(), plan.keys.end(), [&](int32_t t) { return t <= r; })));
    plan.want_importance = l + 1 < s_.n_layers() && s_.prunes[l + 1] && s_.selector.reselects_at_decode();
    carry_.assign(plan.rows.begin(), plan.rows.end() - 1);
    return plan;
  }

 private:
  KVIndex& index_;
  ForwardCounters& k_;
  const LayerSchedule& s_;
  int32_t p_;
  int next_ = 0, budget_;
  std::vector<int32_t> sel_, carry_;
};

void expect_same_plan(const DecodeLayerPlan& got, const DecodeLayerPlan& want) {
  EXPECT_EQ(got.layer, want.layer);
  EXPECT_EQ(got.rows, want.rows);
  EXPECT_EQ(got.row_src, want.row_src);
  EXPECT_EQ(got.stop_rows, want.stop_rows);
  EXPECT_EQ(got.stop_tokens, want.stop_tokens);
  EXPECT_EQ(got.keys, want.keys);
  EXPECT_EQ(got.key_slots, want.key_slots);
  EXPECT_EQ(got.row_keys, want.row_keys);
  EXPECT_EQ(got.slot0, want.slot0);
  EXPECT_EQ(got.want_importance, want.want_importance);
  EXPECT_EQ(got.all_keys, want.all_keys);
}

// key_runs against counting: the keys' slots are two runs (0, 1, ... below slot0 and slot0,
// slot0 + 1, ...) exactly when each slot continues one of them; each row's split counts its keys'
// slots below slot0.
void expect_runs_split(const DecodeLayerPlan& plan) {
  bool two_runs = true;
  int32_t a = 0, b = plan.slot0;
  for (int32_t s : plan.key_slots) {
    if (s < plan.slot0 && s == a) ++a;
    else if (s == b) ++b;
    else two_runs = false;
  }
  std::vector<int32_t> ends;
  ASSERT_EQ(key_runs(plan, ends), two_runs);
  if (!two_runs) return;
  const size_t m = plan.rows.size();
  for (size_t r = 0; r < m; ++r) {
    const auto first = std::count_if(plan.key_slots.begin(), plan.key_slots.begin() + plan.row_keys[r],
                                     [&](int32_t s) { return s < plan.slot0; });
    EXPECT_EQ(ends[r], first) << "row " << r;
    EXPECT_EQ(ends[m + r], plan.row_keys[r] - first) << "row " << r;
  }
}

void expect_same_state(const KVIndex& a, const KVIndex& b, const ForwardCounters& ka, const ForwardCounters& kb) {
  ASSERT_EQ(a.tokens(), b.tokens());
  ASSERT_EQ(a.full_depth_tokens(), b.full_depth_tokens());
  ASSERT_EQ(a.aux_entries(), b.aux_entries());
  for (int l = 0; l < a.n_layers(); ++l) {
    ASSERT_EQ(a.size(l), b.size(l)) << "layer " << l;
    ASSERT_EQ(a.slots_are_positions(l), b.slots_are_positions(l)) << "layer " << l;
    for (int t = 0; t < a.n_ctx(); ++t) ASSERT_EQ(a.slot(l, t), b.slot(l, t)) << "layer " << l << " token " << t;
  }
  for (int t = 0; t < a.n_ctx(); ++t) {
    ASSERT_EQ(a.depth(t), b.depth(t)) << "token " << t;
    ASSERT_EQ(a.in_aux(t), b.in_aux(t)) << "token " << t;
  }
  EXPECT_EQ(ka.token_layers, kb.token_layers);
  EXPECT_EQ(ka.prompt_token_layers, kb.prompt_token_layers);
  EXPECT_EQ(ka.revived, kb.revived);
  EXPECT_EQ(ka.selections, kb.selections);
}

// A prefill of n tokens under s, the kept tokens chosen by random scores (few values: ties).
void walk_prefill(KVIndex& index, ForwardCounters& k, const LayerSchedule& s, int n, std::mt19937& rng) {
  for (int t = 0; t < n; ++t) index.mark_prompt(t, true);
  const PrefillPlan plan = plan_prefill(n, s);
  std::vector<int32_t> alive(n), prev;
  std::iota(alive.begin(), alive.end(), 0);
  for (int l = 0; l < s.n_layers(); ++l) {
    prev.clear();
    if (plan.selects[l]) {
      prev = alive;
      std::vector<float> scores(alive.size() - 1);
      for (float& x : scores) x = static_cast<float>(rng() % 5);
      std::vector<int32_t> next;
      for (int i : select_top(scores, plan.count[l] - 1)) next.push_back(alive[i]);
      next.push_back(alive.back());
      alive = next;
    }
    record_prefill_layer(index, k, l, prev, alive);
  }
}

TEST(DecodePlanWalk, OnePassPlansEqualThePlainWalk) {
  std::mt19937 rng(29);
  const PruneSelection modes[] = {PruneSelection::kLazy, PruneSelection::kStatic, PruneSelection::kRandom};
  int revived_steps = 0;
  for (int trial = 0; trial < 120; ++trial) {
    const int L = 2 + static_cast<int>(rng() % 7), n = 3 + static_cast<int>(rng() % 150), steps = 4;
    PruneSchedule ps;
    for (int l = 1; l < L; ++l)
      if (rng() % 3 == 0) ps.points.push_back({l, 0.2 + 0.2 * static_cast<double>(rng() % 4)});
    ps.selection = modes[rng() % 3];
    ps.seed = rng();
    const int budgets[] = {-1, -1, 0, 1, 3};
    ps.revive_budget = budgets[rng() % 5];
    const LayerSchedule pruned = LayerSchedule::from(ps, L, rng() % 4 == 0);
    const LayerSchedule full = LayerSchedule::baseline(L);
    // The decode rule: re-select with the schedule, or complete with the baseline's.
    const LayerSchedule& decode = rng() % 3 == 0 ? full : pruned;
    KVIndex a(L, n + steps), b(L, n + steps);
    ForwardCounters ka, kb;
    std::mt19937 rng_a(trial), rng_b(trial);  // the same prefill twice
    walk_prefill(a, ka, pruned, n, rng_a);
    walk_prefill(b, kb, pruned, n, rng_b);
    SCOPED_TRACE(::testing::Message() << "trial " << trial << " layers " << L << " prompt " << n << " schedule "
                                      << ps.to_string() << (&decode == &full ? " (completing)" : ""));
    for (int step = 0; step < steps; ++step) {
      const int32_t p = a.tokens();
      DecodeStep got(a, ka, decode, p);
      WalkedStep want(b, kb, decode, p);
      std::vector<float> imp;
      bool asked = false;
      const int64_t revived = ka.revived;
      for (int l = 0; l < L; ++l) {
        const DecodeLayerPlan w = want.next(imp, asked);
        const DecodeLayerPlan& g = got.next_layer(imp);
        expect_same_plan(g, w);
        expect_runs_split(g);
        if (::testing::Test::HasFailure()) return;
        asked = g.want_importance;
        imp.assign(g.keys.size(), 0.0f);
        for (float& x : imp) x = static_cast<float>(rng() % 6);
      }
      expect_same_state(a, b, ka, kb);
      if (::testing::Test::HasFailure()) return;
      revived_steps += ka.revived > revived;
    }
  }
  EXPECT_GE(revived_steps, 50) << "too few steps revived tokens to exercise the walk";
}

// Better's order spelled out: larger first, NaN below everything, -0 equal to +0, ties to the
// lower index.
std::vector<int> top_by_sorting(const std::vector<float>& s, int n_keep) {
  std::vector<int> order(s.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const bool an = std::isnan(s[a]), bn = std::isnan(s[b]);
    if (an != bn) return bn;
    return !an && s[a] > s[b];
  });
  order.resize(std::clamp<size_t>(static_cast<size_t>(std::max(n_keep, 0)), 0, s.size()));
  std::sort(order.begin(), order.end());
  return order;
}

TEST(DecodePlanWalk, SelectTopEqualsAFullStableSort) {
  std::mt19937 rng(31);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  using lim = std::numeric_limits<float>;
  const float specials[] = {nan,        -nan,         0.0f, -0.0f, inf, -inf, lim::denorm_min(), -lim::denorm_min(),
                            lim::max(), lim::lowest()};
  for (int trial = 0; trial < 400; ++trial) {
    const int n = 1 + static_cast<int>(rng() % (trial < 300 ? 40 : 3000));
    std::vector<float> s(n);
    for (float& x : s) {
      const unsigned r = rng() % 8;
      x = r == 0  ? specials[rng() % 10]
          : r < 4 ? static_cast<float>(static_cast<int>(rng() % 7) - 3)
                  : std::ldexp(static_cast<float>(rng() % 1000) - 500.0f, -9);
    }
    for (int n_keep : {0, 1, n / 3, n / 2, n - 1, n, n + 1})
      ASSERT_EQ(select_top(s, n_keep), top_by_sorting(s, n_keep)) << "trial " << trial << " n_keep " << n_keep;
  }
}

}  // namespace
}  // namespace lazyllm
