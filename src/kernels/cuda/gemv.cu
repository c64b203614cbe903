// Matrix-vector products for decode (one to four activation rows): a warp per weight row,
// 16-byte loads, so decode streams the bf16 weights near memory bandwidth.
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemv.h"

namespace lazyllm::cuda {
namespace {

constexpr int kWarps = 8;

template <int M>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const __nv_bfloat16* w, int n_out, int k,
                                                           const __nv_bfloat16* x, void* y, bool y_f32, float beta) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r = blockIdx.x * kWarps + warp;
  if (r >= n_out) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(r) * k);
  float acc[M] = {};
  const int n_vec = k / 8;
  for (int i = lane; i < n_vec; i += 32) {
    const uint4 wv = wr[i];
    const __nv_bfloat162* w2 = reinterpret_cast<const __nv_bfloat162*>(&wv);
#pragma unroll
    for (int mi = 0; mi < M; ++mi) {
      const uint4 xv = reinterpret_cast<const uint4*>(x + static_cast<int64_t>(mi) * k)[i];
      const __nv_bfloat162* x2 = reinterpret_cast<const __nv_bfloat162*>(&xv);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 wf = __bfloat1622float2(w2[e]), xf = __bfloat1622float2(x2[e]);
        acc[mi] += wf.x * xf.x + wf.y * xf.y;
      }
    }
  }
#pragma unroll
  for (int mi = 0; mi < M; ++mi) {
    float v = acc[mi];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) {
      const int64_t idx = static_cast<int64_t>(mi) * n_out + r;
      if (y_f32) {
        float* yf = static_cast<float*>(y) + idx;
        *yf = beta != 0.0f ? v + beta * *yf : v;
      } else {
        __nv_bfloat16* yb = static_cast<__nv_bfloat16*>(y) + idx;
        *yb = __float2bfloat16(beta != 0.0f ? v + beta * __bfloat162float(*yb) : v);
      }
    }
  }
}

template <int M>
void launch(const bf16_t* w, int n_out, int k, const bf16_t* x, void* y, bool y_f32, float beta, cudaStream_t s) {
  gemv_kernel<M><<<(n_out + kWarps - 1) / kWarps, kWarps * 32, 0, s>>>(
      reinterpret_cast<const __nv_bfloat16*>(w), n_out, k, reinterpret_cast<const __nv_bfloat16*>(x), y, y_f32, beta);
  check_launch("gemv_kernel");
}

}  // namespace

bool gemv_applies(int m, int k) { return m >= 1 && m <= kGemvMaxRows && k % 8 == 0; }

void gemv(const bf16_t* w, int n_out, int k, const bf16_t* x, int m, void* y, bool y_f32, float beta,
          cudaStream_t stream) {
  switch (m) {
    case 1: return launch<1>(w, n_out, k, x, y, y_f32, beta, stream);
    case 2: return launch<2>(w, n_out, k, x, y, y_f32, beta, stream);
    case 3: return launch<3>(w, n_out, k, x, y, y_f32, beta, stream);
    case 4: return launch<4>(w, n_out, k, x, y, y_f32, beta, stream);
  }
  throw Error("gemv: unsupported row count");
}

}  // namespace lazyllm::cuda
