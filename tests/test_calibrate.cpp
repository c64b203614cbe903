// The calibration search on made-up measurements: the choice honours the loss budget and the
// target and breaks ties the same whatever the order, the Pareto front, the coarse grid, the
// refinement's neighbours and seeds, and bad budgets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "eval/calibrate.h"

namespace lazyllm::eval {
namespace {

Measurement m(const std::string& spec, double score, double speedup, double computed = 0.5) {
  Measurement r;
  r.spec = spec;
  r.score = score;
  r.speedup = speedup;
  r.ttft_ms = 100 / speedup;
  r.computed_fraction = computed;
  return r;
}

const Measurement kBase = m("", 80, 1, 1);

std::vector<std::string> specs(const std::vector<Measurement>& v) {
  std::vector<std::string> out;
  for (const auto& x : v) out.push_back(x.spec);
  return out;
}

std::vector<std::string> specs(const std::vector<PruneSchedule>& v) {
  std::vector<std::string> out;
  for (const auto& x : v) out.push_back(x.to_string());
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

TEST(CalibrateChoice, FastestWithinTheLossBudget) {
  const std::vector<Measurement> c = {m("a", 79.5, 1.5), m("b", 78, 2.0), m("c", 80, 1.2)};
  Goal g;  // 1 point
  auto r = choose(kBase, c, g);
  ASSERT_TRUE(r.chosen);
  EXPECT_EQ(r.chosen->spec, "a");  // b is faster but loses 2 points
  g.max_loss = 2;
  EXPECT_EQ(choose(kBase, c, g).chosen->spec, "b");  // exactly at the budget counts
  g.max_loss = 0;
  EXPECT_EQ(choose(kBase, c, g).chosen->spec, "c");
}

// A schedule whose measured loss fits the budget but whose upper bound does not (a lucky few
// samples) is passed over for a slower one that is certainly within it; confidence 0 takes it.
TEST(CalibrateChoice, LossJudgedByItsUpperBound) {
  std::vector<Measurement> c = {m("lucky", 79.8, 2.0), m("sure", 79.5, 1.5)};
  c[0].loss_se = 1.0;  // 0.2 + 1.28 x 1.0 = 1.48 > 1 at 90%
  c[1].loss_se = 0.2;  // 0.5 + 1.28 x 0.2 = 0.76
  Goal g;
  EXPECT_NEAR(g.z(), 1.2816, 1e-3);
  EXPECT_NEAR(g.loss_bound(kBase, c[0]), 0.2 + g.z(), 1e-9);
  EXPECT_EQ(choose(kBase, c, g).chosen->spec, "sure");
  EXPECT_NE(g.describe().find(", judged at the 90% upper bound"), std::string::npos) << g.describe();
  g.confidence = 0.95;
  EXPECT_NEAR(g.z(), 1.6449, 1e-3);
  g.confidence = 0;
  EXPECT_EQ(g.z(), 0);
  EXPECT_EQ(choose(kBase, c, g).chosen->spec, "lucky");
  EXPECT_EQ(g.describe().find("upper bound"), std::string::npos) << g.describe();
  // Nothing certain enough: nothing chosen, and the message says what was asked.
  g.confidence = 0.999;
  c[1].loss_se = 0.5;
  const Choice r = choose(kBase, c, g);
  EXPECT_FALSE(r.chosen);
  EXPECT_NE(r.why.find("99.9% upper bound"), std::string::npos) << r.why;
}

// The overall score is the mean of the datasets' means, so its paired error combines each
// dataset's: here sqrt(var_a / 3 + var_b / 2) / 2 with the differences' sample variances.
TEST(CalibrateChoice, PairedLossStandardError) {
  const std::vector<double> base = {100, 50, 0, 80, 60};
  const std::vector<double> sched = {90, 50, 10, 70, 60};  // differences a: 10, 0, -10; b: 10, 0
  const std::vector<std::string> ds = {"a", "a", "a", "b", "b"};
  EXPECT_NEAR(paired_loss_se(base, sched, ds), std::sqrt(100.0 / 3 + 50.0 / 2) / 2, 1e-12);
  EXPECT_EQ(paired_loss_se(base, base, ds), 0);  // identical scores: no uncertainty
  EXPECT_EQ(paired_loss_se({90}, {80}, {"a"}), 0);  // one sample: no variance to estimate
  EXPECT_THROW(paired_loss_se(base, sched, {"a"}), Error);
}

// Samples that come in groups (packages) whose differences move together: the error counts
// groups, so it is larger than the samples' error would say, and its bound takes Student's t.
TEST(CalibrateChoice, GroupedLossStandardError) {
  int df = -1;
  // One dataset, every sample its own group: exactly the paired error, with n - 1 d.f.
  const std::vector<double> base = {100, 50, 0, 80, 60}, sched = {90, 50, 10, 70, 55};
  const std::vector<std::string> one(5, "a"), none(5, "");
  EXPECT_NEAR(grouped_loss_se(base, sched, one, none, df), paired_loss_se(base, sched, one), 1e-12);
  EXPECT_EQ(df, 4);
  // Two groups of three: differences 2, 2, 2 and 0, 0, 0. Shares (d - 1) / 6, group sums +-0.5,
  // variance 2 / 1 x 0.5 = 1; counting samples says sqrt(6 / 5 / 6) = 0.447.
  const std::vector<double> b6(6, 50);
  const std::vector<double> s6 = {48, 48, 48, 50, 50, 50};
  const std::vector<std::string> d6(6, "a"), g6 = {"x", "x", "x", "y", "y", "y"};
  EXPECT_NEAR(grouped_loss_se(b6, s6, d6, g6, df), 1.0, 1e-12);
  EXPECT_EQ(df, 1);
  EXPECT_NEAR(paired_loss_se(b6, s6, d6), std::sqrt(0.2), 1e-12);
  // Groups across datasets: a's differences 4, 0 and b's 1, 3 (means 2, 2), shares over 2 x 2
  // samples: 0.5, -0.5, -0.25, 0.25; groups x = {a0, b0}, y = {a1, b1} sum to 0.25, -0.25;
  // variance 2 x 0.125 = 0.25.
  EXPECT_NEAR(grouped_loss_se({10, 10, 10, 10}, {6, 10, 9, 7}, {"a", "a", "b", "b"}, {"x", "y", "x", "y"}, df), 0.5,
              1e-12);
  EXPECT_EQ(df, 1);
  // Named groups and samples without one (each its own) together: x = {0, 1}, then 2 and 3.
  grouped_loss_se(b6, s6, d6, {"x", "x", "", "", "y", "y"}, df);
  EXPECT_EQ(df, 3);
  // One group: nothing to estimate.
  EXPECT_EQ(grouped_loss_se(b6, s6, d6, std::vector<std::string>(6, "x"), df), 0);
  EXPECT_EQ(df, 0);
  EXPECT_THROW(grouped_loss_se(b6, s6, d6, {"x"}, df), Error);

  // The bound takes t with the measurement's degrees of freedom.
  Goal g;
  EXPECT_NEAR(g.quantile(4), 1.5332, 1e-4);
  EXPECT_NEAR(g.quantile(1), 3.0777, 1e-4);
  EXPECT_EQ(g.quantile(0), g.z());
  Measurement grouped = m("grouped", 79.8, 2.0);
  grouped.loss_se = 1.0;
  grouped.loss_df = 4;
  EXPECT_NEAR(g.loss_bound(kBase, grouped), 0.2 + 1.5332, 1e-4);
  grouped.loss_df = 0;
  EXPECT_NEAR(g.loss_bound(kBase, grouped), 0.2 + g.z(), 1e-9);
  g.confidence = 0;
  EXPECT_EQ(g.quantile(4), 0);
}

TEST(CalibrateChoice, NeverTheBaselineNorASlowerSchedule) {
  Goal g;
  g.max_loss = 100;
  auto r = choose(kBase, {kBase, m("slow", 80, 0.9), m("same", 80, 1.0)}, g);
  EXPECT_FALSE(r.chosen);
  EXPECT_NE(r.why.find("fastest within 100 points"), std::string::npos) << r.why;
  EXPECT_NE(r.why.find("the fastest was same at 1.00x"), std::string::npos) << r.why;
}

TEST(CalibrateChoice, BestScoreReachingTheTarget) {
  const std::vector<Measurement> c = {m("a", 79.5, 1.5), m("b", 78, 2.0), m("c", 80, 1.2)};
  Goal g;
  g.target_speedup = 1.4;
  EXPECT_EQ(choose(kBase, c, g).chosen->spec, "a");
  g.target_speedup = 1.8;
  EXPECT_EQ(choose(kBase, c, g).chosen->spec, "b");  // the loss budget is not applied unless given
  g.target_speedup = 2.5;
  auto r = choose(kBase, c, g);
  EXPECT_FALSE(r.chosen);
  EXPECT_NE(r.why.find("2.50x"), std::string::npos) << r.why;
  EXPECT_NE(r.why.find("the fastest was b at 2.00x"), std::string::npos) << r.why;
  // With --max-loss given as well, both must hold.
  g.target_speedup = 1.4;
  g.max_loss = 0.2;
  g.max_loss_given = true;
  EXPECT_FALSE(choose(kBase, c, g).chosen);
  g.max_loss = 0.5;
  EXPECT_EQ(choose(kBase, c, g).chosen->spec, "a");
}

TEST(CalibrateChoice, TiesAreBrokenTheSameWhateverTheOrder) {
  std::vector<Measurement> c = {m("x", 79.5, 1.5, 0.5), m("y", 79.5, 1.5, 0.4), m("z", 79.8, 1.5, 0.6)};
  Goal g;
  for (int i = 0; i < 3; ++i) {
    std::rotate(c.begin(), c.begin() + 1, c.end());
    EXPECT_EQ(choose(kBase, c, g).chosen->spec, "z");  // same speed: the better score
  }
  c = {m("x", 79.5, 1.5, 0.5), m("y", 79.5, 1.5, 0.4)};
  EXPECT_EQ(choose(kBase, c, g).chosen->spec, "y");  // same speed and score: less computed
  std::reverse(c.begin(), c.end());
  EXPECT_EQ(choose(kBase, c, g).chosen->spec, "y");
  c = {m("q", 79.5, 1.5), m("p", 79.5, 1.5)};
  EXPECT_EQ(choose(kBase, c, g).chosen->spec, "p");  // everything equal: the spec
  g.target_speedup = 1.2;
  c = {m("x", 79, 1.5), m("y", 79, 1.7)};
  EXPECT_EQ(choose(kBase, c, g).chosen->spec, "y");  // target mode: same score, the faster
}

TEST(CalibrateChoice, BadGoalsAreRefused) {
  Goal g;
  g.max_loss = -1;
  EXPECT_THROW(g.check(), Error);
  EXPECT_THROW(choose(kBase, {}, g), Error);
  g.max_loss = NAN;
  EXPECT_THROW(g.check(), Error);
  g = Goal{};
  g.target_speedup = 1.0;
  EXPECT_THROW(g.check(), Error);
  g.target_speedup = INFINITY;
  EXPECT_THROW(g.check(), Error);
  g.target_speedup = 1.01;
  EXPECT_NO_THROW(g.check());
  for (double level : {-0.1, 1.0, double(NAN)}) {
    g.confidence = level;
    EXPECT_THROW(g.check(), Error) << level;
  }
}

TEST(CalibrateFront, KeepsExactlyTheUndominatedPoints) {
  const std::vector<Measurement> pts = {kBase,
                                        m("a", 79.5, 1.5),
                                        m("b", 78, 2.0),
                                        m("dominated", 77, 1.4),  // a beats it on both
                                        m("tie1", 70, 2.5),
                                        m("tie2", 70, 2.5),        // equal points: both kept
                                        m("slower_same", 79.5, 1.3),  // a: same score, faster
                                        m("worse_same_speed", 60, 2.5)};
  const auto front = pareto_front(pts);
  EXPECT_EQ(specs(front), (std::vector<std::string>{"", "a", "b", "tie1", "tie2"}));
  // Rising speedup; a baseline with the best score stays on it.
  for (size_t i = 1; i < front.size(); ++i) EXPECT_LE(front[i - 1].speedup, front[i].speedup);
  EXPECT_TRUE(pareto_front({}).empty());
  // A schedule better than the baseline on both pushes it off.
  EXPECT_EQ(specs(pareto_front({kBase, m("better", 81, 1.1)})), (std::vector<std::string>{"better"}));
}

TEST(CalibrateGrid, DefaultFirstDistinctValidAndBounded) {
  for (int layers : {2, 6, 32}) {
    const auto grid = coarse_grid(layers, 100);
    ASSERT_FALSE(grid.empty());
    EXPECT_EQ(grid[0].to_string(), PruneSchedule::default_for(layers).to_string());
    std::vector<std::string> seen;
    for (const auto& s : grid) {
      const std::string spec = s.to_string();
      EXPECT_FALSE(has(seen, spec)) << spec;
      seen.push_back(spec);
      EXPECT_EQ(PruneSchedule::parse(spec, layers).to_string(), spec);
      for (const auto& p : s.points) EXPECT_TRUE(p.layer >= 1 && p.layer < layers) << spec;
    }
    EXPECT_LE(grid.size(), 28u);  // 3 depths x 3 counts x 3 keeps, and the default
    const auto small = coarse_grid(layers, 5);
    EXPECT_EQ(small.size(), std::min<size_t>(5, grid.size()));
    EXPECT_EQ(small[0].to_string(), grid[0].to_string());
    EXPECT_EQ(coarse_grid(layers, 1).size(), 1u);
  }
  // 32 layers: the first pruning layer at 0.2/0.4/0.6 of depth, up to three layers to the last.
  const auto g32 = specs(coarse_grid(32, 100));
  EXPECT_TRUE(has(g32, "6:0.3")) << ::testing::PrintToString(g32);
  EXPECT_TRUE(has(g32, "13:0.5,31:0.5"));
  EXPECT_TRUE(has(g32, "19:0.7,25:0.7,31:0.7"));
  EXPECT_EQ(g32.size(), 28u);
  EXPECT_THROW(coarse_grid(1, 10), Error);
}

TEST(CalibrateRefine, NeighboursAreOneStepAway) {
  const auto s = PruneSchedule::parse("2:0.5,4:0.5", 6);
  const auto nb = specs(neighbours(s, 6, 0.1));
  const std::vector<std::string> want = {"2:0.4,4:0.4", "2:0.6,4:0.6", "1:0.5,3:0.5", "3:0.5,5:0.5",
                                         "1:0.5,4:0.5", "3:0.5,4:0.5", "2:0.5",       "2:0.5,4:0.5,5:0.5"};
  EXPECT_EQ(nb, want);
  // At the edges: no layer 0, no layer past the last, no keep below 0.05, nothing twice.
  const auto edge = specs(neighbours(PruneSchedule::parse("1:0.05,5:0.05", 6), 6, 0.1));
  for (const auto& e : edge) {
    const auto p = PruneSchedule::parse(e, 6);
    EXPECT_GE(p.points.front().layer, 1) << e;
    EXPECT_GE(p.points.front().keep, 0.05) << e;
    EXPECT_NE(e, "1:0.05,5:0.05");
  }
  EXPECT_TRUE(has(edge, "1:0.15,5:0.15")) << ::testing::PrintToString(edge);
  EXPECT_TRUE(has(edge, "2:0.05,5:0.05"));
  EXPECT_FALSE(has(edge, "1:0.05,5:0.05,5:0.05"));
}

TEST(CalibrateRefine, SeedsComeFromComputedFractionNotTiming) {
  // The coarse timings say "fast" is quickest, but it computes more than "lean": timing noise.
  const std::vector<Measurement> coarse = {m("1:0.5", 79.6, 2.5, 0.6), m("2:0.3", 79.5, 1.4, 0.4),
                                           m("1:0.3", 60, 3.0, 0.3), m("4:0.7", 80, 1.1, 0.9)};
  const auto seeds = pick_seeds(kBase, coarse, Goal{}, 3);
  ASSERT_EQ(seeds.size(), 3u);
  EXPECT_EQ(seeds[0], "2:0.3");  // the least computed within a point
  EXPECT_EQ(seeds[1], "1:0.3");  // its faster neighbour on the front
  EXPECT_EQ(seeds[2], "1:0.5");  // its slower neighbour
  // Nothing within the budget: the mildest schedules (loss mode), the fastest (target mode).
  const std::vector<Measurement> bad = {m("1:0.3", 50, 3, 0.3), m("2:0.5", 70, 2, 0.6), m("4:0.7", 75, 1.2, 0.9)};
  EXPECT_EQ(pick_seeds(kBase, bad, Goal{}, 2), (std::vector<std::string>{"4:0.7", "2:0.5"}));
  Goal t;
  t.target_speedup = 10;
  EXPECT_EQ(pick_seeds(kBase, bad, t, 2), (std::vector<std::string>{"1:0.3", "2:0.5"}));
}

// A fast schedule lucky on the coarse samples dominates every milder one on the front; the seeds
// still include the best of the milder ones, in two bands of computed fraction, so the refinement
// can retreat to them when more samples show the loss.
TEST(CalibrateRefine, SeedsIncludeMilderRetreats) {
  const std::vector<Measurement> coarse = {m("5:0.3,11:0.3", 80.5, 2, 0.57),  // lucky: above the baseline
                                           m("2:0.3", 70, 3.3, 0.42),          m("7:0.5,9:0.5,11:0.5", 80.2, 1.5, 0.72),
                                           m("7:0.7,11:0.7", 79.9, 1.3, 0.86), m("7:0.3", 78, 1.5, 0.71),
                                           m("5:0.7", 77, 1.35, 0.82),         m("9:0.7", 79.8, 1.1, 0.95)};
  const auto seeds = pick_seeds(kBase, coarse, Goal{}, 5);
  ASSERT_GE(seeds.size(), 4u);
  EXPECT_EQ(seeds[0], "5:0.3,11:0.3");
  EXPECT_EQ(seeds[1], "2:0.3");               // the faster front neighbour
  EXPECT_EQ(seeds[2], "7:0.5,9:0.5,11:0.5");  // the best in (0.57, 0.785]
  EXPECT_EQ(seeds[3], "7:0.7,11:0.7");        // the best above 0.785
  // With a target there is nothing to retreat to: no milder seeds.
  Goal t;
  t.target_speedup = 1.8;
  EXPECT_FALSE(has(pick_seeds(kBase, coarse, t, 5), "7:0.7,11:0.7"));
}

TEST(CalibrateRefine, SeedsThenNewNeighboursWithinTheBudget) {
  const std::set<std::string> measured = {"2:0.4,4:0.4", "2:0.5"};
  const auto r = specs(refinement({"2:0.5,4:0.5", "2:0.5"}, 6, measured, 4));
  ASSERT_EQ(r.size(), 6u);  // 2 seeds + 4 new
  EXPECT_EQ(r[0], "2:0.5,4:0.5");
  EXPECT_EQ(r[1], "2:0.5");
  EXPECT_FALSE(has({r.begin() + 2, r.end()}, "2:0.4,4:0.4"));  // measured in the coarse grid
  // In turns: the first seed's first neighbour was measured, so the second seed's first, then the
  // first seed's second.
  EXPECT_EQ(r[2], "2:0.4");
  EXPECT_EQ(r[3], "2:0.6,4:0.6");
  EXPECT_EQ(specs(refinement({"2:0.5"}, 6, {}, 0)), (std::vector<std::string>{"2:0.5"}));
}

TEST(CalibratePlan, BudgetsAndSamples) {
  auto p = plan_search({64, 40}, 200);
  EXPECT_EQ(p.refine_samples, 64);
  EXPECT_EQ(p.coarse_samples, 16);
  EXPECT_EQ(p.coarse_candidates, 27);
  p = plan_search({64, 40}, 3);
  EXPECT_EQ(p.refine_samples, 3);
  EXPECT_EQ(p.coarse_samples, 1);
  EXPECT_THROW(plan_search({0, 40}, 10), Error);
  EXPECT_THROW(plan_search({10, 0}, 10), Error);
  EXPECT_THROW(plan_search({10, 10}, 0), Error);
  EXPECT_EQ(spread(10, 4), (std::vector<int>{0, 2, 5, 7}));
  EXPECT_EQ(spread(3, 10), (std::vector<int>{0, 1, 2}));
}

}  // namespace
}  // namespace lazyllm::eval
