#include "prune/select.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace lazyllm {

std::vector<int> select_top(std::span<const float> scores, int n_keep) {
  const int n = static_cast<int>(scores.size());
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  if (n_keep >= n) return idx;
  if (n_keep <= 0) return {};
  // A strict total order even with NaN scores (which rank below every number and tie among
  // themselves), so a NaN from a broken model cannot break the sort: larger first, then lower index.
  auto better = [&](int a, int b) {
    const float x = scores[a], y = scores[b];
    const bool xn = std::isnan(x), yn = std::isnan(y);
    if (xn != yn) return yn;
    if (!xn && x != y) return x > y;
    return a < b;
  };
  std::nth_element(idx.begin(), idx.begin() + n_keep, idx.end(), better);
  idx.resize(n_keep);
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace lazyllm
