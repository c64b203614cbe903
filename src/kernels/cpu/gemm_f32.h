// f32 matrix-multiply micro-kernels for prefill on CPUs with AVX-512 or AVX2 + FMA (found at
// run time; the AVX2 kernel gives the AVX-512 kernel's bits).
// Debian 12's OpenBLAS (0.3.21) has no Zen 4 kernels and runs its AVX2 (Haswell) sgemm there,
// repacking all activations on every call; this kernel packs only a 32-row tile of weights and
// broadcasts activations straight from their rows. Every product and sum is f32, and each
// output is one sequential sum over k, so results do not depend on n, tiling or threads.
// Internal to kernels/cpu; elsewhere matmul keeps using OpenBLAS.
#pragma once

#include <cstdint>
#include <string_view>

namespace lazyllm::kernels {

// Output rows (weight rows) one packed tile holds.
constexpr int64_t kF32TileRows = 32;

// True when this CPU runs a kernel (x86-64 with AVX-512F, or AVX2 and FMA, within the cap of
// cpu_features.h).
bool f32_gemm_supported();
// "f32-avx512", "f32-avx2" or "none".
std::string_view f32_gemm_kernel_name();

// Packs nr <= kF32TileRows rows of k floats (row j at w + j * ldw) column by column:
// packed[c * 32 + j] = W[j][c]; rows past nr are zero. packed holds k * 32 floats.
void pack_tile_f32(const float* w, int64_t ldw, int64_t nr, int64_t k, float* packed);

// y[t * ldy + j] = sum_c X[t][c] * W[j][c] for t < n, j < nr, X row t at x + t * ldx, W packed
// by pack_tile_f32.
void gemm_f32_tile(const float* x, int64_t n, int64_t ldx, const float* packed, int64_t k, int64_t nr, float* y,
                   int64_t ldy);

}  // namespace lazyllm::kernels
