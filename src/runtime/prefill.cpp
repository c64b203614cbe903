#include "runtime/prefill.h"

#include <stdexcept>
#include <string>

#include "lazyllm/error.h"

namespace lazyllm {
namespace {

// The host's choices for selections that read no scores: per layer, each alive row's index among
// the kept rows or -1 (empty where the layer does not select, or where the device chooses).
std::vector<std::vector<int32_t>> unscored_choices(const PrefillPlan& plan, const LayerSchedule& s,
                                                   std::vector<int32_t> alive) {
  std::vector<std::vector<int32_t>> dest(plan.count.size());
  if (s.selector.needs_importance()) return dest;
  for (size_t l = 1; l < plan.count.size(); ++l) {
    if (!plan.selects[l]) continue;
    const int na = static_cast<int>(alive.size());
    const std::vector<int> kept =
        s.selector.choose_prefill(na - 1, {}, plan.count[l] - 1, static_cast<int>(l), alive[0]);
    dest[l].assign(na, -1);
    for (size_t j = 0; j < kept.size(); ++j) dest[l][kept[j]] = static_cast<int32_t>(j);
    dest[l][na - 1] = static_cast<int32_t>(kept.size());  // the last token is never pruned
    std::vector<int32_t> next;
    for (int i = 0; i < na; ++i)
      if (dest[l][i] >= 0) next.push_back(alive[i]);
    alive.swap(next);
  }
  return dest;
}

}  // namespace

void run_prefill(PrefillDevice& dev, KVIndex& index, ForwardCounters& counters, std::span<const int32_t> tokens,
                 int n_past, int n_vocab, const LayerSchedule& s, const std::function<void(int, int)>& progress) {
  const int n = static_cast<int>(tokens.size()), n_layers = s.n_layers();
  if (n == 0) throw Error("prefill: no tokens");
  if (n_past + n > index.n_ctx())
    throw Error("prompt of " + std::to_string(n) + " tokens does not fit the context (" + std::to_string(n_past) +
                " used of " + std::to_string(index.n_ctx()) + ")");
  for (int32_t t : tokens)
    if (t < 0 || t >= n_vocab) throw Error("token id " + std::to_string(t) + " is out of the vocabulary");

  // How many rows each layer computes is known up front; which tokens they are, only the
  // selections say.
  const PrefillPlan plan = plan_prefill(n, s);
  std::vector<int32_t> pos(n);
  for (int i = 0; i < n; ++i) {
    pos[i] = n_past + i;
    index.mark_prompt(pos[i], true);
  }
  const std::vector<std::vector<int32_t>> host_dest = unscored_choices(plan, s, pos);

  dev.prefill_embed(tokens, pos, plan);
  counters.alive_per_layer.assign(n_layers, 0);
  std::vector<int> slot0(n_layers);
  for (int l = 0; l < n_layers; ++l) {
    // Importance of each alive token = the last token's attention to it at layer l - 1.
    if (plan.selects[l]) dev.prefill_select(l, plan.count[l - 1], plan.count[l], host_dest[l]);
    // Each layer's rows take its next slots, in order.
    slot0[l] = index.size(l);
    counters.alive_per_layer[l] = plan.count[l];
    dev.prefill_layer(l, plan.count[l], slot0[l], plan.want_importance[l]);
    if (progress) progress(l + 1, n_layers);
  }

  // The alive lists come back once, after the last layer (a GPU never waits for the host at a
  // pruning layer); the slots, KV depths and Aux Cache entries follow from them.
  const std::span<const int32_t> lists = dev.prefill_finish(plan, n);
  auto list = [&](int l) { return lists.subspan(static_cast<size_t>(plan.list_of[l]) * n, plan.count[l]); };
  for (int l = 0; l < n_layers; ++l) {
    const std::span<const int32_t> prev = plan.selects[l] ? list(l - 1) : std::span<const int32_t>{};
    if (record_prefill_layer(index, counters, l, prev, list(l)) != slot0[l])
      throw std::logic_error("prefill: slots out of order");
  }
}

}  // namespace lazyllm
