#include "common.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "prune/saved_schedule.h"

namespace lazyllm::cli {

void PruneFlags::add_to(CLI::App* cmd, bool allow_many, bool with_policy) {
  cmd->add_flag("--lazy", lazy, std::string("Enable LazyLLM pruning with the default schedule (") +
                                    std::string(PruneSchedule::kDefaultSpec) + ")");
  auto* opt = cmd->add_option(
      "--prune", specs,
      "LazyLLM schedule '[MODE:]L:k,L:k,...' (L a layer index or a fraction of depth, k the fraction kept; "
      "MODE reselect[@N] or complete for the decode rule after a pruned prompt, N the most tokens a step may revive; "
      "static or random[@SEED] for the ablations)");
  if (!allow_many) opt->expected(1);
  if (!with_policy) {
    always = true;  // the schedule as given: these commands measure what it does to the answers
    return;
  }
  cmd->add_flag("--prune-always", always,
                "Prune every prompt the schedule can (default: skip prompts where the cost model says pruning cannot pay, "
                "e.g. short prompts or tiny models on a GPU)");
}

void DeviceFlag::add_to(CLI::App* cmd) {
  cmd->add_option("--device", name, "Where to compute: cpu, cuda or auto (the GPU when one is usable)")
      ->capture_default_str();
  cmd->add_option(
         "--gpu-weights", gpu_weights,
         "Weights on a GPU: native (Q8_0, Q4_0, Q4_K, Q5_K and Q6_K kept in their blocks, F32 as bf16) or bf16 "
         "(every matrix converted at load)")
      ->check(CLI::IsMember({"native", "bf16"}))
      ->capture_default_str();
  cmd->add_flag(
      "--mmap,!--no-mmap", mmap,
      std::string("On the CPU, compute from the model file's memory mapping (shared with other processes, "
                  "ready at once), or with --no-mmap from a private copy in huge pages (decodes faster; "
                  "takes up to about 2 s a GiB to make; the mapping is used where memory is short). Default: ") +
          (mmap ? "--mmap" : "--no-mmap"));
  cmd->add_flag(
      "--gpu-warmup,!--no-gpu-warmup", gpu_warmup,
      std::string("On a GPU, load the product kernels any prompt length can use before the first request "
                  "(0.7-1.2 s for a 7B model on an H100, once a process), so no request pays for loading them "
                  "(milliseconds each; LazyLLM's pruned layers meet several per new prompt length). "
                  "Default: ") +
          (gpu_warmup ? "--gpu-warmup" : "--no-gpu-warmup"));
  cmd->add_flag(
      "--gpu-weight-copies,!--no-gpu-weight-copies", gpu_weight_copies,
      std::string("On a GPU with quantized weights, LazyLLM's pruned prefill keeps bf16 copies of the layers "
                  "where it defers tokens (where free memory allows; 8.9 GB for a 7B model), so the decode step "
                  "that completes them does not dequantize those layers again. Default: ") +
          (gpu_weight_copies ? "--gpu-weight-copies" : "--no-gpu-weight-copies"));
}

PruneSchedule PruneFlags::resolve(int n_layers, const std::string& model_path, std::string* source) const {
  if (specs.size() > 1) throw Error("--prune may be given once here");
  if (lazy && !specs.empty()) throw Error("give either --lazy or --prune, not both");
  if (source) source->clear();
  if (!specs.empty()) {
    if (source) *source = "--prune";
    return PruneSchedule::parse(specs[0], n_layers);
  }
  if (!lazy) return {};
  LazySchedule l = lazy_schedule(model_path, n_layers);
  if (source) *source = l.source;
  return l.schedule;
}

std::vector<std::pair<std::string, PruneSchedule>> PruneFlags::resolve_all(int n_layers,
                                                                        const std::string& model_path) const {
  std::vector<std::pair<std::string, PruneSchedule>> out;
  if (lazy) out.emplace_back("lazy", lazy_schedule(model_path, n_layers).schedule);
  for (const auto& s : specs) out.emplace_back(s, PruneSchedule::parse(s, n_layers));
  return out;
}

LazySchedule lazy_schedule(const std::string& model_path, int n_layers) {
  const SavedScheduleLookup found = find_saved_schedule(model_path, n_layers);
  if (found.saved) {
    const SavedSchedule& s = *found.saved;
    std::fprintf(stderr,
                 "lazyllm: --lazy uses the schedule calibrated for this model: %s (%s: calibrated on %s, "
                 "score %.2f against the baseline's %.2f, TTFT speedup %.2fx on %s, %s)\n",
                 found.schedule.to_string().c_str(), found.path.c_str(), s.data_file.c_str(), s.score,
                 s.baseline_score, s.speedup, s.device.c_str(), s.date.c_str());
    return {found.schedule, "calibrated: " + found.path};
  }
  LazySchedule l{PruneSchedule::default_for(n_layers), "default"};
  if (!found.problem.empty())
    std::fprintf(stderr, "warning: ignoring %s: %s; --lazy uses the default schedule %s\n", found.path.c_str(),
                 found.problem.c_str(), l.schedule.to_string().c_str());
  return l;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) throw Error("cannot write '" + path + "'");
}

std::string read_prompt(const std::string& text, const std::string& file, bool have_text) {
  if (have_text) return text;
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw Error("cannot read prompt file '" + file + "'");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  return std::string(std::istreambuf_iterator<char>(std::cin), {});
}

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)), enabled_(isatty(STDERR_FILENO)) {}

void ProgressBar::update(int done, int total) {
  if (!enabled_ || total <= 0) return;
  const int width = 30, filled = done * width / total;
  std::fprintf(stderr, "\r%s [%.*s%*s] %d/%d", label_.c_str(), filled, "##############################",
               width - filled, "", done, total);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (drawn_) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
}

Summary summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  s.min = v.front();
  s.max = v.back();
  return s;
}

nlohmann::json to_json(const Summary& s) { return {{"median", s.median}, {"min", s.min}, {"max", s.max}}; }

nlohmann::json to_json(const CpuKernels& k) {
  return {{"level", k.level},         {"detected", k.detected},       {"cap", k.cap},
          {"vector", k.vector},       {"decode_int8", k.decode_int8}, {"gemm_f32", k.gemm_f32},
          {"gemm_bf16", k.gemm_bf16}, {"gemm_int8", k.gemm_int8},     {"attention", k.attention},
          {"openblas", k.openblas}};
}

std::string describe(const CpuKernels& k) {
  return "cpu level:     " + k.level + " (CPU " + k.detected + ", LAZYLLM_CPU_TARGET " + k.cap + ")\n" +
         "cpu kernels:   vector " + k.vector + ", int8 decode " + k.decode_int8 + ", gemm " + k.gemm_f32 +
         ", bf16 gemm " + k.gemm_bf16 + ", int8 gemm " + k.gemm_int8 + ", attention " + k.attention + ", openblas " +
         k.openblas + "\n";
}

nlohmann::json to_json(const MemoryEstimate& e) {
  return {{"weights", e.weights}, {"kv_cache", e.kv_cache}, {"aux_cache", e.aux_cache}, {"scratch", e.scratch},
          {"total", e.total()}};
}

std::string describe(const MemoryEstimate& e) {
  auto size = [](int64_t b) {
    char buf[32];
    if (b >= (int64_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.1f GiB", b / double(int64_t{1} << 30));
    else std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(1 << 20));
    return std::string(buf);
  };
  std::string s = "weights " + size(e.weights) + ", KV cache " + size(e.kv_cache);
  if (e.aux_cache) s += ", Aux Cache " + size(e.aux_cache);
  return s + ", scratch " + size(e.scratch) + "; total " + size(e.total());
}

}  // namespace lazyllm::cli
