// Quantized weight products on the tensor cores for batches of 3 to kQgemmMaxRows rows (qgemm.h).
//
// Each lane dequantizes 32-element chunks of weight rows in registers into bf16 A fragments of
// mma.sync m16n8k16; no weight byte is written back or staged. The order in which an mma sums its
// 16 k values is free as long as A and B agree, so in each mma every lane's four k slots are four
// consecutive elements of its own chunk (chunks of different blocks, each already scaled by its
// block's factors, side by side), and the lane loads the same four activations from X (16-byte
// loads, cached: every warp of the grid reads X). Nibbles become bf16 without conversions: 128 + q
// is exactly 0x4300 | q, from which 128 (plus the format's offset) is subtracted exactly before
// the block's scale multiplies; Q8_0's bytes go through float. Values thus match the
// dequantize-then-cuBLAS path up to the rounding of the scale (bf16 scale products instead of one
// rounding of the float value).
//
// A block is 8 warps over 16 MT weight rows and 8 NT activation rows; the warps split k in
// 128-element slices (four lanes' chunks), U slices' loads in flight at once, and add their sums
// in shared memory at the end, so even 4096-row matrices make 256 blocks. The first slices' loads
// go out before the kernel waits for the one before it (programmatic dependent launch).
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemv_common.cuh"
#include "kernels/cuda/pdl.h"
#include "kernels/cuda/qgemm.h"

namespace lazyllm::cuda {
namespace {

using namespace gemv_detail;

constexpr int kQWarps = 8;
constexpr int kQThreads = kQWarps * 32;
constexpr int kChunk = 32;          // elements of one lane's chunk of a row
constexpr int kSlice = 4 * kChunk;  // elements of k a warp takes at a time

// One lane's chunk of one weight row as loaded.
//   Q4_0: a quants, s d.  Q8_0: a, b quants, s d.  Q4_K: a header, b quants.
//   Q5_K: a header, b qh, c quants.  Q6_K: a ql, b qh, s d | scale0 << 16 | scale1 << 24.
struct Raw {
  uint4 a, b, c;
  uint32_t s;
};

// A chunk's factors: value = q * s + m (bf16 pairs); Q8_0 d as float.
struct Factors {
  __nv_bfloat162 s0, s1, m0, m1;
  float d;
};

__device__ inline uint4 ldg4(const void* p) { return __ldg(static_cast<const uint4*>(p)); }

__device__ inline uint32_t word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

__device__ inline __nv_bfloat162 bf2(uint32_t u) { return *reinterpret_cast<const __nv_bfloat162*>(&u); }
__device__ inline uint32_t u32(__nv_bfloat162 v) { return *reinterpret_cast<const uint32_t*>(&v); }
__device__ inline __nv_bfloat162 splat(float f) { return __float2bfloat162_rn(f); }

// Bytes i and i + 1 of w (i = 0 or 2) in the low bits of two 16-bit halves.
template <int I>
__device__ inline uint32_t spread(uint32_t w) {
  return __byte_perm(w, 0, I == 0 ? 0x4140 : 0x4342);
}

// 128 + the low nibbles of bytes i, i + 1 of w, as a bf16 pair.
template <int I>
__device__ inline uint32_t nibbles(uint32_t w) {
  return (spread<I>(w) & 0x000F000Fu) | 0x43004300u;
}

// Where a chunk's two runs of 16 elements begin in its row, and how far apart they are.
template <WeightFormat F>
__device__ inline int chunk_origin(int ci) {
  if constexpr (F == WeightFormat::kQ4_0 || F == WeightFormat::kQ8_0) return ci * kChunk;
  const int sb = ci >> 3, t = ci & 7;
  if constexpr (F == WeightFormat::kQ6_K) return sb * kQKBlock + 128 * (t >> 2) + 16 * (t & 3);
  return sb * kQKBlock + 64 * (t >> 1) + 16 * (t & 1);
}
template <WeightFormat F>
constexpr int run_gap() {
  return F == WeightFormat::kQ6_K ? 64 : (F == WeightFormat::kQ4_K || F == WeightFormat::kQ5_K) ? 32 : 16;
}

// Chunk ci of a row (its bytes `row`, its scales `srow`).
template <WeightFormat F>
__device__ inline Raw load_raw(const uint8_t* row, const uint16_t* srow, int ci) {
  Raw r{};
  if constexpr (F == WeightFormat::kQ4_0) {
    r.a = load_stream(reinterpret_cast<const uint4*>(row + 16 * ci));
    r.s = __ldg(srow + ci);
  } else if constexpr (F == WeightFormat::kQ8_0) {
    r.a = load_stream(reinterpret_cast<const uint4*>(row + 32 * ci));
    r.b = load_stream(reinterpret_cast<const uint4*>(row + 32 * ci + 16));
    r.s = __ldg(srow + ci);
  } else {
    const int sb = ci >> 3, t = ci & 7;
    if constexpr (F == WeightFormat::kQ4_K) {
      const uint8_t* b = row + static_cast<size_t>(sb) * 144;
      r.a = ldg4(b);
      r.b = load_stream(reinterpret_cast<const uint4*>(b + 16 + 16 * t));
    } else if constexpr (F == WeightFormat::kQ5_K) {
      const uint8_t* b = row + static_cast<size_t>(sb) * 176;
      r.a = ldg4(b);
      r.b = ldg4(b + 16 + 16 * (t & 1));
      r.c = load_stream(reinterpret_cast<const uint4*>(b + 48 + 16 * t));
    } else {
      const uint8_t* b = row + static_cast<size_t>(sb) * 208;
      const int n = t >> 2, u = t & 3;
      r.a = load_stream(reinterpret_cast<const uint4*>(b + 64 * n + 16 * u));
      r.b = ldg4(b + 128 + 32 * n + 16 * (u & 1));
      const uint32_t sc0 = __ldg(b + 192 + 8 * n + u), sc1 = __ldg(b + 192 + 8 * n + u + 4);
      r.s = __ldg(srow + sb) | sc0 << 16 | sc1 << 24;
    }
  }
  return r;
}

template <WeightFormat F>
__device__ inline Factors factors(const Raw& r, int ci) {
  Factors f{};
  if constexpr (F == WeightFormat::kQ4_0) {
    f.s0 = splat(half_bits_to_float(static_cast<uint16_t>(r.s)));
  } else if constexpr (F == WeightFormat::kQ8_0) {
    f.d = half_bits_to_float(static_cast<uint16_t>(r.s));
  } else if constexpr (F == WeightFormat::kQ6_K) {
    const float d = half_bits_to_float(static_cast<uint16_t>(r.s));
    f.s0 = splat(d * static_cast<float>(static_cast<int8_t>(r.s >> 16)));
    f.s1 = splat(d * static_cast<float>(static_cast<int8_t>(r.s >> 24)));
  } else {
    const int j = (ci & 7) >> 1;  // the chunk's runs are groups 2j and 2j + 1
    float d, dmin;
    super_block_d(r.a, &d, &dmin);
    float sc, m;
    scale_min(r.a, 2 * j, &sc, &m);
    f.s0 = splat(d * sc), f.m0 = splat(-dmin * m);
    scale_min(r.a, 2 * j + 1, &sc, &m);
    f.s1 = splat(d * sc), f.m1 = splat(-dmin * m);
  }
  return f;
}

// Elements 8 (Q & 1) .. + 8 of run Q >> 1 of a chunk, as four bf16 pairs in element order.
template <WeightFormat F, int Q>
__device__ inline void chunk_pairs(const Raw& r, const Factors& f, int ci, uint32_t (&p)[4]) {
  constexpr int run = Q >> 1, w0 = 2 * (Q & 1);
  if constexpr (F == WeightFormat::kQ8_0) {
    const uint4& v = run ? r.b : r.a;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint32_t x = word(v, w0 + i) ^ 0x80808080u;  // q + 128, unsigned
      float e[4];
#pragma unroll
      for (int b = 0; b < 4; ++b)
        e[b] = (__int_as_float(static_cast<int>(__byte_perm(x, 0x4B000000u, 0x7650 + b))) - 8388736.0f) * f.d;
      p[2 * i] = pack_bf16(e[0], e[1]);
      p[2 * i + 1] = pack_bf16(e[2], e[3]);
    }
  } else if constexpr (F == WeightFormat::kQ4_0) {
    const __nv_bfloat162 off = bf2(0x43084308u);  // 128 + 8
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint32_t w = word(r.a, w0 + i) >> (4 * run);
      p[2 * i] = u32(__hmul2(__hsub2(bf2(nibbles<0>(w)), off), f.s0));
      p[2 * i + 1] = u32(__hmul2(__hsub2(bf2(nibbles<2>(w)), off), f.s0));
    }
  } else if constexpr (F == WeightFormat::kQ4_K || F == WeightFormat::kQ5_K) {
    const __nv_bfloat162 off = bf2(0x43004300u), s = run ? f.s1 : f.s0, m = run ? f.m1 : f.m0;
    const uint4& qs = F == WeightFormat::kQ4_K ? r.b : r.c;
    const int j = (ci & 7) >> 1;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint32_t w = word(qs, w0 + i) >> (4 * run);
      uint32_t lo = nibbles<0>(w), hi = nibbles<2>(w);
      if constexpr (F == WeightFormat::kQ5_K) {  // bit 2j (+ run) of qh[l]: the fifth bit
        const uint32_t h = word(r.b, w0 + i) >> (2 * j + run);
        lo |= (spread<0>(h) & 0x00010001u) << 4;
        hi |= (spread<2>(h) & 0x00010001u) << 4;
      }
      p[2 * i] = u32(__hfma2(__hsub2(bf2(lo), off), s, m));
      p[2 * i + 1] = u32(__hfma2(__hsub2(bf2(hi), off), s, m));
    }
  } else {  // Q6_K: low (run 0) or high (run 1) nibbles of ql, two bits of qh
    const __nv_bfloat162 off = bf2(0x43204320u), s = run ? f.s1 : f.s0;  // 128 + 32
    const int hshift = 2 * ((ci & 3) >> 1) + 4 * run;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint32_t w = word(r.a, w0 + i) >> (4 * run), h = word(r.b, w0 + i) >> hshift;
      const uint32_t lo = nibbles<0>(w) | (spread<0>(h) & 0x00030003u) << 4;
      const uint32_t hi = nibbles<2>(w) | (spread<2>(h) & 0x00030003u) << 4;
      p[2 * i] = u32(__hmul2(__hsub2(bf2(lo), off), s));
      p[2 * i + 1] = u32(__hmul2(__hsub2(bf2(hi), off), s));
    }
  }
}

__device__ inline void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Step pair Q of one slice: the lane's chunk ci of each of its 2 MT rows times its activation rows.
// X's rows are those of xt + 8 nt, the last one past the batch.
template <WeightFormat F, int MT, int NT, int Q>
__device__ inline void slice_step(const Raw (&raw)[2 * MT], const Factors (&f)[2 * MT], int ci, bool ok,
                                  const GemvArgs& a, int xt, float (&acc)[MT][NT][4]) {
  uint32_t p[2 * MT][4];
#pragma unroll
  for (int i = 0; i < 2 * MT; ++i) chunk_pairs<F, Q>(raw[i], f[i], ci, p[i]);
  const int e = chunk_origin<F>(ci) + (Q >> 1) * run_gap<F>() + 8 * (Q & 1);
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const bf16_t* xrow = a.x + static_cast<int64_t>(min(xt + 8 * nt, a.m - 1)) * a.k;
    const uint4 xb = ok ? ldg4(xrow + e) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      const uint32_t(&r0)[4] = p[2 * mt];
      const uint32_t(&r8)[4] = p[2 * mt + 1];
      mma_bf16(acc[mt][nt], r0[0], r8[0], r0[1], r8[1], xb.x, xb.y);
      mma_bf16(acc[mt][nt], r0[2], r8[2], r0[3], r8[3], xb.z, xb.w);
    }
  }
}

// Slices whose loads a warp has in flight: fewer where more activation rows give each slice
// more work (and need the registers).
template <WeightFormat F, int NT>
constexpr int slices_in_flight() {
  return NT >= 8 ? 1 : NT >= 4 ? 2 : F == WeightFormat::kQ4_0 ? 4 : 2;
}

template <WeightFormat F, int MT, int NT>
__global__ void __launch_bounds__(kQThreads, 2) qgemm_kernel(GemvArgs a) {
  constexpr int U = slices_in_flight<F, NT>();
  extern __shared__ float red[];  // [kQWarps][16 MT][8 NT]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int k = a.k, n_chunks = k / kChunk, n_slices = (k + kSlice - 1) / kSlice;
  const int row0 = blockIdx.x * 16 * MT, tok0 = blockIdx.y * 8 * NT;

  // The lane's rows (g and g + 8 of each 16-row tile; past the matrix, its last row, read and
  // never stored) and activation rows (g of each 8-row tile).
  const uint8_t* wrow[2 * MT];
  const uint16_t* srow[2 * MT];
  const int64_t row_bytes = weight_row_bytes(F, k), row_scales = weight_row_scales(F, k);
#pragma unroll
  for (int i = 0; i < 2 * MT; ++i) {
    const int r = min(row0 + 16 * (i >> 1) + g + 8 * (i & 1), a.n_out - 1);
    wrow[i] = static_cast<const uint8_t*>(a.q.w) + r * row_bytes;
    srow[i] = a.q.scales ? a.q.scales + r * row_scales : nullptr;
  }

  float acc[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[mt][nt][j] = 0.0f;

  Raw raw[U][2 * MT];
  auto load = [&](int s0) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int ci = (s0 + u) * 4 + c;
#pragma unroll
      for (int i = 0; i < 2 * MT; ++i) raw[u][i] = ci < n_chunks ? load_raw<F>(wrow[i], srow[i], ci) : Raw{};
    }
  };
  int s0 = warp * U;
  load(s0);
  // Weights are constants: their first loads go out before the kernel before this one is done.
  pdl_trigger();
  pdl_wait();
  for (; s0 < n_slices; s0 += kQWarps * U) {
    if (s0 != warp * U) load(s0);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (s0 + u >= n_slices) break;
      const int ci = (s0 + u) * 4 + c;
      const bool ok = ci < n_chunks;
      Factors f[2 * MT];
#pragma unroll
      for (int i = 0; i < 2 * MT; ++i) f[i] = factors<F>(raw[u][i], ci);
      slice_step<F, MT, NT, 0>(raw[u], f, ci, ok, a, tok0 + g, acc);
      slice_step<F, MT, NT, 1>(raw[u], f, ci, ok, a, tok0 + g, acc);
      slice_step<F, MT, NT, 2>(raw[u], f, ci, ok, a, tok0 + g, acc);
      slice_step<F, MT, NT, 3>(raw[u], f, ci, ok, a, tok0 + g, acc);
    }
  }

  // The warps' sums of the block's tile, added up (accumulator j: row g + 8 (j >> 1), column
  // 2 c + (j & 1) of its 16 x 8 tile).
  constexpr int kRows = 16 * MT, kCols = 8 * NT;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        red[(warp * kRows + 16 * mt + g + 8 * (j >> 1)) * kCols + 8 * nt + 2 * c + (j & 1)] = acc[mt][nt][j];
  __syncthreads();
  for (int i = threadIdx.x; i < kRows * kCols; i += kQThreads) {
    const int r = row0 + i / kCols, t = tok0 + i % kCols;
    if (r >= a.n_out || t >= a.m) continue;
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < kQWarps; ++w) v += red[w * kRows * kCols + i];
    store(a, y_index(a, t, r), v);
  }
}

template <int MT, int NT>
constexpr size_t red_bytes() {
  return sizeof(float) * kQWarps * 16 * MT * 8 * NT;
}

template <WeightFormat F, int MT, int NT>
void launch(const GemvArgs& a, cudaStream_t s) {
  const dim3 grid((a.n_out + 16 * MT - 1) / (16 * MT), (a.m + 8 * NT - 1) / (8 * NT));
  launch_pdl("qgemm_kernel", qgemm_kernel<F, MT, NT>, grid, dim3(kQThreads), red_bytes<MT, NT>(), s, a);
}

// Activation-row tiles of 8 NT: the smallest that takes all rows at once, else 64 rows a tile.
// (Blocks of 32 weight rows, sharing each activation load between two tiles, spilled registers
// and were no faster on an H200.)
template <WeightFormat F>
void launch_f(const GemvArgs& a, cudaStream_t s) {
  if (a.m <= 8) return launch<F, 1, 1>(a, s);
  if (a.m <= 16) return launch<F, 1, 2>(a, s);
  if (a.m <= 32) return launch<F, 1, 4>(a, s);
  return launch<F, 1, 8>(a, s);
}

}  // namespace

bool qgemm_applies(WeightFormat f, int m, int k) {
  return f != WeightFormat::kBf16 && m >= 1 && m <= kQgemmMaxRows && k > 0 && k % weight_block_elems(f) == 0;
}

void qgemm(const GemvArgs& a, cudaStream_t stream) {
  if (!qgemm_applies(a.q.format, a.m, a.k)) throw Error("qgemm: unsupported quantized shape");
  if (a.n_out <= 0) return;
  if (reinterpret_cast<uintptr_t>(a.x) % 16 != 0) throw Error("qgemm: activation rows not 16-byte aligned");
  switch (a.q.format) {
    case WeightFormat::kQ8_0: return launch_f<WeightFormat::kQ8_0>(a, stream);
    case WeightFormat::kQ4_0: return launch_f<WeightFormat::kQ4_0>(a, stream);
    case WeightFormat::kQ4_K: return launch_f<WeightFormat::kQ4_K>(a, stream);
    case WeightFormat::kQ5_K: return launch_f<WeightFormat::kQ5_K>(a, stream);
    case WeightFormat::kQ6_K: return launch_f<WeightFormat::kQ6_K>(a, stream);
    default: throw Error("qgemm: not a quantized format");
  }
}

}  // namespace lazyllm::cuda
