#include "prune/lazy_plan.h"

#include <algorithm>
#include <stdexcept>

#include "prune/select.h"

namespace lazyllm {

bool LayerSchedule::any() const {
  return std::any_of(prunes.begin(), prunes.end(), [](uint8_t p) { return p != 0; });
}

LayerSchedule LayerSchedule::from(const PruneSchedule& s, int n_layers, bool force_selection) {
  LayerSchedule out;
  out.keep = s.keep_per_layer(n_layers);
  out.prunes.assign(n_layers, 0);
  out.selector = TokenSelector(s);
  out.revive_budget = s.decode == LazyDecode::kReselect ? s.revive_budget : -1;
  for (int l = 1; l < n_layers; ++l) out.prunes[l] = out.keep[l] < 1.0;
  if (force_selection)
    for (const PrunePoint& p : s.points)
      if (p.layer >= 1 && p.layer < n_layers) out.prunes[p.layer] = 1;
  return out;
}

int LayerSchedule::next_pruning_layer(int l) const {
  int next = l + 1;
  while (next < n_layers() && !prunes[next]) ++next;
  return next;
}

LayerSchedule LayerSchedule::baseline(int n_layers) {
  LayerSchedule out;
  out.keep.assign(n_layers, 1.0);
  out.prunes.assign(n_layers, 0);
  return out;
}

PrefillPlan plan_prefill(int n, const LayerSchedule& s) {
  const int L = s.n_layers();
  PrefillPlan p;
  p.count.resize(L), p.list_of.resize(L), p.selects.assign(L, 0), p.want_importance.assign(L, 0);
  for (int l = 0, na = n; l < L; ++l) {
    if (l > 0 && s.prunes[l]) {
      p.selects[l] = 1;
      ++p.n_lists;
      na = keep_count(na, s.keep[l]);
    }
    p.count[l] = na;
    p.list_of[l] = p.n_lists - 1;
  }
  for (int l = 0; l + 1 < L; ++l) p.want_importance[l] = p.selects[l + 1] && s.selector.needs_importance();
  return p;
}

int record_prefill_layer(KVIndex& index, ForwardCounters& counters, int l, std::span<const int32_t> prev_alive,
                         std::span<const int32_t> alive) {
  const int slot0 = index.store_rows(l, alive);
  for (int32_t t : alive) counters.prompt_token_layers += index.is_prompt(t);
  counters.token_layers += static_cast<int64_t>(alive.size());
  if (l > 0 && !prev_alive.empty()) {
    ++counters.selections;
    // Both lists are in position order: what is missing from `alive` stopped here.
    for (size_t i = 0, j = 0; i < prev_alive.size(); ++i) {
      if (j < alive.size() && alive[j] == prev_alive[i]) ++j;
      else index.aux_put(prev_alive[i]);
    }
  }
  return slot0;
}

DecodeStep::DecodeStep(KVIndex& index, ForwardCounters& counters, const LayerSchedule& s, int32_t new_pos)
    : index_(index), counters_(counters), s_(s), p_(new_pos), budget_left_(s.revive_budget) {
  if (new_pos < 0 || new_pos >= index.n_ctx()) throw std::logic_error("DecodeStep: position outside the context");
  index_.mark_prompt(p_, false);
  // Every earlier token has K/V at layer 0 (layer 0 is never pruned): all are selected there.
  sel_.resize(p_);
  for (int t = 0; t < p_; ++t) sel_[t] = t;
}

const DecodeLayerPlan& DecodeStep::next_layer(std::span<const float> importance) {
  const int l = next_++;
  if (l >= s_.n_layers()) throw std::logic_error("DecodeStep: more layers than the model has");
  const bool reselects = s_.selector.reselects_at_decode();
  if (l > 0 && s_.prunes[l] && !sel_.empty()) {
    ++counters_.selections;
    if (!reselects) {
      // Static and random: attend to the tokens that prefill computed this deep; nothing revives.
      std::erase_if(sel_, [&](int32_t t) { return index_.depth(t) <= l; });
    } else {
      if (!plan_.want_importance || importance.size() < sel_.size())
        throw std::logic_error("DecodeStep: a pruning layer needs the previous layer's importance");
      const int n_keep = keep_count(static_cast<int>(sel_.size()) + 1, s_.keep[l]) - 1;
      if (n_keep < static_cast<int>(sel_.size())) {
        const std::vector<int> kept = budget_left_ < 0 ? select_top(importance.first(sel_.size()), n_keep)
                                                       : select_within_budget(importance, n_keep, l);
        for (size_t i = 0; i < kept.size(); ++i) sel_[i] = sel_[kept[i]];
        sel_.resize(kept.size());
      }
    }
  }

  // One pass over the selected tokens, in position order (each is a key): the previous layer's
  // rows (carry_, without the new token) that are no longer selected stop here, the selected
  // ones go on, and selected tokens that stopped exactly here revive. The rows take the layer's
  // next slots in that order, so each key's slot is known in the same pass and the rows are
  // stored together. (Raw pointers into lists sized up front: the loop runs over every key of
  // every layer, where push_back's checks and a call a pair cost more than the work.)
  DecodeLayerPlan& plan = plan_;
  plan.layer = l;
  plan.stop_rows.clear(), plan.stop_tokens.clear();
  const size_t n_sel = sel_.size(), n_carry = carry_.size();
  for (auto* v : {&plan.keys, &plan.key_slots, &plan.rows, &plan.row_src, &plan.row_keys}) v->resize(n_sel + 1);
  int32_t *keys = plan.keys.data(), *key_slots = plan.key_slots.data();
  int32_t *rows = plan.rows.data(), *row_src = plan.row_src.data(), *row_keys = plan.row_keys.data();
  const int32_t *sel = sel_.data(), *carry = carry_.data();
  const int32_t *depth = index_.depths(), *slots = index_.slots_of_layer(l);
  const int slot0 = index_.size(l);
  size_t n_rows = 0, ci = 0;
  bool in_order = true;  // key i in slot i so far
  for (size_t i = 0; i < n_sel; ++i) {
    const int32_t t = sel[i];
    keys[i] = t;
    for (; ci < n_carry && carry[ci] < t; ++ci) plan.stop_rows.push_back(static_cast<int32_t>(ci));
    int slot;
    if (depth[t] > l) {  // has K/V here already
      slot = slots[t];
    } else {
      if (depth[t] < l) throw std::logic_error("DecodeStep: a selected token lost its K/V below this layer");
      row_src[n_rows] = ci < n_carry && carry[ci] == t ? static_cast<int32_t>(ci++) : -1;
      rows[n_rows] = t;
      row_keys[n_rows] = static_cast<int32_t>(i + 1);  // keys are by position: a prefix
      slot = slot0 + static_cast<int>(n_rows++);
    }
    key_slots[i] = slot;
    in_order = in_order && slot == static_cast<int>(i);
  }
  for (; ci < n_carry; ++ci) plan.stop_rows.push_back(static_cast<int32_t>(ci));
  keys[n_sel] = p_;
  rows[n_rows] = p_;
  row_src[n_rows] = static_cast<int32_t>(n_carry);
  row_keys[n_rows] = static_cast<int32_t>(n_sel + 1);
  key_slots[n_sel] = slot0 + static_cast<int>(n_rows);
  in_order = in_order && key_slots[n_sel] == static_cast<int32_t>(n_sel);
  ++n_rows;
  for (auto* v : {&plan.rows, &plan.row_src, &plan.row_keys}) v->resize(n_rows);

  // The Aux Cache: tokens that stop enter it, revived ones (not carried) leave it.
  for (int32_t i : plan.stop_rows) {
    plan.stop_tokens.push_back(carry_[i]);
    index_.aux_put(carry_[i]);
  }
  for (size_t r = 0; r + 1 < n_rows; ++r) {
    if (plan.row_src[r] >= 0) continue;
    if (!index_.in_aux(plan.rows[r])) throw std::logic_error("DecodeStep: a token to revive is not in the Aux Cache");
    index_.aux_erase(plan.rows[r]);
  }
  plan.slot0 = index_.store_rows(l, plan.rows);
  for (int32_t t : plan.rows) counters_.prompt_token_layers += index_.is_prompt(t);
  counters_.token_layers += static_cast<int64_t>(n_rows);
  counters_.revived += plan.n_revived();
  plan.all_keys = in_order && n_sel + 1 == static_cast<size_t>(index_.size(l));
  plan.want_importance = l + 1 < s_.n_layers() && s_.prunes[l + 1] && reselects;
  carry_.assign(plan.rows.begin(), plan.rows.end() - 1);
  return plan;
}

// A kept token is ready for the stretch of layers up to the next pruning layer when it has K/V
// there already or was computed at the previous layer in this step (a revival already paid for);
// any other would revive from the Aux Cache within the stretch, and counts against the budget.
std::vector<int> DecodeStep::select_within_budget(std::span<const float> importance, int n_keep, int l) {
  const int need = s_.next_pruning_layer(l);
  std::vector<uint8_t> ready(sel_.size());
  for (size_t i = 0; i < sel_.size(); ++i)
    ready[i] = index_.depth(sel_[i]) >= need || std::binary_search(carry_.begin(), carry_.end(), sel_[i]);
  std::vector<int> kept = select_top_within(importance.first(sel_.size()), n_keep, ready, budget_left_);
  for (int i : kept) budget_left_ -= !ready[i];
  return kept;
}

std::optional<SteadyDecodePlan> plan_steady_decode(const KVIndex& index, const LayerSchedule& s) {
  const int L = s.n_layers(), p = index.tokens();
  if (!s.any() || !s.selector.reselects_at_decode() || p == 0 || p >= index.n_ctx() || L != index.n_layers())
    return std::nullopt;
  SteadyDecodePlan plan;
  plan.slot.resize(L), plan.n_keys.resize(L), plan.selects.assign(L, 0), plan.need_depth.assign(L, 0);
  plan.first_listed = L;
  for (int l = 1; l < L; ++l)
    if (s.prunes[l]) {
      plan.first_listed = l;
      break;
    }
  // Below the first pruning layer every earlier token is a key, in slot = position order (as
  // DecodeStep's all_keys case); a token short of it (pruned under another schedule) would revive.
  for (int l = 0; l < plan.first_listed; ++l)
    if (index.size(l) != p || !index.slots_are_positions(l)) return std::nullopt;
  int candidates = p;  // keys of the previous layer without the new token
  for (int l = 0; l < L; ++l) {
    if (l > 0 && s.prunes[l] && candidates > 0) {
      plan.selects[l] = 1;
      candidates = std::min(candidates, keep_count(candidates + 1, s.keep[l]) - 1);
      plan.need_depth[l] = s.next_pruning_layer(l);
    }
    plan.slot[l] = index.size(l);
    plan.n_keys[l] = candidates + 1;
  }
  return plan;
}

void record_steady_decode(KVIndex& index, ForwardCounters& counters, const SteadyDecodePlan& plan) {
  const int p = index.tokens();
  index.mark_prompt(p, false);
  for (int l = 0; l < static_cast<int>(plan.slot.size()); ++l) {
    if (index.store(l, p) != plan.slot[l]) throw std::logic_error("record_steady_decode: the index moved since the plan");
    counters.selections += plan.selects[l];
  }
  counters.token_layers += static_cast<int64_t>(plan.slot.size());
}

bool key_runs(const DecodeLayerPlan& plan, std::vector<int32_t>& ends) {
  const size_t n = plan.key_slots.size(), m = plan.rows.size();
  if (plan.row_keys.size() != m || m == 0) return false;
  // A slot below slot0 must continue the first run, any other the second. first[i]: keys in the
  // first run among the first i. No branch on the run (they interleave as the rows fall among
  // the kept tokens) and no early exit, so the only chain from key to key is one addition.
  thread_local std::vector<int32_t> first;
  first.resize(n + 1);
  const int32_t* slots = plan.key_slots.data();
  const int32_t slot0 = plan.slot0;
  int32_t in_a = 0;
  bool ok = true;
  first[0] = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t s = slots[i];
    const bool a = s < slot0;
    ok &= a ? s == in_a : s == slot0 + static_cast<int32_t>(i) - in_a;
    in_a += a;
    first[i + 1] = in_a;
  }
  if (!ok) return false;
  ends.resize(2 * m);
  for (size_t r = 0; r < m; ++r) {
    const int32_t e = plan.row_keys[r];
    if (e < 0 || static_cast<size_t>(e) > n) return false;
    ends[r] = first[e], ends[m + r] = e - first[e];
  }
  return true;
}

}  // namespace lazyllm
