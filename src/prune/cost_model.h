// Whether pruning a prompt can pay for itself. LazyLLM saves the prefill work of the tokens it
// stops, but each pruning layer costs a selection and a compaction, which on a GPU are a fixed
// latency whatever the prompt: on a tiny model or a short prompt that latency is more than the
// work saved, and pruning would make the first token later. The estimate here is a roofline of
// each layer (weight bytes at the device's bandwidth or the rows' FLOPs at its rate, plus
// attention) with and without the schedule, against the pruning layers' fixed cost; pruning
// runs when the saving is at least kMargin times the cost. Its inputs and verdict are reported
// (SessionStats::pruning, `--json`), so a user sees why a schedule did not run.
#pragma once

#include <string>

#include "lazyllm/lazyllm.h"
#include "prune/lazy_plan.h"

namespace lazyllm {

// How fast a device is, for the estimate (see cost_model.cpp for where the figures come from).
struct DeviceCost {
  double flops_per_s = 0;        // dense products at this model's width
  double bytes_per_s = 0;        // weight streaming
  double pruning_layer_s = 0;    // fixed cost of one pruning layer (selection, compaction, launches)
  double completion_layer_s = 0; // fixed cost per layer of the decode step that completes the
                                 // deferred pairs (LazyDecode::kComplete): its launches and copies
  double bytes_per_param = 0;    // weights as the device holds them (0: as stored in the file)
};
DeviceCost device_cost(Device d, const Model& model, int n_threads);

struct PruneVerdict {
  bool prune = true;
  double saved_ms = 0;     // estimated prefill time the schedule saves
  double overhead_ms = 0;  // estimated fixed cost of its pruning layers
  std::string why;         // "on" or "off: ..."
};

inline constexpr double kPruneMargin = 1.5;

// Share of a prefill's arithmetic (n tokens after n_past cached ones) that is attention.
double attention_share(const Model& model, int n_past, int n);

// The CPU's automatic decode rule: re-selection wins end to end where attention is a large share
// of the prompt's work (revived rows attend only to the selected keys, so they redo less than the
// prefill deferred), and loses where the work is mostly products (it then repeats them in small
// per-step batches that cost more than the prefill's). Measured on 2 Zen 4 cores, smollm-135m
// q8_0, 64-token answers: share 0.14 at 1K, re-selection 1.09x the baseline end to end; share
// 0.25 at 2K, 0.85x; the trained eval model at 4K (share 0.57), 0.55x against 0.93x completing.
inline constexpr double kReselectMinAttentionShare = 0.2;

// The verdict for a prefill of `plan.count[0]` tokens after n_past cached ones. `completes`: the
// first decode step will compute the deferred pairs (LazyDecode::kComplete), whose fixed cost
// then counts against the saving too (the deferred work itself is the saving paid back).
PruneVerdict judge_prefill(const Model& model, const PrefillPlan& plan, int n_past, const DeviceCost& cost,
                           bool completes = false);

}  // namespace lazyllm
