// matmul and dot_row for every weight format against a double-precision reference on the
// dequantized weights, plus reproducibility across runs and thread counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "hwy/targets.h"
#include "kernel_reference.h"
#include "kernels/cpu/attention_products.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dot_int8.h"
#include "kernels/cpu/dot_kernels.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/gemm_f32.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quant.h"
#include "util/thread_pool.h"

namespace lazyllm {
namespace {

using namespace test;

struct Case {
  DType type;
  int64_t n;
};

class MatmulTest : public ::testing::TestWithParam<Case> {};

TEST_P(MatmulTest, MatchesReferenceOnEveryThreadCount) {
  const auto [type, n] = GetParam();
  const int64_t cols = test_cols(type);
  const Weights w = make_weights(type, 37, cols, 1);
  const int64_t ldx = cols + 3, ldy = w.rows + 5;  // padded strides
  const std::vector<float> x = make_x(n, ldx, 2);
  constexpr float kSentinel = 12345.0f;

  std::vector<float> first;
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    for (int rep = 0; rep < 2; ++rep) {
      std::vector<float> y(n * ldy, kSentinel);
      matmul(w.view(), x.data(), n, ldx, y.data(), ldy, pool);
      const std::string what = std::string(dtype_name(type)) + " n=" + std::to_string(n) + " threads=" + std::to_string(threads);
      expect_matches_reference(w, x, n, ldx, y, ldy, what);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = w.rows; r < ldy; ++r) ASSERT_EQ(y[t * ldy + r], kSentinel) << what << ": wrote padding";
      // Bitwise the same on every run and every thread count.
      if (first.empty()) first = y;
      else ASSERT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * sizeof(float))) << what;
    }
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (DType t : kAllTypes)
    for (int64_t n : {1, 2, 3, 7, 8, 33, 300}) v.push_back({t, n});
  return v;
}

INSTANTIATE_TEST_SUITE_P(MatmulAllTypes, MatmulTest, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  return std::string(dtype_name(info.param.type)) + "_n" + std::to_string(info.param.n);
});

class MatmulTypeTest : public ::testing::TestWithParam<DType> {};

// Many tiles and tasks: rows not a multiple of any tile, a wider row, threads 1/2/3.
TEST_P(MatmulTypeTest, LargerShapesAgreeAcrossThreadCounts) {
  const DType type = GetParam();
  const int64_t cols = dtype_info(type).block_elems == 1 ? 1031 : 1024;
  const Weights w = make_weights(type, 301, cols, 3);
  for (int64_t n : {5, 20, 32, 64}) {
    const std::vector<float> x = make_x(n, cols, 4);
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      std::vector<float> y(n * w.rows);
      matmul(w.view(), x.data(), n, cols, y.data(), w.rows, pool);
      if (first.empty()) {
        expect_matches_reference(w, x, n, cols, y, w.rows, std::string(dtype_name(type)) + " n=" + std::to_string(n));
        first = y;
      } else {
        ASSERT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * sizeof(float))) << "threads " << threads;
      }
    }
  }
}

// dot_row uses the fused kernels: it matches the reference, and matmul's small-batch path
// gives bitwise the same value for every row, whatever the batch size.
TEST_P(MatmulTypeTest, DotRowMatchesReferenceAndSmallBatchMatmul) {
  const DType type = GetParam();
  const int64_t cols = test_cols(type);
  const Weights w = make_weights(type, 9, cols, 5);
  // The largest fused batches (see max_fused_batch), with several groups of 4.
  const int64_t n = type == DType::F32 ? 8 : dtype_info(type).block_elems > 1 ? 16 : 20;
  const std::vector<float> x = make_x(n, cols, 6);
  ThreadPool pool(2);
  std::vector<float> y(n * w.rows);
  matmul(w.view(), x.data(), n, cols, y.data(), w.rows, pool);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < w.rows; ++r) {
      const float d = dot_row(type, w.data.data() + r * row_bytes(type, cols), x.data() + t * cols, cols);
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        ref += static_cast<double>(w.deq[r * cols + c]) * x[t * cols + c];
        mag += std::fabs(static_cast<double>(w.deq[r * cols + c]) * x[t * cols + c]);
      }
      ASSERT_NEAR(d, ref, 1e-5 * mag) << dtype_name(type) << " r=" << r << " t=" << t;
      ASSERT_EQ(d, y[t * w.rows + r]) << dtype_name(type) << " r=" << r << " t=" << t;
    }
}

// Integer weights and activations: every partial sum is an integer below 2^24, so every path
// must be exact whatever its summation order. (The K-quant encoders cannot store arbitrary
// integers exactly, so they are left out.)
TEST(MatmulEdgeCases, EmptyRowsGiveZerosAndEmptyBatchesNothing) {
  ThreadPool pool(2);
  std::vector<float> y(6, 7.0f), x(3, 1.0f);
  matmul({DType::Q8_0, nullptr, 3, 0}, x.data(), 2, 0, y.data(), 3, pool);
  for (float v : y) EXPECT_EQ(v, 0.0f);
  std::vector<float> z(4, 7.0f);
  const Weights w = make_weights(DType::Q4_0, 4, 32, 9);
  matmul(w.view(), x.data(), 0, 32, z.data(), 4, pool);
  for (float v : z) EXPECT_EQ(v, 7.0f);
  EXPECT_THROW(matmul({DType::Q4_K, w.data.data(), 1, 100}, x.data(), 1, 100, z.data(), 1, pool), std::invalid_argument);
}

class MatmulExactTest : public ::testing::TestWithParam<DType> {};

TEST_P(MatmulExactTest, ExactOnIntegerData) {
  const DType type = GetParam();
  const int64_t cols = test_cols(type), rows = 19;
  const bool q8 = type == DType::Q8_0;
  std::vector<uint8_t> data(row_bytes(type, cols) * rows);
  std::vector<float> w(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    // Q8_0: -127..127 with 127 in every block (d = 1); others: -8..7 with -8 in every block
    // (Q4_0's d = -8 / -8 = 1).
    for (int64_t c = 0; c < cols; ++c)
      w[r * cols + c] = c % 32 == 0 ? (q8 ? 127.0f : -8.0f)
                                    : static_cast<float>(q8 ? (r * 37 + c * 11) % 255 - 127 : (r * 7 + c * 3) % 16 - 8);
    quantize_row(type, w.data() + r * cols, data.data() + r * row_bytes(type, cols), cols);
  }
  for (int64_t n : {1, 4, 20}) {
    std::vector<float> x(n * cols);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i % 5) - 2);
    ThreadPool pool(2);
    std::vector<float> y(n * rows);
    matmul({type, data.data(), rows, cols}, x.data(), n, cols, y.data(), rows, pool);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t t = 0; t < n; ++t) {
        double ref = 0;
        for (int64_t c = 0; c < cols; ++c) ref += static_cast<double>(w[r * cols + c]) * x[t * cols + c];
        ASSERT_EQ(y[t * rows + r], ref) << dtype_name(type) << " n=" << n << " r=" << r << " t=" << t;
      }
  }
}

// Attention's products (kernels/cpu/attention_products.h) against sums in double: query rows and
// keys of every count around the kernels' blocks (12 or 6 rows, 32 keys or values a tile), head
// sizes that fill and that split a 32-wide tile, operands at strides wider than a head (rows of
// several heads, as attention reads them). On the f32 kernels where the CPU has them, else OpenBLAS.
TEST(MatmulAttention, ProductsMatchAReferenceSum) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> pack;
  for (const int hd : {16, 64, 80, 128})
    for (const int m : {1, 5, 12, 13, 64})
      for (const int n : {1, 31, 33, 100}) {
        SCOPED_TRACE("hd " + std::to_string(hd) + " m " + std::to_string(m) + " n " + std::to_string(n));
        const int ldq = 3 * hd + 5, ldk = 2 * hd + 3, lds = n + 7, ldo = 2 * hd + 1;
        std::vector<float> q(size_t(m) * ldq), k(size_t(n) * ldk), v(size_t(n) * ldk), p(size_t(m) * lds);
        for (auto* x : {&q, &k, &v, &p})
          for (float& e : *x) e = u(rng);
        std::vector<float> s(size_t(m) * lds, -7.0f), o(size_t(m) * ldo, -7.0f);
        kernels::attention_scores(q.data(), ldq, m, k.data(), ldk, n, hd, s.data(), lds, pack);
        kernels::attention_values(p.data(), lds, m, v.data(), ldk, n, hd, o.data(), ldo, pack);
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < n; ++j) {
            double ref = 0;
            for (int d = 0; d < hd; ++d) ref += double(q[size_t(i) * ldq + d]) * k[size_t(j) * ldk + d];
            ASSERT_NEAR(s[size_t(i) * lds + j], ref, 1e-4 * (1 + std::fabs(ref))) << "score " << i << ", " << j;
          }
          for (int j = n; j < lds; ++j) ASSERT_EQ(s[size_t(i) * lds + j], -7.0f) << "written past the keys";
          for (int d = 0; d < hd; ++d) {
            double ref = 0;
            for (int j = 0; j < n; ++j) ref += double(p[size_t(i) * lds + j]) * v[size_t(j) * ldk + d];
            ASSERT_NEAR(o[size_t(i) * ldo + d], ref, 1e-4 * (1 + std::fabs(ref))) << "value " << i << ", " << d;
          }
          for (int d = hd; d < ldo; ++d) ASSERT_EQ(o[size_t(i) * ldo + d], -7.0f) << "written past the head";
        }
      }
}

// On the f32 kernels each output is one sequential sum, so a query row alone gives the bits it
// gets in a block of rows (what lets a batch step match each sequence alone bit for bit).
TEST(MatmulAttention, RowAloneGivesTheBlocksBits) {
  if (!kernels::attention_products_on_f32_kernels()) GTEST_SKIP() << "attention runs on OpenBLAS here";
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int hd = 64, m = 29, n = 77;
  std::vector<float> q(size_t(m) * hd), k(size_t(n) * hd), p(size_t(m) * n), pack;
  for (auto* x : {&q, &k, &p})
    for (float& e : *x) e = u(rng);
  std::vector<float> s(size_t(m) * n), o(size_t(m) * hd), s1(n), o1(hd);
  kernels::attention_scores(q.data(), hd, m, k.data(), hd, n, hd, s.data(), n, pack);
  kernels::attention_values(p.data(), n, m, k.data(), hd, n, hd, o.data(), hd, pack);
  for (int i = 0; i < m; ++i) {
    kernels::attention_scores(q.data() + size_t(i) * hd, hd, 1, k.data(), hd, n, hd, s1.data(), n, pack);
    kernels::attention_values(p.data() + size_t(i) * n, n, 1, k.data(), hd, n, hd, o1.data(), hd, pack);
    ASSERT_EQ(0, std::memcmp(s1.data(), s.data() + size_t(i) * n, n * sizeof(float))) << "row " << i;
    ASSERT_EQ(0, std::memcmp(o1.data(), o.data() + size_t(i) * hd, hd * sizeof(float))) << "row " << i;
  }
}

// Every SIMD variant compiled into the binary that this CPU can run (e.g. AVX-512, AVX2,
// SSE4, SSSE3 and the portable fallback on x86), not only the one dispatch picks.
TEST(MatmulTargets, EveryCompiledTargetMatchesReference) {
  kernels::init_cpu_dispatch();  // a LAZYLLM_CPU_TARGET cap leaves the targets above it out of the list
  std::vector<std::string> seen;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    const std::string name = hwy::TargetName(target);
    ASSERT_EQ(name, kernels::simd_target_name());
    seen.push_back(name);
    ThreadPool pool(2);
    for (DType type : kAllTypes) {
      const int64_t cols = test_cols(type);
      const Weights w = make_weights(type, 21, cols, 7);
      for (int64_t n : {1, 3, 6, 40}) {
        const std::vector<float> x = make_x(n, cols + 1, 8);
        std::vector<float> y(n * w.rows);
        matmul(w.view(), x.data(), n, cols + 1, y.data(), w.rows, pool);
        expect_matches_reference(w, x, n, cols + 1, y, w.rows,
                                 name + " " + std::string(dtype_name(type)) + " n=" + std::to_string(n));
        // dequantize_row on this target agrees with the decode used for the reference (up to
        // the rounding of a fused multiply-add, which some targets use).
        std::vector<float> row(cols);
        dequantize_row(type, w.data.data(), row.data(), cols);
        for (int64_t c = 0; c < cols; ++c)
          ASSERT_LE(std::fabs(row[c] - w.deq[c]), 0x1p-23 * std::fabs(w.deq[c])) << name << " " << dtype_name(type);
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  std::string list;
  for (const auto& t : seen) list += " " + t;
  std::printf("checked SIMD targets:%s\n", list.c_str());
  EXPECT_GE(seen.size(), 1u);
}

// F32 rows take the values before their first vector boundary apart from the vector loop, so a
// row at every float offset within a cache line (and rows shorter than that head) must still
// give the reference, on every target.
TEST(MatmulTargets, F32RowAtEveryOffsetMatchesReference) {
  kernels::init_cpu_dispatch();
  std::vector<std::string> seen;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    seen.push_back(hwy::TargetName(target));
    for (int64_t k : {1, 5, 17, 100, 1031, 2048}) {
      std::vector<float> x(static_cast<size_t>(k));
      std::vector<float> storage(static_cast<size_t>(k + 64));
      std::mt19937 rng(static_cast<unsigned>(k));
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      for (float& v : x) v = u(rng);
      for (float& v : storage) v = u(rng);
      // The first float of storage at a 64-byte boundary, then each of the 16 offsets after it.
      const auto base = reinterpret_cast<uintptr_t>(storage.data());
      const int64_t first = static_cast<int64_t>((64 - base % 64) % 64 / sizeof(float));
      for (int64_t off = 0; off < 16; ++off) {
        const float* row = storage.data() + first + off;
        double ref = 0, mag = 0;
        for (int64_t c = 0; c < k; ++c) {
          ref += static_cast<double>(row[c]) * x[c];
          mag += std::fabs(static_cast<double>(row[c]) * x[c]);
        }
        const float d = dot_row(DType::F32, row, x.data(), k);
        ASSERT_NEAR(d, ref, 1e-6 * mag + 1e-30) << seen.back() << " k=" << k << " offset=" << off;
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);
  std::string list;
  for (const auto& t : seen) list += " " + t;
  std::printf("checked SIMD targets:%s\n", list.c_str());
  EXPECT_GE(seen.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(MatmulAllTypes, MatmulTypeTest, ::testing::ValuesIn(kAllTypes),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });
INSTANTIATE_TEST_SUITE_P(MatmulExactTypes, MatmulExactTest,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q8_0),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace lazyllm

namespace lazyllm {
namespace {

float round_bf16(float v) {
  // Round to nearest even on the upper 16 bits (finite inputs only here).
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  u &= 0xFFFF0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

class MatmulFastTest : public ::testing::TestWithParam<Case> {};

// The bf16 prefill path equals a double reference on bf16-rounded weights and activations up
// to f32 summation error, writes only its outputs, and is reproducible across thread counts.
TEST_P(MatmulFastTest, Bf16PathMatchesRoundedReference) {
  if (!kernels::bf16_gemm_supported()) GTEST_SKIP() << "CPU has no AVX512_BF16; the f32 path is used instead";
  const Bf16GemmScope bf16(true);
  const auto [type, n] = GetParam();
  const int64_t cols = dtype_info(type).block_elems == 1 ? 96 : test_cols(type);
  const Weights w = make_weights(type, 70, cols, 5);  // 70 rows: two full tiles and a partial one
  const int64_t ldx = cols + 3, ldy = w.rows + 5;
  const std::vector<float> x = make_x(n, ldx, 6);
  constexpr float kSentinel = 12345.0f;
  std::vector<float> first;
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    std::vector<float> y(n * ldy, kSentinel);
    matmul(w.view(), x.data(), n, ldx, y.data(), ldy, pool, MatmulPrecision::kFast);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t r = 0; r < w.rows; ++r) {
        double ref = 0, mag = 0;
        for (int64_t c = 0; c < cols; ++c) {
          const double p = static_cast<double>(round_bf16(w.deq[r * cols + c])) * round_bf16(x[t * ldx + c]);
          ref += p;
          mag += std::fabs(p);
        }
        ASSERT_NEAR(y[t * ldy + r], ref, 1e-5 * mag + 1e-30) << dtype_name(type) << " t=" << t << " r=" << r;
      }
      for (int64_t r = w.rows; r < ldy; ++r) ASSERT_EQ(y[t * ldy + r], kSentinel) << "wrote padding";
    }
    if (first.empty()) first = y;
    else ASSERT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * sizeof(float))) << "threads " << threads;
  }
}

std::vector<Case> fast_cases() {
  std::vector<Case> v;
  for (DType t : {DType::BF16, DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    for (int64_t n : {17, 33, 45, 300})
      if (n > 32 || dtype_info(t).block_elems > 1) v.push_back({t, n});  // bf16 fuses up to 32
  return v;
}

INSTANTIATE_TEST_SUITE_P(MatmulFast, MatmulFastTest, ::testing::ValuesIn(fast_cases()), [](const auto& info) {
  return std::string(dtype_name(info.param.type)) + "_n" + std::to_string(info.param.n);
});

// Fast-math prefill takes the bf16 GEMM only where it is preferred; elsewhere, on AVX-512 CPUs,
// the f32 kernel, with the f32 path's bits (the 8-bit GEMM is for AVX2-only CPUs).
TEST(MatmulFast, Bf16GemmOnlyWherePreferred) {
  if (!kernels::cpu_supports(kernels::CpuFeature::kAvx512f)) GTEST_SKIP() << "CPU has no AVX-512";
  ThreadPool pool(2);
  for (DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    const Weights w = make_weights(type, 70, test_cols(type), 21);
    const int64_t n = 45, ldx = w.cols + 3, ldy = w.rows;
    const std::vector<float> x = make_x(n, ldx, 22);
    std::vector<float> exact(n * ldy), fast(n * ldy);
    matmul(w.view(), x.data(), n, ldx, exact.data(), ldy, pool, MatmulPrecision::kF32);
    {
      const Bf16GemmScope off(false);
      EXPECT_FALSE(kernels::bf16_gemm_preferred());
      matmul(w.view(), x.data(), n, ldx, fast.data(), ldy, pool, MatmulPrecision::kFast);
      EXPECT_EQ(0, std::memcmp(exact.data(), fast.data(), exact.size() * sizeof(float))) << dtype_name(type);
    }
    if (kernels::bf16_gemm_supported()) {
      const Bf16GemmScope on(true);
      EXPECT_TRUE(kernels::bf16_gemm_preferred());
      matmul(w.view(), x.data(), n, ldx, fast.data(), ldy, pool, MatmulPrecision::kFast);
      EXPECT_NE(0, std::memcmp(exact.data(), fast.data(), exact.size() * sizeof(float))) << dtype_name(type) << " bf16";
    }
  }
}

// The f32 prefill kernel (AVX-512, or AVX2 on CPUs without it): a double reference within f32
// summation error for every tail (partial 32-row tiles, row lengths off the 16-float vector,
// 12/4/1-row activation blocks), only outputs written, and each output independent of the thread
// count and of the batch around it. (tests/test_cpu_dispatch.cpp checks the AVX2 kernel's tails.)
TEST(MatmulF32Gemm, MatchesReferenceForEveryTail) {
  if (!kernels::f32_gemm_supported())
    GTEST_SKIP() << "CPU has neither AVX-512 nor AVX2 + FMA; OpenBLAS sgemm is used instead";
  for (DType type : {DType::F32, DType::F16}) {
    for (int64_t cols : {96, 517}) {
      const Weights w = make_weights(type, 70, cols, 11);
      const int64_t ldx = cols + 3, ldy = w.rows + 5;
      constexpr int64_t kMaxN = 41;
      const std::vector<float> x = make_x(kMaxN, ldx, 12);
      std::vector<float> full;
      // Batches above max_fused_batch (8 for f32, 32 for f16) take this kernel.
      const std::vector<int64_t> ns = type == DType::F32 ? std::vector<int64_t>{kMaxN, 9, 17, 33}
                                                         : std::vector<int64_t>{kMaxN, 33, 37};
      for (int64_t n : ns) {
        for (int threads : {1, 3}) {
          ThreadPool pool(threads);
          std::vector<float> y(n * ldy, 12345.0f);
          matmul(w.view(), x.data(), n, ldx, y.data(), ldy, pool, MatmulPrecision::kFast);
          for (int64_t t = 0; t < n; ++t) {
            for (int64_t r = 0; r < w.rows; ++r) {
              double ref = 0, mag = 0;
              for (int64_t c = 0; c < cols; ++c) {
                const double p = static_cast<double>(w.deq[r * cols + c]) * x[t * ldx + c];
                ref += p;
                mag += std::fabs(p);
              }
              ASSERT_NEAR(y[t * ldy + r], ref, 1e-5 * mag + 1e-30)
                  << dtype_name(type) << " cols=" << cols << " n=" << n << " t=" << t << " r=" << r;
            }
            for (int64_t r = w.rows; r < ldy; ++r) ASSERT_EQ(y[t * ldy + r], 12345.0f) << "wrote padding";
          }
          if (full.empty()) full = y;
          // Bitwise: the first n rows of the largest batch, whatever the threads.
          ASSERT_EQ(0, std::memcmp(full.data(), y.data(), y.size() * sizeof(float)))
              << dtype_name(type) << " cols=" << cols << " n=" << n << " threads=" << threads;
        }
      }
    }
  }
}

// f32 and f16 weights never take the bf16 path: kFast gives the f32 path's exact bits.
TEST(MatmulFast, F32AndF16WeightsStayExact) {
  for (DType t : {DType::F32, DType::F16}) {
    const Weights w = make_weights(t, 40, 96, 7);
    const std::vector<float> x = make_x(64, 96, 8);
    ThreadPool pool(2);
    std::vector<float> a(64 * 40), b(64 * 40);
    matmul(w.view(), x.data(), 64, 96, a.data(), 40, pool, MatmulPrecision::kF32);
    matmul(w.view(), x.data(), 64, 96, b.data(), 40, pool, MatmulPrecision::kFast);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << dtype_name(t);
  }
}

}  // namespace
}  // namespace lazyllm

namespace lazyllm {
namespace {

TEST(QuantizeRowQ8, ScalesRoundsAndSums) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = (i < 32) ? 0.5f * (i - 16) : 0.0f;  // block 1 all zero
  std::vector<int8_t> q(64);
  float d[2];
  int32_t s[2];
  kernels::quantize_row_q8(x.data(), 64, q.data(), d, s);
  EXPECT_FLOAT_EQ(d[0], 8.0f / 127.0f);
  EXPECT_EQ(q[0], -127);  // -8 is the largest magnitude
  EXPECT_EQ(q[16], 0);
  EXPECT_EQ(q[31], static_cast<int8_t>(std::nearbyint(7.5f * 127.0f / 8.0f)));
  int32_t want = 0;
  for (int i = 0; i < 32; ++i) want += q[i];
  EXPECT_EQ(s[0], want);
  EXPECT_EQ(d[1], 0.0f);
  EXPECT_EQ(s[1], 0);
  for (int i = 32; i < 64; ++i) EXPECT_EQ(q[i], 0);
  EXPECT_THROW(kernels::quantize_row_q8(x.data(), 40, q.data(), d, s), std::invalid_argument);
}

class MatmulInt8Test : public ::testing::TestWithParam<Case> {};

// Small batches of Q8_0/Q4_0 and the K-quants in fast math: the dot of the weights with the 8-bit
// activations, exact up to f32 scaling and summation, for every thread count.
TEST_P(MatmulInt8Test, MatchesReferenceOnQuantizedActivations) {
  const auto [type, n] = GetParam();
  if (!kernels::int8_dot_supported(type))
    GTEST_SKIP() << "no integer kernel for this CPU; the float kernels are used instead";
  const int64_t cols = test_cols(type), nb = cols / 32;
  const Weights w = make_weights(type, 37, cols, 9);
  const int64_t ldx = cols + 3, ldy = w.rows + 5;
  const std::vector<float> x = make_x(n, ldx, 10);
  std::vector<float> first;
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    std::vector<float> y(n * ldy, 12345.0f);
    matmul(w.view(), x.data(), n, ldx, y.data(), ldy, pool, MatmulPrecision::kFast);
    for (int64_t t = 0; t < n; ++t) {
      std::vector<int8_t> q(cols);
      std::vector<float> d(nb);
      std::vector<int32_t> s(nb);
      kernels::quantize_row_q8(x.data() + t * ldx, cols, q.data(), d.data(), s.data());
      for (int64_t r = 0; r < w.rows; ++r) {
        double ref = 0, mag = 0;
        for (int64_t c = 0; c < cols; ++c) {
          const double p = static_cast<double>(w.deq[r * cols + c]) * d[c / 32] * q[c];
          ref += p;
          mag += std::fabs(p);
        }
        ASSERT_NEAR(y[t * ldy + r], ref, 1e-5 * mag + 1e-30) << dtype_name(type) << " t=" << t << " r=" << r;
        // And close to the unquantized product: 8-bit activations lose little.
        double exact = 0;
        for (int64_t c = 0; c < cols; ++c) exact += static_cast<double>(w.deq[r * cols + c]) * x[t * ldx + c];
        ASSERT_NEAR(y[t * ldy + r], exact, 0.02 * mag + 1e-30);
      }
      for (int64_t r = w.rows; r < ldy; ++r) ASSERT_EQ(y[t * ldy + r], 12345.0f);
    }
    if (first.empty()) first = y;
    else ASSERT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * sizeof(float)));
  }
}

// Runs the weights ws on n rows of x through matmul_shared_input and through separate matmul
// calls (outputs padded by one row, pre-filled) and expects the same bits everywhere.
void expect_shared_equals_separate(const std::vector<const Weights*>& ws, int64_t n, int64_t ldx,
                                   MatmulPrecision precision, const std::string& what) {
  const std::vector<float> x = make_x(n, ldx, 44);
  ThreadPool pool(3);
  std::vector<std::vector<float>> sep, joint;
  std::vector<MatmulTarget> targets;
  for (const Weights* w : ws) {
    sep.emplace_back(n * (w->rows + 1), 7.0f);
    joint.emplace_back(n * (w->rows + 1), 7.0f);
    matmul(w->view(), x.data(), n, ldx, sep.back().data(), w->rows + 1, pool, precision);
  }
  for (size_t i = 0; i < ws.size(); ++i) targets.push_back({ws[i]->view(), joint[i].data(), ws[i]->rows + 1});
  matmul_shared_input(targets, x.data(), n, ldx, pool, precision);
  for (size_t i = 0; i < ws.size(); ++i)
    ASSERT_EQ(0, std::memcmp(sep[i].data(), joint[i].data(), sep[i].size() * sizeof(float)))
        << what << " target " << i << " n=" << n;
}

// Several weights on one input (Q/K/V) give the bits of separate matmul calls: on the shared
// fused float path (one type), and where types differ, on separate calls.
TEST(MatmulSharedInput, FloatKernelsEqualSeparateCalls) {
  const int64_t cols = 2 * 256, ldx = cols + 5;
  for (DType t : {DType::F32, DType::Q4_K, DType::F16}) {
    const Weights a = make_weights(t, 33, cols, 41), b = make_weights(t, 8, cols, 42),
                  mixed = make_weights(t == DType::F32 ? DType::F16 : DType::F32, 5, cols, 43);
    for (int64_t n : {1, 3, 8}) {
      expect_shared_equals_separate({&a, &b}, n, ldx, MatmulPrecision::kF32, std::string(dtype_name(t)));
      expect_shared_equals_separate({&a, &b, &mixed}, n, ldx, MatmulPrecision::kF32, std::string(dtype_name(t)) + " mixed");
    }
  }
}

// The same on the shared 8-bit path (Q8_0, Q4_0, Q4_K, Q5_K and Q6_K mixed, several heights) and on
// the fallback (an f32 weight among them; a batch past the small-batch limit).
TEST(MatmulSharedInput, EqualsSeparateCalls) {
  const int64_t cols = 2 * 256, ldx = cols + 3;
  const Weights a = make_weights(DType::Q4_0, 37, cols, 21), b = make_weights(DType::Q8_0, 5, cols, 22),
                c = make_weights(DType::Q4_0, 64, cols, 23), f = make_weights(DType::F32, 9, cols, 24),
                k4 = make_weights(DType::Q4_K, 11, cols, 25), k6 = make_weights(DType::Q6_K, 19, cols, 26),
                k5 = make_weights(DType::Q5_K, 7, cols, 27);
  for (int64_t n : {1, 3, 40}) {
    expect_shared_equals_separate({&a, &b, &c}, n, ldx, MatmulPrecision::kFast, "8-bit");
    expect_shared_equals_separate({&k4, &a, &k6, &k5, &b}, n, ldx, MatmulPrecision::kFast, "8-bit with K-quants");
    expect_shared_equals_separate({&a, &b, &c, &f}, n, ldx, MatmulPrecision::kFast, "8-bit with f32");
  }
}

// The K-quant integer decode kernels on raw random super-blocks (every code, scale and min,
// Q6_K's negative scales), 1 to 3 super-blocks, an all-zero activation block: the dot with the
// 8-bit activations within f32 rounding, on the CPU's own level and capped at the next level
// down (AVX2 on x86-64, NEON on arm64).
TEST(MatmulInt8, KQuantsOnRawBlocksMatchReference) {
  const auto levels = kernels::cpu_target_levels();
  for (std::optional<kernels::CpuLevel> cap :
       {std::optional<kernels::CpuLevel>{}, std::optional{levels[levels.size() > 1 ? 1 : 0]}}) {
    const auto saved = kernels::cpu_level_cap();
    kernels::set_cpu_level_cap(cap);
    std::mt19937 rng(77);
    for (DType type : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
      if (!kernels::int8_dot_supported(type)) continue;
      for (int64_t nsb : {1, 3}) {
        const int64_t cols = nsb * 256, rows = 13, nb = cols / 32;
        Weights w{type, rows, cols, random_blocks(type, rows * cols, rng), std::vector<float>(rows * cols)};
        for (int64_t r = 0; r < rows; ++r)
          dequantize_row(type, w.data.data() + r * row_bytes(type, cols), w.deq.data() + r * cols, cols);
        const int64_t n = 3;
        std::vector<float> x = make_x(n, cols, static_cast<uint32_t>(nsb));
        std::fill(x.begin() + 64, x.begin() + 96, 0.0f);
        ThreadPool pool(2);
        std::vector<float> y(n * rows);
        matmul(w.view(), x.data(), n, cols, y.data(), rows, pool, MatmulPrecision::kFast);
        for (int64_t t = 0; t < n; ++t) {
          std::vector<int8_t> q(cols);
          std::vector<float> d(nb);
          std::vector<int32_t> s(nb);
          kernels::quantize_row_q8(x.data() + t * cols, cols, q.data(), d.data(), s.data());
          for (int64_t r = 0; r < rows; ++r) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < cols; ++c) {
              const double p = static_cast<double>(w.deq[r * cols + c]) * d[c / 32] * q[c];
              ref += p;
              mag += std::fabs(p);
            }
            ASSERT_NEAR(y[t * rows + r], ref, 1e-5 * mag + 1e-30)
                << dtype_name(type) << " super-blocks=" << nsb << " t=" << t << " r=" << r;
          }
        }
      }
    }
    kernels::set_cpu_level_cap(saved);
  }
}

std::vector<Case> int8_cases() {
  std::vector<Case> v;
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    for (int64_t n : {1, 2, 5, 16}) v.push_back({t, n});
  return v;
}

INSTANTIATE_TEST_SUITE_P(MatmulInt8, MatmulInt8Test, ::testing::ValuesIn(int8_cases()), [](const auto& info) {
  return std::string(dtype_name(info.param.type)) + "_n" + std::to_string(info.param.n);
});

}  // namespace
}  // namespace lazyllm
