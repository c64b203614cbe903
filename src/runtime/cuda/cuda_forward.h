// Entry points of the CUDA backend that the rest of the engine sees (plain C++, no CUDA types).
// When the build has no CUDA (LAZYLLM_CUDA=OFF) device.cpp answers for them instead.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lazyllm/lazyllm.h"
#include "runtime/forward_backend.h"

namespace lazyllm {

class Model;

// Number of usable CUDA devices (0 when the driver or the GPU is missing).
int cuda_device_count();
// "NVIDIA H100 80GB HBM3, 132 SMs, 79.1 GiB" for benchmark reports.
std::string cuda_device_description();
// The CUDA forward pass for `model` with room for n_ctx tokens. Weights go to the GPU once per
// model and form (shared by its sessions; see GpuWeights). Throws Error when no GPU is usable.
std::unique_ptr<ForwardBackend> make_cuda_forward(const Model& model, int n_ctx, GpuWeights gpu_weights);
// Test hook: the GPU's LazyLLM selection (cuda::select_top) over `scores` keeping k, one more row
// (index n, the last token) always kept. Returns dest: each row's index among the kept rows, or -1.
std::vector<int32_t> cuda_select_top_dest(std::span<const float> scores, int k);

}  // namespace lazyllm
