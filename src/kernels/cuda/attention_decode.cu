// Decode attention (a few query rows over many keys): a split-key (flash-decoding) kernel whose
// blocks each take 64 keys with all their loads in flight, merged by a second pass; it can read
// the key count from device memory so that one CUDA graph serves every decode length up to a
// capacity. Head sizes other than 16-128 (up to 256) use an older, simpler split-key kernel.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/attention_launch.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.h"

namespace lazyllm::cuda {
namespace {

// ---------------------------------------------------------------- split-key kernel

constexpr int kSplitThreads = 128;
constexpr int kSplitChunk = 128;    // keys scored per step (one per thread)
constexpr int kKeysPerSplit = 512;  // target keys per block
constexpr int kMaxBlocks = 8192;    // bounds the partial results

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
__global__ void __launch_bounds__(kSplitThreads)
    split_attention_kernel(AttentionArgs a, int keys_per_split, float* partial) {
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
__global__ void __launch_bounds__(kDecThreads)
    decode_attention_kernel(AttentionArgs a, float scale_log2, float* partial) {
  constexpr int LPK = HD / 8;            // lanes per key
  constexpr int NG = kDecThreads / LPK;  // keys read at once by the block
  constexpr int ITER = (kDecKeys + NG - 1) / NG;
  __shared__ float sP[kDecKeys];
  __shared__ __align__(16) float sAcc[NG * HD];
  __shared__ float sRed[kDecThreads / 32];
  pdl_trigger();
  pdl_wait();
  const int split = blockIdx.x, r = blockIdx.y, h = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const bool per_seq = a.seqs.k_cache != nullptr;
  const int n_keys = per_seq ? a.seqs.n_keys[r] : a.n_keys_dev ? *a.n_keys_dev : a.n_keys;
  float* part = partial + ((static_cast<int64_t>(h) * a.m + r) * gridDim.x + split) * dec_stride(HD);
  const int j_begin = split * kDecKeys;
  if (j_begin >= n_keys) {
    if (threadIdx.x == 0) part[0] = kNegInf, part[1] = 0.0f;
    return;
  }
  const int n = min(kDecKeys, n_keys - j_begin);
  const int g = h / (a.n_heads / a.n_kv_heads), kvd = a.n_kv_heads * HD;
  const int grp = threadIdx.x / LPK, li = threadIdx.x % LPK;
  const __half* kc = reinterpret_cast<const __half*>(per_seq ? a.seqs.k_cache[r] : a.k_cache) + g * HD + li * 8;
  const __half* vc = reinterpret_cast<const __half*>(per_seq ? a.seqs.v_cache[r] : a.v_cache) + g * HD + li * 8;
  const int32_t* kpos = per_seq ? a.seqs.kpos[r] : a.kpos;

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
      kp[it] = kpos[key_slot(a, j_begin + jj)];
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
__global__ void __launch_bounds__(kDecThreads)
    decode_combine_kernel(AttentionArgs a, int n_splits, const float* partial) {
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
  launch_pdl("decode_attention_kernel", decode_attention_kernel<HD>, dim3(n_splits, a.m, a.n_heads), dim3(kDecThreads),
             0, stream, a, a.scale * 1.4426950408889634f, scratch);
  launch_pdl("decode_combine_kernel", decode_combine_kernel, dim3(a.m, a.n_heads), dim3(kDecThreads),
             n_splits * sizeof(float), stream, a, n_splits, static_cast<const float*>(scratch));
}
}  // namespace

bool decode_attention_reads_key_count(int head_dim) { return decode_kernel_supported(head_dim); }

size_t decode_attention_scratch_floats(const AttentionArgs& a) {
  if (decode_kernel_supported(a.head_dim))
    return static_cast<size_t>(a.m) * a.n_heads * decode_splits(a) * dec_stride(a.head_dim);
  const SplitPlan p = plan_splits(a);
  return static_cast<size_t>(a.m) * a.n_heads * p.n_splits * (a.head_dim + 2);
}

void decode_attention(const AttentionArgs& a, float* scratch, cudaStream_t stream) {
  if (a.m > 65535) throw Error("CUDA attention: too many query rows for the split-key kernel");
  switch (a.head_dim) {
    case 16: return launch_decode<16>(a, scratch, stream);
    case 32: return launch_decode<32>(a, scratch, stream);
    case 64: return launch_decode<64>(a, scratch, stream);
    case 128: return launch_decode<128>(a, scratch, stream);
  }
  const SplitPlan p = plan_splits(a);
  split_attention_kernel<<<dim3(p.n_splits, a.m, a.n_heads), kSplitThreads, 0, stream>>>(a, p.keys_per_split, scratch);
  check_launch("split_attention_kernel");
  split_combine_kernel<<<dim3(a.m, a.n_heads), std::min(a.head_dim, 128), 0, stream>>>(a, p.n_splits, scratch);
  check_launch("split_combine_kernel");
}

}  // namespace lazyllm::cuda
