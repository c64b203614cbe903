#include "kernels/cpu/attention_heads.h"

#include <algorithm>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quant.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/attention_heads.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lazyllm::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using F16Tag = hn::Rebind<hwy::float16_t, hn::ScalableTag<float>>;

// Up to four heads a pass: their accumulators stay in registers (vectors of scalable size cannot
// be array elements, hence the named ones).
template <int B>
void DotBlock(const uint16_t* base, int64_t stride, const int* rows, int n, const float* q, int64_t ldq, int hd,
              float* scores, int64_t lds) {
  const hn::ScalableTag<float> d;
  const F16Tag dh;
  const int64_t N = hn::Lanes(d);
  for (int r = 0; r < n; ++r) {
    const uint16_t* k = base + rows[r] * stride;
    const auto* kh = reinterpret_cast<const hwy::float16_t*>(k);
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    int64_t i = 0;
    for (; i + N <= hd; i += N) {
      const auto kv = hn::PromoteTo(d, hn::LoadU(dh, kh + i));
      a0 = hn::MulAdd(kv, hn::LoadU(d, q + i), a0);
      if constexpr (B > 1) a1 = hn::MulAdd(kv, hn::LoadU(d, q + ldq + i), a1);
      if constexpr (B > 2) a2 = hn::MulAdd(kv, hn::LoadU(d, q + 2 * ldq + i), a2);
      if constexpr (B > 3) a3 = hn::MulAdd(kv, hn::LoadU(d, q + 3 * ldq + i), a3);
    }
    float s[4] = {hn::GetLane(hn::SumOfLanes(d, a0)), 0.0f, 0.0f, 0.0f};
    if constexpr (B > 1) s[1] = hn::GetLane(hn::SumOfLanes(d, a1));
    if constexpr (B > 2) s[2] = hn::GetLane(hn::SumOfLanes(d, a2));
    if constexpr (B > 3) s[3] = hn::GetLane(hn::SumOfLanes(d, a3));
    for (int h = 0; h < B; ++h) {
      for (int64_t t = i; t < hd; ++t) s[h] += fp16_to_fp32(k[t]) * q[h * ldq + t];
      scores[h * lds + r] = s[h];
    }
  }
}

template <int B>
void WeightedSumBlock(const uint16_t* base, int64_t stride, const int* rows, int n, const float* w, int64_t ldw, int hd,
                      float* out, int64_t ldo) {
  const hn::ScalableTag<float> d;
  const F16Tag dh;
  const int64_t N = hn::Lanes(d);
  int64_t i = 0;
  for (; i + N <= hd; i += N) {
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (int r = 0; r < n; ++r) {
      const auto* vh = reinterpret_cast<const hwy::float16_t*>(base + rows[r] * stride);
      const auto v = hn::PromoteTo(d, hn::LoadU(dh, vh + i));
      if (w[r] != 0.0f) a0 = hn::MulAdd(hn::Set(d, w[r]), v, a0);
      if constexpr (B > 1)
        if (w[ldw + r] != 0.0f) a1 = hn::MulAdd(hn::Set(d, w[ldw + r]), v, a1);
      if constexpr (B > 2)
        if (w[2 * ldw + r] != 0.0f) a2 = hn::MulAdd(hn::Set(d, w[2 * ldw + r]), v, a2);
      if constexpr (B > 3)
        if (w[3 * ldw + r] != 0.0f) a3 = hn::MulAdd(hn::Set(d, w[3 * ldw + r]), v, a3);
    }
    hn::StoreU(a0, d, out + i);
    if constexpr (B > 1) hn::StoreU(a1, d, out + ldo + i);
    if constexpr (B > 2) hn::StoreU(a2, d, out + 2 * ldo + i);
    if constexpr (B > 3) hn::StoreU(a3, d, out + 3 * ldo + i);
  }
  for (; i < hd; ++i)
    for (int h = 0; h < B; ++h) {
      float s = 0.0f;
      for (int r = 0; r < n; ++r)
        if (w[h * ldw + r] != 0.0f) s += w[h * ldw + r] * fp16_to_fp32(base[rows[r] * stride + i]);
      out[h * ldo + i] = s;
    }
}

void DotRowsF16HeadsImpl(const uint16_t* base, int64_t stride, const int* rows, int n, const float* q, int64_t ldq,
                         int heads, int hd, float* scores, int64_t lds) {
  for (int h = 0; h < heads; h += 4) {
    const float* qh = q + h * ldq;
    float* sh = scores + h * lds;
    switch (std::min(4, heads - h)) {
      case 1: DotBlock<1>(base, stride, rows, n, qh, ldq, hd, sh, lds); break;
      case 2: DotBlock<2>(base, stride, rows, n, qh, ldq, hd, sh, lds); break;
      case 3: DotBlock<3>(base, stride, rows, n, qh, ldq, hd, sh, lds); break;
      default: DotBlock<4>(base, stride, rows, n, qh, ldq, hd, sh, lds); break;
    }
  }
}

void WeightedSumRowsF16HeadsImpl(const uint16_t* base, int64_t stride, const int* rows, int n, const float* w,
                                 int64_t ldw, int heads, int hd, float* out, int64_t ldo) {
  for (int h = 0; h < heads; h += 4) {
    const float* wh = w + h * ldw;
    float* oh = out + h * ldo;
    switch (std::min(4, heads - h)) {
      case 1: WeightedSumBlock<1>(base, stride, rows, n, wh, ldw, hd, oh, ldo); break;
      case 2: WeightedSumBlock<2>(base, stride, rows, n, wh, ldw, hd, oh, ldo); break;
      case 3: WeightedSumBlock<3>(base, stride, rows, n, wh, ldw, hd, oh, ldo); break;
      default: WeightedSumBlock<4>(base, stride, rows, n, wh, ldw, hd, oh, ldo); break;
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace lazyllm::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lazyllm::kernels {

HWY_EXPORT(DotRowsF16HeadsImpl);
HWY_EXPORT(WeightedSumRowsF16HeadsImpl);

void dot_rows_f16_heads(const uint16_t* base, int64_t stride, const int* rows, int n, const float* q, int64_t ldq,
                        int heads, int hd, float* scores, int64_t lds) {
  LAZYLLM_HWY_DISPATCH(DotRowsF16HeadsImpl)(base, stride, rows, n, q, ldq, heads, hd, scores, lds);
}

void weighted_sum_rows_f16_heads(const uint16_t* base, int64_t stride, const int* rows, int n, const float* w,
                                 int64_t ldw, int heads, int hd, float* out, int64_t ldo) {
  LAZYLLM_HWY_DISPATCH(WeightedSumRowsF16HeadsImpl)(base, stride, rows, n, w, ldw, heads, hd, out, ldo);
}

}  // namespace lazyllm::kernels
#endif
