// Device helpers shared by the attention kernels (prefill's mma.sync and wgmma kernels, decode,
// LazyLLM's importance): warp reductions, the FA2 register layout's products and stores, cp.async,
// and the base-2 online softmax. Included by the .cu files of src/kernels/cuda only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/ops.h"

namespace lazyllm::cuda {
namespace {

constexpr float kNegInf = -INFINITY;
constexpr int kMaxHeadDim = 256;  // the split-key decode kernel's and the importance's limit

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// The query rows and keys of one block of the prefill kernels: BR rows from r0 (the longest row
// blocks first), head h and its K/V head g, keys [0, key_end). Every slot a key: the slots after
// the block's last row are later rows. Listed keys: all of them. Two runs of keys (row_key_end_b):
// key tiles over [0, key_end), then over [b0, b_end); tile t starts at slot tile_k0(t) and its
// keys from tile_end(t) on are masked by index.
template <int BR>
struct RowBlock {
  int r0, h, g, key_end, b0, b_end;
  __device__ __forceinline__ explicit RowBlock(const AttentionArgs& a)
      : r0((gridDim.x - 1 - blockIdx.x) * BR),
        h(blockIdx.y),
        g(blockIdx.y / (a.n_heads / a.n_kv_heads)),
        key_end(a.row_key_end ? a.row_key_end[min(a.m, r0 + BR) - 1]
                : a.key_slots ? a.n_keys
                              : a.n_old + min(a.m, r0 + BR)),
        b0(a.run_b),
        b_end(a.row_key_end_b ? a.run_b + a.row_key_end_b[min(a.m, r0 + BR) - 1] : a.run_b) {}
  __device__ __forceinline__ int a_tiles(int bc) const { return (key_end + bc - 1) / bc; }
  __device__ __forceinline__ int tiles(int bc) const { return a_tiles(bc) + (b_end - b0 + bc - 1) / bc; }
  __device__ __forceinline__ int tile_k0(int t, int bc) const {
    const int ta = a_tiles(bc);
    return t < ta ? t * bc : b0 + (t - ta) * bc;
  }
  __device__ __forceinline__ int tile_end(int t, int bc) const { return t < a_tiles(bc) ? key_end : b_end; }
};
__device__ inline int key_slot(const AttentionArgs& a, int j) { return a.key_slots ? a.key_slots[j] : j; }
// The keys that every row from first_row on sees, per run: a key tile within them needs no mask
// by position. Rows are in position order, so later rows see at least as many. Prefill's layout:
// slots up to n_old + first_row; per-row key counts: the first row's count in each run (the
// second counted from run_b); listed keys without them: none.
struct UnmaskedKeys {
  int a_end, b_end;
  __device__ __forceinline__ static UnmaskedKeys of(const AttentionArgs& a, int first_row) {
    if (a.row_key_end == nullptr) return {a.key_slots != nullptr ? 0 : a.n_old + first_row + 1, 0};
    const int r = min(first_row, a.m - 1);
    return {a.row_key_end[r], a.row_key_end_b != nullptr ? a.row_key_end_b[r] : 0};
  }
  // Whether the tile of bc keys from slot k0 must be masked.
  __device__ __forceinline__ bool masked(const AttentionArgs& a, int k0, int bc) const {
    if (a.row_key_end_b != nullptr && k0 >= a.run_b) return k0 - a.run_b + bc > b_end;
    return k0 + bc > a_end;
  }
};
// The FlashAttention-2 layout on mma.sync m16n8k16 (half inputs, float accumulation): each warp
// owns 16 query rows; scores, probabilities and the output stay in registers (a score tile's
// accumulators are reused directly as the next product's A operand), and only K/V tiles pass
// through shared memory, loaded with ldmatrix.
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
}  // namespace
}  // namespace lazyllm::cuda
