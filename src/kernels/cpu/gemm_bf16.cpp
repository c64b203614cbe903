// bf16 micro-kernel (see gemm_bf16.h). Written with AVX-512 intrinsics under a function target
// attribute because the Highway release in Debian 12 (1.0.3) has no bf16 dot product; callers
// check bf16_gemm_supported() at run time, so the binary still runs on any x86-64 (and the
// kernel compiles to a stub elsewhere).
#include "kernels/cpu/gemm_bf16.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

#include "kernels/cpu/cpu_features.h"
#include "lazyllm/error.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define LAZYLLM_BF16_KERNEL 1
#define LAZYLLM_TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#else
#define LAZYLLM_BF16_KERNEL 0
#endif

namespace lazyllm::kernels {
namespace {

// The choice forced by prefer_bf16_gemm or LAZYLLM_BF16_GEMM: -1 none, 0 off, 1 on.
std::atomic<int> g_bf16_override{-1};

}  // namespace

std::optional<bool> bf16_gemm_forced() {
  [[maybe_unused]] static const bool env_read = [] {
    const char* env = std::getenv("LAZYLLM_BF16_GEMM");
    if (!env || !*env) return true;
    const std::string_view v(env);
    if (v != "on" && v != "off")
      throw Error("LAZYLLM_BF16_GEMM: unknown value '" + std::string(v) + "' (expected on or off)");
    g_bf16_override.store(v == "on" ? 1 : 0);
    return true;
  }();
  const int o = g_bf16_override.load(std::memory_order_relaxed);
  return o < 0 ? std::nullopt : std::optional<bool>(o == 1);
}

void prefer_bf16_gemm(std::optional<bool> prefer) {
  bf16_gemm_forced();  // the environment first, so it never overrides this later
  g_bf16_override.store(prefer ? (*prefer ? 1 : 0) : -1);
}

#if LAZYLLM_BF16_KERNEL

bool bf16_gemm_supported() {
  return cpu_supports(CpuFeature::kAvx512f) && cpu_supports(CpuFeature::kAvx512bw) &&
         cpu_supports(CpuFeature::kAvx512vl) && cpu_supports(CpuFeature::kAvx512dq) &&
         cpu_supports(CpuFeature::kAvx512bf16);
}

namespace {

bool cpu_is_amd() {
  static const bool amd = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
    char vendor[12];
    std::memcpy(vendor, &b, 4);
    std::memcpy(vendor + 4, &d, 4);
    std::memcpy(vendor + 8, &c, 4);
    return std::memcmp(vendor, "AuthenticAMD", 12) == 0;
  }();
  return amd;
}

}  // namespace

bool bf16_gemm_preferred() {
  if (!bf16_gemm_supported()) return false;
  const std::optional<bool> forced = bf16_gemm_forced();
  return forced ? *forced : cpu_is_amd();
}

namespace {

// Rounds 16 floats to bf16 (nearest even) with the hardware conversion.
LAZYLLM_TARGET_BF16 inline __m256i to_bf16x16(__m512 v) { return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)); }

// MR activation rows x 32 weight rows, accumulated over k/2 bf16 pairs. 2 * MR accumulators,
// 2 weight vectors and a broadcast stay in the 32 vector registers for MR <= 12.
template <int MR>
LAZYLLM_TARGET_BF16 void micro_kernel(const uint16_t* x, int64_t ldx, const uint16_t* packed, int64_t kpairs,
                                       float* y, int64_t ldy, int64_t nr) {
  // The loops over MR are unrolled so the accumulators live in registers, not on the stack.
  __m512 acc[MR][2];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kpairs; ++p) {
    const auto* wp = packed + p * 64;
    const __m512bh w0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(wp));
    const __m512bh w1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(wp + 32));
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      int32_t pair;
      std::memcpy(&pair, x + i * ldx + 2 * p, sizeof pair);
      const __m512bh xb = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], xb, w0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], xb, w1);
    }
  }
  if (nr == kBf16TileRows) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      _mm512_storeu_ps(y + i * ldy, acc[i][0]);
      _mm512_storeu_ps(y + i * ldy + 16, acc[i][1]);
    }
  } else {
    const __mmask16 m0 = nr >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << nr) - 1);
    const __mmask16 m1 = nr <= 16 ? 0 : static_cast<__mmask16>((1u << (nr - 16)) - 1);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      _mm512_mask_storeu_ps(y + i * ldy, m0, acc[i][0]);
      _mm512_mask_storeu_ps(y + i * ldy + 16, m1, acc[i][1]);
    }
  }
}

LAZYLLM_TARGET_BF16 void round_rows_avx512(const float* x, int64_t n, int64_t k, int64_t ldx, uint16_t* out,
                                           int64_t ldo) {
  for (int64_t t = 0; t < n; ++t) {
    const float* src = x + t * ldx;
    uint16_t* dst = out + t * ldo;
    int64_t c = 0;
    for (; c + 16 <= k; c += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c), to_bf16x16(_mm512_loadu_ps(src + c)));
    if (c < k) {
      const __mmask16 m = static_cast<__mmask16>((1u << (k - c)) - 1);
      _mm256_mask_storeu_epi16(dst + c, m, to_bf16x16(_mm512_maskz_loadu_ps(m, src + c)));
    }
  }
}

LAZYLLM_TARGET_BF16 void pack_avx512(const float* w, int64_t nr, int64_t k, uint16_t* packed) {
  // Row-wise conversion, then interleave pairs: packed[p][j][e] = bf16(W[j][2p+e]).
  uint32_t* dst = reinterpret_cast<uint32_t*>(packed);
  for (int64_t j = 0; j < kBf16TileRows; ++j) {
    if (j >= nr) {
      for (int64_t p = 0; p < k / 2; ++p) dst[p * kBf16TileRows + j] = 0;
      continue;
    }
    const float* row = w + j * k;
    int64_t c = 0;
    alignas(64) uint32_t pairs[8];
    for (; c + 16 <= k; c += 16) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(pairs), to_bf16x16(_mm512_loadu_ps(row + c)));
      for (int e = 0; e < 8; ++e) dst[(c / 2 + e) * kBf16TileRows + j] = pairs[e];
    }
    for (; c < k; c += 2) {
      const __mmask16 m = 0x3;
      _mm256_store_si256(reinterpret_cast<__m256i*>(pairs), to_bf16x16(_mm512_maskz_loadu_ps(m, row + c)));
      dst[(c / 2) * kBf16TileRows + j] = pairs[0];
    }
  }
}

}  // namespace

void round_rows_to_bf16(const float* x, int64_t n, int64_t k, int64_t ldx, uint16_t* out, int64_t ldo) {
  if (k % 2 != 0) throw std::invalid_argument("round_rows_to_bf16: odd row length");
  round_rows_avx512(x, n, k, ldx, out, ldo);
}

void pack_tile_bf16(const float* w, int64_t nr, int64_t k, uint16_t* packed) {
  if (k % 2 != 0 || nr > kBf16TileRows) throw std::invalid_argument("pack_tile_bf16: bad shape");
  pack_avx512(w, nr, k, packed);
}

void gemm_bf16_tile(const uint16_t* x, int64_t n, int64_t ldx, const uint16_t* packed, int64_t k, int64_t nr,
                    float* y, int64_t ldy) {
  constexpr int kMR = 12;
  const int64_t kpairs = k / 2;
  int64_t t = 0;
  for (; t + kMR <= n; t += kMR) micro_kernel<kMR>(x + t * ldx, ldx, packed, kpairs, y + t * ldy, ldy, nr);
  // The tail in smaller blocks; each output's sum runs in the same order as in the full blocks.
  for (; t + 4 <= n; t += 4) micro_kernel<4>(x + t * ldx, ldx, packed, kpairs, y + t * ldy, ldy, nr);
  for (; t < n; ++t) micro_kernel<1>(x + t * ldx, ldx, packed, kpairs, y + t * ldy, ldy, nr);
}

#else  // no AVX512_BF16 kernel on this platform

bool bf16_gemm_preferred() { return false; }

bool bf16_gemm_supported() { return false; }
void round_rows_to_bf16(const float*, int64_t, int64_t, int64_t, uint16_t*, int64_t) {
  throw std::logic_error("bf16 kernel not available");
}
void pack_tile_bf16(const float*, int64_t, int64_t, uint16_t*) { throw std::logic_error("bf16 kernel not available"); }
void gemm_bf16_tile(const uint16_t*, int64_t, int64_t, const uint16_t*, int64_t, int64_t, float*, int64_t) {
  throw std::logic_error("bf16 kernel not available");
}

#endif

}  // namespace lazyllm::kernels
