// Integer dot products for decode with Q8_0 and Q4_0 weights: the activations are quantized to
// 8 bits in blocks of 32 (as llama.cpp does), and each block's products are summed exactly in
// int32, then scaled once. That halves the work per weight against decoding weights to floats,
// so 4- and 8-bit decode runs at memory speed. Two kernels compute the same int32 sums and the
// same float operations in the same order, so their results agree bit for bit: AVX512_VNNI
// (vpdpbusd) and AVX2 (+FMA, F16C: vpmaddubsw and vpmaddwd), chosen at run time within the cap
// of cpu_features.h. Q4_K, Q5_K and Q6_K weights take one AVX2 kernel on both kinds of CPU (their
// decode is bound by unpacking the codes), with the same activations: each 32-value block's
// int32 dot scaled by its weight group scale (Q6_K's offset of 32 through the activations' sums
// over 16 values, once per super-block). Internal to kernels/cpu.
#pragma once

#include <cstdint>
#include <string_view>

#include "format/dtype.h"

namespace lazyllm::kernels {

// True when this CPU runs one of the kernels (AVX512_VNNI or AVX2 with FMA and F16C, within the
// cap of cpu_features.h) and `t` has one (Q8_0, Q4_0; Q4_K, Q5_K, Q6_K with AVX2, FMA and F16C).
bool int8_dot_supported(DType t);

// The kernel dot_rows_int8 runs now for Q8_0/Q4_0: "int8-vnni-avx512", "int8-avx2" or "none".
std::string_view int8_dot_kernel_name();

// One activation row quantized to 8 bits per 32-value block: x ~= d[b] * q[32 b + i].
struct QuantizedRow {
  const int8_t* q;
  const float* d;
  const int32_t* sum;  // sum of q over each block (for Q4_0's offset of 8)
  // Q4_0 only (from prepare_q4_0_row): per pair of blocks b, b+1, the 64 values in the order the
  // Q4_0 nibbles unpack to (b 0-15, b+1 0-15, b 16-31, b+1 16-31), so the kernel needs no byte
  // shuffles; a last odd block keeps the natural order. Per group of 8 blocks g..g+7, in the
  // order kQ4GroupOrder (how the kernels' per-block sums come out): the scales d and the
  // offsets -8 sum, 0 for blocks past the row's pairs.
  const int8_t* q4 = nullptr;
  const float* dg = nullptr;
  const int32_t* offg = nullptr;
  // Q6_K only (from sum_codes16): the sum of q over each 16 values (Q6_K's scale groups).
  const int16_t* sum16 = nullptr;
};

// Block g + kQ4GroupOrder[j] of a group of 8 is lane j of the Q4_0 kernels' sums.
inline constexpr int kQ4GroupOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Entries of QuantizedRow::dg and ::offg for a row of k values (whole groups of 8 blocks).
int64_t q4_0_group_values(int64_t k);

// Fills the Q4_0 arrays of QuantizedRow (q4: k bytes, dg and offg: q4_0_group_values(k) each)
// from a row made by quantize_row_q8.
void prepare_q4_0_row(const int8_t* q, const float* d, const int32_t* sum, int64_t k, int8_t* q4, float* dg,
                      int32_t* offg);

// sum16[g] = sum of q[16 g .. 16 g + 15] for g < k / 16 (QuantizedRow::sum16).
void sum_codes16(const int8_t* q, int64_t k, int16_t* sum16);

// Quantizes k values (k a multiple of 32): d = max|x| / 127, q = round-to-nearest-even(x / d).
void quantize_row_q8(const float* x, int64_t k, int8_t* q, float* d, int32_t* sum);

// y[j * ldy + i] = dot(weight row i, activation row j) for i < rows, j < nx; row i starts at
// w + i * stride. Each (row, activation) pair is reduced in a fixed order.
void dot_rows_int8(DType t, const uint8_t* w, int64_t stride, int64_t rows, int64_t k, const QuantizedRow* x,
                   int nx, float* y, int64_t ldy);

}  // namespace lazyllm::kernels
