// A bf16 matrix-multiply micro-kernel for prefill with quantized (or bf16) weights, on CPUs with
// AVX512_BF16 (vdpbf16ps: 32 multiply-adds per instruction, twice the f32 FMA rate).
// Weights are dequantized tile by tile and packed as bf16 pairs; activations are rounded to
// bf16 once per product; every sum accumulates in f32. Internal to kernels/cpu.
#pragma once

#include <cstdint>

namespace lazyllm::kernels {

// Output rows (weight rows) one packed tile holds.
constexpr int64_t kBf16TileRows = 32;

// True when this CPU runs the kernel (x86-64 with AVX512_BF16, within the cap of cpu_features.h).
bool bf16_gemm_supported();

// Rounds n rows of k floats (row t at x + t * ldx) to bf16, to nearest even, into out + t * ldo.
// k must be even.
void round_rows_to_bf16(const float* x, int64_t n, int64_t k, int64_t ldx, uint16_t* out, int64_t ldo);

// Packs nr <= kBf16TileRows rows of k floats (row j at w + j * k) as bf16 for gemm_bf16_tile:
// packed[(p * 32 + j) * 2 + e] = W[j][2p + e]; rows past nr are zero. packed holds k * 32 values.
void pack_tile_bf16(const float* w, int64_t nr, int64_t k, uint16_t* packed);

// y[t * ldy + j] = sum_c X[t][c] * W[j][c] for t < n, j < nr, with X as bf16 rows (x + t * ldx)
// and W packed by pack_tile_bf16. The summation order depends only on k, so results are
// reproducible whatever the thread count or tiling of n.
void gemm_bf16_tile(const uint16_t* x, int64_t n, int64_t ldx, const uint16_t* packed, int64_t k, int64_t nr,
                    float* y, int64_t ldy);

}  // namespace lazyllm::kernels
