// Whether pruning a prompt can pay for itself. LazyLLM saves the prefill work of the tokens it
// stops, but each pruning layer costs a selection and a compaction, which on a GPU are a fixed
// latency whatever the prompt: on a tiny model or a short prompt that latency is more than the
// work saved, and pruning would make the first token later. The estimate here is a roofline of
// each layer (weight bytes at the device's bandwidth or the rows' FLOPs at its rate, plus
// attention) with and without the schedule, against the pruning layers' fixed cost; pruning
// runs when the saving is at least kPruneMargin times the cost, and, where the first decode step
// completes the deferred pairs on a GPU, when the fixed costs are a small enough share of the
// prefill that whole answers stay as fast as the baseline's. Its inputs and verdict are reported
// (SessionStats::pruning, `--json`), so a user sees why a schedule did not run.
#pragma once

#include <span>
#include <string>
#include <vector>

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
  // Quantized weights on a GPU: a batch of more than dequant_above_rows rows first copies each
  // such matrix into bf16, moving dequant_bytes[l] at layer l at dequant_bytes_per_s. The
  // completing step is such a batch at every layer it completes, so it pays that copy a second
  // time (the prefill paid it once, as the baseline's does). Empty: no copies.
  std::vector<double> dequant_bytes;
  double dequant_bytes_per_s = 0;
  int dequant_above_rows = 0;
  // The prefill keeps its bf16 copies for the completing step (SessionOptions::gpu_weight_copies;
  // assumed to fit), which then pays no second copy.
  bool completion_reads_copies = false;
  // When the first decode step completes the deferred pairs, the fixed costs may be at most this
  // share of the baseline's estimated prefill (0: no bound). A whole answer pays them on top of
  // the baseline's work, less what the pruned prefill did more cheaply; past this share that no
  // longer covers them (see cost_model.cpp for the measurements).
  double completion_share_max = 0;
};
DeviceCost device_cost(Device d, const ModelConfig& c, int n_threads);
DeviceCost device_cost(Device d, const Model& model, int n_threads);

// A layer's size for the estimate: its matrices' parameters and their bytes as stored.
struct LayerSize {
  double params = 0, stored_bytes = 0;
};
std::vector<LayerSize> layer_sizes(const Model& model);

struct PruneVerdict {
  bool prune = true;
  double saved_ms = 0;     // estimated prefill time the schedule saves
  double overhead_ms = 0;  // estimated fixed cost of its pruning layers (and the completing step)
  double prefill_ms = 0;   // the baseline's estimated prefill
  std::string why;         // "on" or "off: ..."
};

inline constexpr double kPruneMargin = 1.5;

// The CPU's automatic decode rule (under PrunePolicy::kAuto): re-select from this many context
// tokens on, complete the deferred pairs below it. Measured end to end on 2 Zen 4 cores (q8_0,
// random weights; docs/benchmarks.md), LazyLLM / baseline at 64 tokens: at 1K re-selection ended
// 1.09x (smollm-135m) and 1.20x (tinyllama-1.1b) against 0.97x and 0.94x completing; at 2K
// 0.99x-1.05x (smollm) and 1.01x-1.10x (tinyllama) against 1.00x completing for both; at 3K
// 0.85x (smollm) and 0.98x (tinyllama) re-selecting; the trained eval model at 4K, 0.55x against
// 0.93x. An empirical threshold, not a model: re-selection pays where the prefill's saving is
// large against what the first steps' revivals cost, and where the keys a step no longer reads
// are a large share of it (smollm's K/V per token is 16% of its weights per 1K of context,
// tinyllama's 4%), which this threshold does not yet weigh.
inline constexpr int kReselectMinContext = 3072;

// The verdict for a prefill of `plan.count[0]` tokens after n_past cached ones. `completes`: the
// first decode step will compute the deferred pairs (LazyDecode::kComplete), whose fixed cost
// and second dequantization of quantized weights then count against the saving too (the deferred
// work itself is the saving paid back).
PruneVerdict judge_prefill(const Model& model, const PrefillPlan& plan, int n_past, const DeviceCost& cost,
                           bool completes = false);
// The same from the model's shape alone (no weights needed: estimates for shapes not loaded).
PruneVerdict judge_prefill(const ModelConfig& c, std::span<const LayerSize> layers, const PrefillPlan& plan, int n_past,
                           const DeviceCost& cost, bool completes = false);

}  // namespace lazyllm
