// An integer matrix-multiply kernel for prefill with Q8_0 and Q4_0 weights on CPUs with AVX2 (+FMA,
// F16C) but no AVX-512, used in fast math only. The activations are quantized to 8 bits per
// 32-value block (quantize_row_q8, as the decode kernels of dot_int8.h do), every block's products
// are summed exactly in integers (vpmaddubsw, vpmaddwd), then scaled by both blocks' scales and
// summed over the blocks in f32. On these CPUs the f32 kernel is bound by two 8-wide FMAs a cycle;
// 8-bit products do 32 multiply-adds an instruction. Each output's sum runs in one order fixed by
// k alone, so results do not depend on n, tiling or threads. Internal to kernels/cpu.
#pragma once

#include <cstdint>
#include <string_view>

#include "format/dtype.h"

namespace lazyllm::kernels {

// Weight rows one packed tile holds.
constexpr int64_t kInt8TileRows = 32;

// True when this CPU runs the kernel (x86-64 with AVX2, FMA and F16C, within the cap of
// cpu_features.h) and `t` has one (Q8_0, Q4_0).
bool int8_gemm_supported(DType t);

// True when prefill should use it (fast math, no bf16 GEMM preferred): supported, and the f32
// kernel is the 8-wide AVX2 one. The 8-bit kernel does 32 multiply-adds an instruction against the
// AVX2 FMA's 8 but spends several instructions a block widening and scaling: it beats the 8-wide
// f32 kernel, not the 16-wide AVX-512 one (an Emerald Rapids core, tinyllama-1.1b Q8_0 at 512
// tokens, 2 threads: 85 tok/s against 138 with the AVX-512 f32 kernel).
bool int8_gemm_preferred(DType t);

// "int8-avx2" or "none".
std::string_view int8_gemm_kernel_name();

// Bytes a packed tile of k columns takes (k a multiple of 32).
int64_t int8_tile_bytes(int64_t k);

// Packs nr <= kInt8TileRows weight rows (Q8_0 or Q4_0, row j at w + j * stride) for
// gemm_int8_tile: per block of 32 columns and group of 8 rows, the 8-bit codes four columns at a
// time for each row (Q4_0's codes unsigned 0..15, Q8_0's signed), then the 8 rows' scales as
// floats. Rows past nr are zeros. `packed` holds int8_tile_bytes(k) bytes, 32-byte aligned.
void pack_tile_int8(DType t, const uint8_t* w, int64_t stride, int64_t nr, int64_t k, uint8_t* packed);

// One activation row quantized by quantize_row_q8: k codes, and per block its scale and code sum.
struct Int8Activations {
  const int8_t* q;
  const float* d;
  const int32_t* sum;
  int64_t ld;   // between rows of q (bytes)
  int64_t ldb;  // between rows of d and sum (blocks)
};

// y[t * ldy + j] = sum_b d_w[j][b] * d_x[t][b] * sum_i w[j][32 b + i] * q_x[t][32 b + i] for t < n,
// j < nr, with W packed by pack_tile_int8 (type t) and X row t at x.q + t * x.ld.
void gemm_int8_tile(DType t, const Int8Activations& x, int64_t n, const uint8_t* packed, int64_t k, int64_t nr,
                    float* y, int64_t ldy);

}  // namespace lazyllm::kernels
