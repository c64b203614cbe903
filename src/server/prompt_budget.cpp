#include "server/prompt_budget.h"

#include <algorithm>
#include <numeric>

namespace lazyllm::server {

std::vector<int64_t> share_prompt_budget(std::span<const PromptDemand> demands, int chunk, int64_t budget) {
  const int64_t c = chunk;
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

StepOrder order_step(std::span<const PromptDemand> demands, std::span<const int64_t> takes) {
  StepOrder o;
  for (size_t i = 0; i < demands.size(); ++i)
    if (takes[i] > 0) (demands[i].fresh && takes[i] == demands[i].left ? o.first : o.chunks).push_back(i);
  return o;
}

}  // namespace lazyllm::server
