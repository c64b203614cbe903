// Small vector kernels used by the forward pass (SIMD through Highway with runtime dispatch).
#pragma once

#include <cstdint>

namespace lazyllm {

float dot_f32(const float* a, const float* b, int64_t n);
// y += a * x
void axpy_f32(float a, const float* x, float* y, int64_t n);
// x = exp(x - max(x)) / sum; returns the sum before normalisation. Entries equal to -inf give 0.
float softmax_inplace(float* x, int64_t n);
// out = x / rms(x) * w   (sum of squares accumulated in double, as llama.cpp does)
void rmsnorm(const float* x, const float* w, float* out, int64_t n, float eps);
// g = silu(g) * u
void silu_mul(float* g, const float* u, int64_t n);
// y += x
void add_inplace(float* y, const float* x, int64_t n);

// Half-float (IEEE binary16, stored as uint16_t) helpers for the KV cache.
float dot_f16_f32(const uint16_t* a, const float* b, int64_t n);
void axpy_f16(float a, const uint16_t* x, float* y, int64_t n);  // y += a * x
void f16_to_f32(const uint16_t* x, float* y, int64_t n);
// Attention over gathered cache rows: row r of the cache starts at base + rows[r] * stride.
// out[r] = dot(row r, q) over hd values.
void dot_rows_f16(const uint16_t* base, int64_t stride, const int* rows, int n, const float* q, int hd, float* out);
void dot_rows_f32(const float* base, int64_t stride, const int* rows, int n, const float* q, int hd, float* out);
// out[0..hd) = sum_r w[r] * row r (rows with w[r] == 0 are skipped).
void weighted_sum_rows_f16(const uint16_t* base, int64_t stride, const int* rows, int n, const float* w, int hd, float* out);
void weighted_sum_rows_f32(const float* base, int64_t stride, const int* rows, int n, const float* w, int hd, float* out);
// Rounds each value to the nearest half float (what storing and reloading it as f16 gives).
void round_to_f16(float* x, int64_t n);
// y = x rounded to half precision (fp32_to_fp16, vectorized where the CPU converts in hardware).
void f32_to_f16(const float* x, uint16_t* y, int64_t n);

}  // namespace lazyllm
