// Attention's two matrix products for one head and a block of query rows, on the f32 GEMM
// kernels (gemm_f32.h) where the CPU has them, else through OpenBLAS. Keeping them off OpenBLAS on
// x86 makes attention's speed independent of which cores the system's OpenBLAS knows: Debian 12's
// 0.3.21 runs its SSE3 (Prescott) code on CPUs newer than it, such as Intel's Sapphire and Emerald
// Rapids (tinyllama-1.1b q8_0, a 2048-token prefill on 2 cores: 89-91 tok/s, 117-120 with
// OPENBLAS_CORETYPE=SkylakeX), and its AVX2 code on Zen 4. Each output is one sequential sum
// (gemm_f32.h), so results do not depend on the number of rows or keys in a call.
#pragma once

#include <cstdint>
#include <vector>

namespace lazyllm::kernels {

// s[i * lds + j] = sum_d q[i * ldq + d] * k[j * ldk + d]   for i < m, j < n, d < hd.
void attention_scores(const float* q, int64_t ldq, int64_t m, const float* k, int64_t ldk, int64_t n, int64_t hd,
                      float* s, int64_t lds, std::vector<float>& pack);

// o[i * ldo + d] = sum_j p[i * ldp + j] * v[j * ldv + d]   for i < m, d < hd, j < n.
void attention_values(const float* p, int64_t ldp, int64_t m, const float* v, int64_t ldv, int64_t n, int64_t hd,
                      float* o, int64_t ldo, std::vector<float>& pack);

// Whether the products run on the f32 kernels here ("f32-avx512", "f32-avx2"), or on OpenBLAS.
bool attention_products_on_f32_kernels();

}  // namespace lazyllm::kernels
