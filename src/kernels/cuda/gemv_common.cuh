// What the matrix-vector kernels share (gemv.cu: bf16; gemv_quant.cu: Q8_0 and Q4_0;
// gemv_kquant.cu: the K-quants): streaming loads, the fused RMSNorm's scales, the activation rows
// made into 8-bit blocks in shared memory, the output store, and the grid size.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/gemv.h"

namespace lazyllm::cuda::gemv_detail {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr size_t kMaxSmem = 200 * 1024;

__device__ inline uint4 load_stream(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

__device__ inline float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }

__device__ inline float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Where row mi, output o of Y is.
__device__ inline int64_t y_index(const GemvArgs& a, int mi, int o) {
  return static_cast<int64_t>(mi) * (a.ldy > 0 ? a.ldy : a.n_out) + o;
}

__device__ inline void store(const GemvArgs& a, int64_t idx, float v) {
  if (a.y_f32) {
    float* yf = static_cast<float*>(a.y) + idx;
    *yf = a.beta != 0.0f ? v + a.beta * *yf : v;
  } else {
    __nv_bfloat16* yb = static_cast<__nv_bfloat16*>(a.y) + idx;
    *yb = __float2bfloat16(a.beta != 0.0f ? v + a.beta * __bfloat162float(*yb) : v);
  }
}

// SwiGLU's output for gate and up sums, as the unfused path: both rounded to bf16 (the GEMM's
// output type) first.
__device__ inline __nv_bfloat16 swiglu_out(float gate, float up) {
  const float g = __bfloat162float(__float2bfloat16(gate)), u = __bfloat162float(__float2bfloat16(up));
  return __float2bfloat16(g / (1.0f + __expf(-g)) * u);
}

// The fused RMSNorm's 1 / rms of each of the M float rows of a.norm_in (k each). Every thread of
// the block calls it; it ends with a barrier.
template <int M>
__device__ inline void rms_scales(const GemvArgs& a, float (&scale)[M]) {
  const int k = a.k, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __shared__ float red[kWarps][M];
#pragma unroll
  for (int mi = 0; mi < M; ++mi) {
    const float4* src = reinterpret_cast<const float4*>(a.norm_in + static_cast<int64_t>(mi) * k);
    float ss = 0.0f;
    for (int c = threadIdx.x; c < k / 4; c += kThreads) {
      const float4 v = src[c];
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    ss = warp_sum(ss);
    if (lane == 0) red[warp][mi] = ss;
  }
  __syncthreads();
#pragma unroll
  for (int mi = 0; mi < M; ++mi) {
    float ss = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) ss += red[w][mi];
    scale[mi] = rsqrtf(ss / k + a.eps);
  }
}

// Shared memory of the activation rows: m rows of k int8 quants, then per 32-element block of
// each row its scale and 8 x scale x the sum of its quants (Q4_0's offset), as floats.
inline size_t x_smem_bytes(int m, int k) { return static_cast<size_t>(m) * k + 2 * sizeof(float) * m * (k / kQBlock); }

// Makes the M activation rows (from a.x, or RMSNorm of a.norm_in) into 8-bit blocks of 32 in
// shared memory: xq (M rows of k), xd (each block's scale), xo (8 x scale x the block's sum).
// Every thread of the block calls it; it ends with a barrier. It runs after the wait for the
// kernel before (the rows are its output) and before any product, so its memory round trips add
// up over the ~130 products of a token: each thread issues all its loads of a round at once (P
// blocks' worth; one round covers a 4096-element norm row or a 12288-element bf16 row), and the
// RMSNorm's sums of squares are taken from the same loads where a single row fits one round.
// The sums run a row at a time in one layout, so a row gets the same bits alone or beside another.
template <int M, bool NORM>
__device__ inline void quantize_x(const GemvArgs& a, int8_t* xq, float* xd, float* xo) {
  constexpr int P = NORM ? 4 : 12, kGroups = kThreads / 8, kPerRound = P * kGroups;
  const int k = a.k, nb = k / kQBlock, sub = threadIdx.x & 7, g8 = threadIdx.x >> 3;
  // Eight threads a 32-element block, four elements each: block ib = base + j * kGroups + g8.
  float4 hv[NORM ? P : 1], nw[NORM ? P : 1];
  uint2 raw[NORM ? 1 : P];
  auto load_round = [&](int mi, int base) {
#pragma unroll
    for (int j = 0; j < P; ++j) {
      const int ib = base + j * kGroups + g8;
      const int64_t at = static_cast<int64_t>(mi) * k + ib * kQBlock + sub * 4;
      if constexpr (NORM) {
        hv[j] = ib < nb ? *reinterpret_cast<const float4*>(a.norm_in + at) : make_float4(0.f, 0.f, 0.f, 0.f);
        nw[j] = ib < nb ? *reinterpret_cast<const float4*>(a.norm_w + ib * kQBlock + sub * 4)
                        : make_float4(0.f, 0.f, 0.f, 0.f);
      } else {
        raw[j] = ib < nb ? *reinterpret_cast<const uint2*>(a.x + at) : make_uint2(0, 0);
      }
    }
  };
  float scale[M];
#pragma unroll
  for (int mi = 0; mi < M; ++mi) scale[mi] = 1.0f;
  const bool held = NORM && M == 1 && nb <= kPerRound;  // the row stays in registers
  if constexpr (NORM) {
    __shared__ float red[kWarps][M];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
    for (int mi = 0; mi < M; ++mi) {
      float ss = 0.0f;
      for (int base = 0; base < nb; base += kPerRound) {
        load_round(mi, base);
#pragma unroll
        for (int j = 0; j < P; ++j) ss += hv[j].x * hv[j].x + hv[j].y * hv[j].y + hv[j].z * hv[j].z + hv[j].w * hv[j].w;
      }
      ss = warp_sum(ss);
      if (lane == 0) red[warp][mi] = ss;
    }
    __syncthreads();
#pragma unroll
    for (int mi = 0; mi < M; ++mi) {
      float t = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) t += red[w][mi];
      scale[mi] = rsqrtf(t / k + a.eps);
    }
  }
#pragma unroll
  for (int mi = 0; mi < M; ++mi) {
    for (int base = 0; base < nb; base += kPerRound) {
      if (!held) load_round(mi, base);
#pragma unroll
      for (int j = 0; j < P; ++j) {
        float v[4];
        if constexpr (NORM) {
          const float s = scale[mi];
          v[0] = hv[j].x * s * nw[j].x, v[1] = hv[j].y * s * nw[j].y;
          v[2] = hv[j].z * s * nw[j].z, v[3] = hv[j].w * s * nw[j].w;
        } else {
          const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw[j].x));
          const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw[j].y));
          v[0] = lo.x, v[1] = lo.y, v[2] = hi.x, v[3] = hi.y;
        }
        // Every lane of a warp runs the shuffles (the eight of a block reduce together).
        float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
#pragma unroll
        for (int o = 1; o < 8; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int packed = 0, sum = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int q = __float2int_rn(v[i] * inv);
          packed |= (q & 0xFF) << (8 * i);
          sum += q;
        }
#pragma unroll
        for (int o = 1; o < 8; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        const int ib = base + j * kGroups + g8;
        if (ib < nb) {
          *reinterpret_cast<int*>(xq + static_cast<size_t>(mi) * k + ib * kQBlock + sub * 4) = packed;
          if (sub == 0) {
            const float d = amax / 127.0f;
            xd[mi * nb + ib] = d;
            xo[mi * nb + ib] = 8.0f * d * static_cast<float>(sum);
          }
        }
      }
    }
  }
  __syncthreads();
}

__device__ inline unsigned byte_of(const uint4& v, int i) {
  const unsigned w = i < 4 ? v.x : i < 8 ? v.y : i < 12 ? v.z : v.w;
  return (w >> (8 * (i & 3))) & 0xFFu;
}

// Q4_K/Q5_K: group j's 6-bit scale and min from a Q4_K/Q5_K header (d, dmin, then scales[12] in bytes 4-15).
__device__ inline void scale_min(const uint4& hdr, int j, float* sc, float* m) {
  auto s = [&](int i) { return byte_of(hdr, 4 + i); };
  if (j < 4) {
    *sc = static_cast<float>(s(j) & 63);
    *m = static_cast<float>(s(j + 4) & 63);
  } else {
    *sc = static_cast<float>((s(j + 4) & 0xF) | ((s(j - 4) >> 6) << 4));
    *m = static_cast<float>((s(j + 4) >> 4) | ((s(j) >> 6) << 4));
  }
}

__device__ inline uint32_t pack_bf16(float a, float b) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Host side (gemv_quant.cu).
int sm_count();
// Blocks of `kernel` resident on the whole GPU with `smem` bytes of shared memory each (at least
// one an SM); cached per kernel and size.
int resident_blocks(const void* kernel, size_t smem);

// gemv_kquant.cu: the K-quant formats' products, shared-memory limits, dequantization and
// embedding rows (called by gemv_quant.cu's entry points).
void gemv_kquant(const GemvArgs& a, cudaStream_t stream);
void gemv_kquant_prepare();
void dequantize_kquant_bf16(const WeightRef& w, int64_t rows, int k, bf16_t* out, cudaStream_t stream);
void embed_kquant(const WeightRef& table, const int32_t* tokens, int n, int d, float* out, cudaStream_t stream);

}  // namespace lazyllm::cuda::gemv_detail
