// Fused dequantize+dot and dequantize kernels for every weight format, written once with
// Highway and compiled for each instruction set (foreach_target); dispatch picks the best one
// for the running CPU, within the cap of cpu_features.h.
//
// Vectors are capped at 16 floats so one vector never spans two Q6_K groups (16 values); the
// code is otherwise independent of the vector width (AVX-512: 16, AVX2: 8, NEON/SSE: 4).
// AVX-512 targets decode 4-bit codes through a 16-entry table in a register instead.
// Each kernel handles NX (1..4) activation rows at once so small batches decode every weight
// only once. The reduction order for one (row, x) pair is the same for every NX. Vectors are
// never array elements or struct members (SVE's sizeless types forbid both; see Rows).
//
// Decoding a weight costs a widening, a conversion and an FMA per lane, against ~1 wide
// vector op per cycle on Zen 4: with float activations the 4-bit formats are compute-bound
// at ~15-18 G weights/s per core, the 8/16/32-bit ones memory-bound.
#include "kernels/cpu/dot_kernels.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quant_blocks.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/dot_kernels.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lazyllm {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::CappedTag<float, 16>;
using DI32 = hn::RebindToSigned<DF>;
using DU8 = hn::Rebind<uint8_t, DF>;
using DI8 = hn::Rebind<int8_t, DF>;
using VF = hn::Vec<DF>;
using VU8 = hn::Vec<DU8>;
using VI8 = hn::Vec<DI8>;
using DI16 = hn::Rebind<int16_t, DF>;
using VI16 = hn::Vec<DI16>;

constexpr int kMaxNX = 4;  // activation rows per kernel call
// Row segment each kernel call covers: a multiple of every block size, and small enough
// that kMaxNX segments of x (16 KiB) stay in L1 while a batch walks many weight rows.
constexpr int64_t kSegment = 1024;
// Decode prefetches weights in software once x exceeds this size, this far ahead.
constexpr int64_t kPrefetchAboveXBytes = 12 * 1024;
constexpr int64_t kPrefetchBytes = 8 * 1024;

// ---- per-activation-row accumulators ----------------------------------------------------
// Accumulators for the NX activation rows are separate variables: SVE vectors are sizeless
// types, which cannot be array elements or struct members (references to them can). Rows names
// four such variables; ForRows<NX>(f) calls f(j) for each row j < NX with j a compile-time
// index, so rows[j] is one variable and the unrolled code is the same as over an array.

// Lambdas that take or capture vectors are forced inline, or the vectors they name may go
// through memory (GCC leaves larger ones, called several times, out of line on Arm); HWY_ATTR
// gives them the target's instruction set.
#ifndef LAZYLLM_VEC_LAMBDA
#define LAZYLLM_VEC_LAMBDA HWY_ATTR __attribute__((always_inline))
#endif

template <int J>
using RowIndex = std::integral_constant<int, J>;

template <class V>
struct Rows {
  V &r0, &r1, &r2, &r3;
  template <int J>
  HWY_INLINE V& operator[](RowIndex<J>) const {
    static_assert(J < kMaxNX);
    if constexpr (J == 0) return r0;
    else if constexpr (J == 1) return r1;
    else if constexpr (J == 2) return r2;
    else return r3;
  }
};

template <int NX, class F>
HWY_INLINE void ForRows(F&& f) {
  static_assert(NX >= 1 && NX <= kMaxNX);
  f(RowIndex<0>());
  if constexpr (NX > 1) f(RowIndex<1>());
  if constexpr (NX > 2) f(RowIndex<2>());
  if constexpr (NX > 3) f(RowIndex<3>());
}

// ---- scalar and vector decoding helpers ------------------------------------------------

HWY_INLINE float HalfToFloat(const uint16_t* h) {
  // One-lane vector conversion: a single instruction where the target has F16C / NEON fp16.
  using D1 = hn::CappedTag<float, 1>;
  const hn::Rebind<hwy::float16_t, D1> dh;
  return hn::GetLane(hn::PromoteTo(D1(), hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(h))));
}

// The f16 scales of nb consecutive blocks (field `d`) as floats. Gathering the halves first
// and converting them a vector at a time is much cheaper than one conversion per block.
template <class Block>
HWY_INLINE void BlockScales(const Block* b, int64_t nb, float* out) {
  const DF df;
  const hn::Rebind<hwy::float16_t, DF> dh;
  const int64_t N = hn::Lanes(df);
  HWY_ALIGN uint16_t h[kSegment / qblock::kQK];
  for (int64_t i = 0; i < nb; ++i) h[i] = b[i].d;
  int64_t i = 0;
  for (; i + N <= nb; i += N) hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(h + i))), df, out + i);
  for (; i < nb; ++i) out[i] = HalfToFloat(h + i);
}

HWY_INLINE VF U8ToF(VU8 v) { return hn::ConvertTo(DF(), hn::PromoteTo(DI32(), v)); }
HWY_INLINE VF I8ToF(VI8 v) { return hn::ConvertTo(DF(), hn::PromoteTo(DI32(), v)); }
// Unsigned q minus a bias (q < 128), as floats.
HWY_INLINE VF BiasedToF(VU8 q, int bias) {
  const DI8 di8;
  return I8ToF(hn::Sub(hn::BitCast(di8, q), hn::Set(di8, static_cast<int8_t>(bias))));
}
HWY_INLINE VU8 LowNibbles(VU8 v) { return hn::And(v, hn::Set(DU8(), 0x0F)); }
HWY_INLINE VU8 HighNibbles(VU8 v) { return hn::ShiftRight<4>(v); }

HWY_INLINE float ReduceSum(VF v) { return hn::GetLane(hn::SumOfLanes(DF(), v)); }

// Decoded 6-bit Q6_K values (q - 32 not yet applied) for elements l, l+32, l+64, l+96 of a
// 128-element half (q0..q3); ql/qh point at that half.
HWY_INLINE void LoadQ6(const uint8_t* ql, const uint8_t* qh, size_t l, VU8& q0, VU8& q1, VU8& q2, VU8& q3) {
  const DU8 du8;
  const VU8 a = hn::LoadU(du8, ql + l), b = hn::LoadU(du8, ql + 32 + l), h = hn::LoadU(du8, qh + l);
  q0 = hn::Or(LowNibbles(a), hn::ShiftLeft<4>(hn::And(h, hn::Set(du8, 0x03))));
  q1 = hn::Or(LowNibbles(b), hn::ShiftLeft<2>(hn::And(h, hn::Set(du8, 0x0C))));
  q2 = hn::Or(HighNibbles(a), hn::And(h, hn::Set(du8, 0x30)));
  q3 = hn::Or(HighNibbles(b), hn::ShiftRight<2>(hn::And(h, hn::Set(du8, 0xC0))));
}

// The 5-bit Q5_K codes of groups 2c (lo) and 2c + 1 (hi), elements l .. l + N - 1: the nibbles
// of qs (as Q4_K) with bits 2c and 2c + 1 of qh as their fifth bits. qs points at the
// super-block's qs + 32 c, qh at its qh.
HWY_INLINE void LoadQ5(const uint8_t* qs, const uint8_t* qh, int c, size_t l, VU8& lo, VU8& hi) {
  const DU8 du8;
  const VU8 v = hn::LoadU(du8, qs + l), h = hn::LoadU(du8, qh + l), one = hn::Set(du8, 1);
  // (h & bit) is 0 or bit; its minimum with 1 is the bit as 0 or 1.
  const VU8 lo_bit = hn::Min(hn::And(h, hn::Set(du8, static_cast<uint8_t>(1 << (2 * c)))), one);
  const VU8 hi_bit = hn::Min(hn::And(h, hn::Set(du8, static_cast<uint8_t>(2 << (2 * c)))), one);
  lo = hn::Or(LowNibbles(v), hn::ShiftLeft<4>(lo_bit));
  hi = hn::Or(HighNibbles(v), hn::ShiftLeft<4>(hi_bit));
}

// Group scale and min of each of the 8 groups of a Q4_K or Q5_K super-block, already
// multiplied by the super-block's d and dmin.
template <class Block>
HWY_INLINE void Q4KScales(const Block& b, float* scale, float* min) {
  const float d = HalfToFloat(&b.d), dmin = HalfToFloat(&b.dmin);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    qblock::scale_min_k4(j, b.scales, &sc, &m);
    scale[j] = d * static_cast<float>(sc);
    min[j] = dmin * static_cast<float>(m);
  }
}

// With 16-lane vectors (AVX-512) a 4-bit code can index a 16-entry table of already
// dequantized floats held in one register: one permute replaces widen + convert + scale.
// (This file is compiled once per target, so the switch is reset on every pass.)
#undef LAZYLLM_NIBBLE_LUT
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
#define LAZYLLM_NIBBLE_LUT 1
using VI32 = hn::Vec<DI32>;
// Bytes widened to 32-bit lanes; vpermps reads only the low 4 bits of each index, so the
// low nibble needs no masking and the high one only a shift.
HWY_INLINE VI32 NibbleBytes(const uint8_t* p) { return hn::PromoteTo(DI32(), hn::LoadU(DU8(), p)); }
HWY_INLINE VF LookupLow(VI32 bytes, VF lut) { return VF{_mm512_permutexvar_ps(bytes.raw, lut.raw)}; }
HWY_INLINE VF LookupHigh(VI32 bytes, VF lut) {
  return VF{_mm512_permutexvar_ps(_mm512_srli_epi32(bytes.raw, 4), lut.raw)};
}
#else
#define LAZYLLM_NIBBLE_LUT 0
#endif

// ---- dequantization ------------------------------------------------------------------

void DequantF32(const uint8_t* src, float* dst, int64_t k) { std::memcpy(dst, src, k * sizeof(float)); }

void DequantF16(const uint8_t* src, float* dst, int64_t k) {
  const DF df;
  const hn::Rebind<hwy::float16_t, DF> dh;
  const auto* h = reinterpret_cast<const hwy::float16_t*>(src);
  const int64_t N = hn::Lanes(df);
  int64_t i = 0;
  for (; i + N <= k; i += N) hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, h + i)), df, dst + i);
  for (; i < k; ++i) dst[i] = HalfToFloat(reinterpret_cast<const uint16_t*>(src) + i);
}

void DequantBF16(const uint8_t* src, float* dst, int64_t k) {
  const DF df;
  const hn::Rebind<hwy::bfloat16_t, DF> db;
  const auto* h = reinterpret_cast<const hwy::bfloat16_t*>(src);
  const int64_t N = hn::Lanes(df);
  int64_t i = 0;
  for (; i + N <= k; i += N) hn::StoreU(hn::PromoteTo(df, hn::LoadU(db, h + i)), df, dst + i);
  for (; i < k; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + 2 * i, 2);
    const uint32_t f = uint32_t{bits} << 16;
    std::memcpy(dst + i, &f, 4);
  }
}

void DequantQ4_0(const uint8_t* src, float* dst, int64_t k) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const auto* b = reinterpret_cast<const qblock::Q4_0*>(src);
  for (int64_t i = 0; i < k / qblock::kQK; ++i, dst += qblock::kQK) {
    const VF d = hn::Set(df, HalfToFloat(&b[i].d));
    for (size_t j = 0; j < qblock::kQK / 2; j += N) {
      const VU8 v = hn::LoadU(DU8(), b[i].qs + j);
      hn::StoreU(hn::Mul(BiasedToF(LowNibbles(v), 8), d), df, dst + j);
      hn::StoreU(hn::Mul(BiasedToF(HighNibbles(v), 8), d), df, dst + 16 + j);
    }
  }
}

void DequantQ8_0(const uint8_t* src, float* dst, int64_t k) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const auto* b = reinterpret_cast<const qblock::Q8_0*>(src);
  for (int64_t i = 0; i < k / qblock::kQK; ++i, dst += qblock::kQK) {
    const VF d = hn::Set(df, HalfToFloat(&b[i].d));
    for (size_t j = 0; j < qblock::kQK; j += N) hn::StoreU(hn::Mul(I8ToF(hn::LoadU(DI8(), b[i].qs + j)), d), df, dst + j);
  }
}

void DequantQ4_K(const uint8_t* src, float* dst, int64_t k) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const auto* b = reinterpret_cast<const qblock::Q4_K*>(src);
  for (int64_t i = 0; i < k / qblock::kQKK; ++i, dst += qblock::kQKK) {
    float scale[8], min[8];
    Q4KScales(b[i], scale, min);
    for (int c = 0; c < 4; ++c) {
      const VF s0 = hn::Set(df, scale[2 * c]), m0 = hn::Set(df, min[2 * c]);
      const VF s1 = hn::Set(df, scale[2 * c + 1]), m1 = hn::Set(df, min[2 * c + 1]);
      for (size_t l = 0; l < 32; l += N) {
        const VU8 v = hn::LoadU(DU8(), b[i].qs + 32 * c + l);
        hn::StoreU(hn::Sub(hn::Mul(s0, U8ToF(LowNibbles(v))), m0), df, dst + 64 * c + l);
        hn::StoreU(hn::Sub(hn::Mul(s1, U8ToF(HighNibbles(v))), m1), df, dst + 64 * c + 32 + l);
      }
    }
  }
}

void DequantQ5_K(const uint8_t* src, float* dst, int64_t k) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const auto* b = reinterpret_cast<const qblock::Q5_K*>(src);
  for (int64_t i = 0; i < k / qblock::kQKK; ++i, dst += qblock::kQKK) {
    float scale[8], min[8];
    Q4KScales(b[i], scale, min);
    for (int c = 0; c < 4; ++c) {
      const VF s0 = hn::Set(df, scale[2 * c]), m0 = hn::Set(df, min[2 * c]);
      const VF s1 = hn::Set(df, scale[2 * c + 1]), m1 = hn::Set(df, min[2 * c + 1]);
      for (size_t l = 0; l < 32; l += N) {
        VU8 lo, hi;
        LoadQ5(b[i].qs + 32 * c, b[i].qh, c, l, lo, hi);
        hn::StoreU(hn::Sub(hn::Mul(s0, U8ToF(lo)), m0), df, dst + 64 * c + l);
        hn::StoreU(hn::Sub(hn::Mul(s1, U8ToF(hi)), m1), df, dst + 64 * c + 32 + l);
      }
    }
  }
}

void DequantQ6_K(const uint8_t* src, float* dst, int64_t k) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const auto* b = reinterpret_cast<const qblock::Q6_K*>(src);
  for (int64_t i = 0; i < k / qblock::kQKK; ++i, dst += qblock::kQKK) {
    const float d = HalfToFloat(&b[i].d);
    for (int h = 0; h < 2; ++h) {
      const int8_t* sc = b[i].scales + 8 * h;
      for (size_t l = 0; l < 32; l += N) {
        VU8 q0, q1, q2, q3;
        LoadQ6(b[i].ql + 64 * h, b[i].qh + 32 * h, l, q0, q1, q2, q3);
        auto store = [&](VU8 q, int p) LAZYLLM_VEC_LAMBDA {
          const VF s = hn::Set(df, d * static_cast<float>(sc[l / 16 + 2 * p]));
          hn::StoreU(hn::Mul(s, BiasedToF(q, 32)), df, dst + 128 * h + 32 * p + l);
        };
        store(q0, 0);
        store(q1, 1);
        store(q2, 2);
        store(q3, 3);
      }
    }
  }
}

using DequantFn = void (*)(const uint8_t*, float*, int64_t);

DequantFn DequantFor(DType t) {
  switch (t) {
    case DType::F32: return DequantF32;
    case DType::F16: return DequantF16;
    case DType::BF16: return DequantBF16;
    case DType::Q4_0: return DequantQ4_0;
    case DType::Q8_0: return DequantQ8_0;
    case DType::Q4_K: return DequantQ4_K;
    case DType::Q5_K: return DequantQ5_K;
    case DType::Q6_K: return DequantQ6_K;
  }
  return nullptr;
}

void DequantizeRows(DType t, const uint8_t* w, int64_t stride, int64_t rows, int64_t k, float* out, int64_t ldo) {
  const DequantFn fn = DequantFor(t);
  for (int64_t r = 0; r < rows; ++r) fn(w + r * stride, out + r * ldo, k);
}

// ---- fused dot kernels ----------------------------------------------------------------
// Each takes one weight row, NX activation rows x[j] (and their xsums) and writes out[j].

// Plain float-like formats: two accumulators per x, then a scalar tail (k need not be a
// multiple of the vector width for these).
template <int NX, class LoadW, class ScalarW>
HWY_INLINE void DotFloatLike(LoadW load, ScalarW scalar, int64_t k, const float* const* x, float* out) {
  const DF df;
  const int64_t N = hn::Lanes(df);
  VF a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  const Rows<VF> acc_a{a0, a1, a2, a3}, acc_b{b0, b1, b2, b3};
  int64_t i = 0;
  for (; i + 2 * N <= k; i += 2 * N) {
    const VF w0 = load(i), w1 = load(i + N);
    ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA {
      acc_a[j] = hn::MulAdd(w0, hn::LoadU(df, x[j] + i), acc_a[j]);
      acc_b[j] = hn::MulAdd(w1, hn::LoadU(df, x[j] + i + N), acc_b[j]);
    });
  }
  ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA {
    float s = ReduceSum(hn::Add(acc_a[j], acc_b[j]));
    for (int64_t c = i; c < k; ++c) s += scalar(c) * x[j][c];
    out[j] = s;
  });
}

// F32 rows start wherever the file put the tensor (GGUF aligns to 32 bytes), and a 64-byte
// AVX-512 load from a row 32 bytes past a cache line reads two lines each time: f32 decode
// streamed about 1.3x slower than from 64-byte-aligned data. So the values before the first
// vector boundary are taken one by one and the loop loads whole lines. The split depends only
// on the row's address, so every caller gets the same bits for the same row.
template <int NX>
void DotF32(const uint8_t* row, int64_t k, const float* const* x, const float* const*, float* out) {
  const auto vec_bytes = static_cast<uintptr_t>(hn::Lanes(DF()) * sizeof(float));
  const uintptr_t past = reinterpret_cast<uintptr_t>(row) % vec_bytes;
  const int64_t head = past % sizeof(float) != 0
                           ? 0
                           : std::min<int64_t>(k, static_cast<int64_t>((vec_bytes - past) % vec_bytes / sizeof(float)));
  const float* w = reinterpret_cast<const float*>(row) + head;
  const float* xs[NX];
  for (int j = 0; j < NX; ++j) xs[j] = x[j] + head;
  DotFloatLike<NX>([&](int64_t i) LAZYLLM_VEC_LAMBDA { return hn::LoadU(DF(), w + i); },
                   [&](int64_t c) { return w[c]; }, k - head, xs, out);
  for (int j = 0; j < NX; ++j)
    for (int64_t c = 0; c < head; ++c) out[j] += w[c - head] * x[j][c];
}

template <int NX>
void DotF16(const uint8_t* row, int64_t k, const float* const* x, const float* const*, float* out) {
  const auto* h = reinterpret_cast<const hwy::float16_t*>(row);
  const hn::Rebind<hwy::float16_t, DF> dh;
  DotFloatLike<NX>([&](int64_t i) LAZYLLM_VEC_LAMBDA { return hn::PromoteTo(DF(), hn::LoadU(dh, h + i)); },
                   [&](int64_t c) { return HalfToFloat(reinterpret_cast<const uint16_t*>(row) + c); }, k, x, out);
}

template <int NX>
void DotBF16(const uint8_t* row, int64_t k, const float* const* x, const float* const*, float* out) {
  const auto* h = reinterpret_cast<const hwy::bfloat16_t*>(row);
  const hn::Rebind<hwy::bfloat16_t, DF> db;
  DotFloatLike<NX>([&](int64_t i) LAZYLLM_VEC_LAMBDA { return hn::PromoteTo(DF(), hn::LoadU(db, h + i)); },
                   [&](int64_t c) {
                     uint16_t bits;
                     std::memcpy(&bits, row + 2 * c, 2);
                     const uint32_t f = uint32_t{bits} << 16;
                     float v;
                     std::memcpy(&v, &f, 4);
                     return v;
                   },
                   k, x, out);
}

// Q4_0 / Q8_0: per block, sum q * x in a vector, then scale it by d into one of two
// accumulators (even and odd blocks, to halve the dependency chain). The block scales are
// converted up front so the loop can broadcast them straight from memory.
template <int NX, class Block, class BlockDot>
HWY_INLINE void DotBlocks32(const Block* b, int64_t nb, const float* const* x, float* out, BlockDot block_dot) {
  const DF df;
  float d[kSegment / qblock::kQK];
  BlockScales(b, nb, d);
  VF a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
  VF s0 = a0, s1 = a0, s2 = a0, s3 = a0;
  const Rows<VF> acc0{a0, a1, a2, a3}, acc1{e0, e1, e2, e3}, s{s0, s1, s2, s3};
  // Block `i`'s sums (block_dot fills s), scaled into acc.
  auto add_block = [&](int64_t i, const Rows<VF>& acc) LAZYLLM_VEC_LAMBDA {
    block_dot(b[i], i * qblock::kQK, s);
    ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { acc[j] = hn::MulAdd(hn::Set(df, d[i]), s[j], acc[j]); });
  };
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    add_block(i, acc0);
    add_block(i + 1, acc1);
  }
  if (i < nb) add_block(i, acc0);
  ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { out[j] = ReduceSum(hn::Add(acc0[j], acc1[j])); });
}

#if LAZYLLM_NIBBLE_LUT
// Q4_0 with a per-block table d * (q - 8): exactly dequantize_row's values, one FMA each.
template <int NX>
void DotQ4_0(const uint8_t* row, int64_t k, const float* const* x, const float* const*, float* out) {
  const DF df;
  const auto* b = reinterpret_cast<const qblock::Q4_0*>(row);
  const int64_t nb = k / qblock::kQK;
  float d[kSegment / qblock::kQK];
  BlockScales(b, nb, d);
  const VF codes = hn::Iota(df, -8.0f);  // q - 8 for q = 0..15
  VF a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
  const Rows<VF> acc0{a0, a1, a2, a3}, acc1{e0, e1, e2, e3};
  for (int64_t i = 0; i < nb; ++i) {
    const VF lut = hn::Mul(codes, hn::Set(df, d[i]));
    const VI32 bytes = NibbleBytes(b[i].qs);
    const VF lo = LookupLow(bytes, lut), hi = LookupHigh(bytes, lut);
    ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA {
      acc0[j] = hn::MulAdd(lo, hn::LoadU(df, x[j] + i * qblock::kQK), acc0[j]);
      acc1[j] = hn::MulAdd(hi, hn::LoadU(df, x[j] + i * qblock::kQK + 16), acc1[j]);
    });
  }
  ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { out[j] = ReduceSum(hn::Add(acc0[j], acc1[j])); });
}
#else
template <int NX>
void DotQ4_0(const uint8_t* row, int64_t k, const float* const* x, const float* const*, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  DotBlocks32<NX>(reinterpret_cast<const qblock::Q4_0*>(row), k / qblock::kQK, x, out,
                  [&](const qblock::Q4_0& b, int64_t c0, const Rows<VF>& s) LAZYLLM_VEC_LAMBDA {
                    ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { s[j] = hn::Zero(df); });
                    for (size_t l = 0; l < qblock::kQK / 2; l += N) {
                      const VU8 v = hn::LoadU(DU8(), b.qs + l);
                      const VF lo = BiasedToF(LowNibbles(v), 8), hi = BiasedToF(HighNibbles(v), 8);
                      ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA {
                        s[j] = hn::MulAdd(lo, hn::LoadU(df, x[j] + c0 + l), s[j]);
                        s[j] = hn::MulAdd(hi, hn::LoadU(df, x[j] + c0 + 16 + l), s[j]);
                      });
                    }
                  });
}
#endif  // LAZYLLM_NIBBLE_LUT

template <int NX>
void DotQ8_0(const uint8_t* row, int64_t k, const float* const* x, const float* const*, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  DotBlocks32<NX>(
      reinterpret_cast<const qblock::Q8_0*>(row), k / qblock::kQK, x, out,
      [&](const qblock::Q8_0& b, int64_t c0, const Rows<VF>& s) LAZYLLM_VEC_LAMBDA {
        ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { s[j] = hn::Zero(df); });
        for (size_t l = 0; l < qblock::kQK; l += N) {
          const VF w = I8ToF(hn::LoadU(DI8(), b.qs + l));
          ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { s[j] = hn::MulAdd(w, hn::LoadU(df, x[j] + c0 + l), s[j]); });
        }
      });
}

// K-quants multiply each small quant by its group's integer scale in 16-bit lanes (exact:
// |q * sc| < 2^15), so a weight costs one widening, one conversion and one FMA; the
// super-block scale d is applied once per super-block.
HWY_INLINE VF ScaledToF(VI16 q, int scale) {
  return hn::ConvertTo(DF(), hn::PromoteTo(DI32(), hn::Mul(q, hn::Set(DI16(), static_cast<int16_t>(scale)))));
}

#if LAZYLLM_NIBBLE_LUT
// Q4_K with a per-group table d * sc * q - dmin * m (dequantize_row's values); the xsums
// are not needed here.
template <int NX>
void DotQ4_K(const uint8_t* row, int64_t k, const float* const* x, const float* const*, float* out) {
  const DF df;
  const auto* b = reinterpret_cast<const qblock::Q4_K*>(row);
  const VF codes = hn::Iota(df, 0.0f);
  VF a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
  const Rows<VF> acc0{a0, a1, a2, a3}, acc1{e0, e1, e2, e3};
  for (int64_t i = 0; i < k / qblock::kQKK; ++i) {
    float scale[8], min[8];
    Q4KScales(b[i], scale, min);
    for (int c = 0; c < 4; ++c) {
      const VF lut_lo = hn::Sub(hn::Mul(hn::Set(df, scale[2 * c]), codes), hn::Set(df, min[2 * c]));
      const VF lut_hi = hn::Sub(hn::Mul(hn::Set(df, scale[2 * c + 1]), codes), hn::Set(df, min[2 * c + 1]));
      const int64_t c0 = i * qblock::kQKK + 64 * c;
      for (int l = 0; l < 32; l += 16) {
        const VI32 bytes = NibbleBytes(b[i].qs + 32 * c + l);
        const VF lo = LookupLow(bytes, lut_lo), hi = LookupHigh(bytes, lut_hi);
        ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA {
          acc0[j] = hn::MulAdd(lo, hn::LoadU(df, x[j] + c0 + l), acc0[j]);
          acc1[j] = hn::MulAdd(hi, hn::LoadU(df, x[j] + c0 + 32 + l), acc1[j]);
        });
      }
    }
  }
  ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { out[j] = ReduceSum(hn::Add(acc0[j], acc1[j])); });
}
#else
// Q4_K: sum_sb d * sum_g sc[g] * sum(q * x)  -  sum_g dmin * m[g] * xsum[g]. The min term
// uses the precomputed group sums of x, so the inner loop only handles the nibbles.
template <int NX>
void DotQ4_K(const uint8_t* row, int64_t k, const float* const* x, const float* const* xsum, float* out) {
  const DF df;
  const DI16 di16;
  const size_t N = hn::Lanes(df);
  const auto* b = reinterpret_cast<const qblock::Q4_K*>(row);
  VF t0 = hn::Zero(df), t1 = t0, t2 = t0, t3 = t0;
  const Rows<VF> tot{t0, t1, t2, t3};
  float mins[NX] = {};
  for (int64_t i = 0; i < k / qblock::kQKK; ++i) {
    int sc[8], m[8];
    for (int g = 0; g < 8; ++g) qblock::scale_min_k4(g, b[i].scales, &sc[g], &m[g]);
    const float dmin = HalfToFloat(&b[i].dmin);
    for (int j = 0; j < NX; ++j)
      for (int g = 0; g < 8; ++g) mins[j] += dmin * static_cast<float>(m[g]) * xsum[j][8 * i + g];
    VF lo0 = hn::Zero(df), lo1 = lo0, lo2 = lo0, lo3 = lo0, hi0 = lo0, hi1 = lo0, hi2 = lo0, hi3 = lo0;
    const Rows<VF> lo_acc{lo0, lo1, lo2, lo3}, hi_acc{hi0, hi1, hi2, hi3};
    for (int c = 0; c < 4; ++c) {
      const int64_t c0 = i * qblock::kQKK + 64 * c;
      for (size_t l = 0; l < 32; l += N) {
        const VI16 v = hn::PromoteTo(di16, hn::LoadU(DU8(), b[i].qs + 32 * c + l));
        const VF lo = ScaledToF(hn::And(v, hn::Set(di16, 0x0F)), sc[2 * c]);
        const VF hi = ScaledToF(hn::ShiftRight<4>(v), sc[2 * c + 1]);
        ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA {
          lo_acc[j] = hn::MulAdd(lo, hn::LoadU(df, x[j] + c0 + l), lo_acc[j]);
          hi_acc[j] = hn::MulAdd(hi, hn::LoadU(df, x[j] + c0 + 32 + l), hi_acc[j]);
        });
      }
    }
    const VF d = hn::Set(df, HalfToFloat(&b[i].d));
    ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { tot[j] = hn::MulAdd(d, hn::Add(lo_acc[j], hi_acc[j]), tot[j]); });
  }
  ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { out[j] = ReduceSum(tot[j]) - mins[j]; });
}
#endif  // LAZYLLM_NIBBLE_LUT

// Q5_K, on every target: as the generic Q4_K kernel, with the fifth bits OR-ed into the
// nibbles (32 codes do not fit the 16-entry register table).
template <int NX>
void DotQ5_K(const uint8_t* row, int64_t k, const float* const* x, const float* const* xsum, float* out) {
  const DF df;
  const DI16 di16;
  const size_t N = hn::Lanes(df);
  const auto* b = reinterpret_cast<const qblock::Q5_K*>(row);
  VF t0 = hn::Zero(df), t1 = t0, t2 = t0, t3 = t0;
  const Rows<VF> tot{t0, t1, t2, t3};
  float mins[NX] = {};
  for (int64_t i = 0; i < k / qblock::kQKK; ++i) {
    int sc[8], m[8];
    for (int g = 0; g < 8; ++g) qblock::scale_min_k4(g, b[i].scales, &sc[g], &m[g]);
    const float dmin = HalfToFloat(&b[i].dmin);
    for (int j = 0; j < NX; ++j)
      for (int g = 0; g < 8; ++g) mins[j] += dmin * static_cast<float>(m[g]) * xsum[j][8 * i + g];
    VF lo0 = hn::Zero(df), lo1 = lo0, lo2 = lo0, lo3 = lo0, hi0 = lo0, hi1 = lo0, hi2 = lo0, hi3 = lo0;
    const Rows<VF> lo_acc{lo0, lo1, lo2, lo3}, hi_acc{hi0, hi1, hi2, hi3};
    for (int c = 0; c < 4; ++c) {
      const int64_t c0 = i * qblock::kQKK + 64 * c;
      for (size_t l = 0; l < 32; l += N) {
        VU8 qlo, qhi;
        LoadQ5(b[i].qs + 32 * c, b[i].qh, c, l, qlo, qhi);
        const VF lo = ScaledToF(hn::PromoteTo(di16, qlo), sc[2 * c]);
        const VF hi = ScaledToF(hn::PromoteTo(di16, qhi), sc[2 * c + 1]);
        ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA {
          lo_acc[j] = hn::MulAdd(lo, hn::LoadU(df, x[j] + c0 + l), lo_acc[j]);
          hi_acc[j] = hn::MulAdd(hi, hn::LoadU(df, x[j] + c0 + 32 + l), hi_acc[j]);
        });
      }
    }
    const VF d = hn::Set(df, HalfToFloat(&b[i].d));
    ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { tot[j] = hn::MulAdd(d, hn::Add(lo_acc[j], hi_acc[j]), tot[j]); });
  }
  ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { out[j] = ReduceSum(tot[j]) - mins[j]; });
}

// Q6_K: sum_sb d * sum_g sc[g] * sum((q - 32) * x), with four accumulators (one per quarter
// of each 128-element half) to keep several FMA chains in flight.
template <int NX>
void DotQ6_K(const uint8_t* row, int64_t k, const float* const* x, const float* const*, float* out) {
  const DF df;
  const DI8 di8;
  const size_t N = hn::Lanes(df);
  const auto* b = reinterpret_cast<const qblock::Q6_K*>(row);
  VF t0 = hn::Zero(df), t1 = t0, t2 = t0, t3 = t0;
  const Rows<VF> tot{t0, t1, t2, t3};
  for (int64_t i = 0; i < k / qblock::kQKK; ++i) {
    // accP: quarter P's accumulators, one per activation row.
    VF a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    VF c0 = a0, c1 = a0, c2 = a0, c3 = a0, d0 = a0, d1 = a0, d2 = a0, d3 = a0;
    const Rows<VF> acc0{a0, a1, a2, a3}, acc1{b0, b1, b2, b3}, acc2{c0, c1, c2, c3}, acc3{d0, d1, d2, d3};
    for (int h = 0; h < 2; ++h) {
      const int8_t* sc = b[i].scales + 8 * h;
      const int64_t col = i * qblock::kQKK + 128 * h;
      for (size_t l = 0; l < 32; l += N) {
        VU8 q0, q1, q2, q3;
        LoadQ6(b[i].ql + 64 * h, b[i].qh + 32 * h, l, q0, q1, q2, q3);
        auto quarter = [&](VU8 q, int p, const Rows<VF>& acc) LAZYLLM_VEC_LAMBDA {
          const VI8 centered = hn::Sub(hn::BitCast(di8, q), hn::Set(di8, 32));
          const VF w = ScaledToF(hn::PromoteTo(DI16(), centered), sc[l / 16 + 2 * p]);
          ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA {
            acc[j] = hn::MulAdd(w, hn::LoadU(df, x[j] + col + 32 * p + l), acc[j]);
          });
        };
        quarter(q0, 0, acc0);
        quarter(q1, 1, acc1);
        quarter(q2, 2, acc2);
        quarter(q3, 3, acc3);
      }
    }
    const VF d = hn::Set(df, HalfToFloat(&b[i].d));
    ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA {
      tot[j] = hn::MulAdd(d, hn::Add(hn::Add(acc0[j], acc1[j]), hn::Add(acc2[j], acc3[j])), tot[j]);
    });
  }
  ForRows<NX>([&](auto j) LAZYLLM_VEC_LAMBDA { out[j] = ReduceSum(tot[j]); });
}

using DotFn = void (*)(const uint8_t*, int64_t, const float* const*, const float* const*, float*);

template <int NX>
DotFn DotFor(DType t) {
  switch (t) {
    case DType::F32: return DotF32<NX>;
    case DType::F16: return DotF16<NX>;
    case DType::BF16: return DotBF16<NX>;
    case DType::Q4_0: return DotQ4_0<NX>;
    case DType::Q8_0: return DotQ8_0<NX>;
    case DType::Q4_K: return DotQ4_K<NX>;
    case DType::Q5_K: return DotQ5_K<NX>;
    case DType::Q6_K: return DotQ6_K<NX>;
  }
  return nullptr;
}

// The Q5_K kernel and the generic Q4_K one subtract their mins through the group sums of x.
int64_t XsumLen(DType t, int64_t k) {
  return t == DType::Q5_K || (t == DType::Q4_K && !LAZYLLM_NIBBLE_LUT) ? k / 32 : 0;
}

// A row's dot product is the sum, in order, of the kernel's results over consecutive
// segments of kSegment values. Single activation rows walk each weight row start to end;
// several walk segment by segment so the segment of x stays in L1 across all the rows of
// the call. Both orders produce the same float operations, hence the same bits.
void DotRows(DType t, const uint8_t* w, int64_t stride, int64_t rows, int64_t k, const float* x, int64_t ldx,
             const float* xsum, int nx, float* y, int64_t ldy) {
  const DTypeInfo& info = dtype_info(t);
  const int64_t xs_len = XsumLen(t, k);
  const DotFn fns[kMaxNX] = {DotFor<1>(t), DotFor<2>(t), DotFor<3>(t), DotFor<4>(t)};
  // Partial dot of rows [r, r + 1) segment [c0, c0 + len) with activation rows [j0, j0 + g).
  auto segment = [&](int64_t r, int64_t c0, int64_t len, int j0, int g) {
    const float* xp[kMaxNX];
    const float* sp[kMaxNX];
    for (int j = 0; j < g; ++j) {
      xp[j] = x + (j0 + j) * ldx + c0;
      sp[j] = xsum ? xsum + (j0 + j) * xs_len + c0 / 32 : nullptr;
    }
    float part[kMaxNX];
    fns[g - 1](w + r * stride + c0 / info.block_elems * info.block_bytes, len, xp, sp, part);
    for (int j = 0; j < g; ++j) {
      float& out = y[(j0 + j) * ldy + r];
      out = c0 == 0 ? part[j] : out + part[j];
    }
  };
  if (nx == 1) {
    // When x no longer sits comfortably in L1, its reloads disturb the hardware prefetchers
    // and DRAM streaming of the weights drops by up to half (measured on Zen 4 for
    // k >= 4096); prefetching the weights into L2 well ahead restores it. F32 rows (4 bytes a
    // value, the widest stream) stream faster without it at every k: TinyLlama f32 decode on
    // the AVX2 kernel 12.8-13.0 tok/s with it, 16.1-16.5 without (alternating runs, Zen 4 capped
    // to AVX2; the AVX-512 kernel 13.2-13.3 against 12.9-13.7).
    const bool prefetch = t != DType::F32 && static_cast<int64_t>(k * sizeof(float)) > kPrefetchAboveXBytes;
    const int64_t seg_bytes = kSegment / info.block_elems * info.block_bytes;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c0 = 0; c0 < k; c0 += kSegment) {
        const uint8_t* seg = w + r * stride + c0 / info.block_elems * info.block_bytes;
        if (prefetch)
          for (int64_t off = 0; off < seg_bytes; off += 64) __builtin_prefetch(seg + kPrefetchBytes + off, 0, 2);
        segment(r, c0, std::min(kSegment, k - c0), 0, 1);
      }
    return;
  }
  for (int64_t c0 = 0; c0 < k; c0 += kSegment)
    for (int j0 = 0; j0 < nx; j0 += kMaxNX)
      for (int64_t r = 0; r < rows; ++r) segment(r, c0, std::min(kSegment, k - c0), j0, std::min(kMaxNX, nx - j0));
}

// Sums of x over consecutive groups of 32 (Q4_K's and Q5_K's mins).
void GroupSums32(const float* x, int64_t k, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  for (int64_t g = 0; g < k / 32; ++g) {
    VF s = hn::Zero(df);
    for (size_t l = 0; l < 32; l += N) s = hn::Add(s, hn::LoadU(df, x + 32 * g + l));
    out[g] = ReduceSum(s);
  }
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace lazyllm
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lazyllm::kernels {

HWY_EXPORT(DequantizeRows);
HWY_EXPORT(DotRows);
HWY_EXPORT(GroupSums32);
HWY_EXPORT(TargetName);
HWY_EXPORT(XsumLen);

void dequantize_rows(DType t, const uint8_t* w, int64_t stride, int64_t rows, int64_t k, float* out, int64_t ldo) {
  LAZYLLM_HWY_DISPATCH(DequantizeRows)(t, w, stride, rows, k, out, ldo);
}

int64_t xsum_len(DType t, int64_t k) { return LAZYLLM_HWY_DISPATCH(XsumLen)(t, k); }

void compute_xsums(DType t, const float* x, int64_t k, float* xsum) {
  if (xsum_len(t, k) > 0) LAZYLLM_HWY_DISPATCH(GroupSums32)(x, k, xsum);
}

void dot_rows(DType t, const uint8_t* w, int64_t stride, int64_t rows, int64_t k, const float* x, int64_t ldx,
              const float* xsum, int nx, float* y, int64_t ldy) {
  LAZYLLM_HWY_DISPATCH(DotRows)(t, w, stride, rows, k, x, ldx, xsum, nx, y, ldy);
}

const char* simd_target_name() { return LAZYLLM_HWY_DISPATCH(TargetName)(); }

}  // namespace lazyllm::kernels
#endif  // HWY_ONCE
