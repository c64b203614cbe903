// Decode's matrix-vector products over quantized weights (Q8_0, Q4_0 in the layout of
// weight_ref.h; the K-quants are in gemv_kquant.cu), and the conversions the other paths need
// (prefill's dequantization into bf16, embedding rows).
//
// The products read a quarter (Q4_0) to a half (Q8_0) of the bytes bf16 would, so the arithmetic
// per byte grows: the activation rows are quantized to 8 bits per 32-element block in shared
// memory (each block's scale, and for Q4_0 the scaled sum of its quants that the -8 offset
// needs), and a block's products are exact int32 sums of 8-bit products (dp4a), scaled once by
// the weight's and the activation's scales. Each warp takes groups of four weight rows (two
// where that leaves too few groups to fill the GPU) in turn, the grid no larger than what fits
// on the GPU at once, so each block makes the activation rows once (they are re-read from L2 by
// every block; on compute capability 9.0+ the two blocks of a cluster each make half of them
// into both blocks' shared memory, and the fused RMSNorm's scale multiplies the sums instead of
// the rows); each lane keeps eight 16-byte weight loads in flight (L1-bypassing,
// software-pipelined, the first issued before the activation rows are made). The fusions are the
// bf16 kernel's: RMSNorm making X from float rows, SwiGLU over gate|up (gate and up rows of the
// same outputs in one warp), beta accumulating into float Y, and the QKV finish (finish_pair).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/gemv_common.cuh"
#include "kernels/cuda/pdl.h"

namespace lazyllm::cuda {

namespace gemv_detail {

int sm_count() {
  static const int n = [] {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
      return 132;
    return sms;
  }();
  return n;
}

int resident_blocks(const void* kernel, size_t smem) {
  static std::mutex mu;
  static std::map<std::pair<const void*, size_t>, int> cache;
  const std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find({kernel, smem});
  if (it != cache.end()) return it->second;
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem) != cudaSuccess) {
    cudaGetLastError();
    per_sm = 1;
  }
  return cache[{kernel, smem}] = std::max(1, per_sm) * sm_count();
}

namespace {
// Thread-block clusters: compute capability 9.0 or later.
bool clusters_supported() {
  int dev = 0, major = 0;
  return cudaGetDevice(&dev) == cudaSuccess &&
         cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
}

std::atomic<int>& cluster_setting() {
  static std::atomic<int> c = [] {
    if (!clusters_supported()) return 1;
    const char* e = std::getenv("LAZYLLM_CUDA_GEMV_CLUSTER");
    const int v = e ? std::atoi(e) : 0;
    return v == 1 || v == 2 || v == 4 || v == 8 ? v : kDefaultCluster;
  }();
  return c;
}
}  // namespace

int product_cluster() { return cluster_setting().load(std::memory_order_relaxed); }

int resident_clusters(const void* kernel, size_t smem, int c) {
  static std::mutex mu;
  static std::map<std::tuple<const void*, size_t, int>, int> cache;
  const std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find({kernel, smem, c});
  if (it != cache.end()) return it->second;
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = static_cast<unsigned>(c);
  attr.val.clusterDim.y = attr.val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(c * sm_count()));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  int n = 0;
  if (cudaOccupancyMaxActiveClusters(&n, kernel, &cfg) != cudaSuccess) {
    cudaGetLastError();
    n = 0;
  }
  return cache[{kernel, smem, c}] = std::max(1, n);
}

}  // namespace gemv_detail

namespace {

using namespace gemv_detail;

constexpr int kLoads = 8;  // 16-byte weight loads in flight per lane (rows per warp x per row)

// Elements per 16-byte chunk of a row's quants.
template <WeightFormat F>
constexpr int chunk_elems() {
  return F == WeightFormat::kQ8_0 ? 16 : 32;
}

// Y = X W^T for M activation rows, R weight rows a warp (SwiGLU: R/2 gate rows and their up rows).
// One row (decode) keeps two blocks an SM: at most 128 registers a thread.
template <WeightFormat F, int M, int R, bool SWIGLU, bool NORM>
__global__ void __launch_bounds__(kThreads, M == 1 ? 2 : 1) gemv_q_kernel(GemvArgs a) {
  constexpr int U = kLoads / R;  // loads per row in flight per lane
  constexpr int E = chunk_elems<F>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int k = a.k, nb = k / kQBlock, n_vec = k / E;
  int8_t* xq = reinterpret_cast<int8_t*>(smem_raw);
  float* xd = reinterpret_cast<float*>(smem_raw + static_cast<size_t>(M) * k);
  float* xo = xd + M * nb;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  // Warp groups of R weight rows (SwiGLU: R/2 outputs' gate and up rows), taken in turn by the
  // warps of the grid, so a block makes the activation rows once for all its groups.
  const int n_groups = SWIGLU ? (a.n_out + R / 2 - 1) / (R / 2) : (a.n_out + R - 1) / R;
  const int group_step = gridDim.x * kWarps;
  int g = blockIdx.x * kWarps + warp;
  // The group's weight rows; rows past the matrix read row 0 and store nothing.
  int rows[R];
  bool valid[R];
  const uint4* wp[R];
  const uint16_t* sp[R];
  const size_t row_bytes = static_cast<size_t>(weight_row_bytes(F, k));
  auto take_group = [&] {
    if constexpr (SWIGLU) {
      constexpr int O = R / 2;
#pragma unroll
      for (int j = 0; j < O; ++j) {
        const int o = g * O + j;
        valid[j] = valid[O + j] = o < a.n_out;
        rows[j] = valid[j] ? o : 0;
        rows[O + j] = valid[j] ? a.n_out + o : 0;
      }
    } else {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int row = g * R + r;
        valid[r] = row < a.n_out;
        rows[r] = valid[r] ? row : 0;
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      wp[r] = reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(a.q.w) + rows[r] * row_bytes);
      sp[r] = a.q.scales + static_cast<size_t>(rows[r]) * nb;
    }
  };
  take_group();

  // Software pipeline: chunk c + 1's loads are in flight while chunk c is multiplied; the first
  // chunk's go out before the activation rows are made, which does not need them.
  uint4 wv[R][U];
  uint16_t ws[R][U];
  auto load = [&](int base, uint4(&v)[R][U], uint16_t(&s)[R][U]) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int idx = base + u * 32 + lane;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        v[r][u] = make_uint4(0, 0, 0, 0);
        s[r][u] = 0;
        if (g < n_groups && idx < n_vec) {
          v[r][u] = load_stream(wp[r] + idx);
          s[r][u] = __ldg(sp[r] + idx * E / kQBlock);
        }
      }
    }
  };
  const bool clustered = cluster_blocks() > 1;
  if (clustered) cluster_arrive();
  load(0, wv, ws);
  // Weights are constants: their first loads go out before the kernel before this one is done.
  pdl_trigger();
  pdl_wait();

  float xs[M];  // what multiplies the sums
  make_x<M, NORM>(a, clustered, xq, xd, xo, xs);

  for (bool first = true; g < n_groups; g += group_step, first = false) {
    if (!first) {  // a later group: its first chunk's loads (the first group's went out above)
      take_group();
      load(0, wv, ws);
    }
    float acc[R][M];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int mi = 0; mi < M; ++mi) acc[r][mi] = 0.0f;

    for (int base = 0; base < n_vec; base += 32 * U) {
      uint4 nv[R][U];
      uint16_t ns[R][U];
      load(base + 32 * U, nv, ns);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int idx = base + u * 32 + lane;
        if (idx >= n_vec) continue;
        float wd[R];
#pragma unroll
        for (int r = 0; r < R; ++r) wd[r] = half_bits_to_float(ws[r][u]);
        const int b = idx * E / kQBlock;  // the 32-element block of this chunk
#pragma unroll
        for (int mi = 0; mi < M; ++mi) {
          const float dx = xd[mi * nb + b];
          if constexpr (F == WeightFormat::kQ8_0) {
            const int4 x = *reinterpret_cast<const int4*>(xq + static_cast<size_t>(mi) * k + idx * 16);
#pragma unroll
            for (int r = 0; r < R; ++r) {
              const uint4 w = wv[r][u];
              int s = __dp4a(static_cast<int>(w.x), x.x, 0);
              s = __dp4a(static_cast<int>(w.y), x.y, s);
              s = __dp4a(static_cast<int>(w.z), x.z, s);
              s = __dp4a(static_cast<int>(w.w), x.w, s);
              acc[r][mi] = fmaf(wd[r] * dx, static_cast<float>(s), acc[r][mi]);
            }
          } else {
            // Byte j of the chunk: element j (low nibble), element j + 16 (high nibble).
            const int4* xp = reinterpret_cast<const int4*>(xq + static_cast<size_t>(mi) * k + idx * 32);
            const int4 x0 = xp[0], x1 = xp[1];
            const float off = xo[mi * nb + b];
#pragma unroll
            for (int r = 0; r < R; ++r) {
              const uint4 w = wv[r][u];
              constexpr unsigned kLo = 0x0F0F0F0Fu;
              int s = __dp4a(static_cast<int>(w.x & kLo), x0.x, 0);
              s = __dp4a(static_cast<int>(w.y & kLo), x0.y, s);
              s = __dp4a(static_cast<int>(w.z & kLo), x0.z, s);
              s = __dp4a(static_cast<int>(w.w & kLo), x0.w, s);
              s = __dp4a(static_cast<int>((w.x >> 4) & kLo), x1.x, s);
              s = __dp4a(static_cast<int>((w.y >> 4) & kLo), x1.y, s);
              s = __dp4a(static_cast<int>((w.z >> 4) & kLo), x1.z, s);
              s = __dp4a(static_cast<int>((w.w >> 4) & kLo), x1.w, s);
              // sum (q - 8) x = dx (sum q xq) - 8 dx (sum xq)
              acc[r][mi] = fmaf(wd[r], fmaf(dx, static_cast<float>(s), -off), acc[r][mi]);
            }
          }
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < R; ++r) wv[r][u] = nv[r][u], ws[r][u] = ns[r][u];
    }

#pragma unroll
    for (int mi = 0; mi < M; ++mi) {
      float v[R];
#pragma unroll
      for (int r = 0; r < R; ++r) v[r] = warp_sum(acc[r][mi]) * xs[mi];
      if (lane != 0) continue;
      if constexpr (SWIGLU) {
        constexpr int O = R / 2;
#pragma unroll
        for (int j = 0; j < O; ++j) {
          if (!valid[j]) continue;
          static_cast<__nv_bfloat16*>(a.y)[y_index(a, mi, rows[j])] = swiglu_out(v[j], v[O + j]);
        }
      } else if (a.finish.q) {
#pragma unroll
        for (int r = 0; r < R; r += 2)
          if (valid[r]) finish_pair(a, mi, a.finish_row0 + rows[r], v[r], v[r + 1]);
      } else {
#pragma unroll
        for (int r = 0; r < R; ++r)
          if (valid[r]) store(a, y_index(a, mi, rows[r]), v[r]);
      }
    }
  }
}

template <WeightFormat F, int M, int R, bool SWIGLU, bool NORM>
void launch(const GemvArgs& a, cudaStream_t s) {
  // As many blocks as there are groups of rows for their warps, at most as many as fit on the
  // GPU at once: each block then makes the activation rows once and takes several groups.
  const int per_block = kWarps * (SWIGLU ? R / 2 : R);
  const size_t smem = x_smem_bytes(M, a.k);
  launch_product("gemv_q_kernel", gemv_q_kernel<F, M, R, SWIGLU, NORM>, (a.n_out + per_block - 1) / per_block, smem, s,
                 a);
}

template <WeightFormat F, int M, int R>
void launch_r(const GemvArgs& a, cudaStream_t s) {
  const bool norm = a.norm_in != nullptr;
  if (a.swiglu) return norm ? launch<F, M, R, true, true>(a, s) : launch<F, M, R, true, false>(a, s);
  return norm ? launch<F, M, R, false, true>(a, s) : launch<F, M, R, false, false>(a, s);
}

template <WeightFormat F, int M>
void launch_m(const GemvArgs& a, cudaStream_t s) {
  // Four rows a warp read each activation chunk from shared memory once for four rows; two
  // where four would leave fewer than two blocks' worth of groups an SM (Wo and down of a 7B
  // model: 4096 rows), so more warps share the loads.
  const int per_block4 = kWarps * (a.swiglu ? 2 : 4);
  if ((a.n_out + per_block4 - 1) / per_block4 >= 2 * sm_count()) return launch_r<F, M, 4>(a, s);
  return launch_r<F, M, 2>(a, s);
}

template <WeightFormat F>
void launch_f(const GemvArgs& a, cudaStream_t s) {
  switch (a.m) {
    case 1: return launch_m<F, 1>(a, s);
    case 2: return launch_m<F, 2>(a, s);
  }
}

template <WeightFormat F, int M, int R>
void prepare_r() {
  const int smem = static_cast<int>(kMaxSmem);
  const char* what = "cudaFuncSetAttribute(gemv_q_kernel)";
  check(cudaFuncSetAttribute(gemv_q_kernel<F, M, R, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
        what);
  check(cudaFuncSetAttribute(gemv_q_kernel<F, M, R, true, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
        what);
  check(cudaFuncSetAttribute(gemv_q_kernel<F, M, R, false, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
        what);
  check(cudaFuncSetAttribute(gemv_q_kernel<F, M, R, false, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
        what);
}

template <WeightFormat F>
void prepare_f() {
  prepare_r<F, 1, 2>(), prepare_r<F, 1, 4>();
  prepare_r<F, 2, 2>(), prepare_r<F, 2, 4>();
}

// ---------------------------------------------------------------- conversions

// Pieces (16 bytes of bf16 output) per 16-byte chunk of quants: Q8_0 16 elements, Q4_0 32.
template <WeightFormat F>
constexpr int chunk_pieces() {
  return chunk_elems<F>() / 8;
}

// Chunk i of the quants as bf16. Rows are contiguous and k a multiple of 32, so the chunks of all
// rows are one sequence and chunk i's block is i * E / 32 of the scales.
template <WeightFormat F>
__device__ inline void dequant_chunk(const WeightRef& w, int64_t i, uint4 (&out)[chunk_pieces<F>()]) {
  constexpr int E = chunk_elems<F>();
  const uint4 v = load_stream(static_cast<const uint4*>(w.w) + i);
  const float d = half_bits_to_float(__ldg(w.scales + i * E / kQBlock));
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
  if constexpr (F == WeightFormat::kQ8_0) {
    uint32_t o[8];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int32_t x = static_cast<int32_t>(words[j]);
      o[2 * j] = pack_bf16(static_cast<float>(static_cast<int8_t>(x)) * d,
                           static_cast<float>(static_cast<int8_t>(x >> 8)) * d);
      o[2 * j + 1] = pack_bf16(static_cast<float>(static_cast<int8_t>(x >> 16)) * d, static_cast<float>(x >> 24) * d);
    }
    out[0] = make_uint4(o[0], o[1], o[2], o[3]);
    out[1] = make_uint4(o[4], o[5], o[6], o[7]);
  } else {
    uint32_t lo[8], hi[8];  // elements 0-15 (low nibbles), 16-31 (high nibbles)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t x = words[j];
      auto val = [&](int shift) { return (static_cast<float>((x >> shift) & 0xF) - 8.0f) * d; };
      lo[2 * j] = pack_bf16(val(0), val(8));
      lo[2 * j + 1] = pack_bf16(val(16), val(24));
      hi[2 * j] = pack_bf16(val(4), val(12));
      hi[2 * j + 1] = pack_bf16(val(20), val(28));
    }
    out[0] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
    out[1] = make_uint4(lo[4], lo[5], lo[6], lo[7]);
    out[2] = make_uint4(hi[0], hi[1], hi[2], hi[3]);
    out[3] = make_uint4(hi[4], hi[5], hi[6], hi[7]);
  }
}

constexpr int kDequantThreads = 256;

// One chunk a thread, a tile of kDequantThreads chunks a block at a time, stored through shared memory.
template <WeightFormat F>
__global__ void __launch_bounds__(kDequantThreads) dequant_kernel(WeightRef w, int64_t n_chunks, __nv_bfloat16* out) {
  constexpr int P = chunk_pieces<F>();
  __shared__ uint4 stage[kDequantThreads * P];
  for (int64_t tile = blockIdx.x * int64_t{kDequantThreads}; tile < n_chunks;
       tile += int64_t{gridDim.x} * kDequantThreads) {
    const int valid = static_cast<int>(std::min<int64_t>(kDequantThreads, n_chunks - tile));
    uint4 v[P] = {};
    if (static_cast<int>(threadIdx.x) < valid) dequant_chunk<F>(w, tile + threadIdx.x, v);
    store_staged<P>(v, stage, reinterpret_cast<uint4*>(out) + tile * P, valid);
  }
}

__global__ void embed_q_kernel(WeightRef t, const int32_t* tokens, int d, float* out) {
  const int64_t row = tokens[blockIdx.x];
  const int nb = d / kQBlock;
  float* o = out + static_cast<int64_t>(blockIdx.x) * d;
  for (int e = threadIdx.x; e < d; e += blockDim.x) {
    const float s = half_bits_to_float(t.scales[row * nb + e / kQBlock]);
    if (t.format == WeightFormat::kQ8_0) {
      o[e] = static_cast<float>(static_cast<const int8_t*>(t.w)[row * d + e]) * s;
    } else {
      const int j = e % kQBlock;
      const uint8_t byte = static_cast<const uint8_t*>(t.w)[row * (d / 2) + (e / kQBlock) * 16 + (j & 15)];
      o[e] = (static_cast<float>(j < 16 ? byte & 0xF : byte >> 4) - 8.0f) * s;
    }
  }
}

}  // namespace

int gemv_cluster() { return product_cluster(); }

void set_gemv_cluster(int c) {
  if (c != 1 && c != 2 && c != 4 && c != 8) throw Error("gemv cluster size must be 1, 2, 4 or 8");
  if (c > 1 && !clusters_supported()) throw Error("thread-block clusters need compute capability 9.0 or later");
  cluster_setting().store(c, std::memory_order_relaxed);
}

bool qkv_finish_fuses(const QkvFinishArgs& f, int row0, int n_out) {
  return !f.neox && f.head_dim % 2 == 0 && row0 % 2 == 0 && n_out % 2 == 0;
}

bool gemv_quant_applies(WeightFormat f, int m, int k) {
  return f != WeightFormat::kBf16 && m >= 1 && m <= kGemvQuantMaxRows && k % weight_block_elems(f) == 0 &&
         x_smem_bytes(m, k) <= kMaxSmem;
}

void gemv_quant_prepare() {
  prepare_f<WeightFormat::kQ8_0>();
  prepare_f<WeightFormat::kQ4_0>();
  gemv_kquant_prepare();
}

void gemv_quant(const GemvArgs& a, cudaStream_t stream) {
  if (!gemv_quant_applies(a.q.format, a.m, a.k)) throw Error("gemv: unsupported quantized shape");
  if (a.swiglu && (a.y_f32 || a.beta != 0.0f)) throw Error("gemv: SwiGLU writes bf16 without accumulation");
  gemv_prepare();
  if (is_k_quant(a.q.format)) return gemv_kquant(a, stream);
  if (a.q.format == WeightFormat::kQ8_0) return launch_f<WeightFormat::kQ8_0>(a, stream);
  return launch_f<WeightFormat::kQ4_0>(a, stream);
}

void dequantize_bf16(const WeightRef& w, int64_t rows, int k, bf16_t* out, cudaStream_t stream) {
  if (rows == 0) return;
  if (k % weight_block_elems(w.format) != 0) throw Error("dequantize_bf16: row length is not a multiple of the block");
  if (is_k_quant(w.format)) return dequantize_kquant_bf16(w, rows, k, out, stream);
  auto* o = reinterpret_cast<__nv_bfloat16*>(out);
  auto launch = [&](auto f_tag) {
    constexpr WeightFormat F = decltype(f_tag)::value;
    const int64_t n = rows * k / chunk_elems<F>();
    const int blocks =
        static_cast<int>(std::min<int64_t>((n + kDequantThreads - 1) / kDequantThreads, 16 * sm_count()));
    dequant_kernel<F><<<blocks, kDequantThreads, 0, stream>>>(w, n, o);
  };
  if (w.format == WeightFormat::kQ8_0) launch(std::integral_constant<WeightFormat, WeightFormat::kQ8_0>{});
  else if (w.format == WeightFormat::kQ4_0) launch(std::integral_constant<WeightFormat, WeightFormat::kQ4_0>{});
  else throw Error("dequantize_bf16: not a quantized format");
  check_launch("dequant_kernel");
}

void embed_rows_any(const WeightRef& table, const int32_t* tokens, int n, int d, float* out, cudaStream_t stream) {
  if (table.format == WeightFormat::kBf16)
    return embed_rows(static_cast<const bf16_t*>(table.w), tokens, n, d, out, stream);
  if (n == 0) return;
  if (is_k_quant(table.format)) return embed_kquant(table, tokens, n, d, out, stream);
  embed_q_kernel<<<n, 256, 0, stream>>>(table, tokens, d, out);
  check_launch("embed_q_kernel");
}

}  // namespace lazyllm::cuda
