// Integer dot products for decode with Q8_0 and Q4_0 weights on CPUs with AVX512_VNNI: the
// activations are quantized to 8 bits in blocks of 32 (as llama.cpp does), and each block's
// products are summed exactly in int32 (vpdpbusd), then scaled once. That halves the work per
// weight against decoding weights to floats, so 4- and 8-bit decode runs at memory speed.
// Internal to kernels/cpu.
#pragma once

#include <cstdint>

#include "format/dtype.h"

namespace lazyllm::kernels {

// True when this CPU runs the kernels and `t` has one (Q8_0, Q4_0).
bool int8_dot_supported(DType t);

// One activation row quantized to 8 bits per 32-value block: x ~= d[b] * q[32 b + i].
struct QuantizedRow {
  const int8_t* q;
  const float* d;
  const int32_t* sum;  // sum of q over each block (for Q4_0's offset of 8)
};

// Quantizes k values (k a multiple of 32): d = max|x| / 127, q = round-to-nearest-even(x / d).
void quantize_row_q8(const float* x, int64_t k, int8_t* q, float* d, int32_t* sum);

// y[j * ldy + i] = dot(weight row i, activation row j) for i < rows, j < nx; row i starts at
// w + i * stride. Each (row, activation) pair is reduced in a fixed order.
void dot_rows_int8(DType t, const uint8_t* w, int64_t stride, int64_t rows, int64_t k, const QuantizedRow* x,
                   int nx, float* y, int64_t ldy);

}  // namespace lazyllm::kernels
