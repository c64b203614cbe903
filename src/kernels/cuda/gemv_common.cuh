// What the matrix-vector kernels share (gemv.cu: bf16; gemv_quant.cu: Q8_0 and Q4_0;
// gemv_kquant.cu: the K-quants): streaming loads, the fused RMSNorm's scales, the activation rows
// made into 8-bit blocks in shared memory (by each block, or shared by a thread-block cluster's
// blocks), the fused QKV finish, the output store, and the grid size and launch.
#pragma once

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/pdl.h"

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

// Rows o and o + 1 (o even, the Q|K|V layout) of activation row mi through the QKV finish, as
// qkv_finish_kernel does for a non-NeoX rotary pair (the same operations, so the same bits).
__device__ inline void finish_pair(const GemvArgs& a, int mi, int o, float x0, float x1) {
  const QkvFinishArgs& f = a.finish;
  const int hd = f.head_dim, qd = f.n_heads * hd, kvd = f.n_kv_heads * hd;
  if (f.bias) x0 += f.bias[o], x1 += f.bias[o + 1];
  const bool per_seq = f.seqs.k_cache != nullptr;
  const int pos = f.pos[mi];
  const int64_t slot = per_seq ? f.seqs.slot[mi] : (f.slot0_dev ? *f.slot0_dev : f.slot0) + mi;
  if (o >= qd + kvd) {
    __half* v = reinterpret_cast<__half*>(per_seq ? f.seqs.v_cache[mi] : f.v_cache) + slot * kvd + (o - qd - kvd);
    v[0] = __float2half(x0);
    v[1] = __float2half(x1);
    return;
  }
  const int j = (o % hd) / 2;
  const float cs = f.rope_cos[static_cast<int64_t>(pos) * (hd / 2) + j];
  const float sn = f.rope_sin[static_cast<int64_t>(pos) * (hd / 2) + j];
  const float r0 = x0 * cs - x1 * sn, r1 = x0 * sn + x1 * cs;
  __half* dst;
  if (o < qd) {
    dst = reinterpret_cast<__half*>(f.q) + static_cast<int64_t>(mi) * qd + o;
  } else {
    dst = reinterpret_cast<__half*>(per_seq ? f.seqs.k_cache[mi] : f.k_cache) + slot * kvd + (o - qd);
    if (o == qd) (per_seq ? f.seqs.kpos[mi] : f.kpos)[slot] = pos;
  }
  dst[0] = __float2half(r0);
  dst[1] = __float2half(r1);
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

// One 32-element block of the activation made into 8 bits by its eight threads (four elements
// each; every lane of the warp runs the shuffles): the packed quants, the block's sum of quants,
// and its largest magnitude (scale = amax / 127).
struct QuantizedFour {
  int packed, sum;
  float amax;
};
__device__ inline QuantizedFour quantize_four(const float (&v)[4]) {
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
  return {packed, sum, amax};
}

// Shared memory of the activation rows: m rows of k int8 quants, then per 32-element block of
// each row its scale and 8 x scale x the sum of its quants (Q4_0's offset), as floats.
inline size_t x_smem_bytes(int m, int k) { return static_cast<size_t>(m) * k + 2 * sizeof(float) * m * (k / kQBlock); }

// Thread `sub`'s four elements of 32-element block ib of activation row mi, zeros from block
// `end` on: the float row and the norm weights for the fused RMSNorm (NORM), else the bf16 row.
template <bool NORM>
__device__ inline void load_x_four(const GemvArgs& a, int mi, int ib, int end, int sub, float4& hv, float4& nw,
                                   uint2& raw) {
  const int64_t at = static_cast<int64_t>(mi) * a.k + ib * kQBlock + sub * 4;
  if constexpr (NORM) {
    hv = ib < end ? *reinterpret_cast<const float4*>(a.norm_in + at) : make_float4(0.f, 0.f, 0.f, 0.f);
    nw = ib < end ? *reinterpret_cast<const float4*>(a.norm_w + ib * kQBlock + sub * 4)
                  : make_float4(0.f, 0.f, 0.f, 0.f);
  } else {
    raw = ib < end ? *reinterpret_cast<const uint2*>(a.x + at) : make_uint2(0, 0);
  }
}

// The bf16 row's four elements of load_x_four.
__device__ inline void bf16_four(const uint2& raw, float (&v)[4]) {
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  v[0] = lo.x, v[1] = lo.y, v[2] = hi.x, v[3] = hi.y;
}

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
  float4 hv[P], nw[P];
  uint2 raw[P];
  auto load_round = [&](int mi, int base) {
#pragma unroll
    for (int j = 0; j < P; ++j) load_x_four<NORM>(a, mi, base + j * kGroups + g8, nb, sub, hv[j], nw[j], raw[j]);
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
          bf16_four(raw[j], v);
        }
        const QuantizedFour q = quantize_four(v);
        const int ib = base + j * kGroups + g8;
        if (ib < nb) {
          *reinterpret_cast<int*>(xq + static_cast<size_t>(mi) * k + ib * kQBlock + sub * 4) = q.packed;
          if (sub == 0) {
            const float d = q.amax / 127.0f;
            xd[mi * nb + ib] = d;
            xo[mi * nb + ib] = 8.0f * d * static_cast<float>(q.sum);
          }
        }
      }
    }
  }
  __syncthreads();
}

// Thread-block clusters (sm_90): the blocks of a cluster share the activation rows' 8-bit blocks.
constexpr int kMaxCluster = 8;
constexpr int kDefaultCluster = 2;

__device__ inline unsigned cluster_blocks() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned n;
  asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(n));
  return n;
#else
  return 1;
#endif
}

// Split cluster barrier: arrive (release: this block's shared-memory stores are seen by the
// others after their wait) and wait.
__device__ inline void cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
#endif
}
__device__ inline void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}

// The cluster form of quantize_x: each of the cluster's C blocks makes 1/C of the activation
// rows' 32-element blocks and stores them into the shared memory of every block of the cluster,
// so a block reads 1/C of the rows from L2 and quantizes 1/C of them (each of a product's ~260
// blocks reading whole rows, right after the wait for the kernel that wrote them, is what kept
// the weight streams idle). The fused RMSNorm's 1 / rms is not applied to X: the blocks are made
// from norm_in x norm_w (8-bit quantization is scale-invariant) and scale[mi] multiplies the
// product's sums instead, so one cluster barrier suffices. The caller must have called
// cluster_arrive() once before (at entry: no block writes into another before all have started);
// this waits for it, and ends with the cluster barrier after which every block has all rows.
template <int M, bool NORM>
__device__ inline void quantize_x_cluster(const GemvArgs& a, int8_t* xq, float* xd, float* xo, float (&scale)[M]) {
  namespace cg = cooperative_groups;
  constexpr int P = 2, kGroups = kThreads / 8, kPerRound = P * kGroups;
  cg::cluster_group cluster = cg::this_cluster();
  const int C = static_cast<int>(cluster.num_blocks()), rank = static_cast<int>(cluster.block_rank());
  const int k = a.k, nb = k / kQBlock, per = (nb + C - 1) / C, b0 = min(nb, rank * per), b1 = min(nb, b0 + per);
  const int sub = threadIdx.x & 7, g8 = threadIdx.x >> 3, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __shared__ float ss_part[M][kMaxCluster * kWarps];  // each block's warps' sums of squares
  cluster_wait();                                     // every block of the cluster has started
#pragma unroll
  for (int mi = 0; mi < M; ++mi) {
    float ss = 0.0f;
    for (int base = b0; base < b1; base += kPerRound) {
      float4 hv[P], nw[P];
      uint2 raw[P];
#pragma unroll
      for (int j = 0; j < P; ++j) load_x_four<NORM>(a, mi, base + j * kGroups + g8, b1, sub, hv[j], nw[j], raw[j]);
#pragma unroll
      for (int j = 0; j < P; ++j) {
        float v[4];
        if constexpr (NORM) {
          ss += hv[j].x * hv[j].x + hv[j].y * hv[j].y + hv[j].z * hv[j].z + hv[j].w * hv[j].w;
          v[0] = hv[j].x * nw[j].x, v[1] = hv[j].y * nw[j].y, v[2] = hv[j].z * nw[j].z, v[3] = hv[j].w * nw[j].w;
        } else {
          bf16_four(raw[j], v);
        }
        const QuantizedFour q = quantize_four(v);
        const int ib = base + j * kGroups + g8;
        if (ib < b1) {
          int* dq = reinterpret_cast<int*>(xq + static_cast<size_t>(mi) * k + ib * kQBlock + sub * 4);
          const float d = q.amax / 127.0f, o = 8.0f * d * static_cast<float>(q.sum);
          for (int c = 0; c < C; ++c) {
            *cluster.map_shared_rank(dq, c) = q.packed;
            if (sub == 0) {
              *cluster.map_shared_rank(xd + mi * nb + ib, c) = d;
              *cluster.map_shared_rank(xo + mi * nb + ib, c) = o;
            }
          }
        }
      }
    }
    if constexpr (NORM) {
      ss = warp_sum(ss);
      if (lane == 0)
        for (int c = 0; c < C; ++c) *cluster.map_shared_rank(&ss_part[mi][rank * kWarps + warp], c) = ss;
    }
  }
  cluster_arrive();
  cluster_wait();
#pragma unroll
  for (int mi = 0; mi < M; ++mi) {
    scale[mi] = 1.0f;
    if constexpr (NORM) {
      float t = 0.0f;  // the same order in every block and for a row alone or beside another
      for (int i = 0; i < C * kWarps; ++i) t += ss_part[mi][i];
      scale[mi] = rsqrtf(t / k + a.eps);
    }
  }
}

// The activation rows made for a product: by the cluster's blocks together where the kernel runs
// in clusters (its sums then multiplied by xs, the RMSNorm's scale), else by this block (xs 1).
template <int M, bool NORM>
__device__ inline void make_x(const GemvArgs& a, bool clustered, int8_t* xq, float* xd, float* xo, float (&xs)[M]) {
  if (clustered) return quantize_x_cluster<M, NORM>(a, xq, xd, xo, xs);
  quantize_x<M, NORM>(a, xq, xd, xo);
#pragma unroll
  for (int mi = 0; mi < M; ++mi) xs[mi] = 1.0f;
}

// Q4_K/Q5_K: the 6-bit scales and mins of a super-block's eight groups, a byte each, four groups
// a word (groups 0-3, then 4-7), from the header (d, dmin, then scales[12] in bytes 4-15): a few
// word operations for all eight, where a byte lookup per value cost a chain of selects and, with
// the group a lane's index, a branch that split the warp.
struct KScaleWords {
  unsigned sc[2], m[2];
};

__device__ inline KScaleWords scale_min_words(const uint4& hdr) {
  KScaleWords w;
  w.sc[0] = hdr.y & 0x3F3F3F3Fu;
  w.m[0] = hdr.z & 0x3F3F3F3Fu;
  w.sc[1] = (hdr.w & 0x0F0F0F0Fu) | ((hdr.y >> 2) & 0x30303030u);
  w.m[1] = ((hdr.w >> 4) & 0x0F0F0F0Fu) | ((hdr.z >> 2) & 0x30303030u);
  return w;
}

// Q4_K/Q5_K: the super-block's d and dmin, the header's first two halves.
__device__ inline void super_block_d(const uint4& hdr, float* d, float* dmin) {
  *d = half_bits_to_float(static_cast<uint16_t>(hdr.x & 0xFFFF));
  *dmin = half_bits_to_float(static_cast<uint16_t>(hdr.x >> 16));
}

// Q4_K/Q5_K: group j's 6-bit scale and min.
__device__ inline void scale_min(const uint4& hdr, int j, float* sc, float* m) {
  const KScaleWords w = scale_min_words(hdr);
  const int shift = 8 * (j & 3);
  *sc = static_cast<float>(((j < 4 ? w.sc[0] : w.sc[1]) >> shift) & 0xFFu);
  *m = static_cast<float>(((j < 4 ? w.m[0] : w.m[1]) >> shift) & 0xFFu);
}

__device__ inline uint32_t pack_bf16(float a, float b) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Dequantization writes P 16-byte pieces a thread (its chunk of the output, chunk tile0 + threadIdx.x).
// Stored directly, a warp's store would touch 32 pieces P * 16 bytes apart, and the scattered
// partial sectors held a dequantization to 43% of the copy rate; through shared memory (a block of
// T threads, T * P pieces) every warp store covers 512 contiguous bytes. The XOR swizzle keeps both
// the per-thread writes and the per-warp reads free of bank conflicts. Call from every thread
// of the block (it synchronises); `valid` of the tile's chunks exist.
template <int P>
__device__ inline void store_staged(const uint4 (&v)[P], uint4* smem, uint4* out_tile, int valid) {
  static_assert(P == 1 || P == 2 || P == 4 || P == 8, "pieces a thread");
  auto phys = [](int i) { return i ^ ((i >> 3) & (P - 1)); };
#pragma unroll
  for (int j = 0; j < P; ++j) smem[phys(static_cast<int>(threadIdx.x) * P + j)] = v[j];
  __syncthreads();
  const int n = valid * P;
  for (int i = threadIdx.x; i < n; i += blockDim.x) out_tile[i] = smem[phys(i)];
  __syncthreads();
}

// Host side (gemv_quant.cu).
int sm_count();
// Blocks of `kernel` resident on the whole GPU with `smem` bytes of shared memory each (at least
// one an SM); cached per kernel and size.
int resident_blocks(const void* kernel, size_t smem);
// Blocks a cluster of the quantized products (1: none, each block makes the whole activation rows).
int product_cluster();
// Clusters of c blocks of `kernel` resident at once; cached.
int resident_clusters(const void* kernel, size_t smem, int c);

#ifdef __CUDACC__
// Launches a quantized product over at most `want` blocks (as many as fit on the GPU at once), in
// clusters of product_cluster() blocks, with programmatic dependent launch where it is on.
template <typename... KArgs>
void launch_product(const char* name, void (*kernel)(KArgs...), int want, size_t smem, cudaStream_t stream,
                    const GemvArgs& a) {
  const int c = product_cluster();
  const void* k = reinterpret_cast<const void*>(kernel);
  const int blocks = c == 1 ? std::min(want, resident_blocks(k, smem))
                            : std::min((want + c - 1) / c, resident_clusters(k, smem, c)) * c;
  launch_pdl_clustered(name, kernel, dim3(blocks), dim3(kThreads), smem, stream, c, a);
}
#endif

// gemv_kquant.cu: the K-quant formats' products, shared-memory limits, dequantization and
// embedding rows (called by gemv_quant.cu's entry points).
void gemv_kquant(const GemvArgs& a, cudaStream_t stream);
void gemv_kquant_prepare();
void dequantize_kquant_bf16(const WeightRef& w, int64_t rows, int k, bf16_t* out, cudaStream_t stream);
void embed_kquant(const WeightRef& table, const int32_t* tokens, int n, int d, float* out, cudaStream_t stream);

}  // namespace lazyllm::cuda::gemv_detail
