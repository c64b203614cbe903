// Integer decode kernels (see dot_int8.h), with AVX-512 VNNI and AVX2 intrinsics under function
// target attributes: Debian 12's Highway (1.0.3) has no 8-bit dot product. Callers check
// int8_dot_supported() at run time; elsewhere the float kernels are used.
#include "kernels/cpu/dot_int8.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quant_blocks.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LAZYLLM_INT8_KERNEL 1
#define LAZYLLM_TARGET_VNNI __attribute__((target("avx2,f16c,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
#define LAZYLLM_TARGET_AVX2 __attribute__((target("avx2,f16c,fma")))
// GCC 12's AVX-512 insert/extract/convert intrinsics start from _mm512_undefined_*(), which it
// then reports as uninitialised once inlined here (a known false positive).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#else
#define LAZYLLM_INT8_KERNEL 0
#endif

namespace lazyllm::kernels {

void quantize_row_q8(const float* x, int64_t k, int8_t* q, float* d, int32_t* sum) {
  if (k % qblock::kQK != 0) throw std::invalid_argument("quantize_row_q8: length is not a multiple of 32");
  for (int64_t b = 0; b < k / qblock::kQK; ++b) {
    const float* xb = x + b * qblock::kQK;
    float amax = 0;
    for (int i = 0; i < qblock::kQK; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float scale = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
    int32_t s = 0;
    for (int i = 0; i < qblock::kQK; ++i) {
      const int v = static_cast<int>(std::nearbyint(xb[i] * inv));  // |v| <= 127
      q[b * qblock::kQK + i] = static_cast<int8_t>(v);
      s += v;
    }
    d[b] = scale;
    sum[b] = s;
  }
}

void sum_codes16(const int8_t* q, int64_t k, int16_t* sum16) {
  for (int64_t g = 0; g < k / 16; ++g) {
    int s = 0;
    for (int i = 0; i < 16; ++i) s += q[16 * g + i];
    sum16[g] = static_cast<int16_t>(s);  // |s| <= 16 * 127
  }
}

int64_t q4_0_group_values(int64_t k) { return (k / qblock::kQK + 7) / 8 * 8; }

void prepare_q4_0_row(const int8_t* q, const float* d, const int32_t* sum, int64_t k, int8_t* q4, float* dg,
                      int32_t* offg) {
  const int64_t nb = k / qblock::kQK, paired = nb / 2 * 2;
  for (int64_t b = 0; b < paired; b += 2) {
    const int8_t* x0 = q + b * qblock::kQK;
    const int8_t* x1 = x0 + qblock::kQK;
    int8_t* o = q4 + b * qblock::kQK;
    for (int i = 0; i < 16; ++i) {
      o[i] = x0[i];
      o[16 + i] = x1[i];
      o[32 + i] = x0[16 + i];
      o[48 + i] = x1[16 + i];
    }
  }
  if (paired < nb) std::copy(q + paired * qblock::kQK, q + k, q4 + paired * qblock::kQK);
  // Groups of 8 blocks in the order the kernels' sums come out; blocks past the pairs read 0.
  for (int64_t g = 0; g < q4_0_group_values(k); g += 8)
    for (int j = 0; j < 8; ++j) {
      const int64_t b = g + kQ4GroupOrder[j];
      dg[g + j] = b < paired ? d[b] : 0.0f;
      offg[g + j] = b < paired ? -8 * sum[b] : 0;
    }
}

#if LAZYLLM_INT8_KERNEL

namespace {

enum class Int8Kernel { kNone, kVnni512, kAvx2 };

Int8Kernel int8_kernel() {
  // (F16C is not tested for VNNI: every AVX-512 CPU has it.)
  if (cpu_supports(CpuFeature::kAvx512f) && cpu_supports(CpuFeature::kAvx512bw) &&
      cpu_supports(CpuFeature::kAvx512vl) && cpu_supports(CpuFeature::kAvx512vnni))
    return Int8Kernel::kVnni512;
  if (cpu_supports(CpuFeature::kAvx2) && cpu_supports(CpuFeature::kFma) && cpu_supports(CpuFeature::kF16c))
    return Int8Kernel::kAvx2;
  return Int8Kernel::kNone;
}

}  // namespace

bool int8_dot_supported(DType t) {
  if (t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K)
    return cpu_supports(CpuFeature::kAvx2) && cpu_supports(CpuFeature::kFma) && cpu_supports(CpuFeature::kF16c);
  return (t == DType::Q8_0 || t == DType::Q4_0) && int8_kernel() != Int8Kernel::kNone;
}

std::string_view int8_dot_kernel_name() {
  switch (int8_kernel()) {
    case Int8Kernel::kVnni512: return "int8-vnni-avx512";
    case Int8Kernel::kAvx2: return "int8-avx2";
    case Int8Kernel::kNone: break;
  }
  return "none";
}

namespace {

LAZYLLM_TARGET_VNNI inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

LAZYLLM_TARGET_VNNI inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// Both kernels take two 32-value blocks per 512-bit step (lanes 0-7: block b, 8-15: block
// b + 1), which halves the per-block shuffling and scale work that bounds them, and finish an
// odd last block with 256-bit vectors.

LAZYLLM_TARGET_VNNI inline float hsum512(__m512 v) {
  const __m512d d = _mm512_castps_pd(v);
  return hsum(_mm256_add_ps(_mm256_castpd_ps(_mm512_castpd512_pd256(d)), _mm256_castpd_ps(_mm512_extractf64x4_pd(d, 1))));
}

// Scales s0 (lanes 0-7) and s1 (lanes 8-15).
LAZYLLM_TARGET_VNNI inline __m512 two_scales(float s0, float s1) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_zextpd256_pd512(_mm256_castps_pd(_mm256_set1_ps(s0))),
                                             _mm256_castps_pd(_mm256_set1_ps(s1)), 1));
}

// The AVX2 kernels: the VNNI kernels' int32 lanes and float operations, step for step. Each
// vpdpbusd lane (the sum of 4 adjacent byte products) becomes vpmaddubsw (pairs, int16) and
// vpmaddwd by ones (pairs of pairs, int32). Neither saturates: a byte product is at most
// 128 * 127 in magnitude (|w| = 128 for a Q8_0 code of -128; |x| <= 127 from quantize_row_q8),
// so a pair stays within +-32512, and Q4_0's two pairs of nibble products within 4 * 15 * 128.
// So every block's int32 sum, and with the same scaling and summation order every result, is
// the VNNI kernels' to the bit; only the instructions differ.
namespace avx2 {

LAZYLLM_TARGET_AVX2 inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

LAZYLLM_TARGET_AVX2 inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// int32 lane i = sum of u[4i + j] * s[4i + j] (u unsigned, s signed bytes), as vpdpbusd.
LAZYLLM_TARGET_AVX2 inline __m256i dot_u8s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// Signed by signed bytes: |w| (vpsignb makes -128 0x80, 128 unsigned) times x with w's sign.
LAZYLLM_TARGET_AVX2 inline __m256i dot_s8s8(__m256i w, __m256i x) {
  return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

// As the VNNI kernel, whose 512-bit accumulator holds block b in lanes 0-7 and b + 1 in lanes
// 8-15: here two 256-bit accumulators, added the way hsum512 adds the halves.
LAZYLLM_TARGET_AVX2 float dot_q8_0(const qblock::Q8_0* w, int64_t nb, const QuantizedRow& x) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b + 1].qs));
    const auto* xq = reinterpret_cast<const __m256i*>(x.q + b * qblock::kQK);
    const __m256i p0 = dot_s8s8(w0, _mm256_loadu_si256(xq));
    const __m256i p1 = dot_s8s8(w1, _mm256_loadu_si256(xq + 1));
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(half_to_float(w[b].d) * x.d[b]), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(half_to_float(w[b + 1].d) * x.d[b + 1]), acc1);
  }
  float tail = 0;
  if (b < nb) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs));
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + b * qblock::kQK));
    tail = hsum(_mm256_mul_ps(_mm256_cvtepi32_ps(dot_s8s8(wv, xv)), _mm256_set1_ps(half_to_float(w[b].d) * x.d[b])));
  }
  return hsum(_mm256_add_ps(acc0, acc1)) + tail;
}

// See the VNNI dot_q4_0_rows: the nibble products of the two halves are added as int16 (at
// most 4 * 15 * 128 in magnitude) before the one widening vpmaddwd.
// Blocks b and b + 1's 32 packed bytes as their low nibbles (elements 0-15 of each block) and
// their high nibbles (16-31), the order the activations were prepared in; both kernels use it.
struct Q4Nibbles {
  __m256i lo, hi;
};
LAZYLLM_TARGET_AVX2 inline Q4Nibbles q4_0_pair_nibbles(const qblock::Q4_0* w, int64_t b) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i packed =
      _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(w[b + 1].qs), reinterpret_cast<const __m128i*>(w[b].qs));
  return {_mm256_and_si256(packed, low4), _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4)};
}

LAZYLLM_TARGET_AVX2 inline __m256i q4_0_pair_sums(const qblock::Q4_0* w, int64_t b, const int8_t* q4) {
  const auto [lo, hi] = q4_0_pair_nibbles(w, b);
  const auto* xq = reinterpret_cast<const __m256i*>(q4 + b * qblock::kQK);
  const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256(xq)),
                                       _mm256_maddubs_epi16(hi, _mm256_loadu_si256(xq + 1)));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// A group of 8 blocks from b: the pair sums s[j] of blocks b + 2j and b + 2j + 1 (zero past
// the row's pairs) reduce by two levels of vphaddd to one int32 per block, in the order
// kQ4GroupOrder; the -8 sum(x) offsets are added, and one FMA scales all 8 by the weights'
// scales (gathered in the same order, 0 past the pairs) times the activations'. The scale work
// is per 8 blocks instead of per 2, which is what bounded the kernel.
LAZYLLM_TARGET_AVX2 inline __m256 q4_0_group(const __m256i s[4], const qblock::Q4_0* w, int64_t b, int64_t paired,
                                             const QuantizedRow& x, __m256 acc) {
  const __m256i sums = _mm256_add_epi32(_mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3])),
                                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.offg + b)));
  __m128i dw;
  if (b + 8 <= paired) {
    dw = _mm_setr_epi16(static_cast<int16_t>(w[b].d), static_cast<int16_t>(w[b + 2].d),
                        static_cast<int16_t>(w[b + 4].d), static_cast<int16_t>(w[b + 6].d),
                        static_cast<int16_t>(w[b + 1].d), static_cast<int16_t>(w[b + 3].d),
                        static_cast<int16_t>(w[b + 5].d), static_cast<int16_t>(w[b + 7].d));
  } else {
    alignas(16) uint16_t h[8];
    for (int j = 0; j < 8; ++j) h[j] = b + kQ4GroupOrder[j] < paired ? w[b + kQ4GroupOrder[j]].d : 0;
    dw = _mm_load_si128(reinterpret_cast<const __m128i*>(h));
  }
  const __m256 scale = _mm256_mul_ps(_mm256_cvtph_ps(dw), _mm256_loadu_ps(x.dg + b));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc);
}

// The last odd block, in natural order.
LAZYLLM_TARGET_AVX2 inline float q4_0_last_block(const qblock::Q4_0* w, int64_t b, const QuantizedRow& x) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].qs));
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m256i wv = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), m4), _mm_and_si128(packed, m4));
  const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q4 + b * qblock::kQK));
  const __m256i p = _mm256_add_epi32(_mm256_setr_epi32(-8 * x.sum[b], 0, 0, 0, 0, 0, 0, 0), dot_u8s8(wv, xv));
  return hsum(_mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(half_to_float(w[b].d) * x.d[b])));
}

LAZYLLM_TARGET_AVX2 float dot_q4_0(const qblock::Q4_0* w, int64_t nb, const QuantizedRow& x) {
  const int64_t paired = nb / 2 * 2;
  __m256 acc = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 8 <= paired; b += 8) {
    const __m256i s[4] = {q4_0_pair_sums(w, b, x.q4), q4_0_pair_sums(w, b + 2, x.q4), q4_0_pair_sums(w, b + 4, x.q4),
                          q4_0_pair_sums(w, b + 6, x.q4)};
    acc = q4_0_group(s, w, b, paired, x, acc);
  }
  if (b < paired) {
    __m256i s[4];
    for (int j = 0; j < 4; ++j) s[j] = b + 2 * j < paired ? q4_0_pair_sums(w, b + 2 * j, x.q4) : _mm256_setzero_si256();
    acc = q4_0_group(s, w, b, paired, x, acc);
  }
  return hsum(acc) + (paired < nb ? q4_0_last_block(w, paired, x) : 0.0f);
}

// K-quants, against the same 8-bit activations (blocks of 32, one per Q4_K group and per pair of
// Q6_K groups): each 32-value block's exact int32 dot, scaled in f32 by its weight group scale
// times the block's activation scale. One kernel for AVX2 and AVX-512 CPUs: decode with these
// formats is bound by unpacking the 4- and 6-bit codes, not by the dot products.

// Q4_K: sum_g d sc[g] dx[g] dot(q_g, x_g) - sum_g dmin m[g] dx[g] sum(x_g), q the nibbles 0..15;
// the min terms are exact int32 products m * sum(x), scaled and summed 8 lanes at a time. Q5_K
// is the same with a fifth bit on each code (0..31; vpmaddubsw pairs stay within 2 * 31 * 128).
template <class Block>
LAZYLLM_TARGET_AVX2 inline float dot_affine_k(const Block* w, int64_t nsb, const QuantizedRow& x) {
  constexpr bool kFiveBit = std::is_same_v<Block, qblock::Q5_K>;
  const __m256i low4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
  __m256 acc_lo = _mm256_setzero_ps(), acc_hi = _mm256_setzero_ps(), mins = _mm256_setzero_ps();
  for (int64_t i = 0; i < nsb; ++i) {
    // The 8 six-bit scales and mins (qblock::scale_min_k4) from the three 32-bit words of
    // `scales`, four groups per word.
    uint32_t u[3];
    std::memcpy(u, w[i].scales, sizeof u);
    const uint32_t sc_lo = u[0] & 0x3F3F3F3Fu, m_lo = u[1] & 0x3F3F3F3Fu;
    const uint32_t sc_hi = (u[2] & 0x0F0F0F0Fu) | (((u[0] >> 6) & 0x03030303u) << 4);
    const uint32_t m_hi = ((u[2] >> 4) & 0x0F0F0F0Fu) | (((u[1] >> 6) & 0x03030303u) << 4);
    const __m256i sc = _mm256_cvtepu8_epi32(_mm_setr_epi32(static_cast<int>(sc_lo), static_cast<int>(sc_hi), 0, 0));
    const __m256i m = _mm256_cvtepu8_epi32(_mm_setr_epi32(static_cast<int>(m_lo), static_cast<int>(m_hi), 0, 0));
    const int64_t b0 = i * 8;
    const __m256 dx = _mm256_loadu_ps(x.d + b0);
    const __m256 s = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(half_to_float(w[i].d)), _mm256_cvtepi32_ps(sc)), dx);
    const __m256i msum = _mm256_mullo_epi32(m, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.sum + b0)));
    mins = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w[i].dmin)), _mm256_mul_ps(_mm256_cvtepi32_ps(msum), dx), mins);
    // Q5_K: the fifth bits of groups 2c and 2c + 1 are bits 2c and 2c + 1 of each qh byte;
    // shifting the 16-bit lanes right by 2 per c brings them to bits 0 and 1 of every byte.
    __m256i hbits = _mm256_setzero_si256();
    if constexpr (kFiveBit) hbits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qh));
    for (int c = 0; c < 4; ++c) {
      const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs + 32 * c));
      __m256i qlo = _mm256_and_si256(packed, low4), qhi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
      if constexpr (kFiveBit) {
        qlo = _mm256_or_si256(qlo, _mm256_and_si256(_mm256_slli_epi16(hbits, 4), bit4));
        qhi = _mm256_or_si256(qhi, _mm256_and_si256(_mm256_slli_epi16(hbits, 3), bit4));
        hbits = _mm256_srli_epi16(hbits, 2);
      }
      const auto* xq = reinterpret_cast<const __m256i*>(x.q + (b0 + 2 * c) * qblock::kQK);
      const __m256i lo = dot_u8s8(qlo, _mm256_loadu_si256(xq));
      const __m256i hi = dot_u8s8(qhi, _mm256_loadu_si256(xq + 1));
      acc_lo = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_permutevar8x32_ps(s, _mm256_set1_epi32(2 * c)), acc_lo);
      acc_hi =
          _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_permutevar8x32_ps(s, _mm256_set1_epi32(2 * c + 1)), acc_hi);
    }
  }
  return hsum(_mm256_add_ps(acc_lo, acc_hi)) - hsum(mins);
}

// Byte shuffle for block p of a Q6_K half: from the half's 8 int16 scales (in both 128-bit
// lanes), scale 2p across the low lane (the block's values 0-15) and 2p + 1 across the high.
LAZYLLM_TARGET_AVX2 inline __m256i q6_k_scale_pick(int p) {
  const auto lo0 = static_cast<char>(4 * p), lo1 = static_cast<char>(4 * p + 1), hi0 = static_cast<char>(4 * p + 2),
             hi1 = static_cast<char>(4 * p + 3);
  return _mm256_setr_epi8(lo0, lo1, lo0, lo1, lo0, lo1, lo0, lo1, lo0, lo1, lo0, lo1, lo0, lo1, lo0, lo1, hi0, hi1, hi0,
                          hi1, hi0, hi1, hi0, hi1, hi0, hi1, hi0, hi1, hi0, hi1, hi0, hi1);
}

// Q6_K: sum over 32-value blocks of d dx sum_g sc[g] sum((q - 32) x), g the block's two groups
// of 16. The -32 offset is taken out once per super-block through the activations' sums over
// 16 values (QuantizedRow::sum16): 32 sum_g sc[g] sum16[g] is one vpmaddwd for all 8 blocks.
// Per block, vpmaddubsw gives the pair sums of q x (codes 0..63: at most 2 * 63 * 127, exact in
// int16) and vpmaddwd by the groups' scales (one byte shuffle from the half's 8 scales) the
// block's int32 lanes, scaled in f32 by d dx.
LAZYLLM_TARGET_AVX2 float dot_q6_k(const qblock::Q6_K* w, int64_t nsb, const QuantizedRow& x) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), m03 = _mm256_set1_epi8(0x03), m0c = _mm256_set1_epi8(0x0C),
                m30 = _mm256_set1_epi8(0x30);
  const __m256i pick[4] = {q6_k_scale_pick(0), q6_k_scale_pick(1), q6_k_scale_pick(2), q6_k_scale_pick(3)};
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  __m256 offset = _mm256_setzero_ps();
  for (int64_t i = 0; i < nsb; ++i) {
    const __m256 f = _mm256_mul_ps(_mm256_set1_ps(half_to_float(w[i].d)), _mm256_loadu_ps(x.d + i * 8));
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i].scales)));
    const __m256i xs = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.sum16 + i * 16)));
    offset = _mm256_fmadd_ps(_mm256_cvtepi32_ps(xs), f, offset);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = w[i].ql + 64 * h;
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qh + 32 * h));
      const __m256i sch =
          _mm256_broadcastsi128_si256(h == 0 ? _mm256_castsi256_si128(sc16) : _mm256_extracti128_si256(sc16, 1));
      // Elements 32p .. 32p + 31 of this half (see qblock::Q6_K).
      const __m256i q[4] = {_mm256_or_si256(_mm256_and_si256(a, low4), _mm256_slli_epi16(_mm256_and_si256(hb, m03), 4)),
                            _mm256_or_si256(_mm256_and_si256(b, low4), _mm256_slli_epi16(_mm256_and_si256(hb, m0c), 2)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low4), _mm256_and_si256(hb, m30)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), low4),
                                            _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30))};
      for (int p = 0; p < 4; ++p) {
        const int64_t bx = i * 8 + 4 * h + p;
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q + bx * qblock::kQK));
        const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(q[p], xv), _mm256_shuffle_epi8(sch, pick[p]));
        const __m256 fb = _mm256_permutevar8x32_ps(f, _mm256_set1_epi32(4 * h + p));
        acc[p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), fb, acc[p]);
      }
    }
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) - 32.0f * hsum(offset);
}

}  // namespace avx2

// The VNNI kernels take J activation rows against one weight row: each row's result comes from
// the same operations in the same order whatever J (and is the AVX2 kernels' to the bit), while
// the weight-side work of a step (loading the blocks, Q8_0's absolute values and sign mask, Q4_0's
// nibble unpacking, the weights' scales) is done once for all J rows. A step of a few rows
// (batched decode, LazyLLM's revived rows) is bound by that arithmetic, not by reading the
// weights.
template <int J>
LAZYLLM_TARGET_VNNI void dot_q8_0_rows(const qblock::Q8_0* w, int64_t nb, const QuantizedRow* x, float* out) {
  __m512 acc[J];
  for (int j = 0; j < J; ++j) acc[j] = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const __m512i wv =
        _mm512_inserti64x4(_mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs))),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b + 1].qs)), 1);
    const __mmask64 negative = _mm512_movepi8_mask(wv);
    const __m512i magnitude = _mm512_abs_epi8(wv);
    const float d0 = half_to_float(w[b].d), d1 = half_to_float(w[b + 1].d);
    for (int j = 0; j < J; ++j) {
      __m512i xv = _mm512_loadu_si512(x[j].q + b * qblock::kQK);
      xv = _mm512_mask_sub_epi8(xv, negative, _mm512_setzero_si512(), xv);
      const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), magnitude, xv);
      const __m512 s = two_scales(d0 * x[j].d[b], d1 * x[j].d[b + 1]);
      acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[j]);
    }
  }
  for (int j = 0; j < J; ++j) {
    float tail = 0;
    if (b < nb) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs));
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].q + b * qblock::kQK));
      const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv));
      tail = hsum(_mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(half_to_float(w[b].d) * x[j].d[b])));
    }
    out[j] = hsum512(acc[j]) + tail;
  }
}

// Q4_0 codes are 0..15 with an offset of 8: sum((c - 8) x) = sum(c x) - 8 sum(x). Two blocks
// per step: their 32 packed bytes split into low and high nibbles meet activations prepared in
// that order (no byte shuffles), and two 256-bit vpdpbusd sum block b into lanes 0-3 and block
// b + 1 into lanes 4-7. (One 512-bit vpdpbusd instead needs an insert, an extract and an add
// per step, which measured slower on Zen 4.) Four such steps make a group of 8 blocks, finished
// by avx2::q4_0_group, which both kernels share.
LAZYLLM_TARGET_VNNI inline __m256i q4_0_nibble_sums(const avx2::Q4Nibbles& n, const int8_t* pair_x) {
  const auto* xq = reinterpret_cast<const __m256i*>(pair_x);
  const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), n.lo, _mm256_loadu_si256(xq));
  return _mm256_dpbusd_epi32(p, n.hi, _mm256_loadu_si256(xq + 1));
}
LAZYLLM_TARGET_VNNI inline __m256i q4_0_pair_sums(const qblock::Q4_0* w, int64_t b, const int8_t* q4) {
  return q4_0_nibble_sums(avx2::q4_0_pair_nibbles(w, b), q4 + b * qblock::kQK);
}

// One row (the decode of one token), called directly: the pairs' unpacking and sums interleaved
// measured a few percent faster for one row than the multi-row kernel below at J = 1 through
// dot_rows_vnni (lazyllm_bench_matmul).
LAZYLLM_TARGET_VNNI float dot_q4_0(const qblock::Q4_0* w, int64_t nb, const QuantizedRow& x) {
  const int64_t paired = nb / 2 * 2;
  __m256 acc = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 8 <= paired; b += 8) {
    const __m256i s[4] = {q4_0_pair_sums(w, b, x.q4), q4_0_pair_sums(w, b + 2, x.q4), q4_0_pair_sums(w, b + 4, x.q4),
                          q4_0_pair_sums(w, b + 6, x.q4)};
    acc = avx2::q4_0_group(s, w, b, paired, x, acc);
  }
  if (b < paired) {
    __m256i s[4];
    for (int j = 0; j < 4; ++j) s[j] = b + 2 * j < paired ? q4_0_pair_sums(w, b + 2 * j, x.q4) : _mm256_setzero_si256();
    acc = avx2::q4_0_group(s, w, b, paired, x, acc);
  }
  return hsum(acc) + (paired < nb ? avx2::q4_0_last_block(w, paired, x) : 0.0f);
}

// One group of up to 8 blocks (`pairs` pairs from b; the sums of missing pairs are 0) for J rows.
template <int J>
LAZYLLM_TARGET_VNNI inline void q4_0_group_rows(const qblock::Q4_0* w, int64_t b, int pairs, int64_t paired,
                                                const QuantizedRow* x, __m256* acc) {
  avx2::Q4Nibbles n[4];  // the group's nibbles, unpacked once for all J rows
  for (int i = 0; i < pairs; ++i) n[i] = avx2::q4_0_pair_nibbles(w, b + 2 * i);
  for (int j = 0; j < J; ++j) {
    __m256i s[4];
    for (int i = 0; i < 4; ++i)
      s[i] = i < pairs ? q4_0_nibble_sums(n[i], x[j].q4 + (b + 2 * i) * qblock::kQK) : _mm256_setzero_si256();
    acc[j] = avx2::q4_0_group(s, w, b, paired, x[j], acc[j]);
  }
}

template <int J>
LAZYLLM_TARGET_VNNI void dot_q4_0_rows(const qblock::Q4_0* w, int64_t nb, const QuantizedRow* x, float* out) {
  const int64_t paired = nb / 2 * 2;
  __m256 acc[J];
  for (int j = 0; j < J; ++j) acc[j] = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 8 <= paired; b += 8) q4_0_group_rows<J>(w, b, 4, paired, x, acc);  // whole groups: 4 pairs
  if (b < paired) q4_0_group_rows<J>(w, b, static_cast<int>((paired - b) / 2), paired, x, acc);
  for (int j = 0; j < J; ++j) out[j] = hsum(acc[j]) + (paired < nb ? avx2::q4_0_last_block(w, paired, x[j]) : 0.0f);
}

// Up to 4 activation rows at a time against weight row `row` (Q8_0 or Q4_0), into y[j * ldy].
LAZYLLM_TARGET_VNNI void dot_rows_vnni(bool q8, const uint8_t* row, int64_t nb, const QuantizedRow* x, int nx, float* y,
                                       int64_t ldy) {
  const auto* r8 = reinterpret_cast<const qblock::Q8_0*>(row);
  const auto* r4 = reinterpret_cast<const qblock::Q4_0*>(row);
  float out[4];
  for (int j0 = 0; j0 < nx; j0 += 4) {
    const int n = std::min(4, nx - j0);
    switch (n) {
      case 1: q8 ? dot_q8_0_rows<1>(r8, nb, x + j0, out) : void(out[0] = dot_q4_0(r4, nb, x[j0])); break;
      case 2: q8 ? dot_q8_0_rows<2>(r8, nb, x + j0, out) : dot_q4_0_rows<2>(r4, nb, x + j0, out); break;
      case 3: q8 ? dot_q8_0_rows<3>(r8, nb, x + j0, out) : dot_q4_0_rows<3>(r4, nb, x + j0, out); break;
      default: q8 ? dot_q8_0_rows<4>(r8, nb, x + j0, out) : dot_q4_0_rows<4>(r4, nb, x + j0, out); break;
    }
    for (int j = 0; j < n; ++j) y[(j0 + j) * ldy] = out[j];
  }
}

// Decode streams every weight once; prefetching the weight row that starts at least this many
// bytes ahead keeps more of the stream in flight than the hardware prefetchers do. On 2 Emerald
// Rapids cores (2 threads, tinyllama-1.1b, alternating runs) decode of one row went from 14.8 to
// 19.4 tok/s (Q8_0), 25.7 to 38.0 (Q4_0), 22.6 to 30.3 (Q4_K), 17.0 to 22.6 (Q6_K); 2 KiB ahead
// read 2-8% lower and 8 KiB 1-3% lower. Steps of a few rows gain too (Q8_0, 2 / 4 rows: 10.4-11.0
// / 7.2-7.5 to 12.4-14.4 / 7.9-9.3 GB/s of weights, lazyllm_bench_matmul; K-quants unchanged).
constexpr int64_t kPrefetchAhead = 4096;

// Rows of `stride` bytes to prefetch ahead: the first row at least kPrefetchAhead bytes on.
int64_t prefetch_rows(int64_t stride) { return (kPrefetchAhead + stride - 1) / stride; }

// Prefetches row j (of `rows`, `stride` bytes each from w) into L2. Always inlined: to GCC a
// prefetch has no side effects, so a call left out of line is a call to a pure void function and
// is dropped. No target attribute, which would keep it out of the untargeted caller.
__attribute__((always_inline)) inline void prefetch_row(const uint8_t* w, int64_t stride, int64_t j, int64_t rows) {
  if (j >= rows) return;
  const char* p = reinterpret_cast<const char*>(w + j * stride);
  for (int64_t off = 0; off < stride; off += 64) _mm_prefetch(p + off, _MM_HINT_T1);
}

}  // namespace

void dot_rows_int8(DType t, const uint8_t* w, int64_t stride, int64_t rows, int64_t k, const QuantizedRow* x,
                   int nx, float* y, int64_t ldy) {
  if (!int8_dot_supported(t)) throw std::logic_error("dot_rows_int8: no integer kernel for this type/CPU");
  if (t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K) {
    for (int j = 0; j < nx && t == DType::Q6_K; ++j)
      if (x[j].sum16 == nullptr) throw std::logic_error("dot_rows_int8: Q6_K needs the activations' sum16");
    const int64_t nsb = k / qblock::kQKK, ahead = prefetch_rows(stride);
    for (int64_t i = 0; i < rows; ++i) {
      const uint8_t* row = w + i * stride;
      prefetch_row(w, stride, i + ahead, rows);
      for (int j = 0; j < nx; ++j) {
        float& out = y[j * ldy + i];
        if (t == DType::Q4_K) out = avx2::dot_affine_k(reinterpret_cast<const qblock::Q4_K*>(row), nsb, x[j]);
        else if (t == DType::Q5_K) out = avx2::dot_affine_k(reinterpret_cast<const qblock::Q5_K*>(row), nsb, x[j]);
        else out = avx2::dot_q6_k(reinterpret_cast<const qblock::Q6_K*>(row), nsb, x[j]);
      }
    }
    return;
  }
  const Int8Kernel kernel = int8_kernel();
  const int64_t nb = k / qblock::kQK;
  const bool q8 = t == DType::Q8_0;
  const int64_t ahead = prefetch_rows(stride);
  for (int64_t i = 0; i < rows; ++i) {
    const uint8_t* row = w + i * stride;
    prefetch_row(w, stride, i + ahead, rows);
    if (kernel == Int8Kernel::kVnni512) {
      if (nx == 1 && !q8) y[i] = dot_q4_0(reinterpret_cast<const qblock::Q4_0*>(row), nb, x[0]);
      else dot_rows_vnni(q8, row, nb, x, nx, y + i, ldy);
      continue;
    }
    const auto* r8 = reinterpret_cast<const qblock::Q8_0*>(row);
    const auto* r4 = reinterpret_cast<const qblock::Q4_0*>(row);
    for (int j = 0; j < nx; ++j) y[j * ldy + i] = q8 ? avx2::dot_q8_0(r8, nb, x[j]) : avx2::dot_q4_0(r4, nb, x[j]);
  }
}

#else

bool int8_dot_supported(DType) { return false; }
std::string_view int8_dot_kernel_name() { return "none"; }
void dot_rows_int8(DType, const uint8_t*, int64_t, int64_t, int64_t, const QuantizedRow*, int, float*, int64_t) {
  throw std::logic_error("dot_rows_int8: no integer kernel on this platform");
}

#endif

}  // namespace lazyllm::kernels
