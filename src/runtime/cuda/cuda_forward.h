// Entry points of the CUDA backend that the rest of the engine sees (plain C++, no CUDA types).
// When the build has no CUDA (LAZYLLM_CUDA=OFF) device.cpp answers for them instead.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "lazyllm/lazyllm.h"
#include "runtime/batch_forward.h"
#include "runtime/forward_backend.h"

namespace lazyllm {

class Model;
class KvPool;

// Number of usable CUDA devices (0 when the driver or the GPU is missing).
int cuda_device_count();
// "NVIDIA H100 80GB HBM3, 132 SMs, 79.1 GiB" for benchmark reports.
std::string cuda_device_description();
// Bytes of memory free on the GPU now (cudaMemGetInfo).
int64_t cuda_free_memory();
// Whether `model`'s weights are already on the GPU in `mode` (a session of the model made them).
bool cuda_weights_resident(const Model& model, GpuWeights mode);
// What SessionOptions::gpu_warmup has done in this process so far, summed (product shapes warmed,
// kernels launched to load them, host time).
struct GpuWarmupTotals {
  int shapes = 0, launches = 0;
  double ms = 0;
};
GpuWarmupTotals cuda_warmup_totals();
// The CUDA forward pass for `model` with room for n_ctx tokens. Weights go to the GPU once per
// model and form (shared by its sessions; see GpuWeights). K/V: n_ctx slots per layer allocated
// now, or pages of kv_pool mapped as the context grows. warm_up: SessionOptions::gpu_warmup;
// weight_copies: SessionOptions::gpu_weight_copies. Throws Error when no GPU is usable.
std::unique_ptr<ForwardBackend> make_cuda_forward(const Model& model, int n_ctx, GpuWeights gpu_weights, bool warm_up,
                                                  KvPool* kv_pool = nullptr, bool weight_copies = true);
// A KvPool's pages on the GPU (cache/kv_pool.h; runtime/cuda/kv_pages.h): the page size, and
// `pages` of them allocated now (Error when they do not fit).
int64_t cuda_kv_page_bytes();
std::shared_ptr<void> make_cuda_kv_pages(int64_t pages);
// The batch step of a SessionBatch on the GPU (runtime/batch_forward.h): the baseline decodes of
// a step share their weight products; prefills and LazyLLM decodes run each on its own.
std::unique_ptr<BatchForward> make_cuda_batch(const Model& model);
// Test hook: the GPU's LazyLLM selection (cuda::select_top) over `scores` keeping k, one more row
// (index n, the last token) always kept. Returns dest: each row's index among the kept rows, or -1.
std::vector<int32_t> cuda_select_top_dest(std::span<const float> scores, int k);

// Test hook: one weight product as the CUDA forward pass runs it, for a matrix stored as `type`
// in a GGUF file (its rows at w in the file's layout) and kept on the GPU in its native form:
// the fused matrix-vector kernels for m rows where they apply, else the unfused kernels and
// cuBLAS (a quantized matrix dequantized scratch_rows rows at a time). Returns Y, m rows of
// n_out floats.
struct CudaProductCase {
  DType type = DType::Q8_0;
  const uint8_t* w = nullptr;  // n_out rows of k (SwiGLU: 2 n_out, the gate rows then the up rows)
  int n_out = 0, k = 0, m = 1;
  std::span<const float> x;       // m rows of k (rounded to bf16 unless normalized first)
  std::span<const float> norm_w;  // non-empty: X = RMSNorm(x) * norm_w (the product's input as float)
  float eps = 1e-5f;
  bool swiglu = false;        // Y = bf16(silu(gate) * up), as the gate|up product
  std::span<const float> y0;  // non-empty: Y = y0 + X W^T (the residual's accumulation)
  int scratch_rows = 64;
  int x_offset = 0;  // the bf16 X starts this many elements into its buffer (unaligned rows)
  // Quantized matrix-vector products: blocks a cluster sharing the activation rows (0: the
  // default; see cuda::gemv_cluster). Sizes over 1 need compute capability 9.0+.
  int gemv_cluster = 0;
};
// The default of CudaProductCase::gemv_cluster on this GPU.
int cuda_gemv_cluster();
std::vector<float> cuda_weight_product(const CudaProductCase& c);

// Test hook: the prefill attention kernels (the one $LAZYLLM_CUDA_ATTENTION names, as the forward
// picks it) over keys as a LazyLLM completing or reviving batch lists them: rows in position
// order, each seeing the first row_key_end[r] slots, and with row_key_end_b the slots run_b ..
// run_b + row_key_end_b[r] - 1 too. Inputs rounded to half; returns the m rows of n_heads *
// head_dim outputs (bf16, as floats).
struct CudaAttentionCase {
  int n_heads = 1, n_kv_heads = 1, head_dim = 128, m = 0, n_slots = 0;
  std::span<const float> q;                             // m rows of n_heads * head_dim
  std::span<const float> k, v;                          // n_slots rows of n_kv_heads * head_dim
  std::span<const int32_t> qpos, kpos;                  // m and n_slots positions
  std::span<const int32_t> row_key_end, row_key_end_b;  // m each (b empty: one run of keys)
  int run_b = 0;
};
std::vector<float> cuda_attention_rows(const CudaAttentionCase& c);

}  // namespace lazyllm
