// A bf16 matrix-multiply micro-kernel for prefill with quantized (or bf16) weights, on CPUs with
// AVX512_BF16 (vdpbf16ps: 32 multiply-adds per instruction, twice the f32 FMA's 16).
// Weights are dequantized tile by tile and packed as bf16 pairs; activations are rounded to
// bf16 once per product; every sum accumulates in f32. Internal to kernels/cpu.
#pragma once

#include <cstdint>
#include <optional>

namespace lazyllm::kernels {

// Output rows (weight rows) one packed tile holds.
constexpr int64_t kBf16TileRows = 32;

// True when this CPU runs the kernel (x86-64 with AVX512_BF16, within the cap of cpu_features.h).
bool bf16_gemm_supported();

// True when prefill should use it: supported, and the CPU issues vdpbf16ps fast enough to beat
// the f32 kernel. AMD's cores with AVX512_BF16 (Zen 4, Zen 5) do. Intel's (Sapphire and Emerald
// Rapids, whose fast bf16 path is AMX) issue one every other cycle against two FMAs a cycle, so
// there bf16 runs at half the f32 kernel's FLOP rate (measured on an Emerald Rapids core: 1.4 G
// vdpbf16ps/s, 5.6 G FMA/s) and the f32 kernel is the faster prefill. LAZYLLM_BF16_GEMM=on|off
// (read once) or prefer_bf16_gemm (tests, tools) overrides the choice.
bool bf16_gemm_preferred();

// Replaces the choice of bf16_gemm_preferred (nullopt: by the CPU, as above; true still needs
// the kernel to be supported). For tests and tools, called while no kernel runs.
void prefer_bf16_gemm(std::optional<bool> prefer);
// The choice in force from prefer_bf16_gemm or LAZYLLM_BF16_GEMM (nullopt: none).
std::optional<bool> bf16_gemm_forced();

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
