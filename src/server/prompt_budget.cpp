#include "server/prompt_budget.h"

#include <algorithm>
#include <numeric>

namespace lazyllm::server {

std::vector<int64_t> share_prompt_budget(std::span<const PromptDemand> demands, int chunk, int64_t budget) {
  const int64_t c = chunk;
  for (const PromptDemand& d : demands)
    if (d.fresh && d.left <= c) budget = std::min(budget, c);
  std::vector<size_t> order(demands.size());
  std::iota(order.begin(), order.end(), size_t{0});
  auto key = [&](size_t i) { return demands[i].left - static_cast<int64_t>(demands[i].waited) * c; };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  std::vector<int64_t> take(demands.size(), 0);
  for (size_t i : order) {
    const PromptDemand& d = demands[i];
    take[i] = d.whole ? (d.left <= budget ? d.left : 0) : std::min({d.left, budget, c});
    budget -= take[i];
  }
  return take;
}

}  // namespace lazyllm::server
