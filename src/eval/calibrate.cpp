#include "eval/calibrate.h"

#include <algorithm>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <cstdio>
#include <map>
#include <tuple>

namespace lazyllm::eval {
namespace {

constexpr double kEps = 1e-9;  // scores are means of 0-100 figures: compare with a little slack

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// Keep fractions on a 0.01 grid, so specs read "0.4", not "0.39999999999999997".
double round_keep(double k) { return std::round(k * 100) / 100; }

bool valid_layers(const std::vector<PrunePoint>& pts, int n_layers) {
  for (size_t i = 0; i < pts.size(); ++i) {
    if (pts[i].layer < 1 || pts[i].layer > n_layers - 1) return false;
    if (i && pts[i].layer <= pts[i - 1].layer) return false;
  }
  return !pts.empty();
}

PruneSchedule with_points(std::vector<PrunePoint> pts) {
  PruneSchedule s;
  s.points = std::move(pts);
  return s;
}

// Appends `s` unless a schedule with its spec is already in `out` or in `skip`.
void add_unique(std::vector<PruneSchedule>& out, const PruneSchedule& s, const std::set<std::string>& skip = {}) {
  const std::string spec = s.to_string();
  if (skip.count(spec)) return;
  for (const auto& o : out)
    if (o.to_string() == spec) return;
  out.push_back(s);
}

}  // namespace

void Goal::check() const {
  if (!(max_loss >= 0) || !std::isfinite(max_loss))
    throw Error("--max-loss must be a number of points >= 0, got " + fixed(max_loss, 3));
  if (target_speedup && (!(*target_speedup > 1) || !std::isfinite(*target_speedup)))
    throw Error("--target-speedup must be above 1 (a TTFT speedup over the baseline), got " +
                fixed(*target_speedup, 3));
  if (!(confidence >= 0 && confidence < 1))
    throw Error("--confidence must be a level in [0, 1) (0: the measured loss alone), got " + fixed(confidence, 3));
}

double Goal::z() const {
  if (confidence <= 0) return 0;
  // Bisection on the upper tail 0.5 * erfc(z / sqrt 2) = 1 - confidence (monotone in z).
  double lo = -10, hi = 10;
  for (int i = 0; i < 100; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(mid / std::sqrt(2.0)) > 1 - confidence ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double Goal::quantile(int df) const {
  if (confidence <= 0) return 0;
  if (df <= 0) return z();
  return boost::math::quantile(boost::math::students_t(df), confidence);
}

double Goal::loss_bound(const Measurement& baseline, const Measurement& m) const {
  return baseline.score - m.score + quantile(m.loss_df) * m.loss_se;
}

double paired_loss_se(const std::vector<double>& baseline, const std::vector<double>& schedule,
                      const std::vector<std::string>& datasets) {
  if (baseline.size() != schedule.size() || baseline.size() != datasets.size())
    throw Error("paired_loss_se: " + std::to_string(baseline.size()) + " baseline scores, " +
                std::to_string(schedule.size()) + " schedule scores, " + std::to_string(datasets.size()) +
                " dataset names");
  std::map<std::string, std::vector<double>> diffs;
  for (size_t i = 0; i < baseline.size(); ++i) diffs[datasets[i]].push_back(baseline[i] - schedule[i]);
  double var = 0;
  for (const auto& [name, d] : diffs) {
    if (d.size() < 2) continue;
    double mean = 0, ss = 0;
    for (double x : d) mean += x;
    mean /= double(d.size());
    for (double x : d) ss += (x - mean) * (x - mean);
    var += ss / double(d.size() - 1) / double(d.size());
  }
  return diffs.empty() ? 0 : std::sqrt(var) / double(diffs.size());
}

double grouped_loss_se(const std::vector<double>& baseline, const std::vector<double>& schedule,
                       const std::vector<std::string>& datasets, const std::vector<std::string>& groups, int& df) {
  df = 0;
  if (baseline.size() != schedule.size() || baseline.size() != datasets.size() || baseline.size() != groups.size())
    throw Error("grouped_loss_se: " + std::to_string(baseline.size()) + " baseline scores, " +
                std::to_string(schedule.size()) + " schedule scores, " + std::to_string(datasets.size()) +
                " dataset names, " + std::to_string(groups.size()) + " groups");
  std::map<std::string, std::pair<double, int>> per_dataset;  // sum of differences, count
  for (size_t i = 0; i < baseline.size(); ++i) {
    auto& [sum, n] = per_dataset[datasets[i]];
    sum += baseline[i] - schedule[i];
    ++n;
  }
  // The group's summed shares of the loss; a sample without a group is a group of its own
  // (keyed by its index, apart from the named ones).
  std::map<std::pair<bool, std::string>, double> per_group;
  const double d_count = double(per_dataset.size());
  for (size_t i = 0; i < baseline.size(); ++i) {
    const auto& [sum, n] = per_dataset[datasets[i]];
    const double share = (baseline[i] - schedule[i] - sum / n) / (d_count * n);
    per_group[groups[i].empty() ? std::make_pair(true, std::to_string(i)) : std::make_pair(false, groups[i])] += share;
  }
  const size_t g = per_group.size();
  if (g < 2) return 0;
  double ss = 0;
  for (const auto& [name, u] : per_group) ss += u * u;
  df = static_cast<int>(g) - 1;
  return std::sqrt(double(g) / double(g - 1) * ss);
}

std::string Goal::describe() const {
  const std::string loss = fixed(max_loss, max_loss == std::floor(max_loss) ? 0 : 2);
  const std::string points = loss + (max_loss == 1 ? " point" : " points");
  const double level = 100 * confidence;
  const std::string bound =
      confidence > 0 ? ", judged at the " + fixed(level, std::abs(level - std::round(level)) < 1e-9 ? 0 : 1) + "% upper bound" : "";
  if (!target_speedup) return "fastest within " + points + " of the baseline" + bound;
  std::string s = "best score at " + fixed(*target_speedup, 2) + "x TTFT speedup or more";
  if (max_loss_given) s += ", within " + points + " of the baseline" + bound;
  return s;
}

Choice choose(const Measurement& baseline, const std::vector<Measurement>& candidates, const Goal& goal) {
  goal.check();
  auto within_loss = [&](const Measurement& m) { return goal.loss_bound(baseline, m) <= goal.max_loss + kEps; };
  // Strict order: true when a is better than b.
  auto better = [&](const Measurement& a, const Measurement& b) {
    const auto key = [&](const Measurement& m) {
      return goal.target_speedup ? std::make_tuple(m.score, m.speedup, -m.computed_fraction)
                                 : std::make_tuple(m.speedup, m.score, -m.computed_fraction);
    };
    if (key(a) != key(b)) return key(a) > key(b);
    return a.spec < b.spec;
  };
  Choice c;
  const Measurement* best = nullptr;
  const Measurement* fastest = nullptr;  // for the message when nothing qualifies
  for (const auto& m : candidates) {
    if (m.is_baseline()) continue;
    if (!fastest || m.speedup > fastest->speedup) fastest = &m;
    const bool ok = goal.target_speedup
                        ? m.speedup >= *goal.target_speedup - kEps && (!goal.max_loss_given || within_loss(m))
                        : within_loss(m) && m.speedup > 1;
    if (ok && (!best || better(m, *best))) best = &m;
  }
  if (best) {
    c.chosen = *best;
    return c;
  }
  c.why = "no schedule measured is the " + goal.describe() + " (baseline score " + fixed(baseline.score, 2) + ")";
  if (fastest)
    c.why += "; the fastest was " + fastest->spec + " at " + fixed(fastest->speedup, 2) + "x, score " +
             fixed(fastest->score, 2);
  return c;
}

std::vector<Measurement> pareto_front(const std::vector<Measurement>& points) {
  std::vector<Measurement> front;
  for (const auto& p : points) {
    bool dominated = false;
    for (const auto& q : points)
      dominated = dominated || (q.score >= p.score && q.speedup >= p.speedup &&
                                (q.score > p.score || q.speedup > p.speedup));
    if (!dominated) front.push_back(p);
  }
  std::sort(front.begin(), front.end(), [](const Measurement& a, const Measurement& b) {
    if (a.speedup != b.speedup) return a.speedup < b.speedup;
    if (a.score != b.score) return a.score > b.score;
    return a.spec < b.spec;
  });
  return front;
}

SearchPlan plan_search(const SearchBudget& b, int samples_in_data) {
  if (b.max_samples < 1) throw Error("--max-samples must be at least 1");
  if (b.max_candidates < 1) throw Error("--max-candidates must be at least 1");
  if (samples_in_data < 1) throw Error("the calibration data has no samples");
  SearchPlan p;
  p.refine_samples = std::min(b.max_samples, samples_in_data);
  p.coarse_samples = std::max(1, p.refine_samples / 4);
  p.coarse_candidates = std::max(1, b.max_candidates - b.max_candidates / 3);
  return p;
}

std::vector<int> spread(int total, int n) {
  std::vector<int> out;
  n = std::min(n, total);
  for (int i = 0; i < n; ++i) out.push_back(static_cast<int>(static_cast<int64_t>(i) * total / n));
  return out;
}

std::vector<PruneSchedule> coarse_grid(int n_layers, int max) {
  if (n_layers < 2) throw Error("a model with one layer cannot be pruned");
  std::vector<PruneSchedule> grid;
  for (double first : {0.2, 0.4, 0.6})
    for (int count : {1, 2, 3})
      for (double keep : {0.3, 0.5, 0.7}) {
        const int l0 = std::clamp(static_cast<int>(std::lround(first * n_layers)), 1, n_layers - 1);
        const int span = n_layers - 1 - l0;
        std::vector<PrunePoint> pts;
        for (int i = 0; i < count; ++i)
          pts.push_back({count == 1 ? l0 : l0 + static_cast<int>(std::lround(double(i) * span / (count - 1))), keep});
        if (valid_layers(pts, n_layers)) add_unique(grid, with_points(pts));
      }
  std::vector<PruneSchedule> out{PruneSchedule::default_for(n_layers)};
  std::vector<PruneSchedule> rest;
  for (const auto& s : grid) add_unique(rest, s, {out[0].to_string()});
  if (max <= 1) return out;
  for (int i : spread(static_cast<int>(rest.size()), max - 1)) out.push_back(rest[i]);
  return out;
}

std::vector<PruneSchedule> neighbours(const PruneSchedule& s, int n_layers, double keep_step) {
  std::vector<PruneSchedule> out;
  const std::string self = s.to_string();
  auto consider = [&](std::vector<PrunePoint> pts) {
    if (valid_layers(pts, n_layers)) add_unique(out, with_points(std::move(pts)), {self});
  };
  for (double d : {-keep_step, keep_step}) {
    std::vector<PrunePoint> pts = s.points;
    bool ok = true;
    for (auto& p : pts) {
      p.keep = round_keep(p.keep + d);
      ok = ok && p.keep >= 0.05 - kEps && p.keep <= 0.95 + kEps;
    }
    if (ok) consider(pts);
  }
  for (int d : {-1, 1}) {
    std::vector<PrunePoint> pts = s.points;
    for (auto& p : pts) p.layer += d;
    consider(pts);
  }
  for (int d : {-1, 1}) {
    std::vector<PrunePoint> pts = s.points;
    if (!pts.empty()) pts.front().layer += d;
    consider(pts);
  }
  if (s.points.size() > 1) consider({s.points.begin(), s.points.end() - 1});
  if (!s.points.empty()) {
    std::vector<PrunePoint> pts = s.points;
    const int last = pts.back().layer;
    pts.push_back({last + (n_layers - last) / 2, pts.back().keep});  // halfway to layer n-1, rounded up
    consider(pts);
  }
  return out;
}

std::vector<std::string> pick_seeds(const Measurement& baseline, const std::vector<Measurement>& coarse,
                                    const Goal& goal, int n) {
  // Computed fraction stands in for TTFT: exact, where the coarse timings are few and noisy.
  std::vector<Measurement> proxy;
  for (auto m : coarse) {
    if (m.is_baseline()) continue;
    m.speedup = m.computed_fraction > 0 ? 1 / m.computed_fraction : 0;
    proxy.push_back(m);
  }
  Measurement base = baseline;
  base.speedup = 1;
  std::vector<Measurement> front = pareto_front(proxy);  // rising speedup
  const Choice c = choose(base, proxy, goal);
  std::vector<std::string> seeds;
  auto add = [&](const std::string& spec) {
    if (static_cast<int>(seeds.size()) < n && std::find(seeds.begin(), seeds.end(), spec) == seeds.end())
      seeds.push_back(spec);
  };
  if (c.chosen) {
    add(c.chosen->spec);
    // Its neighbours along the front: the next faster first (it may still qualify on more
    // samples), then the next slower.
    auto it = std::find_if(front.begin(), front.end(), [&](const Measurement& m) { return m.spec == c.chosen->spec; });
    if (it != front.end()) {
      if (it + 1 != front.end()) add((it + 1)->spec);
      if (it != front.begin()) add((it - 1)->spec);
    }
    // A chosen point off the front (a tie broken by score) still gets front neighbours below.
    // Retreats, under a loss budget: the coarse scores are few-sample noisy, and a lucky fast
    // schedule dominates every milder one on the front, so the refinement would have nowhere to
    // go when the choice fails on more samples. The best-scoring coarse schedule in each half of
    // the computed fractions between the choice and the baseline is measured too.
    if (!goal.target_speedup) {
      const double from = c.chosen->computed_fraction, step = (1 - from) / 2;
      for (int band = 0; band < 2; ++band) {
        const double lo = from + band * step, hi = from + (band + 1) * step;
        const Measurement* best = nullptr;
        for (const auto& m : proxy)
          if (m.computed_fraction > lo && (m.computed_fraction <= hi || band == 1) && m.computed_fraction < 1 &&
              (!best || m.score > best->score || (m.score == best->score && m.spec < best->spec)))
            best = &m;
        if (best) add(best->spec);
      }
    }
  }
  if (goal.target_speedup) std::reverse(front.begin(), front.end());  // fastest first
  for (const auto& m : front) add(m.spec);                           // mildest first otherwise
  return seeds;
}

std::vector<PruneSchedule> refinement(const std::vector<std::string>& seeds, int n_layers,
                                      const std::set<std::string>& measured, int max_new) {
  std::vector<PruneSchedule> out;
  for (const auto& s : seeds) add_unique(out, PruneSchedule::parse(s, n_layers));
  std::set<std::string> skip = measured;
  for (const auto& s : out) skip.insert(s.to_string());
  // Neighbours in turns, one of each seed's at a time, so every seed is refined around within a
  // small budget.
  std::vector<std::vector<PruneSchedule>> around;
  size_t most = 0;
  for (const auto& s : seeds) {
    around.push_back(neighbours(PruneSchedule::parse(s, n_layers), n_layers, kGridKeepStep / 2));
    most = std::max(most, around.back().size());
  }
  int added = 0;
  for (size_t i = 0; i < most; ++i)
    for (const auto& list : around) {
      if (i >= list.size()) continue;
      if (added >= max_new) return out;
      const size_t before = out.size();
      add_unique(out, list[i], skip);
      added += out.size() > before;
    }
  return out;
}

}  // namespace lazyllm::eval
