// Token choice: greedy_token against a plain scan; the sampler's top-k selection against the
// straightforward form (every candidate sorted), draw for draw, and without top-k against the
// distribution it draws from.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <unordered_set>
#include <vector>

#include "lazyllm/lazyllm.h"
#include "util/splitmix.h"

namespace lazyllm {
namespace {

int32_t first_max(const std::vector<float>& v) {
  int32_t best = -1;
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isnan(v[i]) && (best < 0 || v[i] > v[best])) best = static_cast<int32_t>(i);
  return best < 0 || v[best] == -std::numeric_limits<float>::infinity() ? 0 : best;
}

TEST(GreedyToken, FirstIndexOfTheLargest) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (size_t n : {size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{100}, size_t{32000}, size_t{32003}}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> v(n);
      for (float& x : v) x = std::round(normal(rng) * 4) / 4;  // many ties
      if (trial % 4 == 1) v[n - 1] = 100.0f;                   // the largest in the tail
      if (trial % 4 == 2) v[rng() % n] = std::numeric_limits<float>::quiet_NaN();
      EXPECT_EQ(greedy_token(v), first_max(v)) << "n " << n << " trial " << trial;
    }
  }
}

TEST(GreedyToken, NansAndInfinities) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(greedy_token(std::vector<float>{}), 0);
  EXPECT_EQ(greedy_token(std::vector<float>{nan, 1.0f, nan, 2.0f, 2.0f}), 3);
  EXPECT_EQ(greedy_token(std::vector<float>(40, nan)), 0);
  EXPECT_EQ(greedy_token(std::vector<float>(40, -inf)), 0);
  std::vector<float> v(40, 1.0f);
  v[33] = inf;
  EXPECT_EQ(greedy_token(v), 33);
}

// The sampler as it was before its top-k used a heap: every candidate sorted by logit.
int32_t reference_sample(const SamplingParams& p, uint64_t& rng, std::vector<float> logits,
                         const std::vector<int32_t>& history) {
  const int n = static_cast<int>(logits.size());
  if (p.repeat_penalty != 1.0f && p.repeat_last_n != 0) {
    const size_t start =
        p.repeat_last_n < 0 || history.size() < size_t(p.repeat_last_n) ? 0 : history.size() - p.repeat_last_n;
    for (int32_t t : std::unordered_set<int32_t>(history.begin() + start, history.end()))
      logits[t] = logits[t] > 0 ? logits[t] / p.repeat_penalty : logits[t] * p.repeat_penalty;
  }
  std::vector<std::pair<float, int32_t>> c(n);
  for (int i = 0; i < n; ++i) c[i] = {logits[i], i};
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (p.temperature == 0.0f) return std::min_element(c.begin(), c.end(), by_logit)->second;
  std::sort(c.begin(), c.end(), by_logit);
  c.resize(p.top_k > 0 ? std::min(p.top_k, n) : n);
  const float mx = c[0].first;
  double sum = 0;
  for (auto& [l, id] : c) sum += (l = std::exp((l - mx) / p.temperature));
  for (auto& e : c) e.first = static_cast<float>(e.first / sum);
  if (p.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < c.size(); ++i)
      if ((cum += c[i].first) >= p.top_p) {
        c.resize(i + 1);
        break;
      }
  }
  if (p.min_p > 0.0f) {
    size_t keep = 1;
    while (keep < c.size() && c[keep].first >= c[0].first * p.min_p) ++keep;
    c.resize(keep);
  }
  double total = 0;
  for (const auto& e : c) total += e.first;
  const double u = static_cast<double>(splitmix64(rng) >> 11) * 0x1.0p-53 * total;
  double cum = 0;
  for (const auto& e : c)
    if (u < (cum += e.first)) return e.second;
  return c.back().second;
}

TEST(Sampler, SameDrawsAsSortingEveryCandidate) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  // With top-k the candidates are sorted as before, so the draws are the same draw for draw.
  for (const SamplingParams& base :
       {SamplingParams{}, SamplingParams{1.0f, 3, 1.0f, 0.0f, 1.0f, 64, 5},
        SamplingParams{0.7f, 30, 0.9f, 0.0f, 1.3f, 16, 9}, SamplingParams{0.0f, 40, 0.95f, 0.05f, 1.2f, 8, 1}}) {
    Sampler sampler(base);
    uint64_t ref_rng = base.seed;
    std::vector<int32_t> history;
    for (int draw = 0; draw < 200; ++draw) {
      std::vector<float> logits(draw % 2 ? 1000 : 37);
      for (float& x : logits) x = std::round(normal(rng) * 3) / 2;  // ties at the k-th place too
      const int32_t got = sampler.sample(logits, history);
      ASSERT_EQ(got, reference_sample(base, ref_rng, logits, history)) << "draw " << draw;
      history.push_back(got % 37);
    }
  }
}

// Without top-k (the server's default: temperature 1, nothing truncated) the candidates are not
// sorted: each token is drawn as often as its probability, only tokens of the nucleus and above
// min-p are drawn, and a seed gives the same draws.
TEST(Sampler, WithoutTopKDrawsFollowTheDistribution) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> logits(300);
  for (float& x : logits) x = normal(rng);
  for (int i = 0; i < 6; ++i) logits[i * 37] = 3.0f + 0.25f * static_cast<float>(i);  // a few likely tokens
  for (const SamplingParams& p :
       {SamplingParams{1.0f, 0, 1.0f, 0.0f, 1.0f, 64, 5}, SamplingParams{0.8f, 0, 0.5f, 0.0f, 1.0f, 64, 6},
        SamplingParams{1.0f, 0, 1.0f, 0.02f, 1.0f, 64, 7}}) {
    // The reference distribution: softmax, then the nucleus and min-p over the sorted tokens.
    std::vector<std::pair<double, int>> sorted;
    const float mx = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (int i = 0; i < static_cast<int>(logits.size()); ++i) {
      sorted.push_back({std::exp((logits[i] - mx) / p.temperature), i});
      sum += sorted.back().first;
    }
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<double> expect(logits.size(), 0.0);
    double cum = 0, kept = 0;
    for (const auto& [w, id] : sorted) {
      if (cum >= p.top_p || w < sorted[0].first * p.min_p) break;
      cum += w / sum;
      expect[id] = w / sum;
      kept += w / sum;
    }
    for (double& e : expect) e /= kept;
    Sampler a(p), b(p);
    constexpr int kDraws = 20000;
    std::vector<int> seen(logits.size(), 0);
    for (int d = 0; d < kDraws; ++d) {
      const int32_t t = a.sample(logits, {});
      ASSERT_EQ(t, b.sample(logits, {}));
      ASSERT_GT(expect[t], 0.0) << "token " << t << " is outside the nucleus";
      ++seen[t];
    }
    for (size_t t = 0; t < logits.size(); ++t)
      EXPECT_NEAR(static_cast<double>(seen[t]) / kDraws, expect[t], 0.015) << "token " << t;
  }
}

}  // namespace
}  // namespace lazyllm
