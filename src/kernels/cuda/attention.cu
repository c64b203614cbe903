// Causal attention over a layer's cached keys, tagged with original positions, so LazyLLM's
// compacted token sets attend exactly as in the full sequence.
//
// Prefill (many rows, every slot a key): FlashAttention-style kernels on the tensor cores (half
// inputs, float accumulation) for head sizes 16, 32, 64 and 128: the default keeps scores and
// output in registers (mma.sync, FA2 layout); a simpler WMMA one with its tiles in shared memory
// stays as a cross-check. Row blocks skip key tiles past their last row.
// Decode and any other head size: a split-key kernel (flash-decoding) whose blocks each take a
// share of the keys, merged by a second pass. Importance (LazyLLM's score) recomputes one row's
// probabilities exactly, per head, and averages them.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string_view>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops.h"

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

  const int rb = gridDim.x - 1 - blockIdx.x;  // longest row blocks first
  const int r0 = rb * kBr, h = blockIdx.y, g = h / (a.n_heads / a.n_kv_heads);
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
  const int last_row = min(a.m, r0 + kBr) - 1;
  const int key_end = a.n_old + last_row + 1;  // later slots are rows after this block's last
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

  const int rb = gridDim.x - 1 - blockIdx.x;  // longest row blocks first
  const int r0 = rb * kBr, h = blockIdx.y, g = h / (a.n_heads / a.n_kv_heads);
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
  const int last_row = min(a.m, r0 + kBr) - 1;
  // Every slot: later slots are rows after this block's last. Listed keys: all of them.
  const int key_end = a.key_slots ? a.n_keys : a.n_old + last_row + 1;
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

    // O += P V: the probabilities (as half) are the A operand straight from registers.
#pragma unroll
    for (int kc2 = 0; kc2 < kMmaBc / 16; ++kc2) {
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

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
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

// $LAZYLLM_CUDA_ATTENTION=wmma selects the simpler WMMA kernel (kept as a cross-check).
bool use_wmma_kernel() {
  const char* e = std::getenv("LAZYLLM_CUDA_ATTENTION");
  return e && std::string_view(e) == "wmma";
}

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

// ---------------------------------------------------------------- importance

constexpr int kImpThreads = 256;

// One block per head: scores of row `row` over every key, then its softmax probabilities.
__global__ void __launch_bounds__(kImpThreads) row_probs_kernel(AttentionArgs a, int row, float* probs) {
  __shared__ float sq[kMaxHeadDim];
  __shared__ float sred[kImpThreads / 32];
  const int h = blockIdx.x, hd = a.head_dim, kvd = a.n_kv_heads * hd, g = h / (a.n_heads / a.n_kv_heads);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const __half* qrow = reinterpret_cast<const __half*>(a.q) + static_cast<int64_t>(row) * a.n_heads * hd + h * hd;
  for (int c = threadIdx.x; c < hd; c += blockDim.x) sq[c] = __half2float(qrow[c]);
  __syncthreads();
  const int qp = a.qpos[row];
  float* pr = probs + static_cast<int64_t>(h) * a.n_keys;
  const __half* kc = reinterpret_cast<const __half*>(a.k_cache);
  float mx = kNegInf;
  for (int j = warp; j < a.n_keys; j += kImpThreads / 32) {
    const int slot = key_slot(a, j);
    const __half* krow = kc + static_cast<int64_t>(slot) * kvd + g * hd;
    float dot = 0.0f;
    for (int c = lane; c < hd; c += 32) dot += sq[c] * __half2float(krow[c]);
    dot = warp_sum(dot);
    const float s = a.kpos[slot] <= qp ? dot * a.scale : kNegInf;
    if (lane == 0) pr[j] = s;
    mx = fmaxf(mx, s);
  }
  if (lane == 0) sred[warp] = mx;
  __syncthreads();
  mx = kNegInf;
  for (int w = 0; w < kImpThreads / 32; ++w) mx = fmaxf(mx, sred[w]);
  __syncthreads();
  float sum = 0.0f;
  for (int j = threadIdx.x; j < a.n_keys; j += kImpThreads) {
    const float s = pr[j];
    const float e = s == kNegInf ? 0.0f : expf(s - mx);
    pr[j] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  if (lane == 0) sred[warp] = sum;
  __syncthreads();
  sum = 0.0f;
  for (int w = 0; w < kImpThreads / 32; ++w) sum += sred[w];
  const float inv = 1.0f / sum;
  for (int j = threadIdx.x; j < a.n_keys; j += kImpThreads) pr[j] *= inv;
}

// importance[j] = mean over heads of probs[h][j] (summed in head order, as the CPU does).
__global__ void average_heads_kernel(const float* probs, int n_heads, int n_keys, float* importance) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n_keys) return;
  float s = 0.0f;
  for (int h = 0; h < n_heads; ++h) s += probs[static_cast<int64_t>(h) * n_keys + j];
  importance[j] = s / static_cast<float>(n_heads);
}

}  // namespace

size_t attention_scratch_floats(const AttentionArgs& a) {
  if (flash_supported(a)) return 0;
  const SplitPlan p = plan_splits(a);
  return static_cast<size_t>(a.m) * a.n_heads * p.n_splits * (a.head_dim + 2);
}

void attention(const AttentionArgs& a, float* scratch, cudaStream_t stream) {
  if (a.m == 0) return;
  if (a.head_dim > kMaxHeadDim) throw Error("CUDA attention: head size above 256 is not supported");
  if (flash_supported(a) && a.key_slots == nullptr && use_wmma_kernel()) {
    switch (a.head_dim) {
      case 16: return launch_flash<16>(a, stream);
      case 32: return launch_flash<32>(a, stream);
      case 64: return launch_flash<64>(a, stream);
      case 128: return launch_flash<128>(a, stream);
    }
  }
  if (flash_supported(a)) {
    switch (a.head_dim) {
      case 16: return launch_flash_mma<16>(a, stream);
      case 32: return launch_flash_mma<32>(a, stream);
      case 64: return launch_flash_mma<64>(a, stream);
      case 128: return launch_flash_mma<128>(a, stream);
    }
  }
  const SplitPlan p = plan_splits(a);
  if (a.m > 65535) throw Error("CUDA attention: too many query rows for the split-key kernel");
  split_attention_kernel<<<dim3(p.n_splits, a.m, a.n_heads), kSplitThreads, 0, stream>>>(a, p.keys_per_split,
                                                                                          scratch);
  check_launch("split_attention_kernel");
  split_combine_kernel<<<dim3(a.m, a.n_heads), std::min(a.head_dim, 128), 0, stream>>>(a, p.n_splits, scratch);
  check_launch("split_combine_kernel");
}

void last_row_importance(const AttentionArgs& a, int row, float* probs, float* importance, cudaStream_t stream) {
  if (a.head_dim > kMaxHeadDim) throw Error("CUDA attention: head size above 256 is not supported");
  row_probs_kernel<<<a.n_heads, kImpThreads, 0, stream>>>(a, row, probs);
  check_launch("row_probs_kernel");
  average_heads_kernel<<<(a.n_keys + 255) / 256, 256, 0, stream>>>(probs, a.n_heads, a.n_keys, importance);
  check_launch("average_heads_kernel");
}

}  // namespace lazyllm::cuda
