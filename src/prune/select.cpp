#include "prune/select.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>

namespace lazyllm {

namespace {

// The ranking as one unsigned integer per candidate (larger is better), a strict total order even
// with NaN scores, so a NaN from a broken model cannot break a selection: the score's bits made
// monotonic (NaN below every number, tied among themselves; -0 as +0), then the index reversed so
// ties go to the lower one.
uint64_t rank_key(float x, int i) {
  uint32_t u = 0;
  if (!std::isnan(x)) {
    u = std::bit_cast<uint32_t>(x == 0.0f ? 0.0f : x);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
  return (uint64_t{u} << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(i));
}

struct Better {
  std::span<const float> scores;
  bool operator()(int a, int b) const { return rank_key(scores[a], a) > rank_key(scores[b], b); }
};

}  // namespace

std::vector<int> select_top(std::span<const float> scores, int n_keep) {
  const int n = static_cast<int>(scores.size());
  if (n_keep <= 0) return {};
  std::vector<int> idx;
  if (n_keep >= n) {
    idx.resize(n);
    std::iota(idx.begin(), idx.end(), 0);
    return idx;
  }
  // The n_keep-th best key is the threshold; one pass in index order then keeps the candidates
  // at or above it (keys are distinct), already sorted, with no comparator calls.
  std::vector<uint64_t> keys(n);
  for (int i = 0; i < n; ++i) keys[i] = rank_key(scores[i], i);
  std::nth_element(keys.begin(), keys.begin() + (n_keep - 1), keys.end(), std::greater<uint64_t>());
  const uint64_t threshold = keys[n_keep - 1];
  idx.reserve(n_keep);
  for (int i = 0; i < n; ++i)
    if (rank_key(scores[i], i) >= threshold) idx.push_back(i);
  return idx;
}

std::vector<int> select_top_within(std::span<const float> scores, int n_keep, std::span<const uint8_t> ready,
                                   int budget) {
  std::vector<int> top = select_top(scores, n_keep);
  const auto not_ready = std::count_if(top.begin(), top.end(), [&](int i) { return !ready[i]; });
  if (not_ready <= budget) return top;  // the common case
  // Walking the ranking and skipping not-ready candidates once the budget is spent keeps the
  // top n_keep of (every ready candidate + the `budget` best not-ready ones): two partial
  // selections instead of a full sort.
  const int n = static_cast<int>(scores.size());
  std::vector<int> pool, waiting;
  for (int i = 0; i < n; ++i) (ready[i] ? pool : waiting).push_back(i);
  const Better better{scores};
  if (budget < static_cast<int>(waiting.size())) {
    std::nth_element(waiting.begin(), waiting.begin() + budget, waiting.end(), better);
    waiting.resize(budget);
  }
  pool.insert(pool.end(), waiting.begin(), waiting.end());
  if (n_keep < static_cast<int>(pool.size())) {
    std::nth_element(pool.begin(), pool.begin() + n_keep, pool.end(), better);
    pool.resize(n_keep);
  }
  std::sort(pool.begin(), pool.end());
  return pool;
}

}  // namespace lazyllm
