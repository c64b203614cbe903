// Integer prefill kernel (see gemm_int8.h), in AVX2 intrinsics under a function target attribute
// (Debian 12's Highway, 1.0.3, has no 8-bit dot product), so one binary still runs on any x86-64.
//
// A packed tile is laid out like VNNI's operands: in one 32-byte vector, four consecutive codes of
// each of 8 weight rows. Broadcasting four activation codes, vpmaddubsw then vpmaddwd (by ones)
// give the 8 rows' 4-column dot products in the 8 int32 lanes. vpmaddubsw's first operand is
// unsigned: Q4_0's codes 0..15 are (their offset of 8 comes off through the block's code sum),
// and their int16 pair sums (at most 2 * 15 * 127) add up over a whole block of 32 columns
// without overflow, so one vpmaddwd a block suffices; Q8_0's signed codes go in as |w| with the
// activations' signs flipped where w < 0 (pair sums up to 2 * 128 * 127 fit int16 once only).
#include "kernels/cpu/gemm_int8.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_blocks.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LAZYLLM_INT8_GEMM 1
#define LAZYLLM_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define LAZYLLM_INT8_GEMM 0
#endif

namespace lazyllm::kernels {
namespace {

constexpr int64_t kGroups = kInt8TileRows / 8;  // groups of 8 rows (one vector of int32 lanes)
constexpr int64_t kSteps = qblock::kQK / 4;     // 4-column steps per block
// Per block of 32 columns: the codes (step-major, then group, 32 bytes each), then the scales.
constexpr int64_t kCodeBytes = kSteps * kGroups * 32;
constexpr int64_t kBlockBytes = kCodeBytes + kInt8TileRows * static_cast<int64_t>(sizeof(float));

// The 32 codes and the scale of block b of a row (Q4_0: unsigned 0..15; Q8_0: signed).
void block_codes(DType t, const uint8_t* row, int64_t b, uint8_t codes[qblock::kQK], float* d) {
  if (t == DType::Q4_0) {
    const auto& blk = reinterpret_cast<const qblock::Q4_0*>(row)[b];
    for (int i = 0; i < 16; ++i) {
      codes[i] = blk.qs[i] & 0x0F;
      codes[i + 16] = blk.qs[i] >> 4;
    }
    *d = fp16_to_fp32(blk.d);
  } else {
    const auto& blk = reinterpret_cast<const qblock::Q8_0*>(row)[b];
    std::memcpy(codes, blk.qs, qblock::kQK);
    *d = fp16_to_fp32(blk.d);
  }
}

}  // namespace

int64_t int8_tile_bytes(int64_t k) { return k / qblock::kQK * kBlockBytes; }

void pack_tile_int8(DType t, const uint8_t* w, int64_t stride, int64_t nr, int64_t k, uint8_t* packed) {
  if ((t != DType::Q4_0 && t != DType::Q8_0) || nr < 0 || nr > kInt8TileRows || k % qblock::kQK != 0)
    throw std::invalid_argument("pack_tile_int8: bad type or shape");
  const int64_t nb = k / qblock::kQK;
  for (int64_t j = 0; j < kInt8TileRows; ++j) {
    const int64_t g = j / 8, lane = j % 8;
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* blk = packed + b * kBlockBytes;
      alignas(4) uint8_t codes[qblock::kQK] = {};
      float d = 0;
      if (j < nr) block_codes(t, w + j * stride, b, codes, &d);
      for (int64_t s = 0; s < kSteps; ++s) std::memcpy(blk + (s * kGroups + g) * 32 + lane * 4, codes + 4 * s, 4);
      std::memcpy(blk + kCodeBytes + j * static_cast<int64_t>(sizeof(float)), &d, sizeof d);
    }
  }
}

#if LAZYLLM_INT8_GEMM

bool int8_gemm_supported(DType t) {
  return (t == DType::Q8_0 || t == DType::Q4_0) && cpu_supports(CpuFeature::kAvx2) && cpu_supports(CpuFeature::kFma) &&
         cpu_supports(CpuFeature::kF16c);
}

bool int8_gemm_preferred(DType t) { return int8_gemm_supported(t) && !cpu_supports(CpuFeature::kAvx512f); }

std::string_view int8_gemm_kernel_name() { return int8_gemm_supported(DType::Q8_0) ? "int8-avx2" : "none"; }

namespace {

LAZYLLM_TARGET_AVX2 inline __m256i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

// MR activation rows x 16 weight rows (groups g0 and g0 + 1 of the tile): per block, the exact
// integer dot of every pair, then acc += float(dot) * (d_w * d_x), block after block.
template <int MR, bool Q4>
LAZYLLM_TARGET_AVX2 void micro_kernel(const Int8Activations& x, int64_t t0, const uint8_t* packed, int64_t g0,
                                      int64_t nb, float* y, int64_t ldy, int64_t nc) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[MR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = packed + b * kBlockBytes;
    __m256i dot[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) dot[i][0] = dot[i][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int64_t s = 0; s < kSteps; ++s) {
      const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + (s * kGroups + g0) * 32));
      const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(blk + (s * kGroups + g0 + 1) * 32));
      if constexpr (Q4) {
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          const __m256i xb = broadcast4(x.q + (t0 + i) * x.ld + b * qblock::kQK + 4 * s);
          dot[i][0] = _mm256_add_epi16(dot[i][0], _mm256_maddubs_epi16(w0, xb));
          dot[i][1] = _mm256_add_epi16(dot[i][1], _mm256_maddubs_epi16(w1, xb));
        }
      } else {
        const __m256i a0 = _mm256_abs_epi8(w0), a1 = _mm256_abs_epi8(w1);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          const __m256i xb = broadcast4(x.q + (t0 + i) * x.ld + b * qblock::kQK + 4 * s);
          dot[i][0] =
              _mm256_add_epi32(dot[i][0], _mm256_madd_epi16(_mm256_maddubs_epi16(a0, _mm256_sign_epi8(xb, w0)), ones));
          dot[i][1] =
              _mm256_add_epi32(dot[i][1], _mm256_madd_epi16(_mm256_maddubs_epi16(a1, _mm256_sign_epi8(xb, w1)), ones));
        }
      }
    }
    const float* dw = reinterpret_cast<const float*>(blk + kCodeBytes) + g0 * 8;
    const __m256 dw0 = _mm256_load_ps(dw), dw1 = _mm256_load_ps(dw + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const int64_t xb = (t0 + i) * x.ldb + b;
      __m256i d0 = dot[i][0], d1 = dot[i][1];
      if constexpr (Q4) {
        const __m256i off = _mm256_set1_epi32(8 * x.sum[xb]);
        d0 = _mm256_sub_epi32(_mm256_madd_epi16(d0, ones), off);
        d1 = _mm256_sub_epi32(_mm256_madd_epi16(d1, ones), off);
      }
      const __m256 dx = _mm256_set1_ps(x.d[xb]);
      acc[i][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_mul_ps(dw0, dx), acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_mul_ps(dw1, dx), acc[i][1]);
    }
  }
  float* yt = y + t0 * ldy;
  if (nc == 16) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      _mm256_storeu_ps(yt + i * ldy, acc[i][0]);
      _mm256_storeu_ps(yt + i * ldy + 8, acc[i][1]);
    }
    return;
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nc)), lane);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nc) - 8), lane);
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    _mm256_maskstore_ps(yt + i * ldy, m0, acc[i][0]);
    _mm256_maskstore_ps(yt + i * ldy + 8, m1, acc[i][1]);
  }
}

template <bool Q4>
void gemm_tile(const Int8Activations& x, int64_t n, const uint8_t* packed, int64_t nb, int64_t nr, float* y,
               int64_t ldy) {
  constexpr int kMR = 4;
  for (int64_t g0 = 0; g0 < kGroups && g0 * 8 < nr; g0 += 2) {
    const int64_t nc = std::min<int64_t>(16, nr - g0 * 8);
    float* yg = y + g0 * 8;
    int64_t t = 0;
    for (; t + kMR <= n; t += kMR) micro_kernel<kMR, Q4>(x, t, packed, g0, nb, yg, ldy, nc);
    for (; t < n; ++t) micro_kernel<1, Q4>(x, t, packed, g0, nb, yg, ldy, nc);
  }
}

}  // namespace

void gemm_int8_tile(DType t, const Int8Activations& x, int64_t n, const uint8_t* packed, int64_t k, int64_t nr,
                    float* y, int64_t ldy) {
  if (!int8_gemm_supported(t) || nr < 0 || nr > kInt8TileRows || k % qblock::kQK != 0)
    throw std::invalid_argument("gemm_int8_tile: no kernel for this type or CPU, or bad shape");
  if (reinterpret_cast<uintptr_t>(packed) % 32 != 0) throw std::invalid_argument("gemm_int8_tile: unaligned tile");
  if (t == DType::Q4_0) gemm_tile<true>(x, n, packed, k / qblock::kQK, nr, y, ldy);
  else gemm_tile<false>(x, n, packed, k / qblock::kQK, nr, y, ldy);
}

#else  // no AVX2 kernel on this platform

bool int8_gemm_supported(DType) { return false; }
bool int8_gemm_preferred(DType) { return false; }
std::string_view int8_gemm_kernel_name() { return "none"; }
void gemm_int8_tile(DType, const Int8Activations&, int64_t, const uint8_t*, int64_t, int64_t, float*, int64_t) {
  throw std::logic_error("int8 GEMM not available");
}

#endif

}  // namespace lazyllm::kernels
