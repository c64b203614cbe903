// f32 micro-kernel (see gemm_f32.h), in AVX-512 intrinsics under a function target attribute
// like the bf16 kernel beside it, so one binary still runs on any x86-64.
#include "kernels/cpu/gemm_f32.h"

#include <stdexcept>

#include "kernels/cpu/cpu_features.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LAZYLLM_F32_KERNEL 1
#define LAZYLLM_TARGET_F32 __attribute__((target("avx512f")))
// GCC 12 reports its own AVX-512 intrinsics' _mm512_undefined_*() starts as uninitialised once
// inlined (a known false positive; see dot_int8.cpp).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#else
#define LAZYLLM_F32_KERNEL 0
#endif

namespace lazyllm::kernels {

#if LAZYLLM_F32_KERNEL

bool f32_gemm_supported() { return cpu_supports(CpuFeature::kAvx512f); }

namespace {

// MR activation rows x 32 weight rows: 2 * MR accumulators, 2 weight vectors and a broadcast
// fit the 32 vector registers for MR <= 14.
template <int MR>
LAZYLLM_TARGET_F32 void micro_kernel(const float* x, int64_t ldx, const float* packed, int64_t k, float* y,
                                     int64_t ldy, int64_t nr) {
  __m512 acc[MR][2];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t c = 0; c < k; ++c) {
    const __m512 w0 = _mm512_loadu_ps(packed + c * 32), w1 = _mm512_loadu_ps(packed + c * 32 + 16);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 xb = _mm512_set1_ps(x[i * ldx + c]);
      acc[i][0] = _mm512_fmadd_ps(xb, w0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(xb, w1, acc[i][1]);
    }
  }
  const __mmask16 m0 = nr >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << nr) - 1);
  const __mmask16 m1 = nr <= 16 ? 0 : nr >= 32 ? 0xFFFF : static_cast<__mmask16>((1u << (nr - 16)) - 1);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    _mm512_mask_storeu_ps(y + i * ldy, m0, acc[i][0]);
    _mm512_mask_storeu_ps(y + i * ldy + 16, m1, acc[i][1]);
  }
}

// out[c] = column c of the 16 x 16 block r (rows 0..15), by the usual four shuffle stages.
LAZYLLM_TARGET_F32 inline void transpose16(const __m512 r[16], __m512 out[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + m], 128-bit lane L: column 4L + m of rows 4g..4g+3.
  for (int g = 0; g < 4; ++g) {
    u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int m = 0; m < 4; ++m) {
    const __m512 a = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88), b = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xDD);
    const __m512 c = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88), d = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xDD);
    out[m] = _mm512_shuffle_f32x4(a, c, 0x88);
    out[8 + m] = _mm512_shuffle_f32x4(a, c, 0xDD);
    out[4 + m] = _mm512_shuffle_f32x4(b, d, 0x88);
    out[12 + m] = _mm512_shuffle_f32x4(b, d, 0xDD);
  }
}

LAZYLLM_TARGET_F32 void pack_avx512(const float* w, int64_t ldw, int64_t nr, int64_t k, float* packed) {
  // 16 x 16 blocks (16 rows, 16 columns) transposed in registers; missing rows are zeros.
  const int64_t k16 = k / 16 * 16;
  for (int64_t j0 = 0; j0 < kF32TileRows; j0 += 16) {
    for (int64_t c0 = 0; c0 < k16; c0 += 16) {
      __m512 r[16], out[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) r[i] = j0 + i < nr ? _mm512_loadu_ps(w + (j0 + i) * ldw + c0) : _mm512_setzero_ps();
      transpose16(r, out);
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) _mm512_storeu_ps(packed + (c0 + i) * kF32TileRows + j0, out[i]);
    }
  }
  for (int64_t c = k16; c < k; ++c)
    for (int64_t j = 0; j < kF32TileRows; ++j) packed[c * kF32TileRows + j] = j < nr ? w[j * ldw + c] : 0.0f;
}

}  // namespace

void pack_tile_f32(const float* w, int64_t ldw, int64_t nr, int64_t k, float* packed) {
  if (nr < 0 || nr > kF32TileRows || k < 0) throw std::invalid_argument("pack_tile_f32: bad shape");
  pack_avx512(w, ldw, nr, k, packed);
}

void gemm_f32_tile(const float* x, int64_t n, int64_t ldx, const float* packed, int64_t k, int64_t nr, float* y,
                   int64_t ldy) {
  if (nr < 0 || nr > kF32TileRows) throw std::invalid_argument("gemm_f32_tile: bad shape");
  constexpr int kMR = 12;
  int64_t t = 0;
  for (; t + kMR <= n; t += kMR) micro_kernel<kMR>(x + t * ldx, ldx, packed, k, y + t * ldy, ldy, nr);
  // The tail in smaller blocks; each output's sum runs in the same order as in the full blocks.
  for (; t + 4 <= n; t += 4) micro_kernel<4>(x + t * ldx, ldx, packed, k, y + t * ldy, ldy, nr);
  for (; t < n; ++t) micro_kernel<1>(x + t * ldx, ldx, packed, k, y + t * ldy, ldy, nr);
}

#else  // no AVX-512 kernel on this platform

bool f32_gemm_supported() { return false; }
void pack_tile_f32(const float*, int64_t, int64_t, int64_t, float*) { throw std::logic_error("f32 kernel not available"); }
void gemm_f32_tile(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t) {
  throw std::logic_error("f32 kernel not available");
}

#endif

}  // namespace lazyllm::kernels
