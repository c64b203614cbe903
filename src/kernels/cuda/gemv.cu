// Matrix-vector products for decode (one to four activation rows), written to stream the bf16
// weights at close to memory bandwidth: the activation rows sit in shared memory (made there by
// the fused RMSNorm when asked), each warp takes two weight rows, and each lane keeps eight to
// sixteen 16-byte weight loads in flight (L1-bypassing, software-pipelined, the first ones
// issued before the activation rows are ready). SwiGLU fuses the gate and up rows of one output
// into one warp.
#include <cuda_bf16.h>

#include <cstdlib>
#include <mutex>
#include <string_view>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/gemv_common.cuh"
#include "kernels/cuda/pdl.h"

namespace lazyllm::cuda {
namespace {

using namespace gemv_detail;

constexpr int kUnroll = 4;  // 16-byte loads per weight row in flight per lane

__device__ inline float dot8(const uint4& w, const uint4& x, float acc) {
  const __nv_bfloat162* w2 = reinterpret_cast<const __nv_bfloat162*>(&w);
  const __nv_bfloat162* x2 = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 wf = __bfloat1622float2(w2[e]), xf = __bfloat1622float2(x2[e]);
    acc = fmaf(wf.x, xf.x, acc);
    acc = fmaf(wf.y, xf.y, acc);
  }
  return acc;
}

template <int M, bool SWIGLU, bool NORM>
__global__ void __launch_bounds__(kThreads) gemv_kernel(GemvArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* xs = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  const int k = a.k, n_vec = k / 8, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  // This warp's two weight rows: SwiGLU's gate and up rows of one output, else two outputs.
  int row0, row1;
  bool has1 = true;
  if constexpr (SWIGLU) {
    row0 = blockIdx.x * kWarps + warp;
    row1 = a.n_out + row0;
  } else {
    row0 = (blockIdx.x * kWarps + warp) * 2;
    has1 = row0 + 1 < a.n_out;
    row1 = has1 ? row0 + 1 : row0;
  }
  const bool active = row0 < a.n_out;
  const uint4* w0 = reinterpret_cast<const uint4*>(a.w + static_cast<int64_t>(active ? row0 : 0) * k);
  const uint4* w1 = reinterpret_cast<const uint4*>(a.w + static_cast<int64_t>(active ? row1 : 0) * k);
  // Software pipeline: the loads of chunk c + 1 are in flight while chunk c is multiplied; the
  // first chunk's go out before the activation rows are made, which does not need them.
  uint4 wa[kUnroll], wb[kUnroll];
  auto load = [&](int base, uint4 (&ra)[kUnroll], uint4 (&rb)[kUnroll]) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int idx = base + u * 32 + lane;
      ra[u] = rb[u] = make_uint4(0, 0, 0, 0);
      if (active && idx < n_vec) {
        ra[u] = load_stream(w0 + idx);
        rb[u] = load_stream(w1 + idx);
      }
    }
  };
  load(0, wa, wb);
  // Weights are constants: their first loads go out before the kernel before this one is done.
  pdl_trigger();
  pdl_wait();

  // The activation rows into shared memory (RMSNorm'd from float rows when fused).
  if constexpr (NORM) {
    float scales[M];
    rms_scales<M>(a, scales);
#pragma unroll
    for (int mi = 0; mi < M; ++mi) {
      const float scale = scales[mi];
      const float4* src = reinterpret_cast<const float4*>(a.norm_in + static_cast<int64_t>(mi) * k);
      const float4* nw = reinterpret_cast<const float4*>(a.norm_w);
      __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(xs + static_cast<int64_t>(mi) * k);
      for (int c = threadIdx.x; c < k / 4; c += kThreads) {
        const float4 v = src[c], w = nw[c];
        dst[2 * c] = __floats2bfloat162_rn(v.x * scale * w.x, v.y * scale * w.y);
        dst[2 * c + 1] = __floats2bfloat162_rn(v.z * scale * w.z, v.w * scale * w.w);
      }
    }
  } else {
    const uint4* src = reinterpret_cast<const uint4*>(a.x);
    uint4* dst = reinterpret_cast<uint4*>(xs);
    for (int i = threadIdx.x; i < M * n_vec; i += kThreads) dst[i] = src[i];
  }
  __syncthreads();

  if (!active) return;
  const uint4* xv = reinterpret_cast<const uint4*>(xs);
  float acc0[M], acc1[M];
#pragma unroll
  for (int mi = 0; mi < M; ++mi) acc0[mi] = acc1[mi] = 0.0f;

  for (int base = 0; base < n_vec; base += 32 * kUnroll) {
    uint4 na[kUnroll], nb[kUnroll];
    load(base + 32 * kUnroll, na, nb);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int idx = base + u * 32 + lane;
      if (idx < n_vec) {
#pragma unroll
        for (int mi = 0; mi < M; ++mi) {
          const uint4 x = xv[mi * n_vec + idx];
          acc0[mi] = dot8(wa[u], x, acc0[mi]);
          acc1[mi] = dot8(wb[u], x, acc1[mi]);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wa[u] = na[u], wb[u] = nb[u];
  }

#pragma unroll
  for (int mi = 0; mi < M; ++mi) {
    const float v0 = warp_sum(acc0[mi]), v1 = warp_sum(acc1[mi]);
    if (lane != 0) continue;
    if constexpr (SWIGLU) {
      static_cast<__nv_bfloat16*>(a.y)[y_index(a, mi, row0)] = swiglu_out(v0, v1);
    } else if (a.finish.q) {
      finish_pair(a, mi, a.finish_row0 + row0, v0, v1);
    } else {
      store(a, y_index(a, mi, row0), v0);
      if (has1) store(a, y_index(a, mi, row0 + 1), v1);
    }
  }
}

template <int M, bool SWIGLU, bool NORM>
void launch(const GemvArgs& a, cudaStream_t s) {
  const int per_block = SWIGLU ? kWarps : 2 * kWarps;
  const size_t smem = static_cast<size_t>(M) * a.k * sizeof(uint16_t);
  launch_pdl("gemv_kernel", gemv_kernel<M, SWIGLU, NORM>, dim3((a.n_out + per_block - 1) / per_block), dim3(kThreads),
             smem, s, a);
}

template <int M>
void launch_m(const GemvArgs& a, cudaStream_t s) {
  const bool norm = a.norm_in != nullptr;
  if (a.swiglu) return norm ? launch<M, true, true>(a, s) : launch<M, true, false>(a, s);
  return norm ? launch<M, false, true>(a, s) : launch<M, false, false>(a, s);
}

template <int M>
void prepare_m() {
  const int smem = static_cast<int>(kMaxSmem);
  const char* what = "cudaFuncSetAttribute(gemv_kernel)";
  check(cudaFuncSetAttribute(gemv_kernel<M, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), what);
  check(cudaFuncSetAttribute(gemv_kernel<M, true, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), what);
  check(cudaFuncSetAttribute(gemv_kernel<M, false, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), what);
  check(cudaFuncSetAttribute(gemv_kernel<M, false, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), what);
}

}  // namespace

int gemv_max_rows() {
  static const int rows = [] {
    const char* e = std::getenv("LAZYLLM_CUDA_GEMV_ROWS");
    const int v = e ? std::atoi(e) : 0;
    return v >= 1 && v <= kGemvMaxRows ? v : kGemvDefaultRows;
  }();
  return rows;
}

bool gemv_applies(int m, int k) {
  return m >= 1 && m <= gemv_max_rows() && k % 8 == 0 && static_cast<size_t>(m) * k * sizeof(uint16_t) <= kMaxSmem;
}

bool gemv_applies(WeightFormat f, int m, int k) {
  return f == WeightFormat::kBf16 ? gemv_applies(m, k) : gemv_quant_applies(f, m, k);
}

void gemv_prepare() {
  static std::once_flag once;
  std::call_once(once, [] {
    prepare_m<1>();
    prepare_m<2>();
    prepare_m<3>();
    prepare_m<4>();
    gemv_quant_prepare();
  });
}

void gemv(const GemvArgs& a, cudaStream_t stream) {
  if (a.q.format != WeightFormat::kBf16) return gemv_quant(a, stream);
  if (!gemv_applies(a.m, a.k)) throw Error("gemv: unsupported shape");
  if (a.swiglu && (a.y_f32 || a.beta != 0.0f)) throw Error("gemv: SwiGLU writes bf16 without accumulation");
  gemv_prepare();
  switch (a.m) {
    case 1: return launch_m<1>(a, stream);
    case 2: return launch_m<2>(a, stream);
    case 3: return launch_m<3>(a, stream);
    case 4: return launch_m<4>(a, stream);
  }
}

void gemv(const bf16_t* w, int n_out, int k, const bf16_t* x, int m, void* y, bool y_f32, float beta,
          cudaStream_t stream) {
  GemvArgs a;
  a.w = w, a.n_out = n_out, a.k = k, a.m = m, a.x = x, a.y = y, a.y_f32 = y_f32, a.beta = beta;
  gemv(a, stream);
}

namespace {
thread_local bool t_pdl_allowed = true;
}  // namespace

bool pdl_enabled() {
  static const bool hopper = [] {
    int dev = 0, major = 0;
    return cudaGetDevice(&dev) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
  }();
  return hopper && t_pdl_allowed;
}

bool pdl_env_allows() {
  const char* e = std::getenv("LAZYLLM_CUDA_PDL");
  return !(e && (std::string_view(e) == "0" || std::string_view(e) == "off"));
}

PdlScope::PdlScope(bool allow) : saved_(t_pdl_allowed) { t_pdl_allowed = allow; }
PdlScope::~PdlScope() { t_pdl_allowed = saved_; }

}  // namespace lazyllm::cuda
