// Weight formats: half/bfloat16 conversions, decoding against an independent reference
// decoder written from the GGUF block layouts, and encode -> decode round trips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "format/dtype.h"
#include "kernel_reference.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/vec_ops.h"

namespace lazyllm {
namespace {

using namespace test;

// ---- half / bfloat16 ---------------------------------------------------------------

TEST(QuantFp16, DecodesEveryHalfExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double ref = ref_half(static_cast<uint16_t>(h));
    const float got = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      ASSERT_EQ(static_cast<double>(got), ref) << "half 0x" << std::hex << h;
      ASSERT_EQ(std::signbit(got), (h & 0x8000) != 0) << h;
    }
  }
}

TEST(QuantFp16, EncodeRoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(f)))) << h;
    } else {
      ASSERT_EQ(fp32_to_fp16(f), h) << "half 0x" << std::hex << h;
    }
  }
}

// Nearest half found by binary search over the codes, ties to the even code.
uint16_t ref_round_to_half(float f) {
  if (std::isnan(f)) return 0x7E00;
  const bool neg = std::signbit(f);
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65520.0) return static_cast<uint16_t>((neg << 15) | 0x7C00);
  // Largest non-negative half code not above a, then pick it or its successor.
  uint16_t lo = 0;
  for (int bit = 14; bit >= 0; --bit) {
    const uint16_t c = static_cast<uint16_t>(lo | (1 << bit));
    if (c <= 0x7BFF && ref_half(c) <= a) lo = c;
  }
  const double dlo = a - ref_half(lo), dhi = ref_half(static_cast<uint16_t>(lo + 1)) - a;
  uint16_t r = lo;
  if (dhi < dlo || (dhi == dlo && (lo & 1))) r = static_cast<uint16_t>(lo + 1);
  return static_cast<uint16_t>((neg << 15) | r);
}

TEST(QuantFp16, EncodeRoundsToNearestEven) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> bits(0, 0xFFFFFFFFu);
  std::vector<float> cases = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.99f, 65520.0f, 1e9f, -1e9f, 0x1p-24f, 0x1p-25f,
                              0x1.8p-25f, 0x1p-26f, 0x1.002p0f, 0x1.006p0f, 0x1.001p0f, 0x1.003p0f, 6.1e-5f};
  for (int i = 0; i < 200000; ++i) {
    // Bias the exponent into and around the half range so rounding paths are all hit.
    uint32_t u = bits(rng);
    u = (u & 0x807FFFFFu) | ((100u + (u >> 23) % 50u) << 23);
    float f;
    std::memcpy(&f, &u, 4);
    cases.push_back(f);
  }
  for (float f : cases) ASSERT_EQ(fp32_to_fp16(f), ref_round_to_half(f)) << std::hexfloat << f;
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(std::numeric_limits<float>::quiet_NaN()))));
}

// round_to_f16 and f32_to_f16 (vectorized where the CPU converts halves in hardware) equal the
// scalar conversions bit for bit, over the same cases and arrays whose length is no multiple of a vector.
TEST(QuantFp16, RoundToHalfInPlaceMatchesTheScalarRoundTrip) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> bits(0, 0xFFFFFFFFu);
  std::vector<float> x = {0.0f,
                          -0.0f,
                          1.0f,
                          65504.0f,
                          65519.99f,
                          65520.0f,
                          1e9f,
                          -1e9f,
                          0x1p-24f,
                          0x1p-25f,
                          0x1.8p-25f,
                          0x1p-26f,
                          0x1.002p0f,
                          0x1.006p0f,
                          0x1.001p0f,
                          6.1e-5f,
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()};
  for (int i = 0; i < 100003; ++i) {
    uint32_t u = bits(rng);
    u = (u & 0x807FFFFFu) | ((100u + (u >> 23) % 50u) << 23);
    float f;
    std::memcpy(&f, &u, 4);
    x.push_back(f);
  }
  for (int i = 0; i < 1000; ++i) x.push_back(std::ldexp(static_cast<float>(i), -30));  // probabilities' tail
  std::vector<float> got = x;
  round_to_f16(got.data(), static_cast<int64_t>(got.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = fp16_to_fp32(fp32_to_fp16(x[i]));
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &want, 4);
    ASSERT_EQ(a, b) << i << ": " << std::hexfloat << x[i];
  }
  std::vector<uint16_t> codes(x.size());
  f32_to_f16(x.data(), codes.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(codes[i], fp32_to_fp16(x[i])) << i << ": " << std::hexfloat << x[i];
  std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN(), 1.0f};
  round_to_f16(nan.data(), 2);
  EXPECT_TRUE(std::isnan(nan[0]));
  EXPECT_EQ(nan[1], 1.0f);
}

TEST(QuantBf16, ConvertsWithRoundToNearestEven) {
  EXPECT_EQ(bf16_to_fp32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_fp32(0xC000), -2.0f);
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3F80);
  std::mt19937 rng(2);
  std::uniform_int_distribution<uint32_t> bits(0, 0xFFFFFFFFu);
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = bits(rng);
    if (i % 4 == 0) u = (u & 0xFFFF0000u) | 0x8000u;  // exact ties
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(f))));
      continue;
    }
    // Candidates: truncation and the next code up in magnitude (infinity counting as 2^128);
    // the nearer one wins, ties to the even code.
    const uint16_t lo = static_cast<uint16_t>(u >> 16), hi = static_cast<uint16_t>(lo + 1);
    auto value = [](uint16_t c) {
      const double v = bf16_to_fp32(c);
      return std::isinf(v) ? std::copysign(std::ldexp(1.0, 128), v) : v;
    };
    const double dlo = std::fabs(f - value(lo)), dhi = std::fabs(value(hi) - f);
    const uint16_t want = (dhi < dlo || (dhi == dlo && (lo & 1))) ? hi : lo;
    ASSERT_EQ(fp32_to_bf16(f), want) << std::hexfloat << f;
  }
}

// ---- decoding ------------------------------------------------------------------------

class QuantDecode : public ::testing::TestWithParam<DType> {};

TEST_P(QuantDecode, MatchesReferenceDecoderOnRandomBlocks) {
  const DType t = GetParam();
  std::mt19937 rng(7);
  const int64_t n = dtype_info(t).block_elems == 1 ? 1000 + 3 : 8 * 256;
  for (int rep = 0; rep < 20; ++rep) {
    const std::vector<uint8_t> data = random_blocks(t, n, rng);
    std::vector<float> got(n);
    dequantize_row(t, data.data(), got.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double ref = ref_value(t, data.data(), i);
      // Every format decodes with at most one float rounding of the exact value.
      ASSERT_LE(std::fabs(got[i] - ref), 0x1p-24 * std::fabs(ref)) << dtype_name(t) << " element " << i;
    }
  }
}

TEST_P(QuantDecode, ZerosEncodeAndDecodeToZeros) {
  const DType t = GetParam();
  const int64_t n = 512;
  std::vector<float> x(n, 0.0f), y(n, 1.0f);
  std::vector<uint8_t> q(row_bytes(t, n));
  quantize_row(t, x.data(), q.data(), n);
  dequantize_row(t, q.data(), y.data(), n);
  for (float v : y) ASSERT_EQ(v, 0.0f) << dtype_name(t);
}

TEST(QuantEncode, RejectsPartialBlocks) {
  std::vector<float> x(512);
  std::vector<uint8_t> q(1024);
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    EXPECT_THROW(quantize_row(t, x.data(), q.data(), 33), std::invalid_argument) << dtype_name(t);
    EXPECT_THROW(dequantize_row(t, q.data(), x.data(), 33), std::invalid_argument) << dtype_name(t);
  }
}

// ---- encoding ------------------------------------------------------------------------

// Gaussian rows with a few outliers, the shape of real weights.
std::vector<float> weight_like(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng);
  for (int64_t i = 0; i < n; i += 97) x[i] *= 8;
  return x;
}

// Root-mean-square error of decode(encode(x)) relative to the RMS of x.
double relative_rms_error(DType t, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(row_bytes(t, n));
  std::vector<float> y(n);
  quantize_row(t, x.data(), q.data(), n);
  dequantize_row(t, q.data(), y.data(), n);
  double err = 0, ref = 0;
  for (int64_t i = 0; i < n; ++i) {
    err += (y[i] - x[i]) * static_cast<double>(y[i] - x[i]);
    ref += x[i] * static_cast<double>(x[i]);
  }
  return std::sqrt(err / ref);
}

TEST_P(QuantDecode, RoundTripErrorIsWithinFormatPrecision) {
  const DType t = GetParam();
  std::mt19937 rng(11);
  const std::vector<float> x = weight_like(64 * 256, rng);
  // Expected RMS error: about step / sqrt(12) of each format's quantization step.
  double bound = 0;
  switch (t) {
    case DType::F32: bound = 0; break;
    case DType::F16: bound = 0x1p-11; break;
    case DType::BF16: bound = 0x1p-8; break;
    case DType::Q8_0: bound = 0.012; break;
    case DType::Q6_K: bound = 0.04; break;
    case DType::Q4_0: bound = 0.16; break;
    case DType::Q4_K: bound = 0.12; break;
    case DType::Q5_K: bound = 0.06; break;
  }
  const double e = relative_rms_error(t, x);
  EXPECT_LE(e, bound) << dtype_name(t);
  if (t != DType::F32) {
    EXPECT_GT(e, 0) << dtype_name(t);
  }
}

TEST_P(QuantDecode, EncodesLargeAndSmallMagnitudes) {
  const DType t = GetParam();
  std::mt19937 rng(13);
  for (float scale : {1e-2f, 1.0f, 300.0f}) {
    std::vector<float> x = weight_like(4 * 256, rng);
    for (auto& v : x) v *= scale / 0.02f;
    const double e = relative_rms_error(t, x);
    EXPECT_LT(e, t == DType::Q4_0 || t == DType::Q4_K ? 0.2 : 0.05) << dtype_name(t) << " scale " << scale;
  }
}

INSTANTIATE_TEST_SUITE_P(QuantAllTypes, QuantDecode, ::testing::ValuesIn(kAllTypes),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// Element bound for the two ggml reference quantizers: half a step, except Q4_0's one-sided
// clamp (+8 is not representable), plus the f16 rounding of d.
TEST(QuantEncode, Q8_0AndQ4_0ErrorsAreBoundedPerBlock) {
  std::mt19937 rng(17);
  const std::vector<float> x = weight_like(256 * 32, rng);
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    std::vector<uint8_t> q(row_bytes(t, 256 * 32));
    std::vector<float> y(x.size());
    quantize_row(t, x.data(), q.data(), static_cast<int64_t>(x.size()));
    dequantize_row(t, q.data(), y.data(), static_cast<int64_t>(x.size()));
    for (size_t b = 0; b < x.size(); b += 32) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
      const double step = t == DType::Q8_0 ? amax / 127.0 : amax / 8.0;
      const double bound = (t == DType::Q8_0 ? 0.5 : 1.0) * step + 128 * step * 0x1p-11;
      for (int j = 0; j < 32; ++j) ASSERT_LE(std::fabs(y[b + j] - x[b + j]), bound) << dtype_name(t);
    }
  }
}

// The exact codes of ggml's quantize_row_q4_0_ref / q8_0_ref on hand-checked inputs.
TEST(QuantEncode, MatchesGgmlReferenceRounding) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16) * 0.25f;  // -4 .. 3.75
  std::vector<uint8_t> q(34);
  quantize_row(DType::Q4_0, x.data(), q.data(), 32);
  // max |x| is -4 at j = 0, so d = -4 / -8 = 0.5 and q = x / d + 8 (round half up, <= 15).
  EXPECT_EQ(fp16_to_fp32(rd16(q.data())), 0.5f);
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, static_cast<int>(std::floor(x[j] / 0.5 + 8.5)));
    const int hi = std::min(15, static_cast<int>(std::floor(x[j + 16] / 0.5 + 8.5)));
    EXPECT_EQ(q[2 + j], lo | (hi << 4)) << j;
  }
  quantize_row(DType::Q8_0, x.data(), q.data(), 32);
  // d = 4 / 127, q = round-half-away(x * 127 / 4).
  EXPECT_EQ(fp16_to_fp32(rd16(q.data())), fp16_to_fp32(fp32_to_fp16(4.0f / 127)));
  for (int j = 0; j < 32; ++j) EXPECT_EQ(static_cast<int8_t>(q[2 + j]), std::lround(x[j] * (1.0f / (4.0f / 127)))) << j;
}

// Bytes decoded by the reference decoder equal what quantize_row meant to store.
TEST(QuantEncode, KQuantsProduceValidSelfConsistentBlocks) {
  std::mt19937 rng(19);
  const std::vector<float> x = weight_like(8 * 256, rng);
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    std::vector<uint8_t> q(row_bytes(t, 8 * 256));
    std::vector<float> y(x.size());
    quantize_row(t, x.data(), q.data(), static_cast<int64_t>(x.size()));
    dequantize_row(t, q.data(), y.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_TRUE(std::isfinite(y[i]));
      ASSERT_NEAR(y[i], ref_value(t, q.data(), static_cast<int64_t>(i)), 1e-6);
    }
  }
}

}  // namespace
}  // namespace lazyllm
