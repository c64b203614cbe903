// The CPU dispatch cap (LAZYLLM_CPU_TARGET, kernels/cpu/cpu_features.h): capped at avx2, sse4 and
// scalar (neon on arm64), matmul and the decoders run the lower paths (the reported
// kernel names change, and fast math falls back to the f32 kernels bit for bit, but for Q8_0/Q4_0
// decode under avx2, which has an integer kernel that gives the AVX512_VNNI kernel's bits; the f32
// prefill GEMM under avx2 gives the AVX-512 kernel's bits) and agree with the uncapped results and
// the references; the CLI honours the variable and rejects unknown values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "kernel_reference.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dot_int8.h"
#include "kernels/cpu/dot_kernels.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/gemm_f32.h"
#include "kernels/cpu/gemm_int8.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quant.h"
#include "lazyllm/lazyllm.h"
#include "util/thread_pool.h"

namespace lazyllm {
namespace {

using namespace test;
using kernels::CpuLevel;

// A cap for one scope (nullopt: none, whatever LAZYLLM_CPU_TARGET says); the previous one after.
class CapScope {
 public:
  explicit CapScope(std::optional<CpuLevel> cap) : saved_(kernels::cpu_level_cap()) { kernels::set_cpu_level_cap(cap); }
  ~CapScope() { kernels::set_cpu_level_cap(saved_); }

 private:
  std::optional<CpuLevel> saved_;
};

// The caps below this architecture's best level that this CPU can run (x86-64: avx2, sse4 and
// scalar on any CPU with AVX2; arm64: neon).
std::vector<CpuLevel> lower_caps() {
  std::vector<CpuLevel> v;
  const auto levels = kernels::cpu_target_levels();
  for (size_t i = 1; i < levels.size(); ++i)
    if (kernels::cpu_detected_level() >= levels[i]) v.push_back(levels[i]);
  return v;
}

// This CPU can run under the cap `l` (a level of its architecture at or below its own).
bool can_run(CpuLevel l) {
  const auto levels = kernels::cpu_target_levels();
  return std::find(levels.begin(), levels.end(), l) != levels.end() && kernels::cpu_detected_level() >= l;
}

std::string name(CpuLevel l) { return std::string(kernels::cpu_level_name(l)); }

// The integer decode kernel under the cap in force (below avx512): AVX2's where F16C is there too.
std::string capped_int8_kernel() {
  using kernels::CpuFeature;
  return kernels::cpu_supports(CpuFeature::kAvx2) && kernels::cpu_supports(CpuFeature::kFma) &&
                 kernels::cpu_supports(CpuFeature::kF16c)
             ? "int8-avx2"
             : "none";
}

// The f32 prefill kernel under the cap in force (below avx512): AVX2's where FMA is there too.
std::string capped_f32_gemm() {
  using kernels::CpuFeature;
  return kernels::cpu_supports(CpuFeature::kAvx2) && kernels::cpu_supports(CpuFeature::kFma) ? "f32-avx2"
                                                                                             : "openblas-sgemm";
}

// Batches above max_fused_batch (8 for f32, 16 for block-quantized types, 32 for f16/bf16)
// take the prefill GEMM.
bool takes_gemm(DType t, int64_t n) {
  if (t == DType::F32) return n > 8;
  return n > (dtype_info(t).block_elems > 1 ? 16 : 32);
}

// Q8_0/Q4_0/Q4_K/Q5_K/Q6_K batches up to max_fused_batch (16) take the integer decode kernel in fast
// math, and larger Q8_0/Q4_0 ones the integer GEMM where neither the bf16 GEMM nor the AVX-512
// f32 kernel runs.
bool takes_int8_kernel(DType t, int64_t n) {
  if ((t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K) && n <= 16) return kernels::int8_dot_supported(t);
  if (t != DType::Q8_0 && t != DType::Q4_0) return false;
  return n <= 16 ? kernels::int8_dot_supported(t) : kernels::int8_gemm_preferred(t) && !kernels::bf16_gemm_preferred();
}

// Highway's target under each cap (its portable fallback is SCALAR or, in newer releases, EMU128).
bool is_vector_kernel_for(CpuLevel cap, const std::string& v) {
  switch (cap) {
    case CpuLevel::kAvx2: return v == "hwy-AVX2";
    case CpuLevel::kSse4: return v == "hwy-SSE4";
    case CpuLevel::kNeon: return v == "hwy-NEON";
    case CpuLevel::kScalar: return v == "hwy-SCALAR" || v == "hwy-EMU128";
    default: return false;
  }
}

TEST(CpuDispatch, ParsesThisArchitecturesLevelsAndRejectsOthers) {
  const auto levels = kernels::cpu_target_levels();
  ASSERT_FALSE(levels.empty());
  for (CpuLevel l : levels) EXPECT_EQ(kernels::parse_cpu_level(name(l)), l);
#if defined(__x86_64__)
  EXPECT_EQ(levels.size(), 4u);
  EXPECT_EQ(kernels::parse_cpu_level("avx512"), CpuLevel::kAvx512);
  EXPECT_EQ(kernels::parse_cpu_level("avx2"), CpuLevel::kAvx2);
  EXPECT_EQ(kernels::parse_cpu_level("sse4"), CpuLevel::kSse4);
  const std::string expected = "expected avx512, avx2, sse4 or scalar";
  const std::vector<const char*> bad = {"avx3", "AVX2", "native", "", "neon", "sve"};
#elif defined(__aarch64__)
  EXPECT_EQ(levels.size(), 2u);
  EXPECT_EQ(kernels::parse_cpu_level("sve"), CpuLevel::kSve);
  EXPECT_EQ(kernels::parse_cpu_level("neon"), CpuLevel::kNeon);
  const std::string expected = "expected sve or neon";
  // No scalar on arm64: Highway keeps its NEON baseline.
  const std::vector<const char*> bad = {"sve2", "NEON", "scalar", "native", "", "avx2", "avx512"};
#else
  const std::string expected = "expected scalar";
  const std::vector<const char*> bad = {"native", "", "avx2", "neon"};
#endif
  for (const char* b : bad) {
    try {
      kernels::parse_cpu_level(b);
      ADD_FAILURE() << "accepted '" << b << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
}

TEST(CpuDispatch, KernelNamesFollowTheCap) {
  {
    CapScope none(std::nullopt);
    const CpuKernels k = cpu_kernels();
    EXPECT_EQ(k.cap, "none");
    EXPECT_EQ(k.level, k.detected);
    if (kernels::cpu_detected_level() == CpuLevel::kAvx512) {
      EXPECT_EQ(k.vector.rfind("hwy-AVX3", 0), 0u) << k.vector;
      EXPECT_EQ(k.gemm_f32, "f32-avx512");
      EXPECT_EQ(k.attention, "f32-avx512");
      EXPECT_EQ(k.gemm_int8, "none");  // the 16-wide f32 kernel beats the 8-bit AVX2 one
      EXPECT_EQ(k.gemm_bf16, kernels::bf16_gemm_preferred() ? "bf16-avx512" : "none");
    }
    // On arm64 Highway's best target follows the level: an SVE target (SVE, SVE2, SVE_256,
    // SVE2_128) or NEON.
    if (kernels::cpu_detected_level() == CpuLevel::kSve) {
      EXPECT_EQ(k.vector.rfind("hwy-SVE", 0), 0u) << k.vector;
    }
    if (kernels::cpu_detected_level() == CpuLevel::kNeon) {
      EXPECT_EQ(k.vector, "hwy-NEON");
    }
    std::printf("uncapped: level %s, vector %s, int8 decode %s, gemm %s, bf16 gemm %s, openblas %s\n", k.level.c_str(),
                k.vector.c_str(), k.decode_int8.c_str(), k.gemm_f32.c_str(), k.gemm_bf16.c_str(), k.openblas.c_str());
  }
  for (CpuLevel cap : lower_caps()) {
    CapScope scope(cap);
    const CpuKernels k = cpu_kernels();
    EXPECT_EQ(k.cap, name(cap));
    EXPECT_EQ(k.level, name(cap));
    EXPECT_EQ(k.vector, "hwy-" + std::string(kernels::simd_target_name()));
    EXPECT_TRUE(is_vector_kernel_for(cap, k.vector)) << name(cap) << ": " << k.vector;
    EXPECT_EQ(k.decode_int8, capped_int8_kernel());
    if (cap != CpuLevel::kAvx2) {
      EXPECT_EQ(k.decode_int8, "none");
    }
    EXPECT_EQ(k.gemm_f32, capped_f32_gemm());
    if (cap != CpuLevel::kAvx2) {
      EXPECT_EQ(k.gemm_f32, "openblas-sgemm");
    }
    EXPECT_EQ(k.attention, k.gemm_f32);  // attention's products take the f32 kernel where prefill does
    EXPECT_EQ(k.gemm_bf16, "none");
    EXPECT_EQ(k.gemm_int8, capped_int8_kernel());
    EXPECT_FALSE(kernels::cpu_supports(kernels::CpuFeature::kAvx512f));
    EXPECT_EQ(kernels::cpu_supports(kernels::CpuFeature::kAvx2), cap == CpuLevel::kAvx2);
  }
}

// Capped matmul (every type, the fused, 8-bit and GEMM batch sizes, both precisions) against the
// double reference and the uncapped results. Under the cap fast math has no kernels of its own,
// so it gives the f32 paths' bits, but for the integer kernel (Q8_0/Q4_0 decode under avx2),
// which gives the uncapped integer kernel's bits; uncapped it differs where this CPU has the
// 8-bit/bf16 kernels, which shows the capped runs really took other paths. Prefill batches in
// f32 under avx2 run the AVX2 GEMM kernel, which gives the AVX-512 kernel's bits.
TEST(CpuDispatch, CappedMatmulMatchesUncapped) {
  if (lower_caps().empty()) GTEST_SKIP() << "CPU below SSE4";
  ThreadPool pool(2);
  const std::string uncapped_f32_gemm = [] {
    CapScope none(std::nullopt);
    return cpu_kernels().gemm_f32;
  }();
  for (DType type : kAllTypes) {
    const int64_t cols = test_cols(type);
    const Weights w = [&] {
      CapScope none(std::nullopt);
      return make_weights(type, 37, cols, 21);
    }();
    for (int64_t n : {1, 4, 16, 40}) {
      const std::vector<float> x = make_x(n, cols, 22);
      std::vector<float> base(n * w.rows), base_fast(n * w.rows);
      bool base_int8 = false;
      {
        CapScope none(std::nullopt);
        matmul(w.view(), x.data(), n, cols, base.data(), w.rows, pool);
        matmul(w.view(), x.data(), n, cols, base_fast.data(), w.rows, pool, MatmulPrecision::kFast);
        base_int8 = takes_int8_kernel(type, n);
      }
      const bool fast_kernel = std::memcmp(base.data(), base_fast.data(), base.size() * sizeof(float)) != 0;
      for (CpuLevel cap : lower_caps()) {
        CapScope scope(cap);
        const std::string what = std::string(dtype_name(type)) + " n=" + std::to_string(n) + " cap " + name(cap);
        std::vector<float> y(n * w.rows), y_fast(n * w.rows);
        matmul(w.view(), x.data(), n, cols, y.data(), w.rows, pool);
        matmul(w.view(), x.data(), n, cols, y_fast.data(), w.rows, pool, MatmulPrecision::kFast);
        expect_matches_reference(w, x, n, cols, y, w.rows, what);
        if (takes_gemm(type, n) && capped_f32_gemm() == "f32-avx2" && uncapped_f32_gemm == "f32-avx512") {
          ASSERT_EQ(0, std::memcmp(base.data(), y.data(), y.size() * sizeof(float))) << what << ": f32 GEMM";
        }
        if (takes_int8_kernel(type, n)) {
          // The 8-bit activations make it differ from the f32 path, not from the uncapped decode
          // kernel.
          ASSERT_NE(0, std::memcmp(y.data(), y_fast.data(), y.size() * sizeof(float))) << what << ": fast math";
          if (base_int8) {
            ASSERT_EQ(0, std::memcmp(base_fast.data(), y_fast.data(), y.size() * sizeof(float)))
                << what << ": integer kernel";
          }
        } else {
          ASSERT_EQ(0, std::memcmp(y.data(), y_fast.data(), y.size() * sizeof(float))) << what << ": fast math";
        }
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < w.rows; ++r) {
            double mag = 0;
            for (int64_t c = 0; c < cols; ++c)
              mag += std::fabs(static_cast<double>(w.deq[r * cols + c]) * x[t * cols + c]);
            ASSERT_NEAR(y[t * w.rows + r], base[t * w.rows + r], 2e-5 * mag + 1e-30)
                << what << " t=" << t << " r=" << r;
          }
        if (n == 1) {
          // dot_row runs the same fused kernel as small batches.
          for (int64_t r = 0; r < w.rows; ++r)
            ASSERT_EQ(dot_row(type, w.data.data() + r * row_bytes(type, cols), x.data(), cols), y[r]) << what;
        }
      }
      if (fast_kernel)
        std::printf("%s n=%lld: uncapped fast math took its own kernels\n", dtype_name(type).data(),
                    static_cast<long long>(n));
    }
  }
  // On a CPU with AVX512_VNNI the uncapped Q8_0 decode is the 8-bit kernel, which rounds x to 8 bits.
  if (CapScope none(std::nullopt); cpu_kernels().decode_int8 != "none") {
    const Weights w = make_weights(DType::Q8_0, 8, 256, 23);
    const std::vector<float> x = make_x(1, 256, 24);
    std::vector<float> a(8), b(8);
    matmul(w.view(), x.data(), 1, 256, a.data(), 8, pool);
    matmul(w.view(), x.data(), 1, 256, b.data(), 8, pool, MatmulPrecision::kFast);
    EXPECT_NE(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  }
}

// Under the avx2 cap Q8_0/Q4_0 decode in fast math runs the AVX2 integer kernel: the exact dot
// with the 8-bit activations up to f32 scaling and summation (as MatmulInt8Test checks the
// uncapped kernel), for every thread count, and where this CPU has AVX512_VNNI, that kernel's
// bits. Raw random blocks (every code, Q8_0's -128 included), block counts that reach each step
// of the kernels (1: the odd last block alone; 2: one pair; 7: three pairs and the odd block; 8:
// one whole Q4_0 group of 8; 9 and 19: groups, then pairs and the odd block; 33), batches 1, 2,
// 3, 5 and 16 (the VNNI kernel takes up to 4 rows a pass: 2, 3, 4 + 1, four passes of 4; 16 is
// the largest batch that takes the kernel), an all-zero block.
TEST(CpuDispatch, CappedInt8DecodeMatchesVnniKernel) {
  if (!can_run(CpuLevel::kAvx2)) GTEST_SKIP() << "CPU below AVX2 (or not x86-64)";
  std::string uncapped;
  {
    CapScope none(std::nullopt);
    uncapped = cpu_kernels().decode_int8;
  }
  CapScope avx2(CpuLevel::kAvx2);
  if (capped_int8_kernel() == "none") GTEST_SKIP() << "CPU without F16C";
  ASSERT_EQ(cpu_kernels().decode_int8, "int8-avx2");
  ASSERT_EQ(kernels::int8_dot_kernel_name(), "int8-avx2");
  std::mt19937 rng(31);
  for (DType type : {DType::Q8_0, DType::Q4_0})
    for (int64_t nb : {1, 2, 7, 8, 9, 19, 33})
      for (int64_t n : {1, 2, 3, 5, 16}) {
        const int64_t cols = nb * 32, rows = 19, ldx = cols + 3, ldy = rows + 2;
        Weights w{type, rows, cols, random_blocks(type, rows * cols, rng), std::vector<float>(rows * cols)};
        for (int64_t r = 0; r < rows; ++r)
          dequantize_row(type, w.data.data() + r * row_bytes(type, cols), w.deq.data() + r * cols, cols);
        std::vector<float> x = make_x(n, ldx, static_cast<uint32_t>(nb * 100 + n));
        if (nb > 1) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);
        const std::string what =
            std::string(dtype_name(type)) + " blocks=" + std::to_string(nb) + " n=" + std::to_string(n);
        std::vector<float> first;
        for (int threads : {1, 3}) {
          ThreadPool pool(threads);
          std::vector<float> y(n * ldy, 12345.0f);
          matmul(w.view(), x.data(), n, ldx, y.data(), ldy, pool, MatmulPrecision::kFast);
          if (first.empty()) first = y;
          else ASSERT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * sizeof(float))) << what;
        }
        for (int64_t t = 0; t < n; ++t) {
          std::vector<int8_t> q(cols);
          std::vector<float> d(nb);
          std::vector<int32_t> s(nb);
          kernels::quantize_row_q8(x.data() + t * ldx, cols, q.data(), d.data(), s.data());
          for (int64_t r = 0; r < rows; ++r) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < cols; ++c) {
              const double p = static_cast<double>(w.deq[r * cols + c]) * d[c / 32] * q[c];
              ref += p;
              mag += std::fabs(p);
            }
            ASSERT_NEAR(first[t * ldy + r], ref, 1e-5 * mag + 1e-30) << what << " t=" << t << " r=" << r;
          }
          for (int64_t r = rows; r < ldy; ++r) ASSERT_EQ(first[t * ldy + r], 12345.0f) << what;
        }
        if (uncapped == "int8-vnni-avx512") {
          CapScope none(std::nullopt);
          ThreadPool pool(2);
          std::vector<float> y(n * ldy, 12345.0f);
          matmul(w.view(), x.data(), n, ldx, y.data(), ldy, pool, MatmulPrecision::kFast);
          ASSERT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * sizeof(float))) << what << ": VNNI kernel";
        }
      }
  if (uncapped != "int8-vnni-avx512")
    std::printf("no AVX512_VNNI: the AVX2 kernel was checked against the reference only\n");
}

// Under the avx2 cap the f32 prefill kernel is AVX2's: a double reference within f32 summation
// error for every tail (partial tiles below and above the 16-row half, row lengths off the
// 8-float vector, the 6/3/1-row activation blocks), only outputs written, the same bits for every
// thread count and batch, and where this CPU has AVX-512, that kernel's bits.
TEST(CpuDispatch, CappedF32GemmMatchesReferenceAndAvx512Kernel) {
  if (!can_run(CpuLevel::kAvx2)) GTEST_SKIP() << "CPU below AVX2 (or not x86-64)";
  std::string uncapped;
  {
    CapScope none(std::nullopt);
    uncapped = cpu_kernels().gemm_f32;
  }
  CapScope avx2(CpuLevel::kAvx2);
  if (capped_f32_gemm() != "f32-avx2") GTEST_SKIP() << "CPU without FMA";
  ASSERT_EQ(cpu_kernels().gemm_f32, "f32-avx2");
  for (DType type : {DType::F32, DType::F16, DType::Q4_0})
    for (int64_t rows : {70, 57})
      for (int64_t cols : {96, 544}) {
        const Weights w = make_weights(type, rows, cols, static_cast<uint32_t>(rows + cols));
        const int64_t ldx = cols + 3, ldy = rows + 5;
        constexpr int64_t kMaxN = 41;
        const std::vector<float> x = make_x(kMaxN, ldx, 12);
        std::vector<float> full;
        for (int64_t n : {kMaxN, int64_t{34}, int64_t{40}}) {
          if (!takes_gemm(type, n)) continue;
          const std::string what = std::string(dtype_name(type)) + " rows=" + std::to_string(rows) +
                                   " cols=" + std::to_string(cols) + " n=" + std::to_string(n);
          for (int threads : {1, 3}) {
            ThreadPool pool(threads);
            std::vector<float> y(n * ldy, 12345.0f);
            matmul(w.view(), x.data(), n, ldx, y.data(), ldy, pool);
            for (int64_t t = 0; t < n; ++t) {
              for (int64_t r = 0; r < rows; ++r) {
                double ref = 0, mag = 0;
                for (int64_t c = 0; c < cols; ++c) {
                  const double p = static_cast<double>(w.deq[r * cols + c]) * x[t * ldx + c];
                  ref += p;
                  mag += std::fabs(p);
                }
                ASSERT_NEAR(y[t * ldy + r], ref, 1e-5 * mag + 1e-30) << what << " t=" << t << " r=" << r;
              }
              for (int64_t r = rows; r < ldy; ++r) ASSERT_EQ(y[t * ldy + r], 12345.0f) << what << ": wrote padding";
            }
            if (full.empty()) full = y;
            ASSERT_EQ(0, std::memcmp(full.data(), y.data(), y.size() * sizeof(float)))
                << what << " threads=" << threads;
            if (uncapped == "f32-avx512") {
              CapScope none(std::nullopt);
              std::vector<float> z(n * ldy, 12345.0f);
              matmul(w.view(), x.data(), n, ldx, z.data(), ldy, pool);
              ASSERT_EQ(0, std::memcmp(z.data(), y.data(), y.size() * sizeof(float))) << what << ": AVX-512 kernel";
            }
          }
        }
      }
  if (uncapped != "f32-avx512") std::printf("no AVX-512: the AVX2 kernel was checked against the reference only\n");
}

// Under the avx2 cap Q8_0/Q4_0 prefill in fast math runs the AVX2 integer GEMM: the exact dot
// with the 8-bit activations up to f32 scaling and summation, for raw random blocks (every code,
// Q8_0's -128 included), block counts 1, 2 and 7, partial tiles below and above 16 rows, batch
// tails of the 4-row blocks, an all-zero activation block; the same bits for every thread count
// and for each activation row whatever the batch around it; padding never written.
TEST(CpuDispatch, CappedInt8GemmMatchesQuantizedReference) {
  if (!can_run(CpuLevel::kAvx2)) GTEST_SKIP() << "CPU below AVX2 (or not x86-64)";
  CapScope avx2(CpuLevel::kAvx2);
  if (capped_int8_kernel() == "none") GTEST_SKIP() << "CPU without FMA or F16C";
  ASSERT_EQ(cpu_kernels().gemm_int8, "int8-avx2");
  std::mt19937 rng(41);
  for (DType type : {DType::Q8_0, DType::Q4_0})
    for (int64_t nb : {1, 2, 7})
      for (int64_t rows : {70, 57, 8}) {
        const int64_t cols = nb * 32, ldx = cols + 3, ldy = rows + 2;
        Weights w{type, rows, cols, random_blocks(type, rows * cols, rng), std::vector<float>(rows * cols)};
        for (int64_t r = 0; r < rows; ++r)
          dequantize_row(type, w.data.data() + r * row_bytes(type, cols), w.deq.data() + r * cols, cols);
        constexpr int64_t kMaxN = 43;
        std::vector<float> x = make_x(kMaxN, ldx, static_cast<uint32_t>(nb * 100 + rows));
        if (nb > 1) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);
        std::vector<float> full;
        for (int64_t n : {kMaxN, int64_t{17}, int64_t{18}, int64_t{40}}) {
          ASSERT_TRUE(takes_int8_kernel(type, n));
          const std::string what = std::string(dtype_name(type)) + " blocks=" + std::to_string(nb) +
                                   " rows=" + std::to_string(rows) + " n=" + std::to_string(n);
          for (int threads : {1, 3}) {
            ThreadPool pool(threads);
            std::vector<float> y(n * ldy, 12345.0f);
            matmul(w.view(), x.data(), n, ldx, y.data(), ldy, pool, MatmulPrecision::kFast);
            if (full.empty()) {
              full = y;
              for (int64_t t = 0; t < n; ++t) {
                std::vector<int8_t> q(cols);
                std::vector<float> d(nb);
                std::vector<int32_t> s(nb);
                kernels::quantize_row_q8(x.data() + t * ldx, cols, q.data(), d.data(), s.data());
                for (int64_t r = 0; r < rows; ++r) {
                  double ref = 0, mag = 0;
                  for (int64_t c = 0; c < cols; ++c) {
                    const double p = static_cast<double>(w.deq[r * cols + c]) * d[c / 32] * q[c];
                    ref += p;
                    mag += std::fabs(p);
                  }
                  ASSERT_NEAR(y[t * ldy + r], ref, 1e-5 * mag + 1e-30) << what << " t=" << t << " r=" << r;
                }
                for (int64_t r = rows; r < ldy; ++r) ASSERT_EQ(y[t * ldy + r], 12345.0f) << what << ": wrote padding";
              }
            }
            ASSERT_EQ(0, std::memcmp(full.data(), y.data(), y.size() * sizeof(float)))
                << what << " threads=" << threads;
          }
        }
      }
}

// Capped decoding against the independent reference decoder and the uncapped decoder.
TEST(CpuDispatch, CappedDecodeMatchesReferenceDecoder) {
  std::mt19937 rng(9);
  for (DType t : kAllTypes) {
    const int64_t n = dtype_info(t).block_elems == 1 ? 1000 + 3 : 8 * 256;
    const std::vector<uint8_t> data = random_blocks(t, n, rng);
    std::vector<float> base(n);
    {
      CapScope none(std::nullopt);
      dequantize_row(t, data.data(), base.data(), n);
    }
    for (CpuLevel cap : lower_caps()) {
      CapScope scope(cap);
      std::vector<float> got(n);
      dequantize_row(t, data.data(), got.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double ref = ref_value(t, data.data(), i);
        ASSERT_LE(std::fabs(got[i] - ref), 0x1p-24 * std::fabs(ref))
            << dtype_name(t) << " cap " << name(cap) << " " << i;
        ASSERT_LE(std::fabs(got[i] - base[i]), 0x1p-23 * std::fabs(ref))
            << dtype_name(t) << " cap " << name(cap) << " " << i;
      }
    }
  }
}

// The CLI reads LAZYLLM_CPU_TARGET at start: `info` and `bench --json` report the capped kernels,
// a model still runs under every cap, and an unknown value is a one-line error.
TEST(CpuDispatch, CliHonoursTheEnvironmentVariable) {
  const auto path = temp_path("cpu-dispatch.gguf").string();
  CliResult r =
      run_cli("gen-model --dims embd=64,layers=2,heads=4,kv_heads=2,ff=128,vocab=256,ctx=64 --dtype q8_0 -o " + path);
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli("info -m " + path, "LAZYLLM_CPU_TARGET=");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("LAZYLLM_CPU_TARGET none"), std::string::npos) << r.out;
  for (CpuLevel cap : lower_caps()) {
    const std::string env = "LAZYLLM_CPU_TARGET=" + name(cap);
    r = run_cli("info -m " + path, env);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("cpu level:     " + name(cap) + " ("), std::string::npos) << r.out;
    const std::string int8 = [&] {
      CapScope scope(cap);
      return capped_int8_kernel();
    }();
    const std::string gemm = [&] {
      CapScope scope(cap);
      return capped_f32_gemm();
    }();
    EXPECT_NE(r.out.find("int8 decode " + int8 + ", gemm " + gemm + ", bf16 gemm none"), std::string::npos) << r.out;
    r = run_cli("bench -m " + path + " --prompt-len 24 --gen-len 3 --reps 1 --warmup 0 --json", env);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
    const auto& k = j.at("cpu_kernels");
    EXPECT_EQ(k.at("level"), name(cap));
    EXPECT_EQ(k.at("cap"), name(cap));
    EXPECT_TRUE(is_vector_kernel_for(cap, k.at("vector").get<std::string>())) << k;
    EXPECT_EQ(k.at("decode_int8"), int8);
    EXPECT_EQ(k.at("gemm_f32"), gemm);
    EXPECT_EQ(k.at("gemm_int8"), int8);
    EXPECT_GT(j.at("decode_tok_s").get<double>(), 0.0);
  }
  r = run_cli("info -m " + path, "LAZYLLM_CPU_TARGET=avx3");
  EXPECT_EQ(r.code, 1);
  std::string expected;
  const auto levels = kernels::cpu_target_levels();
  for (size_t i = 0; i < levels.size(); ++i)
    expected += (i == 0 ? "" : i + 1 == levels.size() ? " or " : ", ") + name(levels[i]);
  EXPECT_NE(r.err.find("error: LAZYLLM_CPU_TARGET: unknown CPU target 'avx3' (expected " + expected + ")"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace lazyllm
