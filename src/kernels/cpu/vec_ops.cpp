#include "kernels/cpu/vec_ops.h"

#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quant.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/vec_ops.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "hwy/contrib/math/math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lazyllm {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float DotImpl(const float* a, const float* b, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = hn::Lanes(d);
  auto s0 = hn::Zero(d), s1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(d, a + i + N), hn::LoadU(d, b + i + N), s1);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
  float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void AxpyImpl(float a, const float* x, float* y, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = hn::Lanes(d);
  const auto va = hn::Set(d, a);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, y + i);
  for (; i < n; ++i) y[i] += a * x[i];
}

void AddImpl(float* y, const float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = hn::Lanes(d);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Add(hn::LoadU(d, y + i), hn::LoadU(d, x + i)), d, y + i);
  for (; i < n; ++i) y[i] += x[i];
}

// Lane-wise max(m, v) that keeps m where v is NaN (a NaN compares false), so the lanes never
// hold a NaN.
template <class V>
HWY_INLINE V TakeGreater(V m, V v) {
  return hn::IfThenElse(hn::Gt(v, m), v, m);
}

// The maximum of x[0, n) (-inf when empty); NaNs are skipped, as by a scalar `x > mx` scan.
// Vector lanes, four accumulators: a scalar scan waits on each comparison in turn, and over the
// thousands of keys of a long prompt's attention rows that wait cost more than the exponentials.
float MaxImpl(const float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = hn::Lanes(d);
  const auto ninf = hn::Set(d, -std::numeric_limits<float>::infinity());
  auto m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    m0 = TakeGreater(m0, hn::LoadU(d, x + i));
    m1 = TakeGreater(m1, hn::LoadU(d, x + i + N));
    m2 = TakeGreater(m2, hn::LoadU(d, x + i + 2 * N));
    m3 = TakeGreater(m3, hn::LoadU(d, x + i + 3 * N));
  }
  for (; i + N <= n; i += N) m0 = TakeGreater(m0, hn::LoadU(d, x + i));
  m0 = TakeGreater(TakeGreater(m0, m1), TakeGreater(m2, m3));
  float mx = hn::GetLane(hn::MaxOfLanes(d, m0));
  for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  return mx;
}

float SoftmaxImpl(float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = hn::Lanes(d);
  const float mx = MaxImpl(x, n);
  if (mx == -std::numeric_limits<float>::infinity()) {  // nothing visible: all zero
    for (int64_t i = 0; i < n; ++i) x[i] = 0;
    return 0;
  }
  const auto vmax = hn::Set(d, mx);
  auto vsum = hn::Zero(d);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    auto e = hn::Exp(d, hn::Sub(hn::LoadU(d, x + i), vmax));
    hn::StoreU(e, d, x + i);
    vsum = hn::Add(vsum, e);
  }
  float sum = hn::GetLane(hn::SumOfLanes(d, vsum));
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  const auto vinv = hn::Set(d, inv);
  i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(d, x + i), vinv), d, x + i);
  for (; i < n; ++i) x[i] *= inv;
  return sum;
}

void SiluMulImpl(float* g, const float* u, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = hn::Lanes(d);
  const auto one = hn::Set(d, 1.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    auto x = hn::LoadU(d, g + i);
    auto s = hn::Div(x, hn::Add(one, hn::Exp(d, hn::Neg(x))));
    hn::StoreU(hn::Mul(s, hn::LoadU(d, u + i)), d, g + i);
  }
  for (; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

using F16Tag = hn::Rebind<hwy::float16_t, hn::ScalableTag<float>>;

float DotF16Impl(const uint16_t* a, const float* b, int64_t n) {
  const hn::ScalableTag<float> d;
  const F16Tag dh;
  const int64_t N = hn::Lanes(d);
  const auto* ah = reinterpret_cast<const hwy::float16_t*>(a);
  auto s0 = hn::Zero(d);
  int64_t i = 0;
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, ah + i)), hn::LoadU(d, b + i), s0);
  float s = hn::GetLane(hn::SumOfLanes(d, s0));
  for (; i < n; ++i) s += fp16_to_fp32(a[i]) * b[i];
  return s;
}

void AxpyF16Impl(float a, const uint16_t* x, float* y, int64_t n) {
  const hn::ScalableTag<float> d;
  const F16Tag dh;
  const int64_t N = hn::Lanes(d);
  const auto* xh = reinterpret_cast<const hwy::float16_t*>(x);
  const auto va = hn::Set(d, a);
  int64_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::MulAdd(va, hn::PromoteTo(d, hn::LoadU(dh, xh + i)), hn::LoadU(d, y + i)), d, y + i);
  for (; i < n; ++i) y[i] += a * fp16_to_fp32(x[i]);
}

void F16ToF32Impl(const uint16_t* x, float* y, int64_t n) {
  const hn::ScalableTag<float> d;
  const F16Tag dh;
  const int64_t N = hn::Lanes(d);
  const auto* xh = reinterpret_cast<const hwy::float16_t*>(x);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, xh + i)), d, y + i);
  for (; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}

// x = x rounded to half precision and back. With F16C (AVX2 and the AVX-512 targets) the
// hardware conversion rounds to nearest-even as fp32_to_fp16 does, bit for bit; Highway's
// emulation on older targets truncates, so those keep the scalar loop.
void RoundToF16Impl(float* x, int64_t n) {
  int64_t i = 0;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  const hn::ScalableTag<float> d;
  const F16Tag dh;
  const int64_t N = hn::Lanes(d);
  for (; i + N <= n; i += N) hn::StoreU(hn::PromoteTo(d, hn::DemoteTo(dh, hn::LoadU(d, x + i))), d, x + i);
#endif
  for (; i < n; ++i) x[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
}

// y = x in half precision, as fp32_to_fp16 rounds (the hardware conversion where there is one;
// see RoundToF16Impl).
void F32ToF16Impl(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  const hn::ScalableTag<float> d;
  const F16Tag dh;
  const int64_t N = hn::Lanes(d);
  auto* yh = reinterpret_cast<hwy::float16_t*>(y);
  for (; i + N <= n; i += N) hn::StoreU(hn::DemoteTo(dh, hn::LoadU(d, x + i)), dh, yh + i);
#endif
  for (; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

void DotRowsF16Impl(const uint16_t* base, int64_t stride, const int* rows, int n, const float* q, int hd, float* out) {
  for (int r = 0; r < n; ++r) out[r] = DotF16Impl(base + rows[r] * stride, q, hd);
}
void DotRowsF32Impl(const float* base, int64_t stride, const int* rows, int n, const float* q, int hd, float* out) {
  for (int r = 0; r < n; ++r) out[r] = DotImpl(base + rows[r] * stride, q, hd);
}
void WeightedSumRowsF16Impl(const uint16_t* base, int64_t stride, const int* rows, int n, const float* w, int hd,
                            float* out) {
  for (int i = 0; i < hd; ++i) out[i] = 0.0f;
  for (int r = 0; r < n; ++r)
    if (w[r] != 0.0f) AxpyF16Impl(w[r], base + rows[r] * stride, out, hd);
}
void WeightedSumRowsF32Impl(const float* base, int64_t stride, const int* rows, int n, const float* w, int hd,
                            float* out) {
  for (int i = 0; i < hd; ++i) out[i] = 0.0f;
  for (int r = 0; r < n; ++r)
    if (w[r] != 0.0f) AxpyImpl(w[r], base + rows[r] * stride, out, hd);
}

}  // namespace HWY_NAMESPACE
}  // namespace lazyllm
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lazyllm {

HWY_EXPORT(DotImpl);
HWY_EXPORT(AxpyImpl);
HWY_EXPORT(AddImpl);
HWY_EXPORT(SoftmaxImpl);
HWY_EXPORT(SiluMulImpl);
HWY_EXPORT(DotF16Impl);
HWY_EXPORT(AxpyF16Impl);
HWY_EXPORT(F16ToF32Impl);
HWY_EXPORT(RoundToF16Impl);
HWY_EXPORT(F32ToF16Impl);
HWY_EXPORT(DotRowsF16Impl);
HWY_EXPORT(DotRowsF32Impl);
HWY_EXPORT(WeightedSumRowsF16Impl);
HWY_EXPORT(WeightedSumRowsF32Impl);

void dot_rows_f16(const uint16_t* base, int64_t stride, const int* rows, int n, const float* q, int hd, float* out) {
  LAZYLLM_HWY_DISPATCH(DotRowsF16Impl)(base, stride, rows, n, q, hd, out);
}
void dot_rows_f32(const float* base, int64_t stride, const int* rows, int n, const float* q, int hd, float* out) {
  LAZYLLM_HWY_DISPATCH(DotRowsF32Impl)(base, stride, rows, n, q, hd, out);
}
void weighted_sum_rows_f16(const uint16_t* base, int64_t stride, const int* rows, int n, const float* w, int hd,
                           float* out) {
  LAZYLLM_HWY_DISPATCH(WeightedSumRowsF16Impl)(base, stride, rows, n, w, hd, out);
}
void weighted_sum_rows_f32(const float* base, int64_t stride, const int* rows, int n, const float* w, int hd,
                           float* out) {
  LAZYLLM_HWY_DISPATCH(WeightedSumRowsF32Impl)(base, stride, rows, n, w, hd, out);
}

float dot_f16_f32(const uint16_t* a, const float* b, int64_t n) { return LAZYLLM_HWY_DISPATCH(DotF16Impl)(a, b, n); }
void axpy_f16(float a, const uint16_t* x, float* y, int64_t n) { LAZYLLM_HWY_DISPATCH(AxpyF16Impl)(a, x, y, n); }
void f16_to_f32(const uint16_t* x, float* y, int64_t n) { LAZYLLM_HWY_DISPATCH(F16ToF32Impl)(x, y, n); }
void round_to_f16(float* x, int64_t n) { LAZYLLM_HWY_DISPATCH(RoundToF16Impl)(x, n); }
void f32_to_f16(const float* x, uint16_t* y, int64_t n) { LAZYLLM_HWY_DISPATCH(F32ToF16Impl)(x, y, n); }

float dot_f32(const float* a, const float* b, int64_t n) { return LAZYLLM_HWY_DISPATCH(DotImpl)(a, b, n); }
void axpy_f32(float a, const float* x, float* y, int64_t n) { LAZYLLM_HWY_DISPATCH(AxpyImpl)(a, x, y, n); }
void add_inplace(float* y, const float* x, int64_t n) { LAZYLLM_HWY_DISPATCH(AddImpl)(y, x, n); }
float softmax_inplace(float* x, int64_t n) { return LAZYLLM_HWY_DISPATCH(SoftmaxImpl)(x, n); }
void silu_mul(float* g, const float* u, int64_t n) { LAZYLLM_HWY_DISPATCH(SiluMulImpl)(g, u, n); }

void rmsnorm(const float* x, const float* w, float* out, int64_t n, float eps) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

}  // namespace lazyllm
#endif  // HWY_ONCE
