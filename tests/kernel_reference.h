// Reference decoders and matmul checks shared by the kernel tests: an element-by-element decoder
// written from the GGUF block layouts, random blocks, and a double-precision matmul reference.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quant.h"

namespace lazyllm::test {

inline constexpr DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0,
                                      DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline void wr16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xFF);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// Forces the bf16 prefill GEMM on or off for a scope (kernels::prefer_bf16_gemm), so its path is
// tested on every CPU that runs it, also where it is not the default.
class Bf16GemmScope {
 public:
  explicit Bf16GemmScope(bool on) : saved_(kernels::bf16_gemm_forced()) { kernels::prefer_bf16_gemm(on); }
  ~Bf16GemmScope() { kernels::prefer_bf16_gemm(saved_); }
  Bf16GemmScope(const Bf16GemmScope&) = delete;
  Bf16GemmScope& operator=(const Bf16GemmScope&) = delete;

 private:
  std::optional<bool> saved_;
};

// IEEE binary16 decoded with plain arithmetic.
inline double ref_half(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v;
  if (e == 31) v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else if (e == 0) v = std::ldexp(m, -24);
  else v = std::ldexp(1024 + m, e - 25);
  return s ? -v : v;
}

// ---- reference decoders: element by element, straight from the block layouts ----------

inline double ref_q4_0(const uint8_t* b, int e) {  // 18-byte block: f16 d, 16 bytes of nibbles
  const uint8_t byte = b[2 + e % 16];
  const int q = e < 16 ? (byte & 15) : (byte >> 4);
  return ref_half(rd16(b)) * (q - 8);
}

inline double ref_q8_0(const uint8_t* b, int e) {  // 34-byte block: f16 d, 32 int8
  return ref_half(rd16(b)) * static_cast<int8_t>(b[2 + e]);
}

inline double ref_q4_k(const uint8_t* b, int e) {  // 144 bytes: d, dmin, scales[12], qs[128]
  const double d = ref_half(rd16(b)), dmin = ref_half(rd16(b + 2));
  const uint8_t* s = b + 4;
  const uint8_t* qs = b + 16;
  const int g = e / 32, l = e % 32;
  int sc, m;
  if (g < 4) {
    sc = s[g] & 63;
    m = s[g + 4] & 63;
  } else {
    sc = (s[g + 4] & 15) | ((s[g - 4] >> 6) << 4);
    m = (s[g + 4] >> 4) | ((s[g] >> 6) << 4);
  }
  const uint8_t byte = qs[32 * (g / 2) + l];
  const int q = g % 2 == 0 ? (byte & 15) : (byte >> 4);
  return d * sc * q - dmin * m;
}

// 176 bytes: d, dmin, scales[12] (packed as Q4_K's), qh[32], qs[128]. Element 32 g + l of
// group g: the nibble of qs[32 (g / 2) + l] (low for even g, high for odd), plus 16 when bit g
// of qh[l] is set; value d * sc * q - dmin * m.
inline double ref_q5_k(const uint8_t* b, int e) {
  const double d = ref_half(rd16(b)), dmin = ref_half(rd16(b + 2));
  const uint8_t* s = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  const int g = e / 32, l = e % 32;
  int sc, m;
  if (g < 4) {
    sc = s[g] & 63;
    m = s[g + 4] & 63;
  } else {
    sc = (s[g + 4] & 15) | ((s[g - 4] >> 6) << 4);
    m = (s[g + 4] >> 4) | ((s[g] >> 6) << 4);
  }
  const uint8_t byte = qs[32 * (g / 2) + l];
  const int q = (g % 2 == 0 ? (byte & 15) : (byte >> 4)) + (((qh[l] >> g) & 1) ? 16 : 0);
  return d * sc * q - dmin * m;
}

inline double ref_q6_k(const uint8_t* b, int e) {  // 210 bytes: ql[128], qh[64], scales[16] (int8), d
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const double d = ref_half(rd16(b + 208));
  const int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
  const uint8_t lbyte = ql[64 * half + l + 32 * (quarter % 2)];
  const int low = quarter < 2 ? (lbyte & 15) : (lbyte >> 4);
  const int high = (qh[32 * half + l] >> (2 * quarter)) & 3;
  return d * sc[e / 16] * ((low | (high << 4)) - 32);
}

inline double ref_value(DType t, const uint8_t* data, int64_t i) {
  switch (t) {
    case DType::F32: {
      float f;
      std::memcpy(&f, data + 4 * i, 4);
      return f;
    }
    case DType::F16: return ref_half(rd16(data + 2 * i));
    case DType::BF16: {
      const uint32_t u = uint32_t{rd16(data + 2 * i)} << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case DType::Q4_0: return ref_q4_0(data + 18 * (i / 32), static_cast<int>(i % 32));
    case DType::Q8_0: return ref_q8_0(data + 34 * (i / 32), static_cast<int>(i % 32));
    case DType::Q4_K: return ref_q4_k(data + 144 * (i / 256), static_cast<int>(i % 256));
    case DType::Q5_K: return ref_q5_k(data + 176 * (i / 256), static_cast<int>(i % 256));
    case DType::Q6_K: return ref_q6_k(data + 210 * (i / 256), static_cast<int>(i % 256));
  }
  return NAN;
}

// A random finite half in +-[2^-10, 2) (the scale fields of quantized blocks).
inline uint16_t random_scale_half(std::mt19937& rng) {
  std::uniform_int_distribution<int> exp(5, 15), mant(0, 1023), sign(0, 1);
  return static_cast<uint16_t>((sign(rng) << 15) | (exp(rng) << 10) | mant(rng));
}

// Random bytes for every quant and scale field, with valid (finite) half-float scales.
inline std::vector<uint8_t> random_blocks(DType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> data(row_bytes(t, n));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : data) b = static_cast<uint8_t>(byte(rng));
  const DTypeInfo& info = dtype_info(t);
  for (int64_t off = 0; off < static_cast<int64_t>(data.size()); off += info.block_bytes) {
    uint8_t* b = data.data() + off;
    switch (t) {
      case DType::Q4_0:
      case DType::Q8_0: wr16(b, random_scale_half(rng)); break;
      case DType::Q4_K:
      case DType::Q5_K:
        wr16(b, random_scale_half(rng) & 0x7FFF);  // d and dmin are non-negative by design
        wr16(b + 2, random_scale_half(rng) & 0x7FFF);
        break;
      case DType::Q6_K: wr16(b + 208, random_scale_half(rng)); break;
      case DType::F16:
      case DType::BF16:
        if ((rd16(b) & 0x7F80) == 0x7F80 && t == DType::BF16) b[1] &= 0xBF;  // no inf/NaN
        if ((rd16(b) & 0x7C00) == 0x7C00 && t == DType::F16) b[1] &= 0xBB;
        break;
      case DType::F32:
        if ((b[3] & 0x7F) == 0x7F && (b[2] & 0x80)) b[3] &= 0xBF;
        break;
    }
  }
  return data;
}

// A row length that exercises each format's edge cases: several blocks (odd count for the
// 32-blocks), and a length that is no multiple of any vector width for the float formats.
inline int64_t test_cols(DType t) {
  switch (dtype_info(t).block_elems) {
    case 1: return 517;
    case 32: return 7 * 32;
    default: return 3 * 256;
  }
}

struct Weights {
  DType type;
  int64_t rows, cols;
  std::vector<uint8_t> data;
  std::vector<float> deq;  // rows x cols, decoded with dequantize_row

  WeightView view() const { return {type, data.data(), rows, cols}; }
};

inline Weights make_weights(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  Weights w{t, rows, cols, std::vector<uint8_t>(row_bytes(t, cols) * rows), std::vector<float>(rows * cols)};
  std::vector<float> src(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : src) v = nd(rng);
    uint8_t* row = w.data.data() + r * row_bytes(t, cols);
    quantize_row(t, src.data(), row, cols);
    dequantize_row(t, row, w.deq.data() + r * cols, cols);
  }
  return w;
}

inline std::vector<float> make_x(int64_t n, int64_t ldx, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(n * ldx);
  for (auto& v : x) v = nd(rng);
  return x;
}

// Checks Y against sum(w * x) in double; the tolerance scales with sum(|w * x|), which bounds
// the float rounding error of any summation order.
inline void expect_matches_reference(const Weights& w, const std::vector<float>& x, int64_t n, int64_t ldx,
                                     const std::vector<float>& y, int64_t ldy, const std::string& what) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        const double p = static_cast<double>(w.deq[r * w.cols + c]) * x[t * ldx + c];
        ref += p;
        mag += std::fabs(p);
      }
      ASSERT_NEAR(y[t * ldy + r], ref, 1e-5 * mag + 1e-30) << what << " t=" << t << " r=" << r;
    }
}

}  // namespace lazyllm::test
