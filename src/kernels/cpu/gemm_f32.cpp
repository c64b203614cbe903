// f32 micro-kernels (see gemm_f32.h), in AVX-512 and in AVX2 + FMA intrinsics under function
// target attributes like the bf16 kernel beside it, so one binary still runs on any x86-64. Both
// compute every output as the same sequential chain of fused multiply-adds over k, so they give
// the same bits.
#include "kernels/cpu/gemm_f32.h"

#include <stdexcept>

#include "kernels/cpu/cpu_features.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LAZYLLM_F32_KERNEL 1
#define LAZYLLM_TARGET_F32 __attribute__((target("avx512f")))
#define LAZYLLM_TARGET_AVX2 __attribute__((target("avx2,fma")))
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

namespace {

enum class F32Kernel { kNone, kAvx512, kAvx2 };

F32Kernel f32_kernel() {
  if (cpu_supports(CpuFeature::kAvx512f)) return F32Kernel::kAvx512;
  if (cpu_supports(CpuFeature::kAvx2) && cpu_supports(CpuFeature::kFma)) return F32Kernel::kAvx2;
  return F32Kernel::kNone;
}

}  // namespace

bool f32_gemm_supported() { return f32_kernel() != F32Kernel::kNone; }

std::string_view f32_gemm_kernel_name() {
  switch (f32_kernel()) {
    case F32Kernel::kAvx512: return "f32-avx512";
    case F32Kernel::kAvx2: return "f32-avx2";
    case F32Kernel::kNone: break;
  }
  return "none";
}

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

// AVX2 has 16 vector registers of 8 floats: MR activation rows x 16 weight rows (half a packed
// tile, read with the tile's 32-float stride) take 2 * MR accumulators, 2 weight vectors and a
// broadcast, so MR <= 6. Each accumulator is the same fma chain over c as in the AVX-512 kernel.
template <int MR>
LAZYLLM_TARGET_AVX2 void micro_kernel_avx2(const float* x, int64_t ldx, const float* packed, int64_t k, float* y,
                                           int64_t ldy, int64_t nc) {
  __m256 acc[MR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t c = 0; c < k; ++c) {
    const __m256 w0 = _mm256_loadu_ps(packed + c * kF32TileRows), w1 = _mm256_loadu_ps(packed + c * kF32TileRows + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 xb = _mm256_broadcast_ss(x + i * ldx + c);
      acc[i][0] = _mm256_fmadd_ps(xb, w0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(xb, w1, acc[i][1]);
    }
  }
  if (nc == 16) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      _mm256_storeu_ps(y + i * ldy, acc[i][0]);
      _mm256_storeu_ps(y + i * ldy + 8, acc[i][1]);
    }
    return;
  }
  // nc < 16 columns: lanes below nc get all ones.
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nc)), lane);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nc) - 8), lane);
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    _mm256_maskstore_ps(y + i * ldy, m0, acc[i][0]);
    _mm256_maskstore_ps(y + i * ldy + 8, m1, acc[i][1]);
  }
}

// MR activation rows against the whole tile: both 16-row halves (the second only where the tile
// has rows there), so the MR rows of x are read from cache twice, not from memory.
template <int MR>
LAZYLLM_TARGET_AVX2 void tile_rows_avx2(const float* x, int64_t ldx, const float* packed, int64_t k, float* y,
                                        int64_t ldy, int64_t nr) {
  micro_kernel_avx2<MR>(x, ldx, packed, k, y, ldy, nr < 16 ? nr : 16);
  if (nr > 16) micro_kernel_avx2<MR>(x, ldx, packed + 16, k, y + 16, ldy, nr - 16);
}

// out[c] = column c of the 8 x 8 block r.
LAZYLLM_TARGET_AVX2 inline void transpose8(const __m256 r[8], __m256 out[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + m], 128-bit lane L: column 4L + m of rows 4g..4g+3.
  for (int g = 0; g < 2; ++g) {
    u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int m = 0; m < 4; ++m) {
    out[m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x20);
    out[4 + m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x31);
  }
}

LAZYLLM_TARGET_AVX2 void pack_avx2(const float* w, int64_t ldw, int64_t nr, int64_t k, float* packed) {
  // 8 x 8 blocks (8 rows, 8 columns) transposed in registers; missing rows are zeros.
  const int64_t k8 = k / 8 * 8;
  for (int64_t j0 = 0; j0 < kF32TileRows; j0 += 8) {
    for (int64_t c0 = 0; c0 < k8; c0 += 8) {
      __m256 r[8], out[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) r[i] = j0 + i < nr ? _mm256_loadu_ps(w + (j0 + i) * ldw + c0) : _mm256_setzero_ps();
      transpose8(r, out);
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(packed + (c0 + i) * kF32TileRows + j0, out[i]);
    }
  }
  for (int64_t c = k8; c < k; ++c)
    for (int64_t j = 0; j < kF32TileRows; ++j) packed[c * kF32TileRows + j] = j < nr ? w[j * ldw + c] : 0.0f;
}

}  // namespace

void pack_tile_f32(const float* w, int64_t ldw, int64_t nr, int64_t k, float* packed) {
  if (nr < 0 || nr > kF32TileRows || k < 0) throw std::invalid_argument("pack_tile_f32: bad shape");
  switch (f32_kernel()) {
    case F32Kernel::kAvx512: return pack_avx512(w, ldw, nr, k, packed);
    case F32Kernel::kAvx2: return pack_avx2(w, ldw, nr, k, packed);
    case F32Kernel::kNone: break;
  }
  throw std::logic_error("pack_tile_f32: no f32 kernel for this CPU");
}

void gemm_f32_tile(const float* x, int64_t n, int64_t ldx, const float* packed, int64_t k, int64_t nr, float* y,
                   int64_t ldy) {
  if (nr < 0 || nr > kF32TileRows) throw std::invalid_argument("gemm_f32_tile: bad shape");
  const F32Kernel kernel = f32_kernel();
  if (kernel == F32Kernel::kNone) throw std::logic_error("gemm_f32_tile: no f32 kernel for this CPU");
  if (kernel == F32Kernel::kAvx2) {
    int64_t t = 0;
    for (; t + 6 <= n; t += 6) tile_rows_avx2<6>(x + t * ldx, ldx, packed, k, y + t * ldy, ldy, nr);
    // The tail in smaller blocks; each output's sum runs in the same order as in the full blocks.
    for (; t + 3 <= n; t += 3) tile_rows_avx2<3>(x + t * ldx, ldx, packed, k, y + t * ldy, ldy, nr);
    for (; t < n; ++t) tile_rows_avx2<1>(x + t * ldx, ldx, packed, k, y + t * ldy, ldy, nr);
    return;
  }
  constexpr int kMR = 12;
  int64_t t = 0;
  for (; t + kMR <= n; t += kMR) micro_kernel<kMR>(x + t * ldx, ldx, packed, k, y + t * ldy, ldy, nr);
  // The tail in smaller blocks; each output's sum runs in the same order as in the full blocks.
  for (; t + 4 <= n; t += 4) micro_kernel<4>(x + t * ldx, ldx, packed, k, y + t * ldy, ldy, nr);
  for (; t < n; ++t) micro_kernel<1>(x + t * ldx, ldx, packed, k, y + t * ldy, ldy, nr);
}

#else  // no AVX-512 kernel on this platform

bool f32_gemm_supported() { return false; }
std::string_view f32_gemm_kernel_name() { return "none"; }
void pack_tile_f32(const float*, int64_t, int64_t, int64_t, float*) { throw std::logic_error("f32 kernel not available"); }
void gemm_f32_tile(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t) {
  throw std::logic_error("f32 kernel not available");
}

#endif

}  // namespace lazyllm::kernels
