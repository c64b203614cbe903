// The weight products of the CUDA forward pass: bf16 or quantized weights (kernels/cuda/weight_ref.h),
// decode-sized batches through the matrix-vector kernels, larger ones through cuBLAS; quantized
// weights up to kQgemmMaxRows rows through the tensor-core kernel that reads their blocks
// (kernels/cuda/qgemm.h), beyond that dequantized into a bf16 scratch a chunk of rows at a time.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/cuda/gemv.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/weight_ref.h"

namespace lazyllm::cuda_pass {

// Columns [0, n) of Y (m rows of ldy, float or bf16) = X (m rows of k, bf16) W^T for W n rows of
// k in bf16, with cuBLAS; beta = 1 accumulates into Y (the residual add).
void cublas_gemm(cublasHandle_t h, const cuda::bf16_t* w, int n, int k, const cuda::bf16_t* x, int m, void* y,
                 int ldy, cudaDataType y_type, float beta);

// The weight of a matrix-vector product.
void set_weight(cuda::GemvArgs& g, const cuda::WeightRef& w);

// Whether weight_gemm needs the dequantization scratch for this product.
bool needs_dequant(const cuda::WeightRef& w, int m, int k);

// Rows of a quantized W that weight_gemm dequantizes and multiplies at a time, with `scratch_elems`
// of scratch (the last chunk holds the rest).
int dequant_chunk_rows(int n_out, int k, size_t scratch_elems);

// A whole quantized matrix in bf16 (n_out rows of k) kept beside its blocks (weight_copies.h):
// `made` when it holds the values, else to be dequantized into now.
struct WeightCopy {
  cuda::bf16_t* at = nullptr;
  bool made = false;
};

// Y (m rows of n_out, float or bf16) = X (m rows of k, bf16) W^T, W n_out rows of k; beta = 1
// accumulates into Y (the residual add). Decode-sized m uses the matrix-vector kernels; larger
// batches cuBLAS, or for a quantized W qgemm up to kQgemmMaxRows and beyond that W dequantized
// into `scratch` (at least k elements) a chunk of rows at a time. ldy > 0: Y's rows are ldy apart (W makes a slice of
// them). With a `copy`, the chunks are dequantized into their rows of it instead (unless made)
// and multiplied from there, in the same chunks as from the scratch.
void weight_gemm(cublasHandle_t h, cudaStream_t stream, const cuda::WeightRef& w, int n_out, int k,
                 const cuda::bf16_t* x, int m, void* y, cudaDataType y_type, float beta, cuda::bf16_t* scratch,
                 size_t scratch_elems, int ldy = 0, WeightCopy copy = {});

}  // namespace lazyllm::cuda_pass
