// Device choice: the CPU kernels or the CUDA backend.
#include <fstream>
#include <string>

#include "lazyllm/lazyllm.h"
#include "runtime/cuda/cuda_forward.h"

namespace lazyllm {

#ifndef LAZYLLM_HAVE_CUDA
// This build has no CUDA backend: no GPU is ever usable.
int cuda_device_count() { return 0; }
std::string cuda_device_description() { return "none (built without CUDA)"; }
int64_t cuda_free_memory() { return 0; }
GpuWarmupTotals cuda_warmup_totals() { return {}; }
bool cuda_weights_resident(const Model&, GpuWeights) { return false; }
std::unique_ptr<ForwardBackend> make_cuda_forward(const Model&, int, GpuWeights, bool, KvPool*, bool) {
  throw Error("this build has no CUDA backend (configure with -DLAZYLLM_CUDA=ON)");
}
int64_t cuda_kv_page_bytes() { throw Error("this build has no CUDA backend (configure with -DLAZYLLM_CUDA=ON)"); }
std::shared_ptr<void> make_cuda_kv_pages(int64_t) {
  throw Error("this build has no CUDA backend (configure with -DLAZYLLM_CUDA=ON)");
}
std::unique_ptr<BatchForward> make_cuda_batch(const Model&) {
  throw Error("this build has no CUDA backend (configure with -DLAZYLLM_CUDA=ON)");
}
std::vector<int32_t> cuda_select_top_dest(std::span<const float>, int) {
  throw Error("this build has no CUDA backend (configure with -DLAZYLLM_CUDA=ON)");
}
std::vector<float> cuda_weight_product(const CudaProductCase&) {
  throw Error("this build has no CUDA backend (configure with -DLAZYLLM_CUDA=ON)");
}
int cuda_gemv_cluster() { throw Error("this build has no CUDA backend (configure with -DLAZYLLM_CUDA=ON)"); }
std::vector<float> cuda_attention_rows(const CudaAttentionCase&) {
  throw Error("this build has no CUDA backend (configure with -DLAZYLLM_CUDA=ON)");
}
#endif

bool cuda_available() {
  static const bool available = cuda_device_count() > 0;
  return available;
}

Device default_device() { return cuda_available() ? Device::Cuda : Device::Cpu; }

Device parse_device(std::string_view name) {
  if (name == "cpu") return Device::Cpu;
  if (name == "auto") return default_device();
  if (name == "cuda") {
    if (!cuda_available())
      throw Error("--device cuda: no usable GPU (" + cuda_device_description() + ")");
    return Device::Cuda;
  }
  throw Error("unknown device '" + std::string(name) + "' (expected cpu, cuda or auto)");
}

std::string_view device_name(Device d) { return d == Device::Cuda ? "cuda" : "cpu"; }

std::string device_description(Device d) {
  if (d == Device::Cuda) return cuda_device_description();
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      if (p != std::string::npos) return line.substr(p + 2);
    }
  return "unknown CPU";
}

}  // namespace lazyllm
