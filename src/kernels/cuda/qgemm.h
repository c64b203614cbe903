// Weight products for batches too large for the matrix-vector kernels and too small for a
// dequantized copy of the weights to pay: Y (m rows of n_out, float or bf16; beta = 1 accumulates) = X (m rows of
// k, bf16) W^T for quantized W (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K in the layout of weight_ref.h), on
// the tensor cores. Short prompts, batched decode of several requests and LazyLLM's revival
// batches land here (from 3 rows: below, the matrix-vector kernels of gemv.h); longer prefills dequantize W into bf16
// for cuBLAS (weight_gemm).
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/gemv.h"

namespace lazyllm::cuda {

// Up to this many activation rows the tensor-core kernel reads W in its blocks; above it,
// dequantizing W once into bf16 for cuBLAS costs less (llama2-7b's products on an H200: 3.1-5.2x
// faster at 8 rows, 1.8-2.3x at 32, 0.95-1.39x at 64, slower from 128 on).
constexpr int kQgemmMaxRows = 64;

bool qgemm_applies(WeightFormat f, int m, int k);
// Reads a.q, a.x, a.m, a.n_out, a.k, a.y, a.ldy, a.y_f32, a.beta (no RMSNorm, no SwiGLU).
void qgemm(const GemvArgs& a, cudaStream_t stream);

}  // namespace lazyllm::cuda
