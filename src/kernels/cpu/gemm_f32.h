// An f32 matrix-multiply micro-kernel for prefill on CPUs with AVX-512 (found at run time).
// Debian 12's OpenBLAS (0.3.21) has no Zen 4 kernels and runs its AVX2 (Haswell) sgemm there,
// repacking all activations on every call; this kernel packs only a 32-row tile of weights and
// broadcasts activations straight from their rows. Every product and sum is f32, and each
// output is one sequential sum over k, so results do not depend on n, tiling or threads.
// Internal to kernels/cpu; elsewhere matmul keeps using OpenBLAS.
#pragma once

#include <cstdint>

namespace lazyllm::kernels {

// Output rows (weight rows) one packed tile holds.
constexpr int64_t kF32TileRows = 32;

// True when this CPU runs the kernel (x86-64 with AVX-512F, within the cap of cpu_features.h).
bool f32_gemm_supported();

// Packs nr <= kF32TileRows rows of k floats (row j at w + j * ldw) column by column:
// packed[c * 32 + j] = W[j][c]; rows past nr are zero. packed holds k * 32 floats.
void pack_tile_f32(const float* w, int64_t ldw, int64_t nr, int64_t k, float* packed);

// y[t * ldy + j] = sum_c X[t][c] * W[j][c] for t < n, j < nr, X row t at x + t * ldx, W packed
// by pack_tile_f32.
void gemm_f32_tile(const float* x, int64_t n, int64_t ldx, const float* packed, int64_t k, int64_t nr, float* y,
                   int64_t ldy);

}  // namespace lazyllm::kernels
