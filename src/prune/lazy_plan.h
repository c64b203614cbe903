// LazyLLM's plan of what each layer computes, written once for every backend.
//
// A backend executes plans; it never decides which tokens a layer computes, which keys a query
// attends to, which tokens stop or revive, or what the caches' index says. Prefill: the alive
// counts per layer are known up front (PrefillPlan); which tokens survive a pruning layer is
// the selector's choice (made on the host from the importance scores, or by a device kernel that
// makes the same choice), and record_prefill_layer() books the result. Decode: a DecodeStep
// hands out one DecodeLayerPlan per layer (rows to compute and where each comes from, rows that
// stop, keys to attend to and their slots), updating the KVIndex and the counters as it goes;
// the backend feeds back the new token's attention when a plan asks for it.
//
// One step of several sequences is a DecodeStep per sequence, each over its own KVIndex and
// schedule: their layer plans concatenate into one batch (rows and keys are per sequence).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "cache/kv_index.h"
#include "lazyllm/lazyllm.h"
#include "prune/selector.h"
#include "prune/work_counters.h"

namespace lazyllm {

// The schedule as the forward pass reads it.
struct LayerSchedule {
  std::vector<double> keep;     // keep fraction per layer (1.0 where nothing is pruned)
  std::vector<uint8_t> prunes;  // selection runs at this layer (keep < 1, or forced)
  TokenSelector selector;
  int revive_budget = -1;  // PruneSchedule::revive_budget: revivals a decode step may make (-1: any)

  int n_layers() const { return static_cast<int>(keep.size()); }
  bool any() const;
  // The first pruning layer after l, or n_layers(): the K/V depth a token kept at l needs.
  int next_pruning_layer(int l) const;
  // `force_selection` makes every layer the schedule names a pruning layer even at keep 1.0, so
  // the whole selection, compaction and revival machinery runs while keeping every token (tests
  // compare that with the baseline).
  static LayerSchedule from(const PruneSchedule& s, int n_layers, bool force_selection = false);
  static LayerSchedule baseline(int n_layers);
};

// Prefill of n tokens under a schedule: rows per layer and where the selection needs scores.
struct PrefillPlan {
  std::vector<int> count;            // rows computed at layer l
  std::vector<int> list_of;          // which alive list layer l computes (0: every token)
  int n_lists = 1;                   // alive lists: 1 + the pruning layers
  std::vector<uint8_t> selects;      // a selection runs before layer l
  std::vector<uint8_t> want_importance;  // layer l hands back the last row's attention
};
PrefillPlan plan_prefill(int n, const LayerSchedule& s);

// Books layer l of a prefill: `alive` (positions, increasing) computed at l took the next slots
// of layer l, in order. `prev_alive` is given where a selection ran before layer l (else empty):
// its tokens not in `alive` stopped at l and entered the Aux Cache. Counts the work. Returns the
// first slot.
int record_prefill_layer(KVIndex& index, ForwardCounters& counters, int l, std::span<const int32_t> prev_alive,
                         std::span<const int32_t> alive);

// What one layer of a decode step computes, for one sequence.
struct DecodeLayerPlan {
  int layer = 0;
  // Tokens computed at this layer, by position; the new token last. Revived tokens resume here
  // from the Aux Cache; carried ones were computed at the previous layer in this step.
  std::vector<int32_t> rows;
  // Per row: its index among the previous layer's rows (carried; the new token's is the last
  // one), or -1 when it resumes from the Aux Cache.
  std::vector<int32_t> row_src;
  // Indices among the previous layer's rows of tokens that stop here: their hidden state
  // (entering this layer) goes to the Aux Cache.
  std::vector<int32_t> stop_rows, stop_tokens;  // and those tokens
  // Tokens the rows attend to (causally by position), by position, the new token last, and
  // their slots at this layer (the rows' own slots included: they are stored first).
  std::vector<int32_t> keys, key_slots;
  // Per row: how many keys it sees (keys are by position, so a prefix; the new token sees all).
  std::vector<int32_t> row_keys;
  int slot0 = 0;  // the rows take slots slot0, slot0 + 1, ...
  bool want_importance = false;  // hand the new token's head-averaged attention over keys back
  bool all_keys = false;         // keys are every slot [0, key count) of the layer, in slot order
  int n_revived() const { return static_cast<int>(rows.size()) - 1; }
};

// Whether a layer plan's keys are two runs of slots, each in position order: slots 0, 1, ...
// (tokens stored before this step) and the rows' own slots slot0, slot0 + 1, ... (the completing
// step, or a revival batch whose keys are every stored token). If so, `ends` holds for each row
// its keys in the first run, then for each row its keys in the second (2 x rows entries), so an
// attention kernel can read both runs in place instead of gathering the keys into one.
bool key_runs(const DecodeLayerPlan& plan, std::vector<int32_t>& ends);

// One decode step: the new token at position index.tokens()'s end (n_past), layer by layer.
class DecodeStep {
 public:
  DecodeStep(KVIndex& index, ForwardCounters& counters, const LayerSchedule& s, int32_t new_pos);
  // Plans the next layer (layers in order). `importance`: the new token's attention over the
  // previous layer's keys, when that plan asked for it (else ignored).
  const DecodeLayerPlan& next_layer(std::span<const float> importance);
  // The tokens selected at the last planned layer (keys without the new token).
  std::span<const int32_t> selected() const { return {plan_.keys.data(), plan_.keys.size() - 1}; }

 private:
  // The selection at pruning layer l under a revival budget (select_top_within).
  std::vector<int> select_within_budget(std::span<const float> importance, int n_keep, int l);
  KVIndex& index_;
  ForwardCounters& counters_;
  const LayerSchedule& s_;
  int32_t p_;
  int next_ = 0;
  int budget_left_ = -1;         // revivals this step may still make (-1: no limit)
  std::vector<int32_t> sel_;     // selected tokens (without the new one)
  std::vector<int32_t> carry_;   // rows of the previous layer without the new token
  DecodeLayerPlan plan_;
};

// A decode step in which no kept token needs reviving: the common step once the selection has
// settled. The new token is then the only row at every layer, so its slot and every layer's key
// count are known before the step; only which tokens each pruning layer keeps is left to the
// device, which applies DecodeStep's rule (the top-scoring `n_keys[l] - 1` of the previous layer's
// keys, ties to the lower position). A backend can run such a step without a host round trip
// (the CUDA graph of a lazy decode step) and book it with record_steady_decode(); if the device
// finds that a kept token stopped at that layer (it would revive), the step is redone through
// DecodeStep, which nothing of the attempt has changed.
struct SteadyDecodePlan {
  int first_listed = 0;          // layers below it attend to every slot [0, n_keys) in order
  std::vector<int32_t> slot;     // the new token's slot at each layer
  std::vector<int32_t> n_keys;   // keys at each layer, the new token included
  std::vector<uint8_t> selects;  // a selection runs at this layer (the previous layer's keys are its candidates)
  // At a selecting layer: the K/V depth every kept token must have (the next pruning layer, or
  // the model's depth); a kept token short of it would revive within this stretch of layers.
  std::vector<int32_t> need_depth;
};
// The plan of the next step (the new token at the index's end), or nullopt where the schedule
// does not re-select from attention (static, random, no pruning) or the index is not in the
// state the plan assumes.
std::optional<SteadyDecodePlan> plan_steady_decode(const KVIndex& index, const LayerSchedule& s);
// Books a steady step that ran to the end: the new token stored at every layer, the counters
// as DecodeStep counts them.
void record_steady_decode(KVIndex& index, ForwardCounters& counters, const SteadyDecodePlan& plan);

}  // namespace lazyllm
