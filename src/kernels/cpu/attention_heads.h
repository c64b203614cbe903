// Decode attention over the cache rows a step lists, for several query heads that share one K/V
// head (grouped-query attention): each half-precision key and value row is loaded and widened
// once for all of them, instead of once per head. Per head the sums run in the order of
// dot_rows_f16 and weighted_sum_rows_f16 (vec_ops.h), so the results are bitwise theirs.
#pragma once

#include <cstdint>

namespace lazyllm::kernels {

// scores[h * lds + r] = dot(row r, q + h * ldq) over hd values, for h < heads, r < n; row r of
// the cache starts at base + rows[r] * stride.
void dot_rows_f16_heads(const uint16_t* base, int64_t stride, const int* rows, int n, const float* q, int64_t ldq,
                        int heads, int hd, float* scores, int64_t lds);

// out[h * ldo + i] = sum_r w[h * ldw + r] * row r [i], for h < heads, i < hd (a head's rows with
// a zero weight are skipped, as weighted_sum_rows_f16 skips them).
void weighted_sum_rows_f16_heads(const uint16_t* base, int64_t stride, const int* rows, int n, const float* w,
                                 int64_t ldw, int heads, int hd, float* out, int64_t ldo);

}  // namespace lazyllm::kernels
