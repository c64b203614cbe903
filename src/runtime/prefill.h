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

// Throws Error unless `tokens` can be prefilled after n_past tokens of an n_ctx context (not
// empty, fits, ids inside the vocabulary). Changes nothing.
void check_prefill(std::span<const int32_t> tokens, int n_past, int n_ctx, int n_vocab);

// One prefill walked layer by layer, so a caller can interleave the layers of several sequences
// (a batch step runs layer l of every sequence together). The constructor validates the prompt
// (check_prefill), plans the layers, marks the tokens as prompt and embeds them; begin_layer(l)
// runs the selection before layer l (at pruning layers) and says which rows layer l computes,
// which the caller then has computed (PrefillDevice::prefill_layer, or a batch's products);
// finish() books every layer in the index and counters.
class PrefillWalk {
 public:
  PrefillWalk(PrefillDevice& dev, KVIndex& index, ForwardCounters& counters, std::span<const int32_t> tokens,
              int n_past, int n_vocab, const LayerSchedule& s);
  struct Layer {
    int n_rows = 0, slot0 = 0;
    bool want_importance = false;
  };
  Layer begin_layer(int l);
  void finish();
  const PrefillPlan& plan() const { return plan_; }

 private:
  PrefillDevice& dev_;
  KVIndex& index_;
  ForwardCounters& counters_;
  int n_;
  PrefillPlan plan_;
  std::vector<std::vector<int32_t>> host_dest_;
  std::vector<int> slot0_;
};

// Prefills `tokens` at positions [n_past, n_past + n) under the schedule: validates the prompt
// (Error: empty, over the context, ids outside the vocabulary), drives `dev` layer by layer, then
// books every layer in `index` and `counters` (record_prefill_layer). Selections that read no
// scores (the random ablation) are chosen here, up front, so every backend makes the same choice.
void run_prefill(PrefillDevice& dev, KVIndex& index, ForwardCounters& counters, std::span<const int32_t> tokens,
                 int n_past, int n_vocab, const LayerSchedule& s, const std::function<void(int, int)>& progress);

}  // namespace lazyllm
