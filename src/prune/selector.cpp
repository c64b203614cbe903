#include "prune/selector.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "prune/select.h"
#include "util/splitmix.h"

namespace lazyllm {
namespace {

// n_keep distinct indices of [0, n), uniformly at random (partial Fisher-Yates), increasing.
std::vector<int> random_subset(int n, int n_keep, uint64_t state) {
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  for (int i = 0; i < n_keep; ++i) {
    const int j = i + static_cast<int>(splitmix64(state) % static_cast<uint64_t>(n - i));
    std::swap(idx[i], idx[j]);
  }
  idx.resize(n_keep);
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace

std::vector<int> TokenSelector::choose_prefill(int n_candidates, std::span<const float> importance, int n_keep,
                                               int layer, int32_t first_pos) const {
  n_keep = std::clamp(n_keep, 0, n_candidates);
  if (mode_ == PruneSelection::kRandom) {
    uint64_t state = seed_;
    for (uint64_t v : {uint64_t(layer), uint64_t(uint32_t(first_pos)), uint64_t(n_candidates), uint64_t(n_keep)})
      state = splitmix64(state) ^ v;
    return random_subset(n_candidates, n_keep, state);
  }
  if (static_cast<int>(importance.size()) != n_candidates)
    throw std::logic_error("TokenSelector: importance scores do not match the candidates");
  return select_top(importance, n_keep);
}

}  // namespace lazyllm
