// LazyLLM on the GPU: the importance scores (the last token's attention, averaged over heads) and
// the prefill selection, so a pruning layer needs no host round trip. The selection makes the same
// choice as prune/select.h's select_top (the k largest scores, ties to the lower index, kept in
// index order), by one block doing a radix select over the scores' order-preserving bit patterns,
// then a compaction moves kept rows together and pruned rows to the Aux Cache.
#include <cuda_runtime.h>

#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops.h"

namespace lazyllm::cuda {
namespace {

constexpr int kSelThreads = 1024;

// Unsigned key with the order of the float (larger score, larger key); -0 and +0 are one key,
// as they compare equal on the CPU; NaN is the lowest key (below -inf), as prune/select.h ranks it.
__device__ inline uint32_t order_key(float f) {
  if (isnan(f)) return 0;
  uint32_t b = __float_as_uint(f);
  if ((b & 0x7fffffffu) == 0) b = 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Exclusive prefix sum of v over the block (in thread order); *total gets the block's sum.
__device__ int block_exclusive_scan(int v, int* s_warp, int* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  int x = v;
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  __syncthreads();  // s_warp may still be read by a previous call
  if (lane == 31) s_warp[warp] = x;
  __syncthreads();
  if (warp == 0) {
    int w = lane < n_warps ? s_warp[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += y;
    }
    if (lane < n_warps) s_warp[lane] = w;  // inclusive per warp
  }
  __syncthreads();
  *total = s_warp[n_warps - 1];
  return (warp > 0 ? s_warp[warp - 1] : 0) + x - v;
}

__global__ void __launch_bounds__(kSelThreads)
    select_top_kernel(const float* scores, int n, int k, const int32_t* nk_dev, int32_t* dest) {
  if (nk_dev) n = nk_dev[0], k = nk_dev[1];
  __shared__ int hist[256];
  __shared__ int s_warp[32];
  __shared__ uint32_t s_prefix;
  __shared__ int s_remaining;
  const int t = threadIdx.x, lane = t & 31;
  // Each thread owns a contiguous run of candidates, so thread order is index order.
  const int chunk = (n + kSelThreads - 1) / kSelThreads;
  const int i0 = min(n, t * chunk), i1 = min(n, i0 + chunk);
  const bool keep_all = k >= n, keep_none = k <= 0;

  // Radix select, 8 bits a pass from the top: the k-th largest key T, and how many keys equal to
  // T are taken (the lowest-indexed ones), `remaining`.
  uint32_t prefix = 0, mask = 0;
  int remaining = k;
  if (!keep_all && !keep_none) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int b = t; b < 256; b += kSelThreads) hist[b] = 0;
      __syncthreads();
      for (int i = i0; i < i1; ++i) {
        const uint32_t u = order_key(scores[i]);
        const bool match = (u & mask) == prefix;
        const unsigned active = __activemask();
        const unsigned bucket = (u >> shift) & 255u;
        // Lanes of a warp with the same bucket add once (scores cluster in few buckets).
        const unsigned same = __match_any_sync(active, match ? bucket : 256u + bucket);
        if (match && (__ffs(same) - 1) == lane) atomicAdd(&hist[bucket], __popc(same));
      }
      __syncthreads();
      if (t < 32) {
        // Lane l owns buckets [8l, 8l + 8). Find the bucket where the count from the top reaches
        // `remaining`.
        int c[8], own = 0;
#pragma unroll
        for (int e = 0; e < 8; ++e) own += (c[e] = hist[8 * t + e]);
        int incl = own;  // keys in buckets of lanes >= t
        for (int o = 1; o < 32; o <<= 1) {
          const int y = __shfl_down_sync(0xffffffffu, incl, o);
          if (t + o < 32) incl += y;
        }
        int above = incl - own;
        if (above < remaining && remaining <= incl) {
          for (int e = 7; e >= 0; --e) {
            if (remaining <= above + c[e]) {
              s_prefix = prefix | (static_cast<uint32_t>(8 * t + e) << shift);
              s_remaining = remaining - above;
              break;
            }
            above += c[e];
          }
        }
      }
      __syncthreads();
      prefix = s_prefix;
      remaining = s_remaining;
      mask |= 255u << shift;
    }
  }
  const uint32_t T = prefix;

  // Kept candidates of this thread: every key above T, and its keys equal to T whose rank among
  // equal keys (in index order) is below `remaining`.
  int n_gt = 0, n_eq = 0;
  if (!keep_all && !keep_none) {
    for (int i = i0; i < i1; ++i) {
      const uint32_t u = order_key(scores[i]);
      n_gt += u > T;
      n_eq += u == T;
    }
  }
  int total;
  const int eq_before = block_exclusive_scan(n_eq, s_warp, &total);
  const int kept_here = keep_all ? i1 - i0 : keep_none ? 0 : n_gt + min(max(remaining - eq_before, 0), n_eq);
  const int kept_before = block_exclusive_scan(kept_here, s_warp, &total);
  int r = kept_before, eq_seen = eq_before;
  for (int i = i0; i < i1; ++i) {
    bool keep = keep_all;
    if (!keep_all && !keep_none) {
      const uint32_t u = order_key(scores[i]);
      keep = u > T || (u == T && eq_seen < remaining);
      eq_seen += u == T;
    }
    dest[i] = keep ? r++ : -1;
  }
  if (t == 0) dest[n] = total;  // the last token, always kept, after every kept candidate
}

__global__ void compact_rows_kernel(const float* h, const int32_t* pos, const int32_t* dest, int d, float* h_out,
                                    int32_t* pos_out, float* aux) {
  const int i = blockIdx.x, di = dest[i], p = pos[i];
  const float* src = h + static_cast<int64_t>(i) * d;
  float* dst = di >= 0 ? h_out + static_cast<int64_t>(di) * d : aux + static_cast<int64_t>(p) * d;
  if (threadIdx.x == 0 && di >= 0) pos_out[di] = p;
  if ((d & 3) == 0) {
    const float4* s4 = reinterpret_cast<const float4*>(src);
    float4* d4 = reinterpret_cast<float4*>(dst);
    for (int c = threadIdx.x; c < d / 4; c += blockDim.x) d4[c] = s4[c];
  } else {
    for (int c = threadIdx.x; c < d; c += blockDim.x) dst[c] = src[c];
  }
}

// ---------------------------------------------------------------- steady decode steps

// After select_top over a decode step's candidates (the previous layer's keys without the new
// token): the kept keys in order, the new token last; a kept token short of need_depth (it would
// revive) raises *miss.
__global__ void steady_keys_kernel(SteadyKeysArgs a) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int n = a.nk[0], k = a.nk[1];
  if (i == 0) a.keys_out[k] = *a.new_pos;
  if (i >= n) return;
  const int di = a.dest[i];
  if (di < 0) return;
  const int t = a.keys_in ? a.keys_in[i] : i;
  a.keys_out[di] = t;
  if (a.depth[t] < a.need_depth) *a.miss = 1;
}

// out[i] = the slot of keys[i] at this layer; the last key is the new token, at *new_slot.
__global__ void listed_slots_kernel(const int32_t* layer_slots, const int32_t* keys, const int32_t* n_keys,
                                    const int32_t* new_slot, int32_t* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x, n = *n_keys;
  if (i < n - 1) out[i] = layer_slots[keys[i]];
  else if (i == n - 1) out[i] = *new_slot;
}

// The device's mirror of the index after a steady step: the new token's slot at every layer,
// and its depth (every layer).
__global__ void steady_book_kernel(int32_t* slot_table, int n_ctx, int n_layers, const int32_t* slots,
                                   const int32_t* pos, int32_t* depth) {
  const int l = blockIdx.x * blockDim.x + threadIdx.x, p = *pos;
  if (l < n_layers) slot_table[static_cast<int64_t>(l) * n_ctx + p] = slots[l];
  if (l == 0) depth[p] = n_layers;
}

// ---------------------------------------------------------------- importance

// LazyLLM's importance: row `row`'s softmax probabilities per head, averaged over heads, in three
// parallel passes (scores and block maxima over the keys x heads grid; per-head max and sum;
// the head average), so that 32K keys do not rest on one block per head.
constexpr int kImpThreads = 256;
constexpr int kImpKeys = 128;  // keys per block of the scoring pass

int imp_blocks(const AttentionArgs& a) { return (a.n_keys + kImpKeys - 1) / kImpKeys; }
// Keys present: a.n_keys, or the count in device memory (decode graphs; a.n_keys is then the
// capacity, which also strides the per-head rows of the scratch).
__device__ inline int live_keys(const AttentionArgs& a) { return a.n_keys_dev ? *a.n_keys_dev : a.n_keys; }

// grid (key block, head): scaled, masked scores into probs[h][j]; each block's max into pmax.
__global__ void __launch_bounds__(kImpThreads) imp_scores_kernel(AttentionArgs a, int row, float* probs, float* pmax) {
  __shared__ float sq[kMaxHeadDim];
  __shared__ float sred[kImpThreads / 32];
  const int b = blockIdx.x, h = blockIdx.y, hd = a.head_dim, kvd = a.n_kv_heads * hd;
  const int g = h / (a.n_heads / a.n_kv_heads), warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const __half* qrow = reinterpret_cast<const __half*>(a.q) + static_cast<int64_t>(row) * a.n_heads * hd + h * hd;
  for (int c = threadIdx.x; c < hd; c += kImpThreads) sq[c] = __half2float(qrow[c]);
  __syncthreads();
  const int qp = a.qpos[row], n_keys = live_keys(a);
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
      slot[u] = j < n_keys ? key_slot(a, j) : -1;
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
                                                               int stride, const int32_t* n_keys_dev, float* stat) {
  const int n_keys = n_keys_dev ? *n_keys_dev : stride;
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
  const float* pr = probs + static_cast<int64_t>(h) * stride;
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
__global__ void imp_average_kernel(const float* probs, const float* stat, int n_heads, int stride,
                                   const int32_t* n_keys_dev, float* importance) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= (n_keys_dev ? *n_keys_dev : stride)) return;
  float sum = 0.0f;
  for (int h = 0; h < n_heads; ++h) {
    const float s = probs[static_cast<int64_t>(h) * stride + j];
    sum += s == kNegInf ? 0.0f : expf(s - stat[2 * h]) * stat[2 * h + 1];
  }
  importance[j] = sum / static_cast<float>(n_heads);
}

}  // namespace

void select_top(const float* scores, int n, int k, int32_t* dest, cudaStream_t stream) {
  select_top_kernel<<<1, kSelThreads, 0, stream>>>(scores, n, k, nullptr, dest);
  check_launch("select_top_kernel");
}

void select_top_dev(const float* scores, const int32_t* nk, int32_t* dest, cudaStream_t stream) {
  select_top_kernel<<<1, kSelThreads, 0, stream>>>(scores, 0, 0, nk, dest);
  check_launch("select_top_kernel");
}

void steady_keys(const SteadyKeysArgs& a, cudaStream_t stream) {
  steady_keys_kernel<<<(a.capacity + 255) / 256, 256, 0, stream>>>(a);
  check_launch("steady_keys_kernel");
}

void listed_slots(const int32_t* layer_slots, const int32_t* keys, const int32_t* n_keys, const int32_t* new_slot,
                  int capacity, int32_t* out, cudaStream_t stream) {
  listed_slots_kernel<<<(capacity + 255) / 256, 256, 0, stream>>>(layer_slots, keys, n_keys, new_slot, out);
  check_launch("listed_slots_kernel");
}

void steady_book(int32_t* slot_table, int n_ctx, int n_layers, const int32_t* slots, const int32_t* pos,
                 int32_t* depth, cudaStream_t stream) {
  steady_book_kernel<<<(n_layers + 127) / 128, 128, 0, stream>>>(slot_table, n_ctx, n_layers, slots, pos, depth);
  check_launch("steady_book_kernel");
}

void compact_rows(const float* h, const int32_t* pos, const int32_t* dest, int n, int d, float* h_out,
                  int32_t* pos_out, float* aux, cudaStream_t stream) {
  if (n == 0) return;
  compact_rows_kernel<<<n, 256, 0, stream>>>(h, pos, dest, d, h_out, pos_out, aux);
  check_launch("compact_rows_kernel");
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
  imp_norm_kernel<<<a.n_heads, kImpThreads, 0, stream>>>(probs, pmax, nb, a.n_keys, a.n_keys_dev, stat);
  check_launch("imp_norm_kernel");
  imp_average_kernel<<<(a.n_keys + 255) / 256, 256, 0, stream>>>(probs, stat, a.n_heads, a.n_keys, a.n_keys_dev,
                                                                 importance);
  check_launch("imp_average_kernel");
}

}  // namespace lazyllm::cuda
