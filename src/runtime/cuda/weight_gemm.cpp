#include "runtime/cuda/weight_gemm.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/qgemm.h"

namespace lazyllm::cuda_pass {

using cuda::bf16_t;
using cuda::check;

void cublas_gemm(cublasHandle_t h, const bf16_t* w, int n, int k, const bf16_t* x, int m, void* y, int ldy,
                 cudaDataType y_type, float beta) {
  const float alpha = 1.0f;
  check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w, CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, y,
                     y_type, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
}

void set_weight(cuda::GemvArgs& g, const cuda::WeightRef& w) {
  if (w.format == cuda::WeightFormat::kBf16) g.w = static_cast<const bf16_t*>(w.w);
  else g.q = w;
}

bool needs_dequant(const cuda::WeightRef& w, int m, int k) {
  return w.format != cuda::WeightFormat::kBf16 && !cuda::gemv_applies(w.format, m, k) &&
         !cuda::qgemm_applies(w.format, m, k);
}

int dequant_chunk_rows(int n_out, int k, size_t scratch_elems) {
  return static_cast<int>(std::min<size_t>(n_out, scratch_elems / k));
}

void weight_gemm(cublasHandle_t h, cudaStream_t stream, const cuda::WeightRef& w, int n_out, int k, const bf16_t* x,
                 int m, void* y, cudaDataType y_type, float beta, bf16_t* scratch, size_t scratch_elems, int ldy,
                 WeightCopy copy) {
  if (ldy <= 0) ldy = n_out;
  const bool by_gemv = cuda::gemv_applies(w.format, m, k);
  if (by_gemv || cuda::qgemm_applies(w.format, m, k)) {
    cuda::GemvArgs g;
    set_weight(g, w);
    g.n_out = n_out, g.k = k, g.m = m, g.x = x, g.y = y, g.ldy = ldy, g.y_f32 = y_type == CUDA_R_32F, g.beta = beta;
    return by_gemv ? cuda::gemv(g, stream) : cuda::qgemm(g, stream);
  }
  if (w.format == cuda::WeightFormat::kBf16)
    return cublas_gemm(h, static_cast<const bf16_t*>(w.w), n_out, k, x, m, y, ldy, y_type, beta);
  if (scratch_elems < static_cast<size_t>(k)) throw std::logic_error("CUDA forward: no dequantization scratch");
  const int chunk = dequant_chunk_rows(n_out, k, scratch_elems);
  const size_t y_elem = y_type == CUDA_R_32F ? sizeof(float) : sizeof(bf16_t);
  for (int r0 = 0; r0 < n_out; r0 += chunk) {
    const int rows = std::min(chunk, n_out - r0);
    bf16_t* wb = copy.at ? copy.at + static_cast<size_t>(r0) * k : scratch;
    if (!copy.made) cuda::dequantize_bf16(cuda::weight_rows(w, r0, k), rows, k, wb, stream);
    cublas_gemm(h, wb, rows, k, x, m, static_cast<char*>(y) + r0 * y_elem, ldy, y_type, beta);
  }
}

}  // namespace lazyllm::cuda_pass
