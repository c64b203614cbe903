// Row-wise kernels of the forward pass: embedding gather, RMSNorm, QKV bias + RoPE + KV store,
// SwiGLU, and row copies (LazyLLM's compaction, Aux Cache stores and revivals).
#include <cuda_bf16.h>

#include <algorithm>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.h"

namespace lazyllm::cuda {
namespace {

constexpr int kThreads = 256;

// Sum over the block (blockDim.x a multiple of 32); every thread gets the total.
__device__ float block_sum(float v) {
  __shared__ float partial[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void embed_kernel(const __nv_bfloat16* table, const int32_t* tokens, int d, float* out) {
  pdl_trigger();  // the first product may start loading its weights
  const __nv_bfloat16* row = table + static_cast<int64_t>(tokens[blockIdx.x]) * d;
  float* o = out + static_cast<int64_t>(blockIdx.x) * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) o[c] = __bfloat162float(row[c]);
}

__global__ void rmsnorm_kernel(const float* x, const float* w, int d, float eps, __nv_bfloat16* out) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * d;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) ss += xr[c] * xr[c];
  ss = block_sum(ss);
  const float scale = rsqrtf(ss / d + eps);
  __nv_bfloat16* o = out + static_cast<int64_t>(blockIdx.x) * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) o[c] = __float2bfloat16(xr[c] * scale * w[c]);
}

// Blocks (row, part): rotary pairs of all q and k heads, then v; a row's work is spread over
// gridDim.y blocks (several for decode-sized batches).
__global__ void qkv_finish_kernel(QkvFinishArgs a) {
  pdl_trigger();
  pdl_wait();
  const int i = blockIdx.x, hd = a.head_dim, half_hd = hd / 2;
  const int qd = a.n_heads * hd, kvd = a.n_kv_heads * hd, width = qd + 2 * kvd;
  const float* row = a.qkv + static_cast<int64_t>(i) * width;
  const int pos = a.pos[i];
  const float* cs = a.rope_cos + static_cast<int64_t>(pos) * half_hd;
  const float* sn = a.rope_sin + static_cast<int64_t>(pos) * half_hd;
  const bool per_seq = a.seqs.k_cache != nullptr;
  const int64_t slot = per_seq ? a.seqs.slot[i] : (a.slot0_dev ? *a.slot0_dev : a.slot0) + i;
  __half* q = reinterpret_cast<__half*>(a.q) + static_cast<int64_t>(i) * qd;
  __half* k = reinterpret_cast<__half*>(per_seq ? a.seqs.k_cache[i] : a.k_cache) + slot * kvd;
  __half* v = reinterpret_cast<__half*>(per_seq ? a.seqs.v_cache[i] : a.v_cache) + slot * kvd;
  int32_t* kpos = per_seq ? a.seqs.kpos[i] : a.kpos;
  const int n_pairs = (a.n_heads + a.n_kv_heads) * half_hd;
  const int t0 = blockIdx.y * blockDim.x + threadIdx.x, step = gridDim.y * blockDim.x;
  for (int p = t0; p < n_pairs; p += step) {
    const int head = p / half_hd, j = p % half_hd;
    const int base = head * hd;  // q heads then k heads, contiguous in the row
    const int ia = base + (a.neox ? j : 2 * j), ib = base + (a.neox ? j + half_hd : 2 * j + 1);
    float x0 = row[ia], x1 = row[ib];
    if (a.bias) x0 += a.bias[ia], x1 += a.bias[ib];
    const float r0 = x0 * cs[j] - x1 * sn[j], r1 = x0 * sn[j] + x1 * cs[j];
    if (head < a.n_heads) {
      q[ia] = __float2half(r0);
      q[ib] = __float2half(r1);
    } else {
      k[ia - qd] = __float2half(r0);
      k[ib - qd] = __float2half(r1);
    }
  }
  for (int c = t0; c < kvd; c += step) {
    float x = row[qd + kvd + c];
    if (a.bias) x += a.bias[qd + kvd + c];
    v[c] = __float2half(x);
  }
  if (t0 == 0) kpos[slot] = pos;
}

__global__ void swiglu_kernel(const __nv_bfloat16* gu, int ff, __nv_bfloat16* out) {
  const __nv_bfloat16* g = gu + static_cast<int64_t>(blockIdx.y) * 2 * ff;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= ff) return;
  const float x = __bfloat162float(g[c]), u = __bfloat162float(g[ff + c]);
  out[static_cast<int64_t>(blockIdx.y) * ff + c] = __float2bfloat16(x / (1.0f + __expf(-x)) * u);
}

__global__ void copy_rows_kernel(const float* a, const float* b, const int32_t* src_idx, const int32_t* dst_idx,
                                 int d, float* dst) {
  const int i = blockIdx.x, s = src_idx[i];
  const float* src = s >= 0 ? a + static_cast<int64_t>(s) * d : b + static_cast<int64_t>(-s - 1) * d;
  float* o = dst + static_cast<int64_t>(dst_idx ? dst_idx[i] : i) * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) o[c] = src[c];
}

__global__ void gather_kv_kernel(const __half* k, const __half* v, const int32_t* kpos, const int32_t* slots, int kvd,
                                 __half* k_out, __half* v_out, int32_t* pos_out) {
  const int i = blockIdx.x;
  const int64_t s = slots[i];
  if (threadIdx.x == 0) pos_out[i] = kpos[s];
  if ((kvd & 7) == 0) {  // 16-byte copies
    const int4* ks = reinterpret_cast<const int4*>(k + s * kvd);
    const int4* vs = reinterpret_cast<const int4*>(v + s * kvd);
    int4* kd = reinterpret_cast<int4*>(k_out + static_cast<int64_t>(i) * kvd);
    int4* vd = reinterpret_cast<int4*>(v_out + static_cast<int64_t>(i) * kvd);
    for (int c = threadIdx.x; c < kvd / 8; c += blockDim.x) kd[c] = ks[c], vd[c] = vs[c];
  } else {
    for (int c = threadIdx.x; c < kvd; c += blockDim.x) {
      k_out[static_cast<int64_t>(i) * kvd + c] = k[s * kvd + c];
      v_out[static_cast<int64_t>(i) * kvd + c] = v[s * kvd + c];
    }
  }
}

}  // namespace

void gather_kv(const half_t* k_cache, const half_t* v_cache, const int32_t* kpos, const int32_t* slots, int n,
               int kvd, half_t* k_out, half_t* v_out, int32_t* pos_out, cudaStream_t stream) {
  if (n == 0) return;
  gather_kv_kernel<<<n, kThreads, 0, stream>>>(reinterpret_cast<const __half*>(k_cache),
                                               reinterpret_cast<const __half*>(v_cache), kpos, slots, kvd,
                                               reinterpret_cast<__half*>(k_out), reinterpret_cast<__half*>(v_out),
                                               pos_out);
  check_launch("gather_kv_kernel");
}

void embed_rows(const bf16_t* table, const int32_t* tokens, int n, int d, float* out, cudaStream_t stream) {
  if (n == 0) return;
  embed_kernel<<<n, kThreads, 0, stream>>>(reinterpret_cast<const __nv_bfloat16*>(table), tokens, d, out);
  check_launch("embed_kernel");
}

void rmsnorm_bf16(const float* x, const float* w, int m, int d, float eps, bf16_t* out, cudaStream_t stream) {
  if (m == 0) return;
  rmsnorm_kernel<<<m, kThreads, 0, stream>>>(x, w, d, eps, reinterpret_cast<__nv_bfloat16*>(out));
  check_launch("rmsnorm_kernel");
}

void qkv_finish(const QkvFinishArgs& a, cudaStream_t stream) {
  if (a.m == 0) return;
  const int work = (a.n_heads + a.n_kv_heads) * (a.head_dim / 2);
  const int parts = a.m >= 64 ? 1 : std::min(16, (work + kThreads - 1) / kThreads);
  launch_pdl("qkv_finish_kernel", qkv_finish_kernel, dim3(a.m, parts), dim3(kThreads), 0, stream, a);
}

void swiglu_bf16(const bf16_t* gu, int m, int ff, bf16_t* out, cudaStream_t stream) {
  if (m == 0) return;
  dim3 grid((ff + kThreads - 1) / kThreads, m);
  swiglu_kernel<<<grid, kThreads, 0, stream>>>(reinterpret_cast<const __nv_bfloat16*>(gu), ff,
                                               reinterpret_cast<__nv_bfloat16*>(out));
  check_launch("swiglu_kernel");
}

void copy_rows(const float* a, const float* b, const int32_t* src_idx, const int32_t* dst_idx, int n, int d,
               float* dst, cudaStream_t stream) {
  if (n == 0) return;
  copy_rows_kernel<<<n, kThreads, 0, stream>>>(a, b, src_idx, dst_idx, d, dst);
  check_launch("copy_rows_kernel");
}

}  // namespace lazyllm::cuda
