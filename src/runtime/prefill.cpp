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

void check_prefill(std::span<const int32_t> tokens, int n_past, int n_ctx, int n_vocab) {
  const int n = static_cast<int>(tokens.size());
  if (n == 0) throw Error("prefill: no tokens");
  if (n_past + n > n_ctx)
    throw Error("prompt of " + std::to_string(n) + " tokens does not fit the context (" + std::to_string(n_past) +
                " used of " + std::to_string(n_ctx) + ")");
  for (int32_t t : tokens)
    if (t < 0 || t >= n_vocab) throw Error("token id " + std::to_string(t) + " is out of the vocabulary");
}

PrefillWalk::PrefillWalk(PrefillDevice& dev, KVIndex& index, ForwardCounters& counters,
                         std::span<const int32_t> tokens, int n_past, int n_vocab, const LayerSchedule& s)
    : dev_(dev), index_(index), counters_(counters), n_(static_cast<int>(tokens.size())) {
  check_prefill(tokens, n_past, index.n_ctx(), n_vocab);
  // How many rows each layer computes is known up front; which tokens they are, only the
  // selections say.
  plan_ = plan_prefill(n_, s);
  std::vector<int32_t> pos(n_);
  for (int i = 0; i < n_; ++i) {
    pos[i] = n_past + i;
    index.mark_prompt(pos[i], true);
  }
  host_dest_ = unscored_choices(plan_, s, pos);
  dev.prefill_embed(tokens, pos, plan_);
  counters.alive_per_layer.assign(s.n_layers(), 0);
  slot0_.assign(s.n_layers(), 0);
}

PrefillWalk::Layer PrefillWalk::begin_layer(int l) {
  // Importance of each alive token = the last token's attention to it at layer l - 1.
  if (plan_.selects[l]) dev_.prefill_select(l, plan_.count[l - 1], plan_.count[l], host_dest_[l]);
  // Each layer's rows take its next slots, in order.
  slot0_[l] = index_.size(l);
  counters_.alive_per_layer[l] = plan_.count[l];
  return {plan_.count[l], slot0_[l], plan_.want_importance[l] != 0};
}

void PrefillWalk::finish() {
  // The alive lists come back once, after the last layer (a GPU never waits for the host at a
  // pruning layer); the slots, KV depths and Aux Cache entries follow from them.
  const std::span<const int32_t> lists = dev_.prefill_finish(plan_, n_);
  auto list = [&](int l) { return lists.subspan(static_cast<size_t>(plan_.list_of[l]) * n_, plan_.count[l]); };
  for (size_t l = 0; l < plan_.count.size(); ++l) {
    const int li = static_cast<int>(l);
    const std::span<const int32_t> prev = plan_.selects[l] ? list(li - 1) : std::span<const int32_t>{};
    if (record_prefill_layer(index_, counters_, li, prev, list(li)) != slot0_[l])
      throw std::logic_error("prefill: slots out of order");
  }
}

void run_prefill(PrefillDevice& dev, KVIndex& index, ForwardCounters& counters, std::span<const int32_t> tokens,
                 int n_past, int n_vocab, const LayerSchedule& s, const std::function<void(int, int)>& progress) {
  PrefillWalk walk(dev, index, counters, tokens, n_past, n_vocab, s);
  const int n_layers = s.n_layers();
  for (int l = 0; l < n_layers; ++l) {
    const PrefillWalk::Layer layer = walk.begin_layer(l);
    dev.prefill_layer(l, layer.n_rows, layer.slot0, layer.want_importance);
    if (progress) progress(l + 1, n_layers);
  }
  walk.finish();
}

}  // namespace lazyllm
