// Decode's weight products without cuBLAS: Y (m rows of n_out) = X (m rows of k) W^T for m up
// to kGemvMaxRows, bf16 W and X, float or bf16 Y; beta = 1 accumulates into Y.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/ops.h"

namespace lazyllm::cuda {

constexpr int kGemvMaxRows = 4;
bool gemv_applies(int m, int k);
void gemv(const bf16_t* w, int n_out, int k, const bf16_t* x, int m, void* y, bool y_f32, float beta,
          cudaStream_t stream);

}  // namespace lazyllm::cuda
