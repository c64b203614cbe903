// Causal attention over a layer's cached keys, tagged with original positions, so LazyLLM's
// compacted token sets attend exactly as in the full sequence.
//
// Prefill (many rows): FlashAttention-2-style kernels on the tensor cores (half inputs, float
// accumulation) for head sizes 16, 32, 64 and 128. Head size 128 on Hopper takes the wgmma
// kernel (flash_wgmma.cuh); elsewhere the default (flash_fwd_kernel) pipelines its
// K/V tile loads with cp.async, masks only the tiles that need it and takes 128 rows a block; the
// unpipelined mma kernel it replaced and a simpler WMMA one stay as cross-checks. Row blocks skip
// key tiles past their last row.
// Decode (a few rows): a split-key (flash-decoding) kernel whose blocks each take 64 keys with
// all their loads in flight, merged by a second pass; it can read the key count from device
// memory so that one CUDA graph serves every decode length up to a capacity. Other head sizes
// use an older split-key kernel. Importance (LazyLLM's score) recomputes one row's probabilities
// exactly, per head, and averages them.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <mutex>
#include <string_view>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.h"
#include "kernels/cuda/mbarrier.cuh"
#include "kernels/cuda/wgmma.cuh"

namespace lazyllm::cuda {
namespace {

constexpr float kNegInf = -INFINITY;

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---------------------------------------------------------------- prefill: flash kernel

constexpr int kBr = 64;  // query rows per block (16 per warp)
constexpr int kBc = 64;  // keys per tile
constexpr int kFlashThreads = 128;

// The query rows and keys of one block of the prefill kernels: BR rows from r0 (the longest row
// blocks first), head h and its K/V head g, keys [0, key_end). Every slot a key: the slots after
// the block's last row are later rows. Listed keys: all of them.
template <int BR>
struct RowBlock {
  int r0, h, g, key_end;
  __device__ __forceinline__ explicit RowBlock(const AttentionArgs& a)
      : r0((gridDim.x - 1 - blockIdx.x) * BR),
        h(blockIdx.y),
        g(blockIdx.y / (a.n_heads / a.n_kv_heads)),
        key_end(a.row_key_end ? a.row_key_end[min(a.m, r0 + BR) - 1]
                              : a.key_slots ? a.n_keys : a.n_old + min(a.m, r0 + BR)) {}
  __device__ __forceinline__ int tiles(int bc) const { return (key_end + bc - 1) / bc; }
};

template <int HD>
constexpr size_t flash_smem_bytes() {
  return sizeof(__half) * (kBr * HD + 2 * kBc * HD + kBr * kBc) + sizeof(float) * (kBr * kBc + kBr * HD + 2 * kBr) +
         sizeof(int) * (kBc + kBr);
}

template <int HD>
__global__ void __launch_bounds__(kFlashThreads) flash_prefill_kernel(AttentionArgs a) {
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem[];
  __half* sQ = reinterpret_cast<__half*>(smem);
  __half* sK = sQ + kBr * HD;
  __half* sV = sK + kBc * HD;
  __half* sP = sV + kBc * HD;
  float* sS = reinterpret_cast<float*>(sP + kBr * kBc);
  float* sO = sS + kBr * kBc;
  float* sM = sO + kBr * HD;
  float* sL = sM + kBr;
  int* sKpos = reinterpret_cast<int*>(sL + kBr);
  int* sQpos = sKpos + kBc;

  const RowBlock<kBr> b(a);  // every slot a key (the caller sends listed keys elsewhere)
  const int r0 = b.r0, h = b.h, g = b.g;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int qd = a.n_heads * HD, kvd = a.n_kv_heads * HD;
  constexpr int kVec = 8;  // halves per 16-byte load
  const __half* q = reinterpret_cast<const __half*>(a.q);
  const __half* kc = reinterpret_cast<const __half*>(a.k_cache);
  const __half* vc = reinterpret_cast<const __half*>(a.v_cache);

  for (int idx = threadIdx.x; idx < kBr * HD / kVec; idx += kFlashThreads) {
    const int r = idx / (HD / kVec), c = idx % (HD / kVec) * kVec;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (r0 + r < a.m) val = *reinterpret_cast<const uint4*>(q + static_cast<int64_t>(r0 + r) * qd + h * HD + c);
    *reinterpret_cast<uint4*>(sQ + r * HD + c) = val;
  }
  for (int idx = threadIdx.x; idx < kBr * HD; idx += kFlashThreads) sO[idx] = 0.0f;
  for (int r = threadIdx.x; r < kBr; r += kFlashThreads) {
    sQpos[r] = r0 + r < a.m ? a.qpos[r0 + r] : INT_MIN;
    sM[r] = kNegInf;
    sL[r] = 0.0f;
  }
  const int key_end = b.key_end;
  __syncthreads();

  for (int k0 = 0; k0 < key_end; k0 += kBc) {
    for (int idx = threadIdx.x; idx < kBc * HD / kVec; idx += kFlashThreads) {
      const int j = idx / (HD / kVec), c = idx % (HD / kVec) * kVec;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (k0 + j < key_end) {
        const int64_t off = static_cast<int64_t>(k0 + j) * kvd + g * HD + c;
        kv = *reinterpret_cast<const uint4*>(kc + off);
        vv = *reinterpret_cast<const uint4*>(vc + off);
      }
      *reinterpret_cast<uint4*>(sK + j * HD + c) = kv;
      *reinterpret_cast<uint4*>(sV + j * HD + c) = vv;
    }
    for (int j = threadIdx.x; j < kBc; j += kFlashThreads) sKpos[j] = k0 + j < key_end ? a.kpos[k0 + j] : INT_MAX;
    __syncthreads();

    // S = Q K^T for this warp's 16 rows.
    {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kBc / 16];
#pragma unroll
      for (int n = 0; n < kBc / 16; ++n) wmma::fill_fragment(acc[n], 0.0f);
#pragma unroll
      for (int kk = 0; kk < HD; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
        wmma::load_matrix_sync(fa, sQ + warp * 16 * HD + kk, HD);
#pragma unroll
        for (int n = 0; n < kBc / 16; ++n) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
          wmma::load_matrix_sync(fb, sK + n * 16 * HD + kk, HD);
          wmma::mma_sync(acc[n], fa, fb, acc[n]);
        }
      }
#pragma unroll
      for (int n = 0; n < kBc / 16; ++n)
        wmma::store_matrix_sync(sS + warp * 16 * kBc + n * 16, acc[n], kBc, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax, one row at a time across the warp (two keys per lane).
    for (int rr = 0; rr < 16; ++rr) {
      const int r = warp * 16 + rr, qp = sQpos[r];
      const bool v0 = sKpos[lane] <= qp, v1 = sKpos[lane + 32] <= qp;
      const float s0 = v0 ? sS[r * kBc + lane] * a.scale : kNegInf;
      const float s1 = v1 ? sS[r * kBc + lane + 32] * a.scale : kNegInf;
      const float m_old = sM[r];
      const float m_new = fmaxf(m_old, warp_max(fmaxf(s0, s1)));
      const float alpha = m_new == kNegInf ? 1.0f : __expf(m_old - m_new);
      const float p0 = v0 ? __expf(s0 - m_new) : 0.0f, p1 = v1 ? __expf(s1 - m_new) : 0.0f;
      const float sum = warp_sum(p0 + p1);
      sP[r * kBc + lane] = __float2half(p0);
      sP[r * kBc + lane + 32] = __float2half(p1);
      for (int c = lane; c < HD; c += 32) sO[r * HD + c] *= alpha;
      __syncwarp();
      if (lane == 0) {
        sM[r] = m_new;
        sL[r] = sL[r] * alpha + sum;
      }
    }
    __syncwarp();

    // O += P V for this warp's rows.
#pragma unroll
    for (int n = 0; n < HD / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
      wmma::load_matrix_sync(o, sO + warp * 16 * HD + n * 16, HD, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kBc; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, sP + warp * 16 * kBc + kk, kBc);
        wmma::load_matrix_sync(fb, sV + kk * HD + n * 16, HD);
        wmma::mma_sync(o, fa, fb, o);
      }
      wmma::store_matrix_sync(sO + warp * 16 * HD + n * 16, o, HD, wmma::mem_row_major);
    }
    __syncthreads();  // sK/sV are overwritten next
  }

  __nv_bfloat16* out = reinterpret_cast<__nv_bfloat16*>(a.out);
  for (int idx = threadIdx.x; idx < kBr * HD; idx += kFlashThreads) {
    const int r = idx / HD, c = idx % HD;
    if (r0 + r < a.m) {
      const float l = sL[r];
      out[static_cast<int64_t>(r0 + r) * qd + h * HD + c] = __float2bfloat16(l > 0.0f ? sO[idx] / l : 0.0f);
    }
  }
}

template <int HD>
void launch_flash(const AttentionArgs& a, cudaStream_t stream) {
  constexpr size_t smem = flash_smem_bytes<HD>();
  static bool configured = false;  // the attribute is per kernel, set once per process
  if (!configured) {
    check(cudaFuncSetAttribute(flash_prefill_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem)),
          "cudaFuncSetAttribute(flash_prefill_kernel)");
    configured = true;
  }
  dim3 grid((a.m + kBr - 1) / kBr, a.n_heads);
  flash_prefill_kernel<HD><<<grid, kFlashThreads, smem, stream>>>(a);
  check_launch("flash_prefill_kernel");
}

// ---------------------------------------------------------------- prefill: FA2-style mma kernel

__device__ inline int key_slot(const AttentionArgs& a, int j) { return a.key_slots ? a.key_slots[j] : j; }

// The default prefill kernel: the FlashAttention-2 layout on mma.sync m16n8k16 (half inputs,
// float accumulation). Each warp owns 16 query rows; scores, probabilities and the output stay
// in registers (a score tile's accumulators are reused directly as the next product's A
// operand), and only K/V tiles pass through shared memory, loaded with ldmatrix.
constexpr int kMmaBc = 64;

__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const __half* p) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const __half* p) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ inline void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ inline uint32_t pack_half2(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

// Shared by the mma.sync kernels (FA2 register layout: a warp's 16 rows, row0 in c0/c1 and
// row1 in c2/c3 of each accumulator).
// O += P V: the probabilities (as half) are the A operand straight from registers.
template <int HD, int BC, int LD>
__device__ __forceinline__ void accumulate_pv(float (&o)[HD / 8][4], const float (&s)[BC / 8][4], const __half* sV,
                                              int lane) {
#pragma unroll
  for (int kc2 = 0; kc2 < BC / 16; ++kc2) {
    const uint32_t pa[4] = {pack_half2(s[2 * kc2][0], s[2 * kc2][1]), pack_half2(s[2 * kc2][2], s[2 * kc2][3]),
                            pack_half2(s[2 * kc2 + 1][0], s[2 * kc2 + 1][1]),
                            pack_half2(s[2 * kc2 + 1][2], s[2 * kc2 + 1][3])};
#pragma unroll
    for (int dp = 0; dp < HD / 16; ++dp) {
      uint32_t vb[4];
      ldmatrix_x4_trans(vb, sV + (kc2 * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 + (lane >> 4) * 8);
      mma_16816(o[2 * dp], pa, vb[0], vb[1]);
      mma_16816(o[2 * dp + 1], pa, vb[2], vb[3]);
    }
  }
}

// Sums each row's partial denominators over its quad and writes O / l as bf16.
template <int HD>
__device__ __forceinline__ void store_rows(const AttentionArgs& a, const float (&o)[HD / 8][4], float l0, float l1,
                                           int row0, int row1, int h, int tq) {
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const int qd = a.n_heads * HD;
  __nv_bfloat16* out = reinterpret_cast<__nv_bfloat16*>(a.out);
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) {
    const int c = h * HD + n * 8 + 2 * tq;
    if (row0 < a.m) {
      __nv_bfloat162 v = __floats2bfloat162_rn(o[n][0] * inv0, o[n][1] * inv0);
      *reinterpret_cast<__nv_bfloat162*>(out + static_cast<int64_t>(row0) * qd + c) = v;
    }
    if (row1 < a.m) {
      __nv_bfloat162 v = __floats2bfloat162_rn(o[n][2] * inv1, o[n][3] * inv1);
      *reinterpret_cast<__nv_bfloat162*>(out + static_cast<int64_t>(row1) * qd + c) = v;
    }
  }
}

template <int HD>
constexpr size_t mma_smem_bytes() {
  return sizeof(__half) * 3 * kBr * (HD + 8) + sizeof(int) * kMmaBc;
}

template <int HD>
__global__ void __launch_bounds__(kFlashThreads) flash_mma_kernel(AttentionArgs a) {
  constexpr int LD = HD + 8;  // padded rows: ldmatrix reads hit distinct banks
  extern __shared__ __align__(128) unsigned char smem[];
  __half* sQ = reinterpret_cast<__half*>(smem);
  __half* sK = sQ + kBr * LD;
  __half* sV = sK + kMmaBc * LD;
  int* sKpos = reinterpret_cast<int*>(sV + kMmaBc * LD);

  const RowBlock<kBr> b(a);
  const int r0 = b.r0, h = b.h, g = b.g;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gq = lane >> 2, tq = lane & 3;
  const int qd = a.n_heads * HD, kvd = a.n_kv_heads * HD;
  constexpr int kVec = 8;
  const __half* q = reinterpret_cast<const __half*>(a.q);
  const __half* kc = reinterpret_cast<const __half*>(a.k_cache);
  const __half* vc = reinterpret_cast<const __half*>(a.v_cache);

  for (int idx = threadIdx.x; idx < kBr * HD / kVec; idx += kFlashThreads) {
    const int r = idx / (HD / kVec), c = idx % (HD / kVec) * kVec;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (r0 + r < a.m) val = *reinterpret_cast<const uint4*>(q + static_cast<int64_t>(r0 + r) * qd + h * HD + c);
    *reinterpret_cast<uint4*>(sQ + r * LD + c) = val;
  }
  const int row0 = r0 + warp * 16 + gq, row1 = row0 + 8;
  const int qp0 = row0 < a.m ? a.qpos[row0] : INT_MIN, qp1 = row1 < a.m ? a.qpos[row1] : INT_MIN;
  const int key_end = b.key_end;
  __syncthreads();

  uint32_t qf[HD / 16][4];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk)
    ldmatrix_x4(qf[kk], sQ + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + kk * 16 + (lane >> 4) * 8);

  float o[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m0 = kNegInf, m1 = kNegInf, l0 = 0.0f, l1 = 0.0f;

  for (int k0 = 0; k0 < key_end; k0 += kMmaBc) {
    __syncthreads();  // the previous tile is no longer read
    for (int idx = threadIdx.x; idx < kMmaBc * HD / kVec; idx += kFlashThreads) {
      const int j = idx / (HD / kVec), c = idx % (HD / kVec) * kVec;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (k0 + j < key_end) {
        const int64_t off = static_cast<int64_t>(key_slot(a, k0 + j)) * kvd + g * HD + c;
        kv = *reinterpret_cast<const uint4*>(kc + off);
        vv = *reinterpret_cast<const uint4*>(vc + off);
      }
      *reinterpret_cast<uint4*>(sK + j * LD + c) = kv;
      *reinterpret_cast<uint4*>(sV + j * LD + c) = vv;
    }
    for (int j = threadIdx.x; j < kMmaBc; j += kFlashThreads)
      sKpos[j] = k0 + j < key_end ? a.kpos[key_slot(a, k0 + j)] : INT_MAX;
    __syncthreads();

    float s[kMmaBc / 8][4];
#pragma unroll
    for (int n = 0; n < kMmaBc / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < kMmaBc / 16; ++np) {
        uint32_t kb[4];
        ldmatrix_x4(kb, sK + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
        mma_16816(s[2 * np], qf[kk], kb[0], kb[1]);
        mma_16816(s[2 * np + 1], qf[kk], kb[2], kb[3]);
      }
    }

    // Mask by position and update the running max of rows row0 (c0, c1) and row1 (c2, c3).
    float mx0 = kNegInf, mx1 = kNegInf;
#pragma unroll
    for (int n = 0; n < kMmaBc / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int kp = sKpos[n * 8 + 2 * tq + e];
        s[n][e] = kp <= qp0 ? s[n][e] * a.scale : kNegInf;
        s[n][2 + e] = kp <= qp1 ? s[n][2 + e] * a.scale : kNegInf;
        mx0 = fmaxf(mx0, s[n][e]);
        mx1 = fmaxf(mx1, s[n][2 + e]);
      }
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    const float al0 = mn0 == kNegInf ? 1.0f : __expf(m0 - mn0);
    const float al1 = mn1 == kNegInf ? 1.0f : __expf(m1 - mn1);
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int n = 0; n < kMmaBc / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        s[n][e] = s[n][e] == kNegInf ? 0.0f : __expf(s[n][e] - mn0);
        s[n][2 + e] = s[n][2 + e] == kNegInf ? 0.0f : __expf(s[n][2 + e] - mn1);
        sum0 += s[n][e];
        sum1 += s[n][2 + e];
      }
    }
    l0 = l0 * al0 + sum0;  // per-thread partial sums; the quad adds them up at the end
    l1 = l1 * al1 + sum1;
    m0 = mn0, m1 = mn1;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      o[n][0] *= al0, o[n][1] *= al0;
      o[n][2] *= al1, o[n][3] *= al1;
    }

    accumulate_pv<HD, kMmaBc, LD>(o, s, sV, lane);
  }

  store_rows<HD>(a, o, l0, l1, row0, row1, h, tq);
}

template <int HD>
void launch_flash_mma(const AttentionArgs& a, cudaStream_t stream) {
  constexpr size_t smem = mma_smem_bytes<HD>();
  static bool configured = false;
  if (!configured) {
    check(cudaFuncSetAttribute(flash_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem)),
          "cudaFuncSetAttribute(flash_mma_kernel)");
    configured = true;
  }
  dim3 grid((a.m + kBr - 1) / kBr, a.n_heads);
  flash_mma_kernel<HD><<<grid, kFlashThreads, smem, stream>>>(a);
  check_launch("flash_mma_kernel");
}

// ---------------------------------------------------------------- prefill: pipelined mma kernel

// The default prefill kernel, the FlashAttention-2 schedule on mma.sync m16n8k16: NW warps of
// MT x 16 query rows each (scores, probabilities and the output in registers), key/value tiles
// of 64 (32) brought into shared memory by cp.async so that loading overlaps computing: V(t) loads
// while S = Q K(t)^T and the softmax run, K(t+1) while O += P V(t) runs. With MT = 2 each K and
// V fragment read from shared memory feeds two row groups (half the shared-memory traffic per
// product; Q fragments are then re-read per tile instead of held in registers). Only tiles that
// reach past the block's first row (the diagonal, or any tile of listed keys) are masked by
// position. The softmax runs in base 2 with log2(e) folded into the scale. Every slot a key
// (prefill): tile rows are consecutive slots, no index lookup.
constexpr int kFwdBc = 64;

__device__ inline void cp_async16(void* smem_ptr, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem_ptr));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ inline void cp_async4(void* smem_ptr, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem_ptr));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ inline void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
__device__ inline float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Online softmax of one score tile of a warp's 16 rows (row gq in accumulators 0-1, row gq + 8 in
// 2-3 of each of the N 8-column groups), in base 2 with log2(e) folded into scale_log2: leaves
// exp2((s - max) * scale_log2) in s, updates the running max m and this thread's partial sums l,
// and returns in al the factors that rescale the output accumulated so far. A row with nothing
// visible yet (max still -inf) keeps everything at 0.
template <int N>
__device__ __forceinline__ void online_softmax(float (&s)[N][4], float (&m)[2], float (&l)[2], float scale_log2,
                                               float (&al)[2]) {
  float mx0 = m[0], mx1 = m[1];
#pragma unroll
  for (int n = 0; n < N; ++n) {
    mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
    mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
  }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  const float mu0 = mx0 == kNegInf ? 0.0f : mx0 * scale_log2;
  const float mu1 = mx1 == kNegInf ? 0.0f : mx1 * scale_log2;
  al[0] = ex2(m[0] * scale_log2 - mu0), al[1] = ex2(m[1] * scale_log2 - mu1);
  float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
  for (int n = 0; n < N; ++n) {
    s[n][0] = ex2(fmaf(s[n][0], scale_log2, -mu0));
    s[n][1] = ex2(fmaf(s[n][1], scale_log2, -mu0));
    s[n][2] = ex2(fmaf(s[n][2], scale_log2, -mu1));
    s[n][3] = ex2(fmaf(s[n][3], scale_log2, -mu1));
    sum0 += s[n][0] + s[n][1];
    sum1 += s[n][2] + s[n][3];
  }
  l[0] = l[0] * al[0] + sum0;
  l[1] = l[1] * al[1] + sum1;
  m[0] = mx0, m[1] = mx1;
}

template <int HD, int NW, int MT>
struct FwdCfg {
  // Key tile: 64, or 32 where two row groups of 128-wide heads would not fit the registers.
  static constexpr int kBc = MT == 2 && HD == 128 ? 32 : kFwdBc;
  static constexpr int kRows = NW * 16 * MT, kLd = HD + 8, kThreads = NW * 32;
  static constexpr size_t kSmem = sizeof(__half) * (kRows + 2 * kBc) * kLd + sizeof(int) * kBc;
};

template <int HD, int NW, int MT>
__global__ void __launch_bounds__(NW * 32, NW == 4 ? 2 : 1) flash_fwd_kernel(AttentionArgs a, float scale_log2) {
  using C = FwdCfg<HD, NW, MT>;
  constexpr int BR = C::kRows, BC = C::kBc, LD = C::kLd, T = C::kThreads;
  constexpr int kVec = 8, CPR = HD / kVec;  // 16-byte chunks per row
  constexpr bool kQInRegs = MT == 1;
  extern __shared__ __align__(128) unsigned char smem[];
  __half* sQ = reinterpret_cast<__half*>(smem);
  __half* sK = sQ + BR * LD;
  __half* sV = sK + BC * LD;
  int* sKpos = reinterpret_cast<int*>(sV + BC * LD);

  const RowBlock<BR> b(a);
  const int r0 = b.r0, h = b.h, g = b.g;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gq = lane >> 2, tq = lane & 3;
  const int qd = a.n_heads * HD, kvd = a.n_kv_heads * HD;
  const __half* q = reinterpret_cast<const __half*>(a.q);
  const __half* kc = reinterpret_cast<const __half*>(a.k_cache) + g * HD;
  const __half* vc = reinterpret_cast<const __half*>(a.v_cache) + g * HD;
  const int key_end = b.key_end, n_tiles = b.tiles(BC);

  for (int idx = threadIdx.x; idx < BR * CPR; idx += T) {
    const int r = idx / CPR, c = idx % CPR * kVec;
    const bool valid = r0 + r < a.m;
    cp_async16(sQ + r * LD + c, q + (valid ? static_cast<int64_t>(r0 + r) * qd + h * HD + c : 0), valid);
  }
  auto load_k = [&](int k0) {
    for (int idx = threadIdx.x; idx < BC * CPR; idx += T) {
      const int j = idx / CPR, c = idx % CPR * kVec;
      const bool valid = k0 + j < key_end;
      const int slot = valid ? (a.key_slots ? a.key_slots[k0 + j] : k0 + j) : 0;
      cp_async16(sK + j * LD + c, kc + static_cast<int64_t>(slot) * kvd + c, valid);
    }
    for (int j = threadIdx.x; j < BC; j += T) {
      if (k0 + j < key_end) cp_async4(sKpos + j, a.kpos + (a.key_slots ? a.key_slots[k0 + j] : k0 + j));
      else sKpos[j] = INT_MAX;
    }
  };
  auto load_v = [&](int k0) {
    for (int idx = threadIdx.x; idx < BC * CPR; idx += T) {
      const int j = idx / CPR, c = idx % CPR * kVec;
      const bool valid = k0 + j < key_end;
      const int slot = valid ? (a.key_slots ? a.key_slots[k0 + j] : k0 + j) : 0;
      cp_async16(sV + j * LD + c, vc + static_cast<int64_t>(slot) * kvd + c, valid);
    }
  };
  load_k(0);
  cp_async_commit();

  // Rows of this thread: group mt, rows row[mt][0] (accumulators 0, 1) and row[mt][1] (2, 3).
  int qp[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int row = r0 + (warp * MT + mt) * 16 + gq + 8 * hh;
      qp[mt][hh] = row < a.m ? a.qpos[row] : INT_MIN;
    }
  }
  cp_async_wait_all();
  __syncthreads();

  auto q_frag = [&](uint32_t (&f)[4], int mt, int kk) {
    ldmatrix_x4(f, sQ + ((warp * MT + mt) * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + kk * 16 + (lane >> 4) * 8);
  };
  uint32_t qf[kQInRegs ? HD / 16 : 1][4];
  if constexpr (kQInRegs) {
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) q_frag(qf[kk], 0, kk);
  }

  float o[MT][HD / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
  float m_run[MT][2], l_run[MT][2];  // running max of raw scores, per-thread partial sums
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) m_run[mt][0] = m_run[mt][1] = kNegInf, l_run[mt][0] = l_run[mt][1] = 0.0f;

  for (int t = 0; t < n_tiles; ++t) {
    const int k0 = t * BC;
    if (t > 0) {
      cp_async_wait_all();  // K(t) has landed
      __syncthreads();      // ... for every thread, and every warp is done with V(t-1)
    }
    load_v(k0);
    cp_async_commit();

    float s[MT][BC / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int n = 0; n < BC / 8; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t qa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if constexpr (kQInRegs) {
#pragma unroll
          for (int e = 0; e < 4; ++e) qa[mt][e] = qf[kk][e];
        } else {
          q_frag(qa[mt], mt, kk);
        }
      }
#pragma unroll
      for (int np = 0; np < BC / 16; ++np) {
        uint32_t kb[4];
        ldmatrix_x4(kb, sK + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816(s[mt][2 * np], qa[mt], kb[0], kb[1]);
          mma_16816(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
        }
      }
    }

    // Keys of this tile up to slot n_old + r0 are visible to every row of the block; a tile
    // reaching past that (or listed keys, in any order) is masked by position.
    const bool masked = a.key_slots != nullptr || a.row_key_end != nullptr || k0 + BC > a.n_old + r0 + 1;
    if (masked) {
#pragma unroll
      for (int n = 0; n < BC / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int kp = sKpos[n * 8 + 2 * tq + e];
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            if (kp > qp[mt][0]) s[mt][n][e] = kNegInf;
            if (kp > qp[mt][1]) s[mt][n][2 + e] = kNegInf;
          }
        }
      }
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float al[2];
      online_softmax(s[mt], m_run[mt], l_run[mt], scale_log2, al);
#pragma unroll
      for (int n = 0; n < HD / 8; ++n) {
        o[mt][n][0] *= al[0], o[mt][n][1] *= al[0];
        o[mt][n][2] *= al[1], o[mt][n][3] *= al[1];
      }
    }

    cp_async_wait_all();  // V(t) has landed
    __syncthreads();      // ... for every thread, and every warp is done with K(t)
    if (t + 1 < n_tiles) {
      load_k(k0 + BC);
      cp_async_commit();
    }

    // O += P V: the probabilities (as half) are the A operand straight from registers.
#pragma unroll
    for (int kc2 = 0; kc2 < BC / 16; ++kc2) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        pa[mt][0] = pack_half2(s[mt][2 * kc2][0], s[mt][2 * kc2][1]);
        pa[mt][1] = pack_half2(s[mt][2 * kc2][2], s[mt][2 * kc2][3]);
        pa[mt][2] = pack_half2(s[mt][2 * kc2 + 1][0], s[mt][2 * kc2 + 1][1]);
        pa[mt][3] = pack_half2(s[mt][2 * kc2 + 1][2], s[mt][2 * kc2 + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < HD / 16; ++dp) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, sV + (kc2 * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816(o[mt][2 * dp], pa[mt], vb[0], vb[1]);
          mma_16816(o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
        }
      }
    }
  }

#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int row0 = r0 + (warp * MT + mt) * 16 + gq, row1 = row0 + 8;
    store_rows<HD>(a, o[mt], l_run[mt][0], l_run[mt][1], row0, row1, h, tq);
  }
}

template <int HD, int NW, int MT>
void launch_flash_fwd(const AttentionArgs& a, cudaStream_t stream) {
  using C = FwdCfg<HD, NW, MT>;
  dim3 grid((a.m + C::kRows - 1) / C::kRows, a.n_heads);
  flash_fwd_kernel<HD, NW, MT><<<grid, C::kThreads, C::kSmem, stream>>>(a, a.scale * 1.4426950408889634f);
  check_launch("flash_fwd_kernel");
}

template <int HD, int NW, int MT>
void prepare_flash_fwd_one() {
  check(cudaFuncSetAttribute(flash_fwd_kernel<HD, NW, MT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(FwdCfg<HD, NW, MT>::kSmem)),
        "cudaFuncSetAttribute(flash_fwd_kernel)");
}

template <int HD>
void prepare_flash_fwd() {
  prepare_flash_fwd_one<HD, 8, 1>();
  prepare_flash_fwd_one<HD, 4, 1>();
  prepare_flash_fwd_one<HD, 4, 2>();
}

#include "kernels/cuda/flash_wgmma.cuh"
#include "kernels/cuda/flash_wgmma_ws.cuh"

// Decode-sized batches go to the split-key kernel, which spreads the keys over the whole GPU;
// the mma kernel also takes listed keys (LazyLLM decode with many revived rows).
bool flash_supported(const AttentionArgs& a) {
  return a.m > 16 && (a.head_dim == 16 || a.head_dim == 32 || a.head_dim == 64 || a.head_dim == 128);
}

// ---------------------------------------------------------------- split-key kernel

constexpr int kSplitThreads = 128;
constexpr int kSplitChunk = 128;   // keys scored per step (one per thread)
constexpr int kMaxHeadDim = 256;
constexpr int kKeysPerSplit = 512; // target keys per block
constexpr int kMaxBlocks = 8192;   // bounds the partial results

struct SplitPlan {
  int n_splits, keys_per_split;
};

SplitPlan plan_splits(const AttentionArgs& a) {
  const int64_t rows = static_cast<int64_t>(a.m) * a.n_heads;
  int n_splits = std::max(1, (a.n_keys + kKeysPerSplit - 1) / kKeysPerSplit);
  n_splits = static_cast<int>(std::min<int64_t>(n_splits, std::max<int64_t>(1, kMaxBlocks / rows)));
  const int per = (a.n_keys + n_splits - 1) / n_splits;
  return {n_splits, std::max(per, 1)};
}


// grid (split, row, head): online softmax over this split's keys; writes (max, sum, acc[hd]).
__global__ void __launch_bounds__(kSplitThreads) split_attention_kernel(AttentionArgs a, int keys_per_split,
                                                                         float* partial) {
  __shared__ float sq[kMaxHeadDim];
  __shared__ float sacc[kMaxHeadDim];
  __shared__ float sp[kSplitChunk];
  __shared__ int sslot[kSplitChunk];
  __shared__ float sred[kSplitThreads / 32];
  __shared__ float s_m, s_l, s_alpha;
  const int split = blockIdx.x, r = blockIdx.y, h = blockIdx.z;
  const int hd = a.head_dim, kvd = a.n_kv_heads * hd, g = h / (a.n_heads / a.n_kv_heads);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const __half* qrow = reinterpret_cast<const __half*>(a.q) + static_cast<int64_t>(r) * a.n_heads * hd + h * hd;
  const __half* kc = reinterpret_cast<const __half*>(a.k_cache);
  const __half* vc = reinterpret_cast<const __half*>(a.v_cache);
  for (int c = threadIdx.x; c < hd; c += kSplitThreads) {
    sq[c] = __half2float(qrow[c]);
    sacc[c] = 0.0f;
  }
  if (threadIdx.x == 0) s_m = kNegInf, s_l = 0.0f;
  const int qp = a.qpos[r];
  const int j_begin = split * keys_per_split, j_end = min(a.n_keys, j_begin + keys_per_split);
  __syncthreads();

  for (int c0 = j_begin; c0 < j_end; c0 += kSplitChunk) {
    const int n = min(kSplitChunk, j_end - c0);
    // Scores: a warp per key, lanes across the head.
    for (int j = warp; j < n; j += kSplitThreads / 32) {
      const int slot = key_slot(a, c0 + j);
      const __half* krow = kc + static_cast<int64_t>(slot) * kvd + g * hd;
      float dot = 0.0f;
      for (int c = lane; c < hd; c += 32) dot += sq[c] * __half2float(krow[c]);
      dot = warp_sum(dot);
      if (lane == 0) {
        sslot[j] = slot;
        sp[j] = a.kpos[slot] <= qp ? dot * a.scale : kNegInf;
      }
    }
    __syncthreads();
    float s = threadIdx.x < n ? sp[threadIdx.x] : kNegInf;
    float mx = warp_max(s);
    if (lane == 0) sred[warp] = mx;
    __syncthreads();
    if (threadIdx.x == 0) {
      float m = s_m;
      for (int w = 0; w < kSplitThreads / 32; ++w) m = fmaxf(m, sred[w]);
      s_alpha = m == kNegInf ? 1.0f : __expf(s_m - m);
      s_m = m;
    }
    __syncthreads();
    const float m_new = s_m;
    const float p = (threadIdx.x < n && s != kNegInf) ? __expf(s - m_new) : 0.0f;
    if (threadIdx.x < n) sp[threadIdx.x] = p;
    const float psum = warp_sum(p);
    __syncthreads();  // sred reuse
    if (lane == 0) sred[warp] = psum;
    __syncthreads();
    if (threadIdx.x == 0) {
      float t = 0.0f;
      for (int w = 0; w < kSplitThreads / 32; ++w) t += sred[w];
      s_l = s_l * s_alpha + t;
    }
    const float alpha = s_alpha;
    for (int c = threadIdx.x; c < hd; c += kSplitThreads) {
      float acc = sacc[c] * alpha;
      for (int j = 0; j < n; ++j)
        if (sp[j] != 0.0f) acc += sp[j] * __half2float(vc[static_cast<int64_t>(sslot[j]) * kvd + g * hd + c]);
      sacc[c] = acc;
    }
    __syncthreads();
  }
  const int64_t idx = (static_cast<int64_t>(h) * a.m + r) * gridDim.x + split;
  float* part = partial + idx * (hd + 2);
  if (threadIdx.x == 0) part[0] = s_m, part[1] = s_l;
  for (int c = threadIdx.x; c < hd; c += kSplitThreads) part[2 + c] = sacc[c];
}

// grid (row, head): merges the splits' partial softmax results.
__global__ void split_combine_kernel(AttentionArgs a, int n_splits, const float* partial) {
  const int r = blockIdx.x, h = blockIdx.y, hd = a.head_dim;
  const float* base = partial + (static_cast<int64_t>(h) * a.m + r) * n_splits * (hd + 2);
  float m = kNegInf;
  for (int s = 0; s < n_splits; ++s) m = fmaxf(m, base[s * (hd + 2)]);
  float l = 0.0f;
  for (int s = 0; s < n_splits; ++s) {
    const float ms = base[s * (hd + 2)];
    if (ms != kNegInf) l += base[s * (hd + 2) + 1] * __expf(ms - m);
  }
  __nv_bfloat16* out = reinterpret_cast<__nv_bfloat16*>(a.out) + static_cast<int64_t>(r) * a.n_heads * hd + h * hd;
  for (int c = threadIdx.x; c < hd; c += blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < n_splits; ++s) {
      const float ms = base[s * (hd + 2)];
      if (ms != kNegInf) acc += base[s * (hd + 2) + 2 + c] * __expf(ms - m);
    }
    out[c] = __float2bfloat16(l > 0.0f ? acc / l : 0.0f);
  }
}


// ---------------------------------------------------------------- decode kernel

// Decode (a few query rows over many keys), head sizes 16-128: a block takes 64 keys of one
// (row, head). Each key is read by HD/8 lanes, 16 bytes each, and every lane issues all its K
// and V loads at once (one trip to memory per block); scores go through shared memory for the
// softmax. A second pass merges the blocks' partial results. The number of keys can come from
// device memory (decode graphs: one launch sized for a capacity replays for every length up to
// it; blocks past the end only mark themselves empty).
constexpr int kDecThreads = 128;
constexpr int kDecKeys = 64;  // keys per block

bool decode_kernel_supported(int hd) { return hd == 16 || hd == 32 || hd == 64 || hd == 128; }
// Partial result of a block: max, sum, then the HD accumulators 16-byte aligned.
constexpr int dec_stride(int hd) { return hd + 4; }

__device__ inline void half8_to_float(const uint4& v, float (&f)[8]) {
  const __half2* h2 = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 x = __half22float2(h2[e]);
    f[2 * e] = x.x;
    f[2 * e + 1] = x.y;
  }
}

template <int HD>
__global__ void __launch_bounds__(kDecThreads) decode_attention_kernel(AttentionArgs a, float scale_log2,
                                                                        float* partial) {
  constexpr int LPK = HD / 8;                        // lanes per key
  constexpr int NG = kDecThreads / LPK;              // keys read at once by the block
  constexpr int ITER = (kDecKeys + NG - 1) / NG;
  __shared__ float sP[kDecKeys];
  __shared__ __align__(16) float sAcc[NG * HD];
  __shared__ float sRed[kDecThreads / 32];
  pdl_trigger();
  pdl_wait();
  const int split = blockIdx.x, r = blockIdx.y, h = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_keys = a.n_keys_dev ? *a.n_keys_dev : a.n_keys;
  float* part = partial + ((static_cast<int64_t>(h) * a.m + r) * gridDim.x + split) * dec_stride(HD);
  const int j_begin = split * kDecKeys;
  if (j_begin >= n_keys) {
    if (threadIdx.x == 0) part[0] = kNegInf, part[1] = 0.0f;
    return;
  }
  const int n = min(kDecKeys, n_keys - j_begin);
  const int g = h / (a.n_heads / a.n_kv_heads), kvd = a.n_kv_heads * HD;
  const int grp = threadIdx.x / LPK, li = threadIdx.x % LPK;
  const __half* kc = reinterpret_cast<const __half*>(a.k_cache) + g * HD + li * 8;
  const __half* vc = reinterpret_cast<const __half*>(a.v_cache) + g * HD + li * 8;

  // Every K and V load of this lane first.
  uint4 kr[ITER], vr[ITER];
  int kp[ITER];
#pragma unroll
  for (int it = 0; it < ITER; ++it) {
    const int jj = it * NG + grp;
    kr[it] = vr[it] = make_uint4(0, 0, 0, 0);
    kp[it] = INT_MAX;
    if (jj < n) {
      const int64_t off = static_cast<int64_t>(key_slot(a, j_begin + jj)) * kvd;
      kr[it] = *reinterpret_cast<const uint4*>(kc + off);
      vr[it] = *reinterpret_cast<const uint4*>(vc + off);
      kp[it] = a.kpos[key_slot(a, j_begin + jj)];
    }
  }
  float qf[8];
  half8_to_float(*reinterpret_cast<const uint4*>(reinterpret_cast<const __half*>(a.q) +
                                                 static_cast<int64_t>(r) * a.n_heads * HD + h * HD + li * 8),
                 qf);
#pragma unroll
  for (int e = 0; e < 8; ++e) qf[e] *= scale_log2;
  const int qp = a.qpos[r];

  // Scores (base 2, scaled), masked by position.
#pragma unroll
  for (int it = 0; it < ITER; ++it) {
    float kf[8];
    half8_to_float(kr[it], kf);
    float d = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) d = fmaf(qf[e], kf[e], d);
#pragma unroll
    for (int o = LPK / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
    const int jj = it * NG + grp;
    if (li == 0 && jj < kDecKeys) sP[jj] = kp[it] <= qp ? d : kNegInf;
  }
  __syncthreads();

  // Softmax over the block's keys.
  const float s = threadIdx.x < kDecKeys ? sP[threadIdx.x] : kNegInf;
  float mx = warp_max(s);
  if (lane == 0) sRed[warp] = mx;
  __syncthreads();
  mx = fmaxf(fmaxf(sRed[0], sRed[1]), fmaxf(sRed[2], sRed[3]));
  if (mx == kNegInf) {  // nothing visible here
    if (threadIdx.x == 0) part[0] = kNegInf, part[1] = 0.0f;
    return;
  }
  const float p = threadIdx.x < kDecKeys ? ex2(s - mx) : 0.0f;
  __syncthreads();  // sRed is reused
  if (threadIdx.x < kDecKeys) sP[threadIdx.x] = p;
  const float ps = warp_sum(p);
  if (lane == 0) sRed[warp] = ps;
  __syncthreads();
  const float l = sRed[0] + sRed[1] + sRed[2] + sRed[3];

  // O = P V over the block's keys, each group of LPK lanes a share of them.
  float acc[8] = {};
#pragma unroll
  for (int it = 0; it < ITER; ++it) {
    const int jj = it * NG + grp;
    const float pj = jj < kDecKeys ? sP[jj] : 0.0f;
    float vf[8];
    half8_to_float(vr[it], vf);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = fmaf(pj, vf[e], acc[e]);
  }
  float4* dst = reinterpret_cast<float4*>(sAcc + grp * HD + li * 8);
  dst[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
  dst[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
  __syncthreads();
  for (int c = threadIdx.x; c < HD; c += kDecThreads) {
    float o = 0.0f;
#pragma unroll 8
    for (int gi = 0; gi < NG; ++gi) o += sAcc[gi * HD + c];
    part[4 + c] = o;
  }
  if (threadIdx.x == 0) part[0] = mx, part[1] = l;
}

// grid (row, head): merges the blocks' partial results (base-2 maxima). Empty blocks (max -inf)
// wrote no accumulators and are skipped. Threads split the head into float4s and the blocks'
// results into 512 / HD interleaved groups.
__global__ void __launch_bounds__(kDecThreads) decode_combine_kernel(AttentionArgs a, int n_splits,
                                                                      const float* partial) {
  extern __shared__ float sW[];  // n_splits weights
  __shared__ __align__(16) float sO[4 * kDecThreads];
  __shared__ float sRed[kDecThreads / 32];
  pdl_trigger();
  pdl_wait();
  const int r = blockIdx.x, h = blockIdx.y, hd = a.head_dim, stride = dec_stride(hd);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float* base = partial + (static_cast<int64_t>(h) * a.m + r) * n_splits * stride;
  float m = kNegInf;
  for (int s = threadIdx.x; s < n_splits; s += kDecThreads) m = fmaxf(m, base[s * stride]);
  m = warp_max(m);
  if (lane == 0) sRed[warp] = m;
  __syncthreads();
  m = fmaxf(fmaxf(sRed[0], sRed[1]), fmaxf(sRed[2], sRed[3]));
  __syncthreads();
  float l = 0.0f;
  for (int s = threadIdx.x; s < n_splits; s += kDecThreads) {
    const float ms = base[s * stride];
    const float w = ms == kNegInf ? 0.0f : ex2(ms - m);
    sW[s] = w;
    if (w != 0.0f) l += w * base[s * stride + 1];
  }
  l = warp_sum(l);
  if (lane == 0) sRed[warp] = l;
  __syncthreads();
  l = sRed[0] + sRed[1] + sRed[2] + sRed[3];
  const int nf4 = hd / 4, groups = kDecThreads / nf4;
  const int f = threadIdx.x % nf4, gi = threadIdx.x / nf4;
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  for (int s = gi; s < n_splits; s += groups) {
    const float w = sW[s];
    if (w == 0.0f) continue;
    const float4 v = *reinterpret_cast<const float4*>(base + static_cast<int64_t>(s) * stride + 4 + 4 * f);
    acc.x += w * v.x, acc.y += w * v.y, acc.z += w * v.z, acc.w += w * v.w;
  }
  reinterpret_cast<float4*>(sO)[gi * nf4 + f] = acc;
  __syncthreads();
  __nv_bfloat16* out = reinterpret_cast<__nv_bfloat16*>(a.out) + static_cast<int64_t>(r) * a.n_heads * hd + h * hd;
  for (int c = threadIdx.x; c < hd; c += kDecThreads) {
    float o = 0.0f;
    for (int g2 = 0; g2 < groups; ++g2) o += sO[g2 * hd + c];
    out[c] = __float2bfloat16(l > 0.0f ? o / l : 0.0f);
  }
}

int decode_splits(const AttentionArgs& a) { return std::max(1, (a.n_keys + kDecKeys - 1) / kDecKeys); }

template <int HD>
void launch_decode(const AttentionArgs& a, float* scratch, cudaStream_t stream) {
  const int n_splits = decode_splits(a);
  launch_pdl("decode_attention_kernel", decode_attention_kernel<HD>, dim3(n_splits, a.m, a.n_heads),
             dim3(kDecThreads), 0, stream, a, a.scale * 1.4426950408889634f, scratch);
  launch_pdl("decode_combine_kernel", decode_combine_kernel, dim3(a.m, a.n_heads), dim3(kDecThreads),
             n_splits * sizeof(float), stream, a, n_splits, static_cast<const float*>(scratch));
}

// ---------------------------------------------------------------- importance

// LazyLLM's importance: row `row`'s softmax probabilities per head, averaged over heads, in three
// parallel passes (scores and block maxima over the keys x heads grid; per-head max and sum;
// the head average), so that 32K keys do not rest on one block per head.
constexpr int kImpThreads = 256;
constexpr int kImpKeys = 128;  // keys per block of the scoring pass

int imp_blocks(const AttentionArgs& a) { return (a.n_keys + kImpKeys - 1) / kImpKeys; }

// grid (key block, head): scaled, masked scores into probs[h][j]; each block's max into pmax.
__global__ void __launch_bounds__(kImpThreads) imp_scores_kernel(AttentionArgs a, int row, float* probs,
                                                                  float* pmax) {
  __shared__ float sq[kMaxHeadDim];
  __shared__ float sred[kImpThreads / 32];
  const int b = blockIdx.x, h = blockIdx.y, hd = a.head_dim, kvd = a.n_kv_heads * hd;
  const int g = h / (a.n_heads / a.n_kv_heads), warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const __half* qrow = reinterpret_cast<const __half*>(a.q) + static_cast<int64_t>(row) * a.n_heads * hd + h * hd;
  for (int c = threadIdx.x; c < hd; c += kImpThreads) sq[c] = __half2float(qrow[c]);
  __syncthreads();
  const int qp = a.qpos[row];
  const __half* kc = reinterpret_cast<const __half*>(a.k_cache) + g * hd;
  float* pr = probs + static_cast<int64_t>(h) * a.n_keys;
  constexpr int kU = 4;  // keys per warp at once
  float mx = kNegInf;
  for (int jj = warp * kU; jj < kImpKeys; jj += (kImpThreads / 32) * kU) {
    int slot[kU];
    float d[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int j = b * kImpKeys + jj + u;
      slot[u] = j < a.n_keys ? key_slot(a, j) : -1;
      d[u] = 0.0f;
      if (slot[u] >= 0) {
        const __half* krow = kc + static_cast<int64_t>(slot[u]) * kvd;
        for (int c = lane; c < hd; c += 32) d[u] += sq[c] * __half2float(krow[c]);
      }
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const float dot = warp_sum(d[u]);
      if (slot[u] < 0) continue;
      const float s = a.kpos[slot[u]] <= qp ? dot * a.scale : kNegInf;
      if (lane == 0) pr[b * kImpKeys + jj + u] = s;
      mx = fmaxf(mx, s);
    }
  }
  if (lane == 0) sred[warp] = mx;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = kNegInf;
    for (int w = 0; w < kImpThreads / 32; ++w) m = fmaxf(m, sred[w]);
    pmax[static_cast<int64_t>(h) * gridDim.x + b] = m;
  }
}

// grid (head): the head's max and 1 / sum of exp over its keys, into stat[2h], stat[2h + 1].
__global__ void __launch_bounds__(kImpThreads) imp_norm_kernel(const float* probs, const float* pmax, int n_blocks,
                                                                int n_keys, float* stat) {
  __shared__ float sred[kImpThreads / 32];
  const int h = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float m = kNegInf;
  for (int b = threadIdx.x; b < n_blocks; b += kImpThreads) m = fmaxf(m, pmax[static_cast<int64_t>(h) * n_blocks + b]);
  m = warp_max(m);
  if (lane == 0) sred[warp] = m;
  __syncthreads();
  m = kNegInf;
  for (int w = 0; w < kImpThreads / 32; ++w) m = fmaxf(m, sred[w]);
  __syncthreads();
  const float* pr = probs + static_cast<int64_t>(h) * n_keys;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < n_keys; j += kImpThreads) {
    const float s = pr[j];
    sum += s == kNegInf ? 0.0f : expf(s - m);
  }
  sum = warp_sum(sum);
  if (lane == 0) sred[warp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.0f;
    for (int w = 0; w < kImpThreads / 32; ++w) t += sred[w];
    stat[2 * h] = m;
    stat[2 * h + 1] = t > 0.0f ? 1.0f / t : 0.0f;
  }
}

// importance[j] = mean over heads of the probabilities (summed in head order, as the CPU does).
__global__ void imp_average_kernel(const float* probs, const float* stat, int n_heads, int n_keys,
                                   float* importance) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n_keys) return;
  float sum = 0.0f;
  for (int h = 0; h < n_heads; ++h) {
    const float s = probs[static_cast<int64_t>(h) * n_keys + j];
    sum += s == kNegInf ? 0.0f : expf(s - stat[2 * h]) * stat[2 * h + 1];
  }
  importance[j] = sum / static_cast<float>(n_heads);
}

// Which prefill kernel, by $LAZYLLM_CUDA_ATTENTION (read at each call, so tests can switch): by
// default ("ws") the warp-specialized wgmma kernel where it runs (head size 128 on compute
// capability 9.0, every slot a key), the wgmma kernel ("wg") where only the key list stands in
// its way, else the pipelined mma.sync one with 4 warps of 32 rows ("fwd2"); 8 warps of 16 rows
// ("fwd8") or 4 of 16 ("fwd4"), the unpipelined mma kernel it replaced ("mma1"), the WMMA
// cross-check ("wmma").
enum class PrefillKernel { kWs, kWgmma, kFwd2, kFwd8, kFwd4, kMmaV1, kWmma };

PrefillKernel prefill_kernel() {
  const char* e = std::getenv("LAZYLLM_CUDA_ATTENTION");
  const std::string_view v = e ? e : "";
  if (v == "wmma") return PrefillKernel::kWmma;
  if (v == "mma1") return PrefillKernel::kMmaV1;
  if (v == "fwd4") return PrefillKernel::kFwd4;
  if (v == "fwd8") return PrefillKernel::kFwd8;
  if (v == "fwd2") return PrefillKernel::kFwd2;
  if (v == "wg") return PrefillKernel::kWgmma;
  return PrefillKernel::kWs;
}

void attention_prepare() {
  static std::once_flag once;
  std::call_once(once, [] {
    prepare_flash_fwd<16>();
    prepare_flash_fwd<32>();
    prepare_flash_fwd<64>();
    prepare_flash_fwd<128>();
    if (wgmma_available()) {
      prepare_flash_wgmma();
      prepare_flash_wgmma_ws();
    }
  });
}

template <int HD>
void launch_prefill(const AttentionArgs& a, cudaStream_t stream) {
  switch (prefill_kernel()) {
    case PrefillKernel::kWs:
      if constexpr (HD == kWgHd) {
        if (wgmma_available() && launch_flash_wgmma_ws(a, stream)) return;
      }
      [[fallthrough]];  // keys listed (decode with revivals), or no tensor maps: the wgmma kernel
    case PrefillKernel::kWgmma:
      if constexpr (HD == kWgHd) {
        if (wgmma_available()) return launch_flash_wgmma(a, stream);
      }
      return launch_flash_fwd<HD, 4, 2>(a, stream);
    case PrefillKernel::kWmma:
      if (a.key_slots == nullptr) return launch_flash<HD>(a, stream);
      [[fallthrough]];  // the WMMA kernel takes every slot only
    case PrefillKernel::kFwd2: return launch_flash_fwd<HD, 4, 2>(a, stream);
    case PrefillKernel::kFwd8: return launch_flash_fwd<HD, 8, 1>(a, stream);
    case PrefillKernel::kFwd4: return launch_flash_fwd<HD, 4, 1>(a, stream);
    case PrefillKernel::kMmaV1: return launch_flash_mma<HD>(a, stream);
  }
}

}  // namespace

size_t attention_scratch_floats(const AttentionArgs& a) {
  if (flash_supported(a) && a.n_keys_dev == nullptr) return 0;
  if (decode_kernel_supported(a.head_dim))
    return static_cast<size_t>(a.m) * a.n_heads * decode_splits(a) * dec_stride(a.head_dim);
  const SplitPlan p = plan_splits(a);
  return static_cast<size_t>(a.m) * a.n_heads * p.n_splits * (a.head_dim + 2);
}

bool attention_reads_key_count(int head_dim) { return decode_kernel_supported(head_dim); }

void attention(const AttentionArgs& a, float* scratch, cudaStream_t stream) {
  if (a.m == 0) return;
  if (a.head_dim > kMaxHeadDim) throw Error("CUDA attention: head size above 256 is not supported");
  if (a.n_keys_dev && (a.key_slots || !decode_kernel_supported(a.head_dim)))
    throw Error("CUDA attention: a key count in device memory needs every slot a key and head size 16-128");
  attention_prepare();
  if (flash_supported(a) && a.n_keys_dev == nullptr) {
    switch (a.head_dim) {
      case 16: return launch_prefill<16>(a, stream);
      case 32: return launch_prefill<32>(a, stream);
      case 64: return launch_prefill<64>(a, stream);
      case 128: return launch_prefill<128>(a, stream);
    }
  }
  if (a.m > 65535) throw Error("CUDA attention: too many query rows for the split-key kernel");
  switch (a.head_dim) {
    case 16: return launch_decode<16>(a, scratch, stream);
    case 32: return launch_decode<32>(a, scratch, stream);
    case 64: return launch_decode<64>(a, scratch, stream);
    case 128: return launch_decode<128>(a, scratch, stream);
  }
  const SplitPlan p = plan_splits(a);
  split_attention_kernel<<<dim3(p.n_splits, a.m, a.n_heads), kSplitThreads, 0, stream>>>(a, p.keys_per_split,
                                                                                          scratch);
  check_launch("split_attention_kernel");
  split_combine_kernel<<<dim3(a.m, a.n_heads), std::min(a.head_dim, 128), 0, stream>>>(a, p.n_splits, scratch);
  check_launch("split_combine_kernel");
}

void prepare_kernels() {
  attention_prepare();
  gemv_prepare();
}

size_t importance_scratch_floats(const AttentionArgs& a) {
  return static_cast<size_t>(a.n_heads) * (a.n_keys + imp_blocks(a) + 2);
}

void last_row_importance(const AttentionArgs& a, int row, float* scratch, float* importance, cudaStream_t stream) {
  if (a.head_dim > kMaxHeadDim) throw Error("CUDA attention: head size above 256 is not supported");
  if (a.n_keys == 0) return;
  const int nb = imp_blocks(a);
  float* probs = scratch;
  float* pmax = probs + static_cast<size_t>(a.n_heads) * a.n_keys;
  float* stat = pmax + static_cast<size_t>(a.n_heads) * nb;
  imp_scores_kernel<<<dim3(nb, a.n_heads), kImpThreads, 0, stream>>>(a, row, probs, pmax);
  check_launch("imp_scores_kernel");
  imp_norm_kernel<<<a.n_heads, kImpThreads, 0, stream>>>(probs, pmax, nb, a.n_keys, stat);
  check_launch("imp_norm_kernel");
  imp_average_kernel<<<(a.n_keys + 255) / 256, 256, 0, stream>>>(probs, stat, a.n_heads, a.n_keys, importance);
  check_launch("imp_average_kernel");
}

}  // namespace lazyllm::cuda
