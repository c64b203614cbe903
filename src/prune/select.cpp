#include "prune/select.h"

#include <algorithm>
#include <numeric>

namespace lazyllm {

std::vector<int> select_top(std::span<const float> scores, int n_keep) {
  const int n = static_cast<int>(scores.size());
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  if (n_keep >= n) return idx;
  if (n_keep <= 0) return {};
  auto better = [&](int a, int b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); };
  std::nth_element(idx.begin(), idx.begin() + n_keep, idx.end(), better);
  idx.resize(n_keep);
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace lazyllm
