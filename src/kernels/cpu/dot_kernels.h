// SIMD kernels behind matmul, dot_row and dequantize_row (Highway, runtime-dispatched to the
// best instruction set of the running CPU). Internal to kernels/cpu.
#pragma once

#include <cstdint>

#include "format/dtype.h"

namespace lazyllm::kernels {

// Decodes `rows` rows of `k` values each (row i at w + i * stride) into out[i * ldo + c].
void dequantize_rows(DType t, const uint8_t* w, int64_t stride, int64_t rows, int64_t k, float* out,
                     int64_t ldo);

// Some kernels fold a per-group term of x out of the inner loop (the Q5_K and generic Q4_K
// kernels need the sum of x over each group of 32 for its mins). xsum_len(t, k) is 0 when the
// kernel for `t` on this CPU needs none.
int64_t xsum_len(DType t, int64_t k);
// Fills xsum[0 .. xsum_len(t, k)) for one activation row x.
void compute_xsums(DType t, const float* x, int64_t k, float* xsum);

// Fused dequantize-and-dot for small batches:
//   y[j * ldy + i] = dot(row i, x + j * ldx)   for i < rows, j < nx.
// Row i starts at w + i * stride; xsum holds nx consecutive xsum_len(t, k) arrays (may be null
// when that length is 0). Every (row, x) pair is reduced in a fixed order, so its result does
// not depend on `rows`, `nx`, the alignment of x or the thread that runs it.
void dot_rows(DType t, const uint8_t* w, int64_t stride, int64_t rows, int64_t k, const float* x,
              int64_t ldx, const float* xsum, int nx, float* y, int64_t ldy);

// Name of the instruction set the kernels run with here (for benchmarks and logs).
const char* simd_target_name();

}  // namespace lazyllm::kernels
