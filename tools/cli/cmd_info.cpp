// lazyllm info: what a model file holds, the CPU kernels that would run it, and the bytes its
// weights would take on a GPU.
#include <cstdio>
#include <string>

#include "commands.h"
#include "common.h"

namespace lazyllm::cli {

void add_info_command(CLI::App& app, int& exit_code) {
  auto model = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("info", "Describe a model file");
  cmd->add_option("-m,--model", *model, "GGUF model file")->required();
  cmd->callback([model, &exit_code] {
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
    exit_code = 0;
  });
}

}  // namespace lazyllm::cli
