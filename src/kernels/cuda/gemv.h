// Decode's weight products without cuBLAS: Y (m rows of n_out) = X (m rows of k) W^T for m up
// to kGemvMaxRows, bf16 W and X, float or bf16 Y; beta = 1 accumulates into Y. Optionally fused:
// the RMSNorm that makes X (from float rows), and SwiGLU over a gate|up weight pair.
// Quantized W (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K: weight_ref.h), up to kGemvQuantMaxRows rows, runs the
// kernels of gemv_quant.cu and gemv_kquant.cu, which read the blocks directly, with the same
// fusions.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/ops.h"
#include "kernels/cuda/weight_ref.h"

namespace lazyllm::cuda {

constexpr int kGemvMaxRows = 4;
// Rows up to which the forward pass takes these kernels for bf16 weights (cuBLAS beyond). On an
// H200 (llama2-7b shape) a 4-row step took 7.04-7.09 ms here and 6.31-6.34 ms through cuBLAS,
// a 3-row one 5.71-5.78 ms here and 5.98-6.00 through cuBLAS. LAZYLLM_CUDA_GEMV_ROWS=1..4
// overrides it (read once), to measure the crossing on other GPUs.
constexpr int kGemvDefaultRows = 3;
int gemv_max_rows();
// Quantized W: from 3 rows on the tensor-core kernel (qgemm.h) is faster, also unfused.
constexpr int kGemvQuantMaxRows = 2;

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
  int ldy = 0;  // elements between Y's rows; 0: n_out (a product writing a slice of wider rows)
  bool y_f32 = true;
  float beta = 0.0f;
  // Quantized weights: when q.format is not kBf16, W is q (n_out rows, or 2 n_out for SwiGLU)
  // and w is unused; X, made from x or norm_in, is then quantized to 8 bits per 32-element block.
  WeightRef q;
  // The Q|K|V product with the QKV finish fused (when finish.q is set; see qkv_finish_fuses):
  // output rows (finish_row0 + o in the Q|K|V layout) are not stored in y but biased, rotated and
  // stored as Q and K/V as qkv_finish() would store them (finish.qkv unused). Non-NeoX rotary
  // pairs only, so each pair is two neighbouring rows that one warp computes.
  QkvFinishArgs finish{};
  int finish_row0 = 0;
};

// Whether a Q|K|V product over rows [row0, row0 + n_out) can finish the rows itself.
bool qkv_finish_fuses(const QkvFinishArgs& f, int row0, int n_out);

// Quantized weights: the blocks of a thread-block cluster share making the activation rows (each
// makes 1/C of them into every block's shared memory) instead of each making all of them. 2 by
// default on compute capability 9.0+ (H100, Llama 2 7B Q4_0: a token's products 1.80 -> 1.70 ms;
// 4 and 8 were slower), else 1; LAZYLLM_CUDA_GEMV_CLUSTER=1|2|4|8 (read once) overrides it and
// set_gemv_cluster changes it for later launches (graphs keep what they captured).
int gemv_cluster();
void set_gemv_cluster(int c);

bool gemv_applies(int m, int k);
// The same for weights of format f (bf16: gemv_applies).
bool gemv_applies(WeightFormat f, int m, int k);
void gemv(const GemvArgs& a, cudaStream_t stream);
// Plain form: Y = X W^T (+ beta Y).
void gemv(const bf16_t* w, int n_out, int k, const bf16_t* x, int m, void* y, bool y_f32, float beta,
          cudaStream_t stream);
// Sets the kernels' shared-memory limits; call once before any graph capture.
void gemv_prepare();

// gemv_quant.cu: gemv() for quantized a.q (called by gemv()), its shared-memory limits (called by
// gemv_prepare()), and the conversions the other paths need.
bool gemv_quant_applies(WeightFormat f, int m, int k);
void gemv_quant(const GemvArgs& a, cudaStream_t stream);
void gemv_quant_prepare();
// out (rows of k bf16) = rows [0, rows) of w: prefill's products dequantize a matrix (a chunk of
// rows at a time) into a scratch buffer and multiply with cuBLAS.
void dequantize_bf16(const WeightRef& w, int64_t rows, int k, bf16_t* out, cudaStream_t stream);
// out[i] = table[tokens[i]] as float, for a table of any format (bf16: embed_rows).
void embed_rows_any(const WeightRef& table, const int32_t* tokens, int n, int d, float* out, cudaStream_t stream);

}  // namespace lazyllm::cuda
