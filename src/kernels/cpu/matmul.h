// Weight-times-activation products for every weight type, used in quantized form.
// W is row-major: `rows` rows of `cols` values, each row row_bytes(type, cols) bytes.
#pragma once

#include <cstdint>
#include <span>

#include "format/dtype.h"

namespace lazyllm {

class ThreadPool;

struct WeightView {
  DType type = DType::F32;
  const uint8_t* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride() const { return row_bytes(type, cols); }
};

// kF32: every product in f32. kFast, where the CPU supports it: prefill batches with quantized
// or bf16 weights multiply in bf16 (activations rounded to bf16, f32 sums) on CPUs whose
// AVX512_BF16 beats their f32 kernel (kernels::bf16_gemm_preferred), and small batches with
// Q8_0/Q4_0/K-quant weights use 8-bit activations and exact int32 block sums (AVX512_VNNI or
// AVX2, as llama.cpp), as do Q8_0/Q4_0 prefill batches on CPUs with AVX2 but no AVX-512. f32
// and f16 weights are never affected.
enum class MatmulPrecision { kF32, kFast };

// Y[t * ldy + r] = sum_c W[r, c] * X[t * ldx + c]   for t < n, r < W.rows.
// Small n (decode; up to 8 for f32 weights, 16 for block-quantized ones, 32 for f16/bf16) streams the weights once with
// fused dequantize-dot SIMD kernels; larger n (prefill) multiplies tiles of W rows (decoded into
// a per-thread buffer when quantized) with a GEMM kernel. Threads split the rows of W. The output
// is bitwise reproducible: it depends on the inputs and n, never on the thread count.
void matmul(const WeightView& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
            ThreadPool& pool, MatmulPrecision precision = MatmulPrecision::kF32);

// One weight and where its product goes, for matmul_shared_input.
struct MatmulTarget {
  WeightView w;
  float* y;
  int64_t ldy;
};

// matmul for several weights that read the same activations (Q/K/V; gate/up), bitwise equal to
// separate matmul calls. Small batches run every target's rows in one parallel loop (one thread
// rendezvous instead of one per weight) when all take the same kernels: 8-bit decode (x
// quantized once; Q8_0, Q4_0 and the K-quants may mix) or the fused float kernels of one weight type.
// Otherwise it is those separate calls.
void matmul_shared_input(std::span<const MatmulTarget> targets, const float* x, int64_t n, int64_t ldx,
                         ThreadPool& pool, MatmulPrecision precision = MatmulPrecision::kF32);

// Our thread pool provides the parallelism: OpenBLAS's own threads (used by every cblas call,
// attention included) would spin against it and oversubscribe the cores. Idempotent.
void use_single_threaded_blas();

// Dot product of one weight row (any type) with a float vector of length n. Bitwise equal to
// the corresponding output of matmul's fused (small n) path.
float dot_row(DType t, const void* row, const float* x, int64_t n);

}  // namespace lazyllm
