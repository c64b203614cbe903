// Half/bfloat16 conversions and the encoders of every weight format. Decoding goes through the
// SIMD kernels (dot_kernels.cpp) so the matmul paths and dequantize_row agree exactly.
#include "kernels/cpu/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/cpu/dot_kernels.h"
#include "kernels/cpu/quant_blocks.h"

namespace lazyllm {
namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

int nearest_int(float x) { return static_cast<int>(std::lround(x)); }

// ---- Q4_0 / Q8_0: ggml's reference quantizers (quantize_row_q*_0_ref) -------------------

void quantize_q4_0(const float* x, qblock::Q4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qblock::kQK) {
    // The value of largest magnitude, sign kept, maps to -8 exactly.
    float amax = 0, max = 0;
    for (int j = 0; j < qblock::kQK; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < qblock::kQK / 2; ++j) {
      // +8.5 then truncation: round half up into [0, 16], clamped to 15.
      const int lo = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int hi = std::min(15, static_cast<int>(x[j + 16] * id + 8.5f));
      y[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void quantize_q8_0(const float* x, qblock::Q8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qblock::kQK) {
    float amax = 0;
    for (int j = 0; j < qblock::kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < qblock::kQK; ++j) y[i].qs[j] = static_cast<int8_t>(std::lround(x[j] * id));
  }
}

// ---- Q4_K / Q5_K: simple reference quantizer ------------------------------------------
// Each group of 32 gets the affine range [min(0, lo), hi] over the format's levels (15 or 31);
// group scales and mins are then quantized to 6 bits against the super-block's largest, and q
// is rounded against the decoded (f16 and 6-bit) scale and min so the stored block is
// self-consistent.

void pack_scale_min_k4(int j, int sc, int m, uint8_t* s) {
  if (j < 4) {
    s[j] |= static_cast<uint8_t>(sc);
    s[j + 4] |= static_cast<uint8_t>(m);
  } else {
    s[j + 4] |= static_cast<uint8_t>((sc & 0x0F) | ((m & 0x0F) << 4));
    s[j - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
    s[j] |= static_cast<uint8_t>((m >> 4) << 6);
  }
}

// Fills the header of a Q4_K-style super-block (d, dmin, scales; zeroed first) for the 256
// values x with codes 0..max_q, and writes each value's code to q.
template <class Block>
void quantize_affine_k(const float* x, int max_q, Block& b, uint8_t* q) {
  float scale[8], min[8], max_scale = 0, max_min = 0;
  for (int g = 0; g < 8; ++g) {
    const float* v = x + 32 * g;
    const float lo = std::min(0.0f, *std::min_element(v, v + 32));
    const float hi = std::max(lo, *std::max_element(v, v + 32));
    scale[g] = (hi - lo) / static_cast<float>(max_q);
    min[g] = -lo;
    max_scale = std::max(max_scale, scale[g]);
    max_min = std::max(max_min, min[g]);
  }
  std::memset(&b, 0, sizeof(b));
  b.d = fp32_to_fp16(max_scale / 63);
  b.dmin = fp32_to_fp16(max_min / 63);
  const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
  for (int g = 0; g < 8; ++g) {
    const int sc = d > 0 ? std::clamp(nearest_int(scale[g] / d), 0, 63) : 0;
    const int m = dmin > 0 ? std::clamp(nearest_int(min[g] / dmin), 0, 63) : 0;
    pack_scale_min_k4(g, sc, m, b.scales);
  }
  for (int g = 0; g < 8; ++g) {
    int sc, m;
    qblock::scale_min_k4(g, b.scales, &sc, &m);
    const float gd = d * static_cast<float>(sc), gm = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l)
      q[32 * g + l] = static_cast<uint8_t>(gd > 0 ? std::clamp(nearest_int((x[32 * g + l] + gm) / gd), 0, max_q) : 0);
  }
}

void quantize_q4_k(const float* x, qblock::Q4_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qblock::kQKK) {
    uint8_t q[qblock::kQKK];
    quantize_affine_k(x, 15, y[i], q);
    // Group 2c lives in the low nibbles of qs[32c ..], group 2c + 1 in the high ones.
    for (int g = 0; g < 8; ++g)
      for (int l = 0; l < 32; ++l) y[i].qs[32 * (g / 2) + l] |= static_cast<uint8_t>(g % 2 == 0 ? q[32 * g + l] : q[32 * g + l] << 4);
  }
}

void quantize_q5_k(const float* x, qblock::Q5_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qblock::kQKK) {
    uint8_t q[qblock::kQKK];
    quantize_affine_k(x, 31, y[i], q);
    // The low 4 bits as Q4_K's nibbles; group g's fifth bits are bit g of qh[0 .. 31].
    for (int g = 0; g < 8; ++g)
      for (int l = 0; l < 32; ++l) {
        const int v = q[32 * g + l];
        y[i].qs[32 * (g / 2) + l] |= static_cast<uint8_t>(g % 2 == 0 ? (v & 0x0F) : (v & 0x0F) << 4);
        y[i].qh[l] |= static_cast<uint8_t>((v >> 4) << g);
      }
  }
}

// ---- Q6_K: simple reference quantizer -------------------------------------------------
// Each group of 16 is scaled so its largest magnitude maps to 31; group scales are quantized
// to 8 bits against the super-block's largest.

void quantize_q6_k(const float* x, qblock::Q6_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += qblock::kQKK) {
    float scale[16], max_scale = 0;
    for (int g = 0; g < 16; ++g) {
      float amax = 0;
      for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * g + l]));
      scale[g] = amax / 31;
      max_scale = std::max(max_scale, scale[g]);
    }
    qblock::Q6_K& b = y[i];
    std::memset(&b, 0, sizeof(b));
    b.d = fp32_to_fp16(max_scale / 127);
    const float d = fp16_to_fp32(b.d);
    uint8_t q[qblock::kQKK];  // biased values 0..63
    for (int g = 0; g < 16; ++g) {
      b.scales[g] = static_cast<int8_t>(d > 0 ? std::clamp(nearest_int(scale[g] / d), 0, 127) : 0);
      const float gd = d * static_cast<float>(b.scales[g]);
      for (int l = 0; l < 16; ++l)
        q[16 * g + l] = static_cast<uint8_t>(32 + (gd > 0 ? std::clamp(nearest_int(x[16 * g + l] / gd), -32, 31) : 0));
    }
    for (int h = 0; h < 2; ++h) {
      const uint8_t* v = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        b.ql[64 * h + l] = static_cast<uint8_t>((v[l] & 0x0F) | ((v[l + 64] & 0x0F) << 4));
        b.ql[64 * h + l + 32] = static_cast<uint8_t>((v[l + 32] & 0x0F) | ((v[l + 96] & 0x0F) << 4));
        b.qh[32 * h + l] =
            static_cast<uint8_t>((v[l] >> 4) | ((v[l + 32] >> 4) << 2) | ((v[l + 64] >> 4) << 4) | ((v[l + 96] >> 4) << 6));
      }
    }
  }
}

void check_blocks(DType t, int64_t n) {
  if (n < 0 || n % dtype_info(t).block_elems != 0)
    throw std::invalid_argument("quant: element count is not a multiple of the block size");
}

}  // namespace

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  if (exp == 0x1F) return bits_float(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
    const float v = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t fp32_to_fp16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  uint32_t a = u & 0x7FFFFFFF;
  if (a > 0x7F800000) return sign | 0x7E00 | static_cast<uint16_t>((a >> 13) & 0x3FF);  // NaN stays NaN
  if (a >= 0x477FF000) return sign | 0x7C00;  // >= 65520 rounds to infinity
  if (a < 0x38800000) {
    // Below the smallest normal half: adding 0.5 makes the float adder round to a multiple
    // of 2^-24 (the half subnormal step), nearest-even; the low bits are then the result.
    const float r = bits_float(a) + 0.5f;
    return sign | static_cast<uint16_t>(float_bits(r) - 0x3F000000u);
  }
  // Normal: rebias the exponent and round the 13 dropped bits to nearest-even.
  a -= uint32_t{127 - 15} << 23;
  a += 0xFFF + ((a >> 13) & 1);
  return sign | static_cast<uint16_t>(a >> 13);
}

float bf16_to_fp32(uint16_t h) { return bits_float(uint32_t{h} << 16); }

uint16_t fp32_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  return static_cast<uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  check_blocks(t, n);
  kernels::dequantize_rows(t, static_cast<const uint8_t*>(src), 0, 1, n, dst, 0);
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  check_blocks(t, n);
  const DTypeInfo& info = dtype_info(t);
  const int64_t nb = n / info.block_elems;
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::F16:
    case DType::BF16: {
      auto* out = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = t == DType::F16 ? fp32_to_fp16(src[i]) : fp32_to_bf16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    }
    case DType::Q4_0: return quantize_q4_0(src, static_cast<qblock::Q4_0*>(dst), nb);
    case DType::Q8_0: return quantize_q8_0(src, static_cast<qblock::Q8_0*>(dst), nb);
    case DType::Q4_K: return quantize_q4_k(src, static_cast<qblock::Q4_K*>(dst), nb);
    case DType::Q5_K: return quantize_q5_k(src, static_cast<qblock::Q5_K*>(dst), nb);
    case DType::Q6_K: return quantize_q6_k(src, static_cast<qblock::Q6_K*>(dst), nb);
  }
  throw std::invalid_argument("quantize_row: unsupported type");
}

}  // namespace lazyllm
