#include "prune/cost_model.h"

#include <algorithm>
#include <cstdio>

#include "model/weights.h"

namespace lazyllm {

// GPU (H200, bf16 weights): small models' products run far below peak (a 256-wide model's
// prefill reached about 47 TFLOP/s of useful work, a 4096-wide one about 400), so the rate scales
// with the width; each pruning layer's selection (one block), compaction and extra launches cost
// about 130 us (measured: the trained 6-layer eval model's default schedule breaks even near 2300
// prompt tokens). CPU: products at about 60 GFLOP/s a core (AVX-512 bf16 on Zen 4; less on AVX2,
// which only makes pruning look less useful than it is), a pruning layer about 20 us.
DeviceCost device_cost(Device d, const ModelConfig& c, int n_threads) {
  DeviceCost k;
  if (d == Device::Cuda) {
    k.flops_per_s = 40e12 * std::clamp(c.n_embd / 256.0, 1.0, 10.0);
    k.bytes_per_s = 3.5e12;
    k.pruning_layer_s = 130e-6;
    k.completion_layer_s = 100e-6;  // measured: ~0.7 ms of launches and copies on the 6-layer model
    k.bytes_per_param = 2;          // prefill's products read bf16 (quantized matrices through a bf16 copy)
    // Measured (H100, lazyllm_bench_cuda --prefill-products): Q8_0 and Q4_0 copy at 2.5 TB/s of
    // blocks read and bf16 written, Q4_K 2.1, Q6_K 1.9. Above 64 rows (cuda::kQgemmMaxRows) the
    // products copy; up to it they read the blocks.
    k.dequant_bytes_per_s = 2.5e12;
    k.dequant_above_rows = 64;
    // Measured (H100, llama2-7b-shaped f16 file and the 12-layer code model, default schedule,
    // `complete`): LazyLLM / baseline for a 2-token answer, against the fixed costs' share of the
    // estimated prefill: 7B at 512 tokens 1.066 (share 21%), 1024 1.002-1.005 (11%), 2048 0.988
    // (5%), 4096 0.990 (2.5%); the code model at 4000 1.24 (32%). The bound sits between.
    k.completion_share_max = 0.15;
  } else {
    k.flops_per_s = 60e9 * std::max(1, n_threads);
    k.bytes_per_s = 20e9 * std::max(1, n_threads);
    k.pruning_layer_s = 20e-6;
    k.completion_layer_s = 20e-6;
  }
  return k;
}

DeviceCost device_cost(Device d, const Model& model, int n_threads) {
  return device_cost(d, model.config(), n_threads);
}

std::vector<LayerSize> layer_sizes(const Model& model) {
  std::vector<LayerSize> out;
  for (const LayerWeights& w : model.weights().layers) {
    LayerSize s;
    for (const WeightView* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) {
      s.params += double(m->rows) * m->cols;
      s.stored_bytes += double(m->rows) * m->row_stride();
    }
    out.push_back(s);
  }
  return out;
}

PruneVerdict judge_prefill(const Model& model, const PrefillPlan& plan, int n_past, const DeviceCost& k,
                           bool completes) {
  const std::vector<LayerSize> sizes = layer_sizes(model);
  return judge_prefill(model.config(), sizes, plan, n_past, k, completes);
}

PruneVerdict judge_prefill(const ModelConfig& c, std::span<const LayerSize> layers, const PrefillPlan& plan, int n_past,
                           const DeviceCost& k, bool completes) {
  const int L = static_cast<int>(plan.count.size());
  if (static_cast<int>(layers.size()) < L) throw Error("cost model: fewer layer sizes than the plan's layers");
  PruneVerdict v;
  int pruning_layers = 0;
  for (int l = 0; l < L; ++l) pruning_layers += plan.selects[l];
  if (pruning_layers == 0) return v;
  const double qd = double(c.n_heads) * c.head_dim;
  const int n = plan.count[0];
  double saved_s = 0, prefill_s = 0;
  for (int l = 0; l < L; ++l) {
    const double params = layers[l].params, stored = layers[l].stored_bytes;
    const double row_flops = 2.0 * params;
    const double bytes = k.bytes_per_param > 0 ? k.bytes_per_param * params : stored;
    // Rows m attending to about n_past + m/2 keys each (causal); the pruned rows' keys shrink too.
    auto layer_s = [&](double m) {
      const double dense = std::max(bytes / k.bytes_per_s, m * row_flops / k.flops_per_s);
      const double attention = 4.0 * m * (n_past + m / 2) * qd / k.flops_per_s;
      return dense + attention;
    };
    saved_s += layer_s(n) - layer_s(plan.count[l]);
    prefill_s += layer_s(n);
  }
  double dequant_s = 0;
  if (completes && k.dequant_bytes_per_s > 0 && !k.completion_reads_copies)
    for (int l = 0; l < L && l < static_cast<int>(k.dequant_bytes.size()); ++l)
      if (n - plan.count[l] > k.dequant_above_rows) dequant_s += k.dequant_bytes[l] / k.dequant_bytes_per_s;
  v.saved_ms = 1e3 * saved_s;
  v.overhead_ms = 1e3 * (pruning_layers * k.pruning_layer_s + (completes ? L * k.completion_layer_s : 0.0) + dequant_s);
  v.prefill_ms = 1e3 * prefill_s;
  v.prune = v.saved_ms >= kPruneMargin * v.overhead_ms;
  // With the completing step, a whole answer pays the fixed costs on top of the baseline's work.
  const bool answer_slower =
      completes && k.completion_share_max > 0 && v.overhead_ms > k.completion_share_max * v.prefill_ms;
  char buf[200];
  if (v.prune && answer_slower) {
    v.prune = false;
    std::snprintf(buf, sizeof buf,
                  "off: the fixed costs of %d pruning layers and the completing step, %.3f ms, exceed %.0f%% of "
                  "the estimated prefill, %.3f ms (whole answers would be slower)",
                  pruning_layers, v.overhead_ms, 100 * k.completion_share_max, v.prefill_ms);
    v.why = buf;
  } else if (v.prune) {
    v.why = "on";
  } else {
    std::snprintf(buf, sizeof buf, "off: estimated saving %.3f ms < %.1f x the cost of %d pruning layers%s, %.3f ms",
                  v.saved_ms, kPruneMargin, pruning_layers, completes ? " and the completing step" : "",
                  v.overhead_ms);
    v.why = buf;
  }
  return v;
}

}  // namespace lazyllm
