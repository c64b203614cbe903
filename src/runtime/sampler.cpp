// Token sampling: repeat penalty, top-k, temperature, top-p (nucleus) and min-p, in that order.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <unordered_set>

#include "kernels/cpu/vec_ops.h"
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

int32_t greedy_token(std::span<const float> logits) {
  // The largest value over independent lanes (no dependency from one element to the next, so the
  // compiler vectorizes it; a one-accumulator scan takes ~7x as long on a 32000-token vocabulary,
  // which a GPU decode step of ~2 ms feels), then its first index.
  constexpr size_t kLanes = 16;
  float lane[kLanes];
  std::fill(std::begin(lane), std::end(lane), -std::numeric_limits<float>::infinity());
  const size_t n = logits.size(), body = n / kLanes * kLanes;
  for (size_t i = 0; i < body; i += kLanes)
    for (size_t j = 0; j < kLanes; ++j) lane[j] = logits[i + j] > lane[j] ? logits[i + j] : lane[j];
  float best = -std::numeric_limits<float>::infinity();
  for (float v : lane) best = v > best ? v : best;
  for (size_t i = body; i < n; ++i) best = logits[i] > best ? logits[i] : best;
  for (size_t i = 0; i < n; ++i)
    if (logits[i] == best) return static_cast<int32_t>(i);
  return 0;
}

int32_t Sampler::sample_all(std::span<const float> logits) {
  const size_t n = logits.size();
  const float inv_t = 1.0f / params_.temperature;
  probs_.resize(n);
  for (size_t i = 0; i < n; ++i) probs_[i] = logits[i] * inv_t;
  softmax_inplace(probs_.data(), static_cast<int64_t>(n));  // vectorized exp
  if (params_.min_p > 0.0f) {
    const float floor = probs_[greedy_token(probs_)] * params_.min_p;
    for (float& p : probs_) p = p >= floor ? p : 0.0f;
  }
  double total = 0;
  for (float p : probs_) total += p;
  const double u = static_cast<double>(splitmix64(rng_state_) >> 11) * 0x1.0p-53 * total;
  double cum = 0;
  size_t last = 0;
  for (size_t i = 0; i < n; ++i) {
    if (probs_[i] == 0.0f) continue;
    cum += probs_[i];
    last = i;
    if (u < cum) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(last);
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const int n = static_cast<int>(logits.size());
  if (n == 0) throw Error("sampling: no logits");
  if (params_.repeat_penalty != 1.0f && params_.repeat_last_n != 0) {
    penalized_.assign(logits.begin(), logits.end());
    size_t start = params_.repeat_last_n < 0 || history.size() < size_t(params_.repeat_last_n)
                       ? 0 : history.size() - params_.repeat_last_n;
    std::unordered_set<int32_t> seen(history.begin() + start, history.end());
    for (int32_t t : seen) {
      if (t < 0 || t >= n) continue;
      float& l = penalized_[t];
      l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    }
    logits = penalized_;
  }
  if (params_.temperature == 0.0f) return greedy_token(logits);

  const int k = params_.top_k > 0 ? std::min(params_.top_k, n) : n;
  if (k == n && params_.top_p >= 1.0f) return sample_all(logits);

  // Candidates: with top-k, the k best (logit, id) pairs, larger logit first and the lower id
  // first among equals, from a heap of k whose front is the least of them, which most logits do
  // not beat (one comparison each); without, every token in id order, sorted below only as far
  // as top-p needs (a full sort of a 32000-token vocabulary took ~1-2 ms a token).
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  scratch_.clear();
  scratch_.reserve(k);
  for (int i = 0; i < k; ++i) scratch_.emplace_back(logits[i], i);
  float mx = 0.0f;
  if (k < n) {
    std::make_heap(scratch_.begin(), scratch_.end(), by_logit);
    float least = scratch_.front().first;  // a later id beats the front only with a larger logit
    for (int i = k; i < n; ++i) {
      if (!(logits[i] > least)) continue;
      std::pop_heap(scratch_.begin(), scratch_.end(), by_logit);
      scratch_.back() = {logits[i], i};
      std::push_heap(scratch_.begin(), scratch_.end(), by_logit);
      least = scratch_.front().first;
    }
    std::sort(scratch_.begin(), scratch_.end(), by_logit);
    mx = scratch_[0].first;
  } else {
    mx = logits[greedy_token(logits)];
  }

  // Softmax with temperature over the candidates.
  double sum = 0;
  for (auto& [l, id] : scratch_) {
    l = std::exp((l - mx) / params_.temperature);
    sum += l;
  }
  for (auto& c : scratch_) c.first = static_cast<float>(c.first / sum);

  if (params_.top_p < 1.0f) {
    // The most probable first, far enough to hold top_p of the mass (all of them with top-k).
    size_t sorted = k < n ? scratch_.size() : 0;
    for (size_t m = 256; sorted < scratch_.size(); m *= 4) {
      m = std::min(m, scratch_.size());
      std::nth_element(scratch_.begin(), scratch_.begin() + static_cast<ptrdiff_t>(m) - 1, scratch_.end(), by_logit);
      std::sort(scratch_.begin(), scratch_.begin() + static_cast<ptrdiff_t>(m), by_logit);
      double mass = 0;
      for (size_t i = 0; i < m; ++i) mass += scratch_[i].first;
      sorted = mass >= params_.top_p ? scratch_.size() : m;
    }
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
  if (params_.min_p > 0.0f) {  // keeps the candidates' order
    float top = 0.0f;
    for (const auto& c : scratch_) top = std::max(top, c.first);
    const float floor = top * params_.min_p;
    scratch_.erase(std::remove_if(scratch_.begin(), scratch_.end(), [&](const auto& c) { return !(c.first >= floor); }),
                   scratch_.end());
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
