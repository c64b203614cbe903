#include "eval/calibrate_report.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "eval/report.h"

namespace lazyllm::eval {
namespace {

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string name_of(const Measurement& m) { return m.is_baseline() ? "baseline" : m.spec; }

nlohmann::json stage_json(const StageResult& s) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& m : s.schedules) list.push_back(to_json(m));
  return {{"samples", s.samples}, {"baseline", to_json(s.baseline)}, {"schedules", list}};
}

// What the stage's loss errors count: the samples' groups (with the t quantile's degrees of
// freedom) or the samples.
std::string error_basis(const StageResult& s, const Goal& goal) {
  int df = 0;
  for (const auto& m : s.schedules) df = std::max(df, m.loss_df);
  if (df == 0) return "standard errors over the samples";
  return "standard errors over the samples' " + std::to_string(df + 1) +
         " groups (what carries over to groups not measured; bounds at Student's t with " + std::to_string(df) +
         " degrees of freedom, " + fixed(goal.quantile(df), 2) + " at " + fixed(100 * goal.confidence, 0) + "%)";
}

// One row per schedule, with its loss against the stage's baseline; `chosen` marked.
void table(std::ostringstream& o, const std::vector<Measurement>& rows, const Measurement& baseline,
           const std::string& chosen, const Goal& goal) {
  o << "| schedule | score | loss | ± s.e. | loss bound | TTFT (ms) | speedup | computed |\n"
       "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& m : rows) {
    const bool mark = !m.is_baseline() && m.spec == chosen;
    o << "| " << (mark ? "**" + m.spec + "** (chosen)" : name_of(m)) << " | " << fixed(m.score, 2) << " | "
      << fixed(baseline.score - m.score, 2) << " | " << fixed(m.loss_se, 2) << " | "
      << fixed(goal.loss_bound(baseline, m), 2) << " | " << fixed(m.ttft_ms, 1) << " | " << fixed(m.speedup, 2)
      << "x | " << fixed(100 * m.computed_fraction, 1) << "% |\n";
  }
}

}  // namespace

nlohmann::json to_json(const Measurement& m) {
  return {{"schedule", name_of(m)}, {"spec", m.spec},       {"score", m.score},
          {"ttft_ms", m.ttft_ms},   {"speedup", m.speedup}, {"computed_fraction", m.computed_fraction},
          {"loss_se", m.loss_se},   {"loss_df", m.loss_df}};
}

nlohmann::json to_json(const Calibration& c, const Goal& goal) {
  nlohmann::json front = nlohmann::json::array();
  for (const auto& m : c.front) front.push_back(to_json(m));
  nlohmann::json j = {{"goal",
                       {{"describe", goal.describe()},
                        {"max_loss", goal.max_loss},
                        {"confidence", goal.confidence},
                        {"target_speedup", goal.target_speedup ? nlohmann::json(*goal.target_speedup) : nullptr}}},
                      {"coarse", stage_json(c.coarse)},
                      {"refine", stage_json(c.refine)},
                      {"seeds", c.seeds},
                      {"pareto", front},
                      {"chosen", c.choice.chosen ? to_json(*c.choice.chosen) : nlohmann::json(nullptr)},
                      {"timed_on", c.timed_on},
                      {"timed_samples", c.timed_samples}};
  if (!c.choice.chosen) j["why"] = c.choice.why;
  return j;
}

std::string to_markdown(const Calibration& c, const Goal& goal) {
  std::ostringstream o;
  const std::string chosen = c.choice.chosen ? c.choice.chosen->spec : "";
  if (c.choice.chosen) {
    const Measurement& m = *c.choice.chosen;
    o << "chosen (" << goal.describe() << "): " << m.spec << "\n\nscore " << fixed(m.score, 2) << " against the baseline's "
      << fixed(c.refine.baseline.score, 2) << ", TTFT speedup " << fixed(m.speedup, 2) << "x, computed "
      << fixed(100 * m.computed_fraction, 1) << "% of the prompt's (token, layer) pairs, on " << c.refine.samples
      << " samples\n";
    if (c.timed_samples > 0)
      o << "\nTTFT timed apart from the scores, on " << c.timed_on << ", over " << c.timed_samples
        << " of each stage's samples\n";
  } else {
    o << "no schedule chosen: " << c.choice.why << "\n";
  }
  o << "\n## Pareto front: score against TTFT speedup (" << c.refine.samples << " samples)\n\n";
  table(o, c.front, c.refine.baseline, chosen, goal);
  std::vector<Measurement> refined{c.refine.baseline};
  refined.insert(refined.end(), c.refine.schedules.begin(), c.refine.schedules.end());
  o << "\n## Refinement: " << c.refine.schedules.size() << " schedules, " << c.refine.samples
    << " samples (seeds from the coarse grid: ";
  for (size_t i = 0; i < c.seeds.size(); ++i) o << (i ? ", " : "") << c.seeds[i];
  o << "; " << error_basis(c.refine, goal) << ")\n\n";
  table(o, refined, c.refine.baseline, chosen, goal);
  std::vector<Measurement> coarse{c.coarse.baseline};
  coarse.insert(coarse.end(), c.coarse.schedules.begin(), c.coarse.schedules.end());
  o << "\n## Coarse grid: " << c.coarse.schedules.size() << " schedules, " << c.coarse.samples << " samples\n\n";
  table(o, coarse, c.coarse.baseline, "", goal);
  return o.str();
}

void write_front_plot(const Calibration& c, const std::string& png_path, const std::string& title) {
  Report r;
  for (const auto& m : c.front) {
    ScheduleReport s;
    s.name = name_of(m) + (c.choice.chosen && m.spec == c.choice.chosen->spec && !m.is_baseline() ? " (chosen)" : "");
    s.overall.score = m.score;
    s.overall.speedup = m.speedup;
    r.schedules.push_back(s);
  }
  write_plot(r, png_path, title);
}

}  // namespace lazyllm::eval
