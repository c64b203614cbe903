// The search behind `lazyllm calibrate`: which LazyLLM schedules to measure, and which one to
// pick from the measurements. Pure functions of schedules and measured figures (no model), so
// every rule is testable with made-up numbers; src/eval/calibrate_run.h runs them on a model.
//
// The search is cheap first: a coarse grid (first pruning layer, keep fraction, number of
// pruning layers) on a few samples; then the most promising of those ("seeds") and their
// neighbours on more samples, where the choice is made. Everything is deterministic given the
// measurements; seeds are picked by computed fraction rather than TTFT, so noise in the coarse
// timings cannot change which schedules the refinement measures.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lazyllm/lazyllm.h"

namespace lazyllm::eval {

// One schedule's figures on one stage's samples.
struct Measurement {
  std::string spec;   // PruneSchedule::to_string(); empty for the baseline
  double score = 0;   // 0-100
  double ttft_ms = 0;
  double speedup = 0;  // the baseline's mean TTFT / this one's, on the same samples
  double computed_fraction = 1;
  // Standard error of the loss (baseline score - this score), from the per-sample differences
  // on the same samples (paired_loss_se, or grouped_loss_se where the samples name their
  // groups); 0 for the baseline or where unknown.
  double loss_se = 0;
  // Its degrees of freedom when it counts groups of samples (groups - 1: the bound takes Student's
  // t quantile); 0 when it counts samples (the normal quantile).
  int loss_df = 0;
  bool is_baseline() const { return spec.empty(); }
};

// What the chosen schedule must do. Without a target: the fastest schedule within `max_loss`
// points of the baseline (and faster than it). With a target: the best score among schedules
// reaching `target_speedup`, also within `max_loss` when `max_loss_given`.
// "Within max_loss" is judged on a one-sided upper confidence bound of the loss at level
// `confidence` (loss + q * loss_se, q the normal quantile, or Student's t with the
// measurement's loss_df), so a schedule that looks lossless on a few samples by luck is not
// taken; confidence 0 judges the measured loss alone.
struct Goal {
  double max_loss = 1.0;
  bool max_loss_given = false;
  std::optional<double> target_speedup;
  double confidence = 0.9;
  void check() const;  // throws Error on a negative loss, a target not above 1, a level outside [0, 1)
  std::string describe() const;  // e.g. "fastest within 1 point of the baseline, judged at the 90% upper bound"
  double z() const;  // the standard normal quantile of `confidence`; 0 when confidence is 0
  // Student's t quantile of `confidence` with `df` degrees of freedom (df <= 0: z()); 0 when
  // confidence is 0.
  double quantile(int df) const;
  double loss_bound(const Measurement& baseline, const Measurement& m) const;  // loss + quantile(loss_df) * loss_se
};

// The standard error of the overall loss of a schedule against the baseline from per-sample
// scores (0-100) on the same samples: `datasets[i]` names sample i's dataset, and the overall
// score is the mean of the datasets' means (as the harness reports it), so the error combines
// each dataset's paired differences (sample variance / count) weighted by 1 / datasets^2. A
// dataset with one sample contributes no variance. Throws Error on mismatched sizes.
double paired_loss_se(const std::vector<double>& baseline, const std::vector<double>& schedule,
                      const std::vector<std::string>& datasets);

// The same loss's standard error when samples come in groups (`groups[i]`: sample i's package,
// repository or document source; empty: a group of its own) and the question is how the loss
// carries over to groups not measured: samples of one group share their code, names and style,
// so their differences move together, and the error must count groups rather than samples.
// Cluster-robust: each sample's share of the loss, (difference - its dataset's mean difference)
// / (datasets x the dataset's count), summed per group; the variance is G / (G - 1) times the
// sum of the squared group sums. `df` is set to G - 1 (the bound then takes Student's t, as few
// groups make the estimate itself uncertain). Fewer than two groups: 0, df 0. Throws Error on
// mismatched sizes.
double grouped_loss_se(const std::vector<double>& baseline, const std::vector<double>& schedule,
                       const std::vector<std::string>& datasets, const std::vector<std::string>& groups, int& df);

struct Choice {
  std::optional<Measurement> chosen;
  std::string why;  // when nothing qualifies: what was asked and the nearest miss
};

// Picks from `candidates` (the baseline, if present, is never chosen) as `goal` says. Ties go to
// the higher score (loss mode) or higher speedup (target mode), then the lower computed
// fraction, then the spec, so the result does not depend on the candidates' order.
Choice choose(const Measurement& baseline, const std::vector<Measurement>& candidates, const Goal& goal);

// The points no other point beats on both score and speedup (a tie on both keeps both),
// baseline included if given, in order of rising speedup (ties: higher score, then spec).
std::vector<Measurement> pareto_front(const std::vector<Measurement>& points);

struct SearchBudget {
  int max_samples = 64;     // calibration samples the refinement runs on
  int max_candidates = 40;  // distinct schedules measured in all (the baseline not counted)
};

struct SearchPlan {
  int coarse_samples = 0, refine_samples = 0;
  int coarse_candidates = 0;  // at most; the refinement gets what the coarse grid leaves
  int seeds = 5;              // coarse schedules refined
};

// Coarse stage on a quarter of the samples (at least 1), refinement on up to max_samples; two
// thirds of the candidate budget for the coarse grid. Throws Error on a budget below 1 or no data.
SearchPlan plan_search(const SearchBudget& b, int samples_in_data);

// `n` indices spread evenly over [0, total): floor(i * total / n), so a file that groups its
// samples by dataset is sampled across all of them.
std::vector<int> spread(int total, int n);

// The grid step of keep fractions (0.3, 0.5, 0.7); the refinement moves by half of it.
constexpr double kGridKeepStep = 0.2;

// The coarse grid, default schedule first: first pruning layer at 0.2, 0.4 or 0.6 of depth;
// 1, 2 or 3 pruning layers spread from there to the last layer; keep 0.3, 0.5 or 0.7 at each.
// Distinct schedules only; when there are more than `max`, `max` spread over the grid.
std::vector<PruneSchedule> coarse_grid(int n_layers, int max);

// Schedules one step from `s`: every keep fraction -/+ keep_step (within [0.05, 0.95]), every
// pruning layer -/+1, the first one -/+1, the last pruning layer dropped, one more pruning layer
// halfway from the last to the final layer. Valid, distinct and other than `s`, in that order.
std::vector<PruneSchedule> neighbours(const PruneSchedule& s, int n_layers, double keep_step);

// The coarse schedules worth refining, best first: the coarse choice made on computed fraction
// (1 / computed stands in for the speedup) and its two neighbours on that front; under a loss
// budget also the best-scoring schedule in each half of the computed fractions between the choice
// and the baseline (somewhere to retreat when the choice was lucky on few samples); then, and when
// nothing qualifies, the front's schedules nearest to qualifying (the mildest for a loss budget,
// the fastest for a target).
std::vector<std::string> pick_seeds(const Measurement& baseline, const std::vector<Measurement>& coarse,
                                    const Goal& goal, int n);

// The refinement's schedules: the seeds, then their neighbours (keep_step = kGridKeepStep / 2)
// not yet measured, at most `max_new` of those, taken in turns (each seed's first, then each
// one's second, ...).
std::vector<PruneSchedule> refinement(const std::vector<std::string>& seeds, int n_layers,
                                      const std::set<std::string>& measured, int max_new);

}  // namespace lazyllm::eval
