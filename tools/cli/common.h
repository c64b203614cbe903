// Pieces shared by the CLI commands.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "lazyllm/lazyllm.h"

namespace lazyllm::cli {

// --lazy / --prune flags, resolved against a model's depth.
struct PruneFlags {
  bool lazy = false;
  std::vector<std::string> specs;
  bool always = false;  // --prune-always: no cost model
  // allow_many: --prune may repeat (commands that compare several schedules). with_policy:
  // offer --prune-always (commands that measure a schedule's quality run it as given).
  void add_to(CLI::App* cmd, bool allow_many = false, bool with_policy = true);
  bool enabled() const { return lazy || !specs.empty(); }
  PrunePolicy policy() const { return always ? PrunePolicy::kAlways : PrunePolicy::kAuto; }
  // The one schedule; empty when disabled. `--lazy` stands for the schedule calibrated for the
  // model when one lies beside it (see lazy_schedule). `source` (optional) gets where the
  // schedule came from: "--prune", "default" or "calibrated: PATH"; empty when disabled.
  PruneSchedule resolve(int n_layers, const std::string& model_path, std::string* source = nullptr) const;
  // Every schedule asked for, named "lazy" (--lazy) or by its spec.
  std::vector<std::pair<std::string, PruneSchedule>> resolve_all(int n_layers, const std::string& model_path) const;
};

// What `--lazy` means for a model: the schedule `lazyllm calibrate --save` left beside it
// (MODEL.lazy.json) when it is valid for this very file, else the default schedule. Says so on
// stderr when a calibrated schedule is used, and warns when one exists but cannot be used.
struct LazySchedule {
  PruneSchedule schedule;
  std::string source;  // "default" or "calibrated: PATH"
};
LazySchedule lazy_schedule(const std::string& model_path, int n_layers);

// --device cpu|cuda|auto (default auto: the GPU when one is usable), --gpu-weights native|bf16
// (the weights' form on a GPU), --[no-]mmap, --[no-]gpu-warmup and --[no-]gpu-weight-copies.
struct DeviceFlag {
  std::string name = "auto";
  std::string gpu_weights = "native";
  bool mmap = false;  // `run` (one answer per process) maps; the long-lived commands copy
  bool gpu_warmup = true;  // SessionOptions::gpu_warmup: `run` skips it, the long-lived commands load
  bool gpu_weight_copies = true;  // SessionOptions::gpu_weight_copies
  void add_to(CLI::App* cmd);
  Device resolve() const { return parse_device(name); }
  GpuWeights weights() const { return parse_gpu_weights(gpu_weights); }
  HostWeights host_weights() const { return mmap ? HostWeights::kMapped : HostWeights::kCopy; }
};

// Writes `text` to `path`, replacing it. Throws Error.
void write_file(const std::string& path, const std::string& text);

// Reads -p TEXT, -f FILE or standard input (in that order of preference).
std::string read_prompt(const std::string& text, const std::string& file, bool have_text);


// A progress bar on stderr (only when stderr is a terminal).
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  void update(int done, int total);
  void finish();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
};

struct Summary {
  double median = 0, min = 0, max = 0;
};
Summary summarize(std::vector<double> v);
nlohmann::json to_json(const Summary& s);

// The CPU kernels in use (lazyllm::cpu_kernels), as JSON and as two aligned lines for `info`.
nlohmann::json to_json(const CpuKernels& k);
std::string describe(const CpuKernels& k);

// A memory estimate (estimate_memory) as JSON bytes, and as "weights 3.5 GiB, KV cache ..." text.
nlohmann::json to_json(const MemoryEstimate& e);
std::string describe(const MemoryEstimate& e);

}  // namespace lazyllm::cli
