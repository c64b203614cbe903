// Decode's weight products without cuBLAS: Y (m rows of n_out) = X (m rows of k) W^T for m up
// to kGemvMaxRows, bf16 W and X, float or bf16 Y; beta = 1 accumulates into Y. Optionally fused:
// the RMSNorm that makes X (from float rows), and SwiGLU over a gate|up weight pair.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/ops.h"

namespace lazyllm::cuda {

constexpr int kGemvMaxRows = 4;

struct GemvArgs {
  const bf16_t* w = nullptr;  // n_out rows of k (SwiGLU: 2 n_out rows, gate rows then up rows)
  int n_out = 0;
  int k = 0;
  int m = 1;
  const bf16_t* x = nullptr;  // m rows of k, unless norm_in is set
  // Fused RMSNorm: X = bf16(norm_in / rms(norm_in) * norm_w), norm_in m rows of k floats.
  const float* norm_in = nullptr;
  const float* norm_w = nullptr;
  float eps = 0.0f;
  bool swiglu = false;  // Y = bf16(silu(gate) * up), m rows of n_out (y_f32 false, beta 0)
  void* y = nullptr;
  bool y_f32 = true;
  float beta = 0.0f;
};

bool gemv_applies(int m, int k);
void gemv(const GemvArgs& a, cudaStream_t stream);
// Plain form: Y = X W^T (+ beta Y).
void gemv(const bf16_t* w, int n_out, int k, const bf16_t* x, int m, void* y, bool y_f32, float beta,
          cudaStream_t stream);
// Sets the kernels' shared-memory limits; call once before any graph capture.
void gemv_prepare();

}  // namespace lazyllm::cuda
