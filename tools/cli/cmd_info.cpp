// lazyllm info: what a model file holds, the CPU kernels that would run it, the bytes its
// weights would take on a GPU, the memory a session would need on each device, and the schedule
// --lazy would use.
#include <cstdio>
#include <string>

#include "commands.h"
#include "common.h"
#include "prune/saved_schedule.h"

namespace lazyllm::cli {

void add_info_command(CLI::App& app, int& exit_code) {
  auto model = std::make_shared<std::string>();
  auto ctx = std::make_shared<int>(0);
  auto lazy = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("info", "Describe a model file");
  cmd->add_option("-m,--model", *model, "GGUF model file")->required();
  cmd->add_option("-c,--ctx", *ctx, "Context size of the memory estimate (default: the model's trained context)")
      ->check(CLI::Range(1, 1 << 22));
  cmd->add_flag("--lazy", *lazy, "Count LazyLLM's Aux Cache in the memory estimate (the default schedule)");
  cmd->callback([model, ctx, lazy, &exit_code] {
    const auto m = Model::load(*model);
    std::fputs(m->describe().c_str(), stdout);
    std::fputs(describe(cpu_kernels()).c_str(), stdout);
    // What the CUDA backend would hold on a GPU (computed here; no GPU needed).
    const auto mib = [](int64_t b) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(1 << 20));
      return std::string(buf);
    };
    const Model::GpuWeightBytes native = m->gpu_weight_bytes(GpuWeights::kNative),
                                bf16 = m->gpu_weight_bytes(GpuWeights::kBf16);
    std::printf("gpu weights:   native %s (bf16 %s); prefill dequantization scratch %s per session\n",
                mib(native.weights).c_str(), mib(bf16.weights).c_str(), mib(native.dequant_scratch).c_str());
    // A session's needs on each device (estimate_memory; the CUDA one is checked against the
    // GPU's free memory before a session allocates).
    SessionOptions o;
    o.n_ctx = *ctx;
    if (*lazy) o.prune = PruneSchedule::default_for(m->config().n_layers);
    std::printf("memory:        a session of %d tokens (f16 KV cache%s)\n", *ctx > 0 ? *ctx : m->config().n_ctx_train,
                *lazy ? ", LazyLLM" : "");
    std::printf("  cpu:         %s\n", describe(estimate_memory(*m, o)).c_str());
    o.device = Device::Cuda;
    for (GpuWeights w : {GpuWeights::kNative, GpuWeights::kBf16}) {
      o.gpu_weights = w;
      std::printf("  cuda %-7s %s\n", (std::string(gpu_weights_name(w)) + ":").c_str(),
                  describe(estimate_memory(*m, o)).c_str());
    }
    const int n_layers = m->config().n_layers;
    if (n_layers >= 2) {
      // Looked up directly (not through lazy_schedule): info reports, it does not warn.
      const SavedScheduleLookup found = find_saved_schedule(*model, n_layers);
      const std::string fallback = "default " + PruneSchedule::default_for(n_layers).to_string();
      if (found.saved) {
        const SavedSchedule& s = *found.saved;
        std::printf("lazy schedule: %s, calibrated (%s: on %s, %d samples, %s; score %.2f against %.2f, TTFT "
                    "speedup %.2fx, computed %.1f%%, %s, %s)\n",
                    found.schedule.to_string().c_str(), found.path.c_str(), s.data_file.c_str(), s.samples,
                    s.goal.c_str(), s.score, s.baseline_score, s.speedup, 100 * s.computed_fraction,
                    s.device.c_str(), s.date.c_str());
      } else if (!found.problem.empty()) {
        std::printf("lazy schedule: %s (%s is ignored: %s)\n", fallback.c_str(), found.path.c_str(),
                    found.problem.c_str());
      } else {
        std::printf("lazy schedule: %s (no calibrated schedule; lazyllm calibrate --save writes %s)\n",
                    fallback.c_str(), found.path.c_str());
      }
    }
    exit_code = 0;
  });
}

}  // namespace lazyllm::cli
