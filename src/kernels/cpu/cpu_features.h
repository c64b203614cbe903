// Which instruction sets the CPU kernels may use: the CPU's own, capped by the environment
// variable LAZYLLM_CPU_TARGET (read once, at the first kernel call): avx512|avx2|sse4|scalar on
// x86-64, sve|neon on arm64, so one machine can run and test the paths older CPUs take. The cap
// governs both dispatchers: the hand-written x86 kernels ask cpu_supports(), and Highway's
// dispatch has the targets above the cap disabled. OpenBLAS dispatches on its own
// (OPENBLAS_CORETYPE caps it). Internal to kernels/cpu; the public summary is
// lazyllm::cpu_kernels().
#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace lazyllm::kernels {

// Ordered within an architecture: each level includes the ones below it (x86-64: scalar < sse4 <
// avx2 < avx512; arm64: neon < sve, where sve covers Highway's SVE and SVE2 targets). On
// other architectures the CPU's level is kNative and only a cap of kScalar changes anything
// (Highway's portable code).
enum class CpuLevel { kScalar, kSse4, kAvx2, kAvx512, kNeon, kSve, kNative };

// Features the hand-written kernels test at run time.
enum class CpuFeature { kAvx2, kFma, kF16c, kAvx512f, kAvx512bw, kAvx512vl, kAvx512dq, kAvx512vnni, kAvx512bf16 };

// "scalar", "sse4", "avx2", "avx512", "neon", "sve" or "native".
std::string_view cpu_level_name(CpuLevel level);
// The caps LAZYLLM_CPU_TARGET takes on this architecture, best first (x86-64: avx512, avx2, sse4,
// scalar; arm64: sve, neon; elsewhere: scalar).
std::span<const CpuLevel> cpu_target_levels();
// A cap's name as LAZYLLM_CPU_TARGET takes it (one of cpu_target_levels()); throws Error naming
// the valid values otherwise.
CpuLevel parse_cpu_level(std::string_view name);

// The CPU's own level, the cap in force (none: nullopt) and the level the kernels use.
CpuLevel cpu_detected_level();
std::optional<CpuLevel> cpu_level_cap();
CpuLevel cpu_level();

// True when the CPU has `f` and the cap allows its level (AVX2, FMA and F16C: avx2; AVX-512:
// avx512).
bool cpu_supports(CpuFeature f);

// Replaces the cap (nullopt: none) for both dispatchers; for tests and tools, called while no
// kernel runs. LAZYLLM_CPU_TARGET is read first, so it never overrides this later.
void set_cpu_level_cap(std::optional<CpuLevel> cap);

namespace detail {
bool apply_cpu_target_env();
}

// Reads LAZYLLM_CPU_TARGET and applies it to Highway, once; every Highway entry point calls it
// before dispatching (a guard check afterwards). Throws Error for an unknown value.
inline void init_cpu_dispatch() { [[maybe_unused]] static const bool done = detail::apply_cpu_target_env(); }

// HWY_DYNAMIC_DISPATCH with the cap applied first: every Highway entry point uses this.
#define LAZYLLM_HWY_DISPATCH(func) (::lazyllm::kernels::init_cpu_dispatch(), HWY_DYNAMIC_DISPATCH(func))

}  // namespace lazyllm::kernels
