// Token selection for LazyLLM: how many tokens a pruning layer keeps, and which ones.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace lazyllm {

// Tokens kept out of `n_alive` (the always-kept last token included) at keep fraction `keep`:
// ceil(keep * n_alive), at least 1. A keep of 1.0 keeps every token.
inline int keep_count(int n_alive, double keep) {
  if (keep >= 1.0) return n_alive;
  int n = static_cast<int>(std::ceil(keep * n_alive - 1e-9));
  return n < 1 ? 1 : (n > n_alive ? n_alive : n);
}

// Indices of the `n_keep` largest scores, returned in increasing index order (so tokens stay
// sorted by position). Ties go to the lower index, which makes the choice deterministic. NaN
// scores rank below every number (-inf included).
std::vector<int> select_top(std::span<const float> scores, int n_keep);

// The same choice with at most `budget` of the kept indices i where ready[i] is false: the
// candidates in that order (larger score, then lower index), each not-ready one taken only while
// the budget lasts, until n_keep are kept or none are left (then fewer). With a budget that covers
// the top n_keep's not-ready ones this is select_top.
std::vector<int> select_top_within(std::span<const float> scores, int n_keep, std::span<const uint8_t> ready,
                                   int budget);

}  // namespace lazyllm
