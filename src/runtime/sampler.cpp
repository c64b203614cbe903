// Token sampling: repeat penalty, top-k, temperature, top-p (nucleus) and min-p, in that order.
#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "lazyllm/lazyllm.h"
#include "util/splitmix.h"

namespace lazyllm {

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_state_(params.seed) {
  if (!(params.temperature >= 0) || !std::isfinite(params.temperature)) throw Error("temperature must be >= 0");
  if (params.top_k < 0) throw Error("top-k must be >= 0");
  if (!(params.top_p > 0 && params.top_p <= 1)) throw Error("top-p must be in (0, 1]");
  if (!(params.min_p >= 0 && params.min_p < 1)) throw Error("min-p must be in [0, 1)");
  if (!(params.repeat_penalty > 0) || !std::isfinite(params.repeat_penalty)) throw Error("repeat penalty must be > 0");
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const int n = static_cast<int>(logits.size());
  scratch_.resize(n);
  for (int i = 0; i < n; ++i) scratch_[i] = {logits[i], i};

  if (params_.repeat_penalty != 1.0f && params_.repeat_last_n != 0) {
    size_t start = params_.repeat_last_n < 0 || history.size() < size_t(params_.repeat_last_n)
                       ? 0 : history.size() - params_.repeat_last_n;
    std::unordered_set<int32_t> seen(history.begin() + start, history.end());
    for (int32_t t : seen) {
      if (t < 0 || t >= n) continue;
      float& l = scratch_[t].first;
      l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    }
  }

  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  if (params_.temperature == 0.0f) return std::min_element(scratch_.begin(), scratch_.end(), by_logit)->second;

  int k = params_.top_k > 0 ? std::min(params_.top_k, n) : n;
  std::partial_sort(scratch_.begin(), scratch_.begin() + k, scratch_.end(), by_logit);
  scratch_.resize(k);

  // Softmax with temperature over the candidates (sorted, largest first).
  const float mx = scratch_[0].first;
  double sum = 0;
  for (auto& [l, id] : scratch_) {
    l = std::exp((l - mx) / params_.temperature);
    sum += l;
  }
  for (auto& c : scratch_) c.first = static_cast<float>(c.first / sum);

  if (params_.top_p < 1.0f) {
    double cum = 0;
    size_t keep = scratch_.size();
    for (size_t i = 0; i < scratch_.size(); ++i) {
      cum += scratch_[i].first;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    scratch_.resize(keep);
  }
  if (params_.min_p > 0.0f) {
    const float floor = scratch_[0].first * params_.min_p;
    size_t keep = 1;
    while (keep < scratch_.size() && scratch_[keep].first >= floor) ++keep;
    scratch_.resize(keep);
  }

  double total = 0;
  for (const auto& c : scratch_) total += c.first;
  const double u = static_cast<double>(splitmix64(rng_state_) >> 11) * 0x1.0p-53 * total;
  double cum = 0;
  for (const auto& c : scratch_) {
    cum += c.first;
    if (u < cum) return c.second;
  }
  return scratch_.back().second;
}

}  // namespace lazyllm
