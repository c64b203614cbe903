// Decode's matrix-vector products over K-quant weights (Q4_K, Q5_K, Q6_K in the layout of
// weight_ref.h: 256-element super-blocks), and their dequantization into bf16 for prefill and
// embedding rows.
//
// As for Q8_0/Q4_0 (gemv_quant.cu), the activation rows are quantized to 8 bits per 32-element
// block in shared memory and each 32-element group's product is an exact int32 sum of 8-bit
// products (dp4a), scaled once: Q4_K/Q5_K value = d sc q - dmin m (the min term takes the sum of
// the activation block's quants, which the activation rows carry), Q6_K value = d sc (q - 32) with
// q - 32 a signed byte. Lanes share a super-block (eight, each reading 16 of its quant bytes, Q6_K
// 24; Q4_K with one activation row four, each 32: see KLanes) and read the block's header or
// scales at once; a warp takes units of 4 (or 8) super-blocks of two weight rows (SwiGLU: a
// gate row and its up row), unpacks each super-block's share once for all activation rows, and
// keeps the loads of the next two units in flight while it multiplies one, from one group of rows
// into the next too (the first two before the activation rows are made). On an H100 that made
// llama2-7b decode 2-3% faster (Q4_K 455-457 -> 467-468 tok/s, Q4_K_M 418-420 -> 427-428) than
// issuing two units' loads and multiplying both before the next loads, which left a warp nothing
// in flight between its groups; one unit ahead was slower (451-452), and so were three (Q4_K
// 447-449 against 468 on another H100: 128 registers, no spills). At most 128 registers a
// thread, so two blocks share an SM: on an H200 a token's products took 9-14% less time so than
// with four units in flight at one block an SM, and less than with four rows a warp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/gemv_common.cuh"
#include "kernels/cuda/pdl.h"

namespace lazyllm::cuda::gemv_detail {
namespace {

constexpr int kRows = 2;      // weight rows a warp
constexpr int kAhead = 2;     // units (S super-blocks of the rows) whose loads are in flight ahead
constexpr int kGroups = 8;    // 32-element groups a super-block
constexpr int kQ6Body = 208;  // a Q6_K block without its d

constexpr unsigned kLo4 = 0x0F0F0F0Fu;

// How lanes share a super-block: eight, each half of a 64-element chunk (kHalves), or for Q4_K
// with one activation row four (kSpread), each the same half of chunks t / 2 and t / 2 + 2, so
// each of its two 16-byte loads covers whole 32-byte sectors and each lane decodes the scales of
// four groups. On an H100 a token's Q4_K products took 2.64 ms so, 2.69-2.72 with each lane a
// whole chunk (the same bytes, but each load touching every sector by half) and 2.88 with that
// and the scales looked up a byte at a time (lazyllm_bench_cuda --quant q4_k). Four lanes with
// two activation rows ran a third slower on an H200 (the registers being the limit), and Q6_K
// with four lanes 3.44 ms against 3.29 with eight.
enum class KLanes { kHalves, kSpread };

template <WeightFormat F, int M>
constexpr KLanes lanes_for() {
  return F == WeightFormat::kQ4_K && M == 1 ? KLanes::kSpread : KLanes::kHalves;
}

// What one lane reads of one super-block of one row.
struct KLoad {
  uint4 a, b, c;  // Q4_K: header, quants (c; kSpread: b and c). Q5_K: header, qh, quants. Q6_K: ql (x2), qh, scales
  uint16_t d;     // Q6_K's d
};

__device__ inline int dot4(const unsigned* w, const int4& x, int s = 0) {
  s = __dp4a(static_cast<int>(w[0]), x.x, s);
  s = __dp4a(static_cast<int>(w[1]), x.y, s);
  s = __dp4a(static_cast<int>(w[2]), x.z, s);
  return __dp4a(static_cast<int>(w[3]), x.w, s);
}

// Lane t's share (t < 4 with kSpread, else 8) of super-block s of a row.
template <WeightFormat F, KLanes LN>
__device__ inline KLoad load_k(const uint8_t* row, const uint16_t* d_row, int s, int t) {
  KLoad l{};
  if constexpr (F == WeightFormat::kQ4_K) {
    const uint8_t* b = row + static_cast<size_t>(s) * 144;
    l.a = __ldg(reinterpret_cast<const uint4*>(b));
    if constexpr (LN == KLanes::kSpread) {
      l.b = load_stream(reinterpret_cast<const uint4*>(b + 16 + 16 * t));
      l.c = load_stream(reinterpret_cast<const uint4*>(b + 80 + 16 * t));
    } else {
      l.c = load_stream(reinterpret_cast<const uint4*>(b + 16 + 16 * t));
    }
  } else if constexpr (F == WeightFormat::kQ5_K) {
    const uint8_t* b = row + static_cast<size_t>(s) * 176;
    l.a = __ldg(reinterpret_cast<const uint4*>(b));
    l.b = __ldg(reinterpret_cast<const uint4*>(b + 16 + 16 * (t & 1)));
    l.c = load_stream(reinterpret_cast<const uint4*>(b + 48 + 16 * t));
  } else {
    const uint8_t* b = row + static_cast<size_t>(s) * kQ6Body;
    const int h = t >> 2, l0 = 8 * (t & 3);
    const uint2 qa = __ldg(reinterpret_cast<const uint2*>(b + 64 * h + l0));
    const uint2 qb = __ldg(reinterpret_cast<const uint2*>(b + 64 * h + 32 + l0));
    const uint2 qh = __ldg(reinterpret_cast<const uint2*>(b + 128 + 32 * h + l0));
    l.a = make_uint4(qa.x, qa.y, qb.x, qb.y);
    l.b = make_uint4(qh.x, qh.y, 0, 0);
    l.c = __ldg(reinterpret_cast<const uint4*>(b + 192));
    l.d = __ldg(d_row + s);
  }
  return l;
}

// Lane t's weights of one super-block, unpacked once for all activation rows: words of four
// 8-bit values (Q4_K sixteen, the others eight) and the float factors of their groups.
struct KWeights {
  unsigned q[16];
  // Q4_K/Q5_K: d sc and dmin m of groups 2c, 2c + 1 (kSpread: and 2c + 4, 2c + 5); Q6_K: d sc of groups 0..3.
  float f[8];
};

// Q4_K/Q5_K: d sc and dmin m of groups 2c and 2c + 1 (bytes 2 (c % 2) and 2 (c % 2) + 1 of the
// scale and min words of groups 0-3 or 4-7), from the super-block's header.
__device__ inline void affine_factors(const uint4& hdr, int c, float (&f)[8]) {
  float d, dmin;
  super_block_d(hdr, &d, &dmin);
  const KScaleWords w = scale_min_words(hdr);
  const int shift = 16 * (c & 1);
  const unsigned sc = (c < 2 ? w.sc[0] : w.sc[1]) >> shift, m = (c < 2 ? w.m[0] : w.m[1]) >> shift;
  f[0] = d * static_cast<float>(sc & 0xFFu), f[1] = dmin * static_cast<float>(m & 0xFFu);
  f[2] = d * static_cast<float>((sc >> 8) & 0xFFu), f[3] = dmin * static_cast<float>((m >> 8) & 0xFFu);
}

// kSpread: the factors of groups 2c, 2c + 1 (f[0..3]) and 2c + 4, 2c + 5 (f[4..7]) for c < 2:
// the same bytes of the words of groups 0-3 and 4-7.
__device__ inline void affine_factors_spread(const uint4& hdr, int c, float (&f)[8]) {
  float d, dmin;
  super_block_d(hdr, &d, &dmin);
  const KScaleWords w = scale_min_words(hdr);
  const int shift = 16 * c;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const unsigned sc = w.sc[h] >> shift, m = w.m[h] >> shift;
    f[4 * h] = d * static_cast<float>(sc & 0xFFu);
    f[4 * h + 1] = dmin * static_cast<float>(m & 0xFFu);
    f[4 * h + 2] = d * static_cast<float>((sc >> 8) & 0xFFu);
    f[4 * h + 3] = dmin * static_cast<float>((m >> 8) & 0xFFu);
  }
}

// Four 6-bit Q6_K quants q (a byte each) as the signed bytes q - 32: flipping bit 5 gives q - 32
// in six bits, and bits 6 and 7 copy its sign (bit 5 times 6 sets both; no byte carries).
__device__ inline unsigned q6_minus_32(unsigned q) {
  const unsigned y = q ^ 0x20202020u;
  return y | ((y & 0x20202020u) * 6u);
}

template <WeightFormat F, KLanes LN>
__device__ inline KWeights unpack_k(const KLoad& l, int t) {
  KWeights w;
  if constexpr (LN == KLanes::kSpread) {
    // b: bytes [16 t, 16 t + 16) of the quants, half t % 2 of chunk t / 2; c: the same half of
    // chunk t / 2 + 2. Low nibbles are the chunk's even group, high nibbles its odd one.
    const unsigned qw[8] = {l.b.x, l.b.y, l.b.z, l.b.w, l.c.x, l.c.y, l.c.z, l.c.w};
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        w.q[8 * h + i] = qw[4 * h + i] & kLo4;
        w.q[8 * h + 4 + i] = (qw[4 * h + i] >> 4) & kLo4;
      }
    affine_factors_spread(l.a, t >> 1, w.f);
  } else if constexpr (F == WeightFormat::kQ4_K || F == WeightFormat::kQ5_K) {
    // Bytes [16 t, 16 t + 16) of the quants: chunk c = t / 2 of 64 elements, its half t % 2:
    // low nibbles are group 2c's elements 16 (t % 2) + i, high nibbles group 2c + 1's.
    const int c = t >> 1;
    const unsigned qw[4] = {l.c.x, l.c.y, l.c.z, l.c.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w.q[i] = qw[i] & kLo4;
      w.q[4 + i] = (qw[i] >> 4) & kLo4;
    }
    if constexpr (F == WeightFormat::kQ5_K) {  // the fifth bit: bit j of qh[l] for group j, element l
      const unsigned hw[4] = {l.b.x, l.b.y, l.b.z, l.b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        w.q[i] |= ((hw[i] >> (2 * c)) & 0x01010101u) << 4;
        w.q[4 + i] |= ((hw[i] >> (2 * c + 1)) & 0x01010101u) << 4;
      }
    }
    affine_factors(l.a, c, w.f);
  } else {
    // Elements 128 h + 32 j + l0 + (0..7) for j = 0..3: ql_a's low nibbles (j 0), ql_b's (j 1),
    // ql_a's high (j 2), ql_b's high (j 3); qh's bits 2j, 2j + 1; scale 8 h + 2 j + l0 / 16, which
    // is byte l0 / 16 (j even) or 2 + l0 / 16 (j odd) of word 2 h + j / 2.
    const int h = t >> 2, l0 = 8 * (t & 3), s_shift = 8 * (l0 >> 4);
    const unsigned s01 = h ? l.c.z : l.c.x, s23 = h ? l.c.w : l.c.y;
    const float d = half_bits_to_float(l.d);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int wi = 0; wi < 2; ++wi) {
        const unsigned ql = j & 1 ? (wi ? l.a.w : l.a.z) : (wi ? l.a.y : l.a.x);
        const unsigned qh = wi ? l.b.y : l.b.x;
        const unsigned low = (j < 2 ? ql : ql >> 4) & kLo4;
        w.q[2 * j + wi] = q6_minus_32(low | (((qh >> (2 * j)) & 0x03030303u) << 4));
      }
      const unsigned sw = j < 2 ? s01 : s23;
      w.f[j] = d * static_cast<float>(static_cast<int8_t>(sw >> (s_shift + 16 * (j & 1))));
    }
  }
  return w;
}

// Lane t's part of super-block s's product with one activation row: xq (k int8), xd (each
// 32-element block's scale), xo (8 x scale x the block's sum of quants).
template <WeightFormat F, KLanes LN>
__device__ inline float dot_k(const KWeights& w, const int8_t* xq, const float* xd, const float* xo, int s, int t) {
  const int8_t* xs = xq + static_cast<size_t>(s) * kQKBlock;
  const int b = s * kGroups;
  if constexpr (LN == KLanes::kSpread) {
    const int c = t >> 1, half = t & 1;
    float v = 0.0f, mins = 0.0f;
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int grp = 4 * h + 2 * c + e;
        const int4 x = *reinterpret_cast<const int4*>(xs + 32 * grp + 16 * half);
        v += xd[b + grp] * w.f[4 * h + 2 * e] * static_cast<float>(dot4(w.q + 8 * h + 4 * e, x));
        mins += w.f[4 * h + 2 * e + 1] * xo[b + grp];
      }
    // The mins: the lane with the first half of the groups takes their whole sums (xo / 8).
    return half == 0 ? v - 0.125f * mins : v;
  } else if constexpr (F == WeightFormat::kQ4_K || F == WeightFormat::kQ5_K) {
    const int c = t >> 1, half = t & 1;
    const int4 x0 = *reinterpret_cast<const int4*>(xs + 64 * c + 16 * half);
    const int4 x1 = *reinterpret_cast<const int4*>(xs + 64 * c + 32 + 16 * half);
    float v = xd[b + 2 * c] * w.f[0] * static_cast<float>(dot4(w.q, x0)) +
              xd[b + 2 * c + 1] * w.f[2] * static_cast<float>(dot4(w.q + 4, x1));
    // The mins: the lane with the first half of the groups takes their whole sums (xo / 8).
    if (half == 0) v -= 0.125f * (w.f[1] * xo[b + 2 * c] + w.f[3] * xo[b + 2 * c + 1]);
    return v;
  } else {
    const int h = t >> 2, l0 = 8 * (t & 3);
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int2 x = *reinterpret_cast<const int2*>(xs + 128 * h + 32 * j + l0);
      const int sum = __dp4a(static_cast<int>(w.q[2 * j + 1]), x.y, __dp4a(static_cast<int>(w.q[2 * j]), x.x, 0));
      acc += xd[b + 4 * h + j] * w.f[j] * static_cast<float>(sum);
    }
    return acc;
  }
}

// Y = X W^T for M activation rows, two weight rows a warp (SwiGLU: a gate row and its up row).
// A warp's work is a sequence of units, S super-blocks of its group's rows, the groups taken in
// turn; the loads of the next kAhead units are in flight while a unit is multiplied, across
// groups too (with k = 4096 a group is two units with kSpread lanes, four with kHalves).
template <WeightFormat F, int M, bool SWIGLU, bool NORM>
__global__ void __launch_bounds__(kThreads, 2) gemv_k_kernel(GemvArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int k = a.k, nb = k / kQBlock, n_sb = k / kQKBlock;
  int8_t* xq = reinterpret_cast<int8_t*>(smem_raw);
  float* xd = reinterpret_cast<float*>(smem_raw + static_cast<size_t>(M) * k);
  float* xo = xd + M * nb;
  constexpr KLanes LN = lanes_for<F, M>();
  constexpr int L = LN == KLanes::kHalves ? 8 : 4, S = 32 / L;  // lanes a super-block, super-blocks a unit
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = lane % L, sb_lane = lane / L;
  const size_t row_bytes = static_cast<size_t>(weight_row_bytes(F, k));
  const int row_scales = static_cast<int>(weight_row_scales(F, k));
  const int n_groups = SWIGLU ? a.n_out : (a.n_out + kRows - 1) / kRows;
  const int group_step = gridDim.x * kWarps;
  float xs[M];  // what multiplies the sums
  float acc[kRows][M];

  // Weight row r of group gg (SwiGLU: output gg's gate and up rows), -1 past the matrix.
  auto row_of = [&](int gg, int r) {
    const int row = SWIGLU ? (r == 0 ? gg : a.n_out + gg) : gg * kRows + r;
    return gg < n_groups && (SWIGLU || row < a.n_out) ? row : -1;
  };
  // The unit of group gg from super-block s0 (rows past the matrix read row 0).
  auto load_unit = [&](int gg, int s0, KLoad(&dst)[kRows]) {
    const int s = s0 + sb_lane;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = max(row_of(gg, r), 0);
      const uint8_t* wr = static_cast<const uint8_t*>(a.q.w) + row * row_bytes;
      const uint16_t* dr = a.q.scales ? a.q.scales + static_cast<size_t>(row) * row_scales : nullptr;
      if (s < n_sb && gg < n_groups) dst[r] = load_k<F, LN>(wr, dr, s, t);
    }
  };
  auto multiply = [&](const KLoad(&ld)[kRows], int s) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const KWeights w = unpack_k<F, LN>(ld[r], t);
#pragma unroll
      for (int mi = 0; mi < M; ++mi)
        acc[r][mi] += dot_k<F, LN>(w, xq + static_cast<size_t>(mi) * k, xd + mi * nb, xo + mi * nb, s, t);
    }
  };
  auto zero = [&] {
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int mi = 0; mi < M; ++mi) acc[r][mi] = 0.0f;
  };
  auto finish_group = [&](int gg) {
#pragma unroll
    for (int mi = 0; mi < M; ++mi) {
      float v[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) v[r] = warp_sum(acc[r][mi]) * xs[mi];
      if (lane != 0) continue;
      if constexpr (SWIGLU) {
        static_cast<__nv_bfloat16*>(a.y)[y_index(a, mi, gg)] = swiglu_out(v[0], v[1]);
      } else if (a.finish.q) {
        if (row_of(gg, 0) >= 0) finish_pair(a, mi, a.finish_row0 + row_of(gg, 0), v[0], v[1]);
      } else {
#pragma unroll
        for (int r = 0; r < kRows; ++r)
          if (row_of(gg, r) >= 0) store(a, y_index(a, mi, row_of(gg, r)), v[r]);
      }
    }
  };

  KLoad buf[kAhead + 1][kRows];
  int g = blockIdx.x * kWarps + warp;  // the group multiplied
  int lg = g, ls = 0;                  // the next unit to load
  auto advance = [&] {
    ls += S;
    if (ls >= n_sb) ls = 0, lg += group_step;
  };
  // Weights are constants: the first units' loads go out before the kernel before this one is
  // done and while the activation rows are made.
  const bool clustered = cluster_blocks() > 1;
  if (clustered) cluster_arrive();
#pragma unroll
  for (int u = 0; u < kAhead; ++u) load_unit(lg, ls, buf[u]), advance();
  pdl_trigger();
  pdl_wait();
  make_x<M, NORM>(a, clustered, xq, xd, xo, xs);
  zero();
  for (int s0 = 0; g < n_groups;) {
    load_unit(lg, ls, buf[kAhead]);
    advance();
    if (s0 + sb_lane < n_sb) multiply(buf[0], s0 + sb_lane);
#pragma unroll
    for (int u = 0; u < kAhead; ++u)
#pragma unroll
      for (int r = 0; r < kRows; ++r) buf[u][r] = buf[u + 1][r];
    s0 += S;
    if (s0 >= n_sb) {
      finish_group(g);
      zero();
      s0 = 0, g += group_step;
    }
  }
}

template <WeightFormat F, int M, bool SWIGLU, bool NORM>
void launch(const GemvArgs& a, cudaStream_t s) {
  const int per_block = kWarps * (SWIGLU ? 1 : kRows);
  const size_t smem = x_smem_bytes(M, a.k);
  launch_product("gemv_k_kernel", gemv_k_kernel<F, M, SWIGLU, NORM>, (a.n_out + per_block - 1) / per_block, smem, s, a);
}

template <WeightFormat F, int M>
void launch_m(const GemvArgs& a, cudaStream_t s) {
  const bool norm = a.norm_in != nullptr;
  if (a.swiglu) return norm ? launch<F, M, true, true>(a, s) : launch<F, M, true, false>(a, s);
  return norm ? launch<F, M, false, true>(a, s) : launch<F, M, false, false>(a, s);
}

template <WeightFormat F>
void launch_f(const GemvArgs& a, cudaStream_t s) {
  switch (a.m) {
    case 1: return launch_m<F, 1>(a, s);
    case 2: return launch_m<F, 2>(a, s);
  }
}

template <WeightFormat F, int M>
void prepare_m() {
  const int smem = static_cast<int>(kMaxSmem);
  const char* what = "cudaFuncSetAttribute(gemv_k_kernel)";
  check(cudaFuncSetAttribute(gemv_k_kernel<F, M, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), what);
  check(cudaFuncSetAttribute(gemv_k_kernel<F, M, true, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
        what);
  check(cudaFuncSetAttribute(gemv_k_kernel<F, M, false, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
        what);
  check(cudaFuncSetAttribute(gemv_k_kernel<F, M, false, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
        what);
}

template <WeightFormat F>
void prepare_f() {
  prepare_m<F, 1>(), prepare_m<F, 2>();
}

// ---------------------------------------------------------------- conversions

// The 32 values of group j of super-block `b` (its bytes in the layout of weight_ref.h; d for Q6_K),
// its quants read as 16-byte words (super-blocks and their quant arrays start 16-byte aligned).
template <WeightFormat F>
__device__ inline void group_values(const uint8_t* b, uint16_t d6, int j, float (&v)[32]) {
  auto words = [](const uint8_t* p, unsigned(&w)[8]) {
    const uint4 a = __ldg(reinterpret_cast<const uint4*>(p)), c = __ldg(reinterpret_cast<const uint4*>(p) + 1);
    w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w, w[4] = c.x, w[5] = c.y, w[6] = c.z, w[7] = c.w;
  };
  auto byte = [](const unsigned(&w)[8], int l) { return (w[l >> 2] >> (8 * (l & 3))) & 0xFFu; };
  if constexpr (F == WeightFormat::kQ4_K || F == WeightFormat::kQ5_K) {
    const uint4 hdr = __ldg(reinterpret_cast<const uint4*>(b));
    float d, dmin;
    super_block_d(hdr, &d, &dmin);
    float sc, m;
    scale_min(hdr, j, &sc, &m);
    const float mul = d * sc, sub = dmin * m;
    const int c = j >> 1, shift = 4 * (j & 1);
    unsigned qs[8], qh[8] = {};
    words(b + (F == WeightFormat::kQ4_K ? 16 : 48) + 32 * c, qs);
    if constexpr (F == WeightFormat::kQ5_K) words(b + 16, qh);
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      unsigned q = (byte(qs, l) >> shift) & 0xFu;
      if constexpr (F == WeightFormat::kQ5_K) q |= ((byte(qh, l) >> j) & 1u) << 4;
      v[l] = mul * static_cast<float>(q) - sub;
    }
  } else {
    const int h = j >> 2, jj = j & 3;
    const float d = half_bits_to_float(d6);
    unsigned ql[8], qh[8];
    words(b + 64 * h + (jj & 1 ? 32 : 0), ql);
    words(b + 128 + 32 * h, qh);
    const auto* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * h + 2 * jj;
    const float f0 = d * static_cast<float>(__ldg(sc)), f1 = d * static_cast<float>(__ldg(sc + 1));
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      const unsigned low = (jj < 2 ? byte(ql, l) : byte(ql, l) >> 4) & 0xFu;
      const int q = static_cast<int>(low | (((byte(qh, l) >> (2 * jj)) & 3u) << 4));
      v[l] = (l < 16 ? f0 : f1) * static_cast<float>(q - 32);
    }
  }
}

constexpr int kDequantKThreads = 256;

template <WeightFormat F>
__device__ inline void group_at(const WeightRef& w, int64_t sb, int j, float (&v)[32]) {
  const uint8_t* b = static_cast<const uint8_t*>(w.w) + sb * (weight_row_bytes(F, kQKBlock));
  group_values<F>(b, F == WeightFormat::kQ6_K ? __ldg(w.scales + sb) : 0, j, v);
}

// One 32-element group a thread; rows are contiguous and k a multiple of 256, so the super-blocks
// of all rows are one sequence. A block's tile of groups is stored through shared memory
// (store_staged).
template <WeightFormat F>
__global__ void __launch_bounds__(kDequantKThreads)
    dequant_k_kernel(WeightRef w, int64_t n_groups, __nv_bfloat16* out) {
  __shared__ uint4 stage[kDequantKThreads * 4];
  for (int64_t tile = blockIdx.x * int64_t{kDequantKThreads}; tile < n_groups;
       tile += int64_t{gridDim.x} * kDequantKThreads) {
    const int valid = static_cast<int>(std::min<int64_t>(kDequantKThreads, n_groups - tile));
    uint4 p[4] = {};
    if (static_cast<int>(threadIdx.x) < valid) {
      const int64_t i = tile + threadIdx.x;
      float v[32];
      group_at<F>(w, i / kGroups, static_cast<int>(i % kGroups), v);
#pragma unroll
      for (int q = 0; q < 4; ++q)
        p[q] = make_uint4(pack_bf16(v[8 * q], v[8 * q + 1]), pack_bf16(v[8 * q + 2], v[8 * q + 3]),
                          pack_bf16(v[8 * q + 4], v[8 * q + 5]), pack_bf16(v[8 * q + 6], v[8 * q + 7]));
    }
    store_staged<4>(p, stage, reinterpret_cast<uint4*>(out) + tile * 4, valid);
  }
}

// One token a block, one group a thread.
template <WeightFormat F>
__global__ void embed_k_kernel(WeightRef t, const int32_t* tokens, int d, float* out) {
  const int64_t row = tokens[blockIdx.x];
  const int groups = d / 32, n_sb = d / kQKBlock;
  float* o = out + static_cast<int64_t>(blockIdx.x) * d;
  for (int gi = threadIdx.x; gi < groups; gi += blockDim.x) {
    float v[32];
    group_at<F>(t, row * n_sb + gi / kGroups, gi % kGroups, v);
#pragma unroll
    for (int l = 0; l < 32; ++l) o[gi * 32 + l] = v[l];
  }
}

template <WeightFormat F>
void dequant_f(const WeightRef& w, int64_t rows, int k, __nv_bfloat16* out, cudaStream_t stream) {
  const int64_t n = rows * k / 32;
  const int blocks =
      static_cast<int>(std::min<int64_t>((n + kDequantKThreads - 1) / kDequantKThreads, 16 * sm_count()));
  dequant_k_kernel<F><<<blocks, kDequantKThreads, 0, stream>>>(w, n, out);
  check_launch("dequant_k_kernel");
}

}  // namespace

void gemv_kquant_prepare() {
  prepare_f<WeightFormat::kQ4_K>();
  prepare_f<WeightFormat::kQ5_K>();
  prepare_f<WeightFormat::kQ6_K>();
}

void gemv_kquant(const GemvArgs& a, cudaStream_t stream) {
  switch (a.q.format) {
    case WeightFormat::kQ4_K: return launch_f<WeightFormat::kQ4_K>(a, stream);
    case WeightFormat::kQ5_K: return launch_f<WeightFormat::kQ5_K>(a, stream);
    case WeightFormat::kQ6_K: return launch_f<WeightFormat::kQ6_K>(a, stream);
    default: throw Error("gemv_kquant: not a K-quant format");
  }
}

void dequantize_kquant_bf16(const WeightRef& w, int64_t rows, int k, bf16_t* out, cudaStream_t stream) {
  auto* o = reinterpret_cast<__nv_bfloat16*>(out);
  switch (w.format) {
    case WeightFormat::kQ4_K: return dequant_f<WeightFormat::kQ4_K>(w, rows, k, o, stream);
    case WeightFormat::kQ5_K: return dequant_f<WeightFormat::kQ5_K>(w, rows, k, o, stream);
    case WeightFormat::kQ6_K: return dequant_f<WeightFormat::kQ6_K>(w, rows, k, o, stream);
    default: throw Error("dequantize_bf16: not a K-quant format");
  }
}

void embed_kquant(const WeightRef& table, const int32_t* tokens, int n, int d, float* out, cudaStream_t stream) {
  switch (table.format) {
    case WeightFormat::kQ4_K: embed_k_kernel<WeightFormat::kQ4_K><<<n, 128, 0, stream>>>(table, tokens, d, out); break;
    case WeightFormat::kQ5_K: embed_k_kernel<WeightFormat::kQ5_K><<<n, 128, 0, stream>>>(table, tokens, d, out); break;
    case WeightFormat::kQ6_K: embed_k_kernel<WeightFormat::kQ6_K><<<n, 128, 0, stream>>>(table, tokens, d, out); break;
    default: throw Error("embed_rows_any: not a K-quant format");
  }
  check_launch("embed_k_kernel");
}

}  // namespace lazyllm::cuda::gemv_detail
