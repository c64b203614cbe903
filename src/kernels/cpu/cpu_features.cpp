// CPU feature checks and the dispatch cap (see cpu_features.h).
#include "kernels/cpu/cpu_features.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <string>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

#include "hwy/targets.h"
#include "lazyllm/error.h"

namespace lazyllm::kernels {
namespace {

#if defined(__x86_64__) && defined(__GNUC__)
#define LAZYLLM_CPU_X86 1
#else
#define LAZYLLM_CPU_X86 0
#endif
#if defined(__aarch64__) && defined(__linux__)
#define LAZYLLM_CPU_ARM64 1
#else
#define LAZYLLM_CPU_ARM64 0
#endif

#if LAZYLLM_CPU_X86
constexpr CpuLevel kTargetLevels[] = {CpuLevel::kAvx512, CpuLevel::kAvx2, CpuLevel::kSse4, CpuLevel::kScalar};
#elif LAZYLLM_CPU_ARM64
// No scalar: NEON is part of every arm64 CPU, it is the baseline the compiler targets, and
// Highway never disables its baseline target.
constexpr CpuLevel kTargetLevels[] = {CpuLevel::kSve, CpuLevel::kNeon};
#else
constexpr CpuLevel kTargetLevels[] = {CpuLevel::kScalar};
#endif

constexpr int kNoCap = -1;
std::atomic<int> g_cap{kNoCap};

bool has(CpuFeature f) {
#if LAZYLLM_CPU_X86
  switch (f) {
    case CpuFeature::kAvx2: return __builtin_cpu_supports("avx2");
    case CpuFeature::kFma: return __builtin_cpu_supports("fma");
    case CpuFeature::kF16c: {
      // Not every compiler's __builtin_cpu_supports names F16C: CPUID leaf 1, ECX bit 29, read
      // once (CPUID is slow, and traps to the hypervisor in a VM). The OS saves the YMM
      // registers it converts into wherever AVX2 is reported usable.
      static const bool f16c = [] {
        unsigned a = 0, b = 0, c = 0, d = 0;
        return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
      }();
      return f16c;
    }
    case CpuFeature::kAvx512f: return __builtin_cpu_supports("avx512f");
    case CpuFeature::kAvx512bw: return __builtin_cpu_supports("avx512bw");
    case CpuFeature::kAvx512vl: return __builtin_cpu_supports("avx512vl");
    case CpuFeature::kAvx512dq: return __builtin_cpu_supports("avx512dq");
    case CpuFeature::kAvx512vnni: return __builtin_cpu_supports("avx512vnni");
    case CpuFeature::kAvx512bf16: return __builtin_cpu_supports("avx512bf16");
  }
#endif
  return false;
}

CpuLevel level_of(CpuFeature f) {
  return f == CpuFeature::kAvx2 || f == CpuFeature::kFma || f == CpuFeature::kF16c ? CpuLevel::kAvx2
                                                                                   : CpuLevel::kAvx512;
}

// Highway targets above the cap (a lower bit is a better target; parse_cpu_level only gives this
// architecture's levels). `scalar` is everything but the portable fallbacks (Highway keeps the
// compiler's baseline target whatever it is told); `neon` leaves out the SVE targets (SVE, SVE2,
// SVE_256, SVE2_128: the bits below NEON's).
int64_t hwy_targets_above(std::optional<CpuLevel> cap) {
  if (!cap) return 0;
  switch (*cap) {
    case CpuLevel::kScalar: return ~int64_t{HWY_EMU128 | HWY_SCALAR};
    case CpuLevel::kSse4: return LAZYLLM_CPU_X86 ? HWY_SSE4 - 1 : 0;
    case CpuLevel::kAvx2: return LAZYLLM_CPU_X86 ? HWY_AVX2 - 1 : 0;
    case CpuLevel::kNeon: return LAZYLLM_CPU_ARM64 ? HWY_NEON - 1 : 0;
    case CpuLevel::kAvx512:
    case CpuLevel::kSve:
    case CpuLevel::kNative: return 0;
  }
  return 0;
}

void store_cap(std::optional<CpuLevel> cap) {
  g_cap.store(cap ? static_cast<int>(*cap) : kNoCap);
  // Takes effect at the next Highway dispatch (it resets the chosen target).
  hwy::DisableTargets(hwy_targets_above(cap));
}

}  // namespace

std::string_view cpu_level_name(CpuLevel level) {
  switch (level) {
    case CpuLevel::kScalar: return "scalar";
    case CpuLevel::kSse4: return "sse4";
    case CpuLevel::kAvx2: return "avx2";
    case CpuLevel::kAvx512: return "avx512";
    case CpuLevel::kNeon: return "neon";
    case CpuLevel::kSve: return "sve";
    case CpuLevel::kNative: return "native";
  }
  return "unknown";
}

std::span<const CpuLevel> cpu_target_levels() { return kTargetLevels; }

CpuLevel parse_cpu_level(std::string_view name) {
  std::string expected;
  for (size_t i = 0; i < std::size(kTargetLevels); ++i) {
    if (name == cpu_level_name(kTargetLevels[i])) return kTargetLevels[i];
    if (i > 0) expected += i + 1 == std::size(kTargetLevels) ? " or " : ", ";
    expected += cpu_level_name(kTargetLevels[i]);
  }
  throw Error("LAZYLLM_CPU_TARGET: unknown CPU target '" + std::string(name) + "' (expected " + expected + ")");
}

CpuLevel cpu_detected_level() {
#if LAZYLLM_CPU_X86
  // The feature sets of Highway's AVX3, AVX2 and SSE4 targets (near enough for a report: the
  // kernel names come from the dispatchers themselves).
  static const CpuLevel level = [] {
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
    if (avx2 && has(CpuFeature::kAvx512f) && has(CpuFeature::kAvx512bw) && has(CpuFeature::kAvx512vl) &&
        has(CpuFeature::kAvx512dq))
      return CpuLevel::kAvx512;
    if (avx2) return CpuLevel::kAvx2;
    if (__builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("ssse3")) return CpuLevel::kSse4;
    return CpuLevel::kScalar;
  }();
  return level;
#elif LAZYLLM_CPU_ARM64
  // What Highway's dispatch checks too: SVE (and SVE2, Highway's better target) where the kernel
  // reports it; Advanced SIMD (NEON) is in every arm64 CPU.
  static const CpuLevel level = (getauxval(AT_HWCAP) & HWCAP_SVE) != 0 ? CpuLevel::kSve : CpuLevel::kNeon;
  return level;
#else
  return CpuLevel::kNative;
#endif
}

std::optional<CpuLevel> cpu_level_cap() {
  init_cpu_dispatch();
  const int cap = g_cap.load(std::memory_order_relaxed);
  return cap == kNoCap ? std::nullopt : std::optional<CpuLevel>(static_cast<CpuLevel>(cap));
}

CpuLevel cpu_level() {
  const CpuLevel cpu = cpu_detected_level();
  const std::optional<CpuLevel> cap = cpu_level_cap();
  if (!cap) return cpu;
  if (cpu == CpuLevel::kNative) return *cap == CpuLevel::kScalar ? CpuLevel::kScalar : cpu;
  return std::min(cpu, *cap);
}

bool cpu_supports(CpuFeature f) { return has(f) && cpu_level() >= level_of(f); }

void set_cpu_level_cap(std::optional<CpuLevel> cap) {
  init_cpu_dispatch();
  store_cap(cap);
}

namespace detail {

bool apply_cpu_target_env() {
  const char* env = std::getenv("LAZYLLM_CPU_TARGET");
  if (env && *env) store_cap(parse_cpu_level(env));
  return true;
}

}  // namespace detail
}  // namespace lazyllm::kernels
