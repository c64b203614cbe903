#include "kernels/cpu/attention_products.h"

#include <cblas.h>

#include <algorithm>

#include "kernels/cpu/gemm_f32.h"

namespace lazyllm::kernels {

bool attention_products_on_f32_kernels() { return f32_gemm_supported(); }

void attention_scores(const float* q, int64_t ldq, int64_t m, const float* k, int64_t ldk, int64_t n, int64_t hd,
                      float* s, int64_t lds, std::vector<float>& pack) {
  if (m <= 0 || n <= 0) return;
  if (!f32_gemm_supported()) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n), static_cast<int>(hd),
                1.0f, q, static_cast<int>(ldq), k, static_cast<int>(ldk), 0.0f, s, static_cast<int>(lds));
    return;
  }
  // The keys are the "weight rows": 32 of them packed at a time, every query row against them.
  pack.resize(static_cast<size_t>(hd) * kF32TileRows);
  for (int64_t j0 = 0; j0 < n; j0 += kF32TileRows) {
    const int64_t nr = std::min(kF32TileRows, n - j0);
    pack_tile_f32(k + j0 * ldk, ldk, nr, hd, pack.data());
    gemm_f32_tile(q, m, ldq, pack.data(), hd, nr, s + j0, lds);
  }
}

void attention_values(const float* p, int64_t ldp, int64_t m, const float* v, int64_t ldv, int64_t n, int64_t hd,
                      float* o, int64_t ldo, std::vector<float>& pack) {
  if (m <= 0 || hd <= 0) return;
  if (!f32_gemm_supported()) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(hd),
                static_cast<int>(n), 1.0f, p, static_cast<int>(ldp), v, static_cast<int>(ldv), 0.0f, o,
                static_cast<int>(ldo));
    return;
  }
  // The "weight rows" are V's columns: the packed layout (value c of row j at c * 32 + j) is then
  // 32 consecutive values of each V row, copied as they are.
  pack.resize(static_cast<size_t>(std::max<int64_t>(n, 1)) * kF32TileRows);
  for (int64_t d0 = 0; d0 < hd; d0 += kF32TileRows) {
    const int64_t nr = std::min(kF32TileRows, hd - d0);
    for (int64_t j = 0; j < n; ++j) {
      float* dst = pack.data() + j * kF32TileRows;
      std::copy(v + j * ldv + d0, v + j * ldv + d0 + nr, dst);
      std::fill(dst + nr, dst + kF32TileRows, 0.0f);
    }
    gemm_f32_tile(p, m, ldp, pack.data(), n, nr, o + d0, ldo);
  }
}

}  // namespace lazyllm::kernels
