// The walk of a prompt through prefill, written once for every backend: check the prompt, plan
// the layers (prune/lazy_plan.h), embed, then layer by layer select (at pruning layers) and
// compute, and finally book in the KVIndex which tokens each layer computed. A backend supplies
// the device work through PrefillDevice and never decides which tokens a layer computes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "cache/kv_index.h"
#include "prune/lazy_plan.h"
#include "runtime/forward_backend.h"

namespace lazyllm {

// What a backend computes during prefill, in the order run_prefill() asks for it. "Rows" are the
// hidden states of the tokens alive at the current layer, in position order.
class PrefillDevice {
 public:
  virtual ~PrefillDevice() = default;
  // Rows 0..n-1: the tokens' embeddings, at positions `pos`; `plan` says how many rows and alive
  // lists follow (room for them, and for the Aux Cache when it selects).
  virtual void prefill_embed(std::span<const int32_t> tokens, std::span<const int32_t> pos,
                             const PrefillPlan& plan) = 0;
  // Before layer l, of the n_rows current rows keep n_keep, in order; every other row's hidden
  // state (entering layer l) goes to the Aux Cache. `dest` (row -> index among the kept rows, or
  // -1) when the host chose; empty: keep the last row and the n_keep - 1 others with the highest
  // importance handed back by layer l - 1 (prune/select.h's select_top: ties to the lower index,
  // NaN lowest), the same choice on every backend.
  virtual void prefill_select(int l, int n_rows, int n_keep, std::span<const int32_t> dest) = 0;
  // Layer l on the current n_rows rows: their K/V take slots slot0.. of the layer, and they attend
  // to every slot of the layer up to their own. `want_importance`: hand back the last row's
  // attention over those slots, averaged over heads.
  virtual void prefill_layer(int l, int n_rows, int slot0, bool want_importance) = 0;
  // After the last layer: the last row's logits, and the positions each alive list held (list e of
  // plan.n_lists at e * n, plan.count entries of it), which the caller books.
  virtual std::span<const int32_t> prefill_finish(const PrefillPlan& plan, int n) = 0;
};

// Prefills `tokens` at positions [n_past, n_past + n) under the schedule: validates the prompt
// (Error: empty, over the context, ids outside the vocabulary), drives `dev` layer by layer, then
// books every layer in `index` and `counters` (record_prefill_layer). Selections that read no
// scores (the random ablation) are chosen here, up front, so every backend makes the same choice.
void run_prefill(PrefillDevice& dev, KVIndex& index, ForwardCounters& counters, std::span<const int32_t> tokens,
                 int n_past, int n_vocab, const LayerSchedule& s, const std::function<void(int, int)>& progress);

}  // namespace lazyllm
