// CUDA kernel micro-benchmark on llama2-7b shapes (random data, CUDA events, median of reps):
// the device-to-device copy ceiling, decode's matrix-vector products (GB/s of weights: bf16, and
// Q8_0 / Q4_0 / K-quant blocks with prefill's dequantization), decode attention (GB/s of K/V),
// prefill attention (TFLOP/s of causal attention) per kernel variant, and LazyLLM's GPU selection
// and importance. Usage: lazyllm_bench_cuda [--quick | --reads | --products | --chain |
// --quant [q8_0,q4_0,q4_k,q5_k,q6_k] | --qgemm [formats] | --prefill-products [formats] | --first-shapes | --lt-reuse |
// --warm-grid [none|library]]
// (--reads: the quantized matrix-vector kernels' load pattern alone against a sequential read, per matrix and for a
// token's matrices in a CUDA graph beside the products over them, each kind of product alone and all together;
// --products: the same without the per-matrix table; --chain: a decode token's kernel chain whole and with parts left
// out; --quant: the copy and the quantized products only, of the formats
// listed or all; --qgemm: batches of 1-64 rows over quantized weights, the tensor-core kernel against dequantizing into
// bf16 for cuBLAS and, where it applies, the matrix-vector kernel unfused; --prefill-products: prefill-sized
// products over quantized weights, dequantization and cuBLAS apart and together; --first-shapes: what cuBLAS costs
// the first time a process meets a product shape; --lt-reuse: one cuBLASLt algorithm reused for a bucket of row counts;
// --warm-grid: those first calls after the load-time warm-up of SessionOptions::gpu_warmup, or without it)
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.h"
#include "kernels/cuda/qgemm.h"
#include "runtime/cuda/product_warmup.h"
#include "runtime/cuda/weight_gemm.h"

using namespace lazyllm;
using namespace lazyllm::cuda;

namespace {

// Median time in ms of fn over reps, after warm-up.
double time_ms(const std::function<void()>& fn, int reps = 20, int warmup = 3) {
  for (int i = 0; i < warmup; ++i) fn();
  check(cudaDeviceSynchronize(), "sync");
  std::vector<float> t;
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  check(cudaGetLastError(), "benchmarked kernel");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

uint16_t bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
uint16_t f16(float f) {  // small values only (|f| < 2), enough for random test data
  const int s = f < 0 ? 0x8000 : 0;
  f = std::fabs(f);
  if (f < 6.1e-5f) return static_cast<uint16_t>(s);
  int e;
  const float m = std::frexp(f, &e);  // f = m 2^e, m in [0.5, 1)
  return static_cast<uint16_t>(s | ((e + 14) << 10) | (static_cast<int>((m * 2 - 1) * 1024) & 1023));
}

template <typename T>
void fill(DeviceBuffer<T>& b, size_t n, std::function<T(std::mt19937&)> gen, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<T> h(n);
  for (auto& x : h) x = gen(rng);
  b.ensure(n);
  check(cudaMemcpy(b.get(), h.data(), n * sizeof(T), cudaMemcpyHostToDevice), "fill");
}

std::uniform_real_distribution<float> uni(-1.0f, 1.0f);

// The matrix-vector kernel this branch replaced (a warp per row, one 16-byte load in flight).
__global__ void old_gemv_kernel(const uint16_t* w, int n_out, int k, const uint16_t* x, float* y) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r = blockIdx.x * 8 + warp;
  if (r >= n_out) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(r) * k);
  float acc = 0.0f;
  for (int i = lane; i < k / 8; i += 32) {
    const uint4 wv = wr[i], xv = reinterpret_cast<const uint4*>(x)[i];
    const uint32_t* w2 = &wv.x;
    const uint32_t* x2 = &xv.x;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      acc += __uint_as_float(w2[e] << 16) * __uint_as_float(x2[e] << 16) +
             __uint_as_float(w2[e] & 0xffff0000u) * __uint_as_float(x2[e] & 0xffff0000u);
    }
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) y[r] = acc;
}

void bench_copy() {
  const size_t bytes = size_t(2) << 30;
  DeviceBuffer<uint8_t> a(bytes), b(bytes);
  check(cudaMemset(a.get(), 1, bytes), "memset");
  const double ms = time_ms([&] { cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice); }, 10, 2);
  std::printf("copy 2 GiB device-to-device: %.3f ms, %.0f GB/s (read + write)\n", ms, 2.0 * bytes / ms / 1e6);
}

// A decode step's products on llama2-7b, in their order: each layer's four, then the output once.
struct DecodeProduct {
  const char* name;
  int n_out, k;
  bool swiglu, norm;  // SwiGLU over gate|up (2 n_out weight rows); RMSNorm fused into the input
  int per_token;      // launches a token
  size_t rows() const { return static_cast<size_t>(swiglu ? 2 : 1) * n_out; }
};
constexpr DecodeProduct kDecodeProducts[] = {{"qkv 12288x4096 +norm", 12288, 4096, false, true, 32},
                                             {"wo 4096x4096", 4096, 4096, false, false, 32},
                                             {"gate|up 2x11008x4096 +norm+swiglu", 11008, 4096, true, true, 32},
                                             {"down 4096x11008", 4096, 11008, false, false, 32},
                                             {"output 32000x4096 +norm", 32000, 4096, false, true, 1}};

void bench_gemv() {
  constexpr int kCopies = 4;  // rotate weights so that L2 (50 MB) does not hold them
  double total_new = 0, total_old = 0;
  for (const DecodeProduct& s : kDecodeProducts) {
    const size_t rows = s.rows();
    DeviceBuffer<uint16_t> w[kCopies];
    for (int c = 0; c < kCopies; ++c) fill<uint16_t>(w[c], rows * s.k, [](std::mt19937& r) { return bf16(uni(r) * 0.05f); }, 10 + c);
    DeviceBuffer<uint16_t> x;
    fill<uint16_t>(x, s.k, [](std::mt19937& r) { return bf16(uni(r)); }, 3);
    DeviceBuffer<float> hin, nw, y(std::max<size_t>(rows, 1));
    fill<float>(hin, s.k, [](std::mt19937& r) { return uni(r); }, 4);
    fill<float>(nw, s.k, [](std::mt19937& r) { return 1.0f + 0.1f * uni(r); }, 5);
    DeviceBuffer<uint16_t> yb(s.n_out);
    int c = 0;
    const double ms = time_ms([&] {
      GemvArgs a;
      a.w = w[c++ % kCopies].get(), a.n_out = s.n_out, a.k = s.k, a.m = 1, a.x = x.get();
      if (s.norm) a.norm_in = hin.get(), a.norm_w = nw.get(), a.eps = 1e-5f;
      a.swiglu = s.swiglu;
      a.y = s.swiglu ? static_cast<void*>(yb.get()) : y.get(), a.y_f32 = !s.swiglu;
      gemv(a, nullptr);
    });
    const double ms_old = time_ms([&] {
      old_gemv_kernel<<<(rows + 7) / 8, 256>>>(w[c++ % kCopies].get(), static_cast<int>(rows), s.k, x.get(), y.get());
    });
    const double bytes = 2.0 * rows * s.k;
    total_new += s.per_token * ms, total_old += s.per_token * ms_old;
    std::printf("gemv %-34s new %7.1f us %5.0f GB/s | old %7.1f us %5.0f GB/s\n", s.name, ms * 1e3, bytes / ms / 1e6,
                ms_old * 1e3, bytes / ms_old / 1e6);
  }
  std::printf("gemv one token's products (32 layers + output): new %.2f ms, old %.2f ms\n", total_new, total_old);
}

constexpr int kQuantCopies = 4;  // rotate weights so that L2 does not hold them
const std::pair<WeightFormat, const char*> kQuantFormats[] = {{WeightFormat::kQ8_0, "q8_0"},
                                                              {WeightFormat::kQ4_0, "q4_0"},
                                                              {WeightFormat::kQ4_K, "q4_k"},
                                                              {WeightFormat::kQ5_K, "q5_k"},
                                                              {WeightFormat::kQ6_K, "q6_k"}};

bool listed(const std::string& only, const char* name) {
  return only.empty() || ("," + only + ",").find("," + std::string(name) + ",") != std::string::npos;
}

// kQuantCopies random matrices of `rows` x k in format f (quants and f16 scales).
struct QuantCopies {
  DeviceBuffer<uint8_t> q[kQuantCopies];
  DeviceBuffer<uint16_t> d[kQuantCopies];
  WeightFormat f;
  double bytes;  // of one copy: quants and scales
  QuantCopies(WeightFormat format, size_t rows, int k) : f(format) {
    const size_t q_bytes = rows * weight_row_bytes(f, k),
                 n_scales = std::max<size_t>(1, rows * weight_row_scales(f, k));
    for (int c = 0; c < kQuantCopies; ++c) {
      fill<uint8_t>(
          q[c], q_bytes, [](std::mt19937& r) { return static_cast<uint8_t>(r()); }, 20 + c);
      fill<uint16_t>(
          d[c], n_scales, [](std::mt19937& r) { return f16(uni(r) * 0.01f); }, 30 + c);
    }
    bytes = static_cast<double>(q_bytes + (weight_row_scales(f, k) ? 2 * n_scales : 0));
  }
  WeightRef ref(int i) const { return WeightRef{f, q[i % kQuantCopies].get(), d[i % kQuantCopies].get()}; }
};

// The same products over Q8_0 / Q4_0 / K-quant blocks (gemv_quant.cu, gemv_kquant.cu), one and two activation rows,
// GB/s of the blocks' bytes (quants and scales); and prefill's dequantization into bf16 (GB/s read + written).
void bench_gemv_quant(const std::string& only) {
  for (const auto& fmt : kQuantFormats) {
    const WeightFormat f = fmt.first;
    const char* fname = fmt.second;
    if (!listed(only, fname)) continue;
    for (int m : {1, kGemvQuantMaxRows}) {
      double total = 0;
      for (const DecodeProduct& s : kDecodeProducts) {
        const size_t rows = s.rows();
        const QuantCopies w(f, rows, s.k);
        DeviceBuffer<uint16_t> x;
        fill<uint16_t>(
            x, static_cast<size_t>(m) * s.k, [](std::mt19937& r) { return bf16(uni(r)); }, 3);
        DeviceBuffer<float> hin, nw, y(static_cast<size_t>(m) * rows);
        fill<float>(
            hin, static_cast<size_t>(m) * s.k, [](std::mt19937& r) { return uni(r); }, 4);
        fill<float>(
            nw, s.k, [](std::mt19937& r) { return 1.0f + 0.1f * uni(r); }, 5);
        DeviceBuffer<uint16_t> yb(static_cast<size_t>(m) * s.n_out);
        int c = 0;
        const double ms = time_ms([&] {
          GemvArgs a;
          a.q = w.ref(c++);
          a.n_out = s.n_out, a.k = s.k, a.m = m, a.x = x.get();
          if (s.norm) a.norm_in = hin.get(), a.norm_w = nw.get(), a.eps = 1e-5f;
          a.swiglu = s.swiglu;
          a.y = s.swiglu ? static_cast<void*>(yb.get()) : y.get(), a.y_f32 = !s.swiglu;
          gemv(a, nullptr);
        });
        const double bytes = w.bytes;
        total += s.per_token * ms;
        std::printf("gemv %s m=%d %-34s %7.1f us %5.0f GB/s\n", fname, m, s.name, ms * 1e3, bytes / ms / 1e6);
        if (m == 1 && s.n_out == 12288) {
          DeviceBuffer<uint16_t> out(rows * s.k);
          const double ms_dq =
              time_ms([&] { dequantize_bf16(w.ref(c++), static_cast<int64_t>(rows), s.k, out.get(), nullptr); });
          std::printf("dequantize %s %s to bf16: %7.1f us %5.0f GB/s (read + write)\n", fname, s.name, ms_dq * 1e3,
                      (bytes + 2.0 * rows * s.k) / ms_dq / 1e6);
        }
      }
      std::printf("gemv %s m=%d one token's products (32 layers + output): %.2f ms\n", fname, m, total);
    }
  }
}

// What the quantized matrix-vector kernels' loads alone stream, without their arithmetic: each
// warp takes groups of R rows in turn (the grid at most `per_sm` blocks an SM), U 16-byte
// L1-bypassing loads a row in flight a lane, then the next U, as gemv_q_kernel reads a Q4_0
// matrix; against a plain sequential read of the same bytes. If the pattern alone is as slow as
// the kernels, the loads are the limit; if it streams near the sequential read, the rest is.
// With PDL the first loads go out, then the kernel lets its successor start and waits for its
// predecessor, as the products do in the decode graph.
template <int R, int U, bool PDL = false>
__global__ void __launch_bounds__(256) read_rows_kernel(const uint4* w, int n_rows, int n_vec, unsigned* out) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n_groups = (n_rows + R - 1) / R;
  unsigned acc = 0;
  bool waited = !PDL;
  for (int g = blockIdx.x * 8 + warp; g < n_groups; g += gridDim.x * 8) {
    for (int base = 0; base < n_vec; base += 32 * U) {
      uint4 v[R][U];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int idx = base + u * 32 + lane, row = min(g * R + r, n_rows - 1);
          v[r][u] = make_uint4(0, 0, 0, 0);
          if (idx < n_vec) {
            const uint4* p = w + static_cast<int64_t>(row) * n_vec + idx;
            asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                : "=r"(v[r][u].x), "=r"(v[r][u].y), "=r"(v[r][u].z), "=r"(v[r][u].w)
                : "l"(p));
          }
        }
      if (!waited) {
        pdl_trigger();
        pdl_wait();
        waited = true;
      }
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int u = 0; u < U; ++u) acc ^= v[r][u].x ^ v[r][u].y ^ v[r][u].z ^ v[r][u].w;
    }
  }
  if (!waited) pdl_trigger(), pdl_wait();
  if (acc == 0x9e3779b9u) out[0] = acc;  // keeps the loads
}

__global__ void __launch_bounds__(256) read_seq_kernel(const uint4* w, int64_t n, unsigned* out) {
  unsigned acc = 0;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  for (; i + 3 * step < n; i += 4 * step) {
    uint4 v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = __ldg(w + i + j * step);
#pragma unroll
    for (int j = 0; j < 4; ++j) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
  }
  for (; i < n; i += step) acc ^= __ldg(w + i).x;
  if (acc == 0x9e3779b9u) out[0] = acc;
}

// Median time in ms of one launch of the CUDA graph that `record` captures on stream st (which
// synchronizes with the legacy stream time_ms records its events on).
double graph_ms(cudaStream_t st, const std::function<void()>& record) {
  cudaGraph_t g;
  check(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), "capture");
  record();
  check(cudaStreamEndCapture(st, &g), "end capture");
  cudaGraphExec_t ge;
  check(cudaGraphInstantiate(&ge, g, 0), "instantiate");
  const double ms = time_ms([&] { check(cudaGraphLaunch(ge, st), "graph launch"); }, 10, 2);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  return ms;
}

// Each product's Q4_0 quants: rows of k / 2 bytes; with their f16 scales (2 bytes beside every
// 16 of quants) the products read kWithScales times as much.
size_t quant_bytes(const DecodeProduct& p) {
  return p.rows() * static_cast<size_t>(weight_row_bytes(WeightFormat::kQ4_0, p.k));
}
constexpr double kWithScales = 1.125;

int sm_count() {
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "SM count");
  return sms;
}

// Per matrix, one launch at a time: a sequential read against the kernels' load pattern in
// several R, U and blocks an SM.
void bench_read_table() {
  const int sms = sm_count();
  DeviceBuffer<unsigned> out(1);
  for (const DecodeProduct& s : kDecodeProducts) {
    const size_t bytes = quant_bytes(s);
    const int n_rows = static_cast<int>(s.rows()), n_vec = static_cast<int>(bytes / 16 / n_rows);
    DeviceBuffer<uint8_t> w[kQuantCopies];
    for (auto& b : w) {
      b.ensure(bytes);
      check(cudaMemset(b.get(), 1, bytes), "memset");
    }
    int c = 0;
    auto buf = [&] { return reinterpret_cast<const uint4*>(w[c++ % kQuantCopies].get()); };
    const double seq = time_ms([&] { read_seq_kernel<<<4 * sms, 256>>>(buf(), bytes / 16, out.get()); });
    auto rows = [&](auto kernel, int r, int per_sm) {
      const int blocks = std::min((n_rows + 8 * r - 1) / (8 * r), per_sm * sms);
      return time_ms([&] { kernel<<<blocks, 256>>>(buf(), n_rows, n_vec, out.get()); });
    };
    const double r4u2 = rows(read_rows_kernel<4, 2>, 4, 2), r2u4 = rows(read_rows_kernel<2, 4>, 2, 2);
    const double r4u2x4 = rows(read_rows_kernel<4, 2>, 4, 4), r4u4 = rows(read_rows_kernel<4, 4>, 4, 2);
    auto gbs = [&](double ms) { return bytes / ms / 1e6; };
    std::printf(
        "read %-34s %6.1f MB: sequential %6.1f us %5.0f GB/s | rows R4 U2 %6.1f us %5.0f | R2 U4 %6.1f us %5.0f | "
        "R4 U2 4 blocks/SM %6.1f us %5.0f | R4 U4 %6.1f us %5.0f\n",
        s.name, bytes / 1e6, seq * 1e3, gbs(seq), r4u2 * 1e3, gbs(r4u2), r2u4 * 1e3, gbs(r2u4), r4u2x4 * 1e3,
        gbs(r4u2x4), r4u4 * 1e3, gbs(r4u4));
  }
}

void bench_reads(bool per_matrix_table) {
  if (per_matrix_table) bench_read_table();
  const int sms = sm_count();
  DeviceBuffer<unsigned> out(1);
  // A token's quants (32 layers of the four matrices, then the output) back to back in one buffer:
  // read by one sequential launch, and by one launch a matrix (each in the kernels' own R and U)
  // captured in a CUDA graph, with and without programmatic dependent launch.
  struct Mat {
    const DecodeProduct* p;
    size_t off;
  };
  std::vector<Mat> mats;
  size_t total = 0;
  for (int l = 0; l <= 32; ++l)
    for (const DecodeProduct& p : kDecodeProducts)
      if ((p.per_token == 1) == (l == 32)) {
        mats.push_back({&p, total});
        total += quant_bytes(p);
      }
  DeviceBuffer<uint8_t> all(total);
  check(cudaMemset(all.get(), 1, total), "memset");
  const uint4* base = reinterpret_cast<const uint4*>(all.get());
  const double one = time_ms([&] { read_seq_kernel<<<4 * sms, 256>>>(base, total / 16, out.get()); }, 10, 2);
  cudaStream_t st;
  check(cudaStreamCreate(&st), "stream");
  // One matrix's quants read in the kernels' own R and U (gemv_quant.cu's launch_m: four rows a
  // warp where their groups fill the GPU twice).
  auto read_matrix = [&](const Mat& m) {
    const int n_rows = static_cast<int>(m.p->rows()), n_vec = static_cast<int>(quant_bytes(*m.p) / 16 / n_rows);
    const bool four = (n_rows + 31) / 32 >= 2 * sms;
    const int r = four ? 4 : 2, blocks = std::min((n_rows + 8 * r - 1) / (8 * r), 2 * sms);
    const uint4* w = base + m.off / 16;
    if (four)
      launch_pdl("read_rows", read_rows_kernel<4, 2, true>, dim3(blocks), dim3(256), 0, st, w, n_rows, n_vec,
                 out.get());
    else
      launch_pdl("read_rows", read_rows_kernel<2, 4, true>, dim3(blocks), dim3(256), 0, st, w, n_rows, n_vec,
                 out.get());
  };
  auto reads_ms = [&](bool pdl) {
    const PdlScope scope(pdl);
    return graph_ms(st, [&] {
      for (const Mat& m : mats) read_matrix(m);
    });
  };
  const double serial = reads_ms(false), overlapped = reads_ms(true);
  // The products themselves over the same quants (f16 scales of zero beside them), fused as in
  // decode, one launch a matrix in a graph with programmatic dependent launch.
  DeviceBuffer<uint16_t> scales(total / 16);  // Q4_0: 2 bytes of scale a 16 bytes of quants
  check(cudaMemset(scales.get(), 0, scales.size() * sizeof(uint16_t)), "memset");
  DeviceBuffer<float> h(11008), norm_w(11008), y(32000);
  DeviceBuffer<uint16_t> xb(11008), act(11008);
  check(cudaMemset(h.get(), 0, h.size() * sizeof(float)), "memset");
  check(cudaMemset(norm_w.get(), 0, norm_w.size() * sizeof(float)), "memset");
  check(cudaMemset(xb.get(), 0, xb.size() * sizeof(uint16_t)), "memset");
  auto product = [&](const Mat& m) {
    const DecodeProduct& p = *m.p;
    GemvArgs a;
    a.q = WeightRef{WeightFormat::kQ4_0, all.get() + m.off, scales.get() + m.off / 16};
    a.n_out = p.n_out, a.k = p.k, a.m = 1;
    if (p.norm) a.norm_in = h.get(), a.norm_w = norm_w.get(), a.eps = 1e-5f;
    else a.x = reinterpret_cast<const bf16_t*>(xb.get());
    if (p.swiglu) a.swiglu = true, a.y = act.get(), a.y_f32 = false;
    else if (p.norm) a.y = y.get();
    else a.y = h.get(), a.beta = 1.0f;  // Wo and down accumulate into the residual
    gemv(a, st);
  };
  const PdlScope scope(true);
  // Each kind alone: its launches of a token (32, or the output's one) in a graph, products
  // against the reads of the same quants.
  for (const DecodeProduct& p : kDecodeProducts) {
    std::vector<Mat> kind;
    for (const Mat& m : mats)
      if (m.p == &p) kind.push_back(m);
    const double prod = graph_ms(st, [&] {
      for (const Mat& m : kind) product(m);
    });
    const double read = graph_ms(st, [&] {
      for (const Mat& m : kind) read_matrix(m);
    });
    const double bytes = static_cast<double>(quant_bytes(p)) * kind.size();
    std::printf("%-34s x%-2zu products %7.1f us (%4.0f GB/s with scales) | reads %7.1f us (%4.0f GB/s)\n", p.name,
                kind.size(), prod * 1e3, bytes * kWithScales / prod / 1e6, read * 1e3, bytes / read / 1e6);
  }
  const double products = graph_ms(st, [&] {
    for (const Mat& m : mats) product(m);
  });
  cudaStreamDestroy(st);
  std::printf(
      "the same quants' products (and their scales, %.2f GB in all) in a graph with programmatic dependent "
      "launch: %.3f ms (%.0f GB/s)\n",
      total * kWithScales / 1e9, products, total * kWithScales / products / 1e6);
  std::printf(
      "read a token's Q4_0 quants (%zu matrices, %.2f GB): one sequential launch %.3f ms (%.0f GB/s); a launch a "
      "matrix in a graph %.3f ms (%.0f GB/s), with programmatic dependent launch %.3f ms (%.0f GB/s)\n",
      mats.size(), total / 1e9, one, total / one / 1e6, serial, total / serial / 1e6, overlapped,
      total / overlapped / 1e6);
}

// A decode token's kernel chain on llama2-7b Q4_0 in one CUDA graph with programmatic dependent
// launch, as the decode graph runs it: per layer the Q|K|V product, the QKV finish (RoPE, K/V
// stored), decode attention (split-key blocks and their merge) over `keys` keys, Wo, gate|up,
// down; then the output product. Timed whole, with the QKV finish fused into the Q|K|V product,
// without the QKV finish, and as the products alone, so what each small kernel adds shows.
void bench_chain(int keys) {
  constexpr int kLayers = 32, kD = 4096, kHeads = 32, kHd = 128, kCtx = 4096;
  std::vector<size_t> off;
  size_t total = 0;
  for (int l = 0; l <= kLayers; ++l)
    for (const DecodeProduct& p : kDecodeProducts)
      if ((p.per_token == 1) == (l == kLayers)) {
        off.push_back(total);
        total += quant_bytes(p);
      }
  DeviceBuffer<uint8_t> all(total);
  check(cudaMemset(all.get(), 1, total), "memset");
  DeviceBuffer<uint16_t> scales(total / 16);
  check(cudaMemset(scales.get(), 0, scales.size() * sizeof(uint16_t)), "memset");
  DeviceBuffer<float> h, norm_w, qkv(3 * kD), y(32000), cosb, sinb;
  fill<float>(
      h, 11008, [](std::mt19937& r) { return uni(r); }, 1);
  fill<float>(
      norm_w, 11008, [](std::mt19937& r) { return 1.0f + 0.1f * uni(r); }, 2);
  fill<float>(
      cosb, static_cast<size_t>(kCtx) * kHd / 2, [](std::mt19937& r) { return uni(r); }, 3);
  fill<float>(
      sinb, static_cast<size_t>(kCtx) * kHd / 2, [](std::mt19937& r) { return uni(r); }, 4);
  DeviceBuffer<uint16_t> kc, vc, q(kD), att(kD), act(11008);
  fill<uint16_t>(
      kc, static_cast<size_t>(kCtx) * kD, [](std::mt19937& r) { return f16(0.1f * uni(r)); }, 5);
  fill<uint16_t>(
      vc, static_cast<size_t>(kCtx) * kD, [](std::mt19937& r) { return f16(0.1f * uni(r)); }, 6);
  check(cudaMemset(att.get(), 0, att.size() * sizeof(uint16_t)), "memset");
  std::vector<int32_t> kpos_h(kCtx);
  for (int i = 0; i < kCtx; ++i) kpos_h[i] = i;
  DeviceBuffer<int32_t> kpos(kCtx), dev_ints(3);  // pos, slot, key count
  check(cudaMemcpy(kpos.get(), kpos_h.data(), kCtx * sizeof(int32_t), cudaMemcpyHostToDevice), "upload");
  const int32_t ints[3] = {keys - 1, keys - 1, keys};
  check(cudaMemcpy(dev_ints.get(), ints, sizeof(ints), cudaMemcpyHostToDevice), "upload");
  const int capacity = (keys + 1023) / 1024 * 1024;
  AttentionArgs aa{};
  aa.q = q.get(), aa.m = 1, aa.qpos = dev_ints.get(), aa.k_cache = kc.get(), aa.v_cache = vc.get();
  aa.kpos = kpos.get(), aa.n_keys = capacity, aa.n_heads = kHeads, aa.n_kv_heads = kHeads, aa.head_dim = kHd;
  aa.scale = 1.0f / std::sqrt(static_cast<float>(kHd)), aa.out = att.get(), aa.n_keys_dev = dev_ints.get() + 2;
  DeviceBuffer<float> att_scratch(attention_scratch_floats(aa));
  QkvFinishArgs qa{};
  qa.qkv = qkv.get(), qa.m = 1, qa.pos = dev_ints.get(), qa.rope_cos = cosb.get(), qa.rope_sin = sinb.get();
  qa.n_heads = kHeads, qa.n_kv_heads = kHeads, qa.head_dim = kHd, qa.q = q.get(), qa.k_cache = kc.get();
  qa.v_cache = vc.get(), qa.kpos = kpos.get(), qa.slot0_dev = dev_ints.get() + 1;
  cudaStream_t st;
  check(cudaStreamCreate(&st), "stream");
  auto product = [&](const DecodeProduct& p, size_t at, bool finish = false) {
    GemvArgs a;
    if (finish) a.finish = qa;
    a.q = WeightRef{WeightFormat::kQ4_0, all.get() + at, scales.get() + at / 16};
    a.n_out = p.n_out, a.k = p.k, a.m = 1;
    if (p.norm) a.norm_in = h.get(), a.norm_w = norm_w.get(), a.eps = 1e-5f;
    else a.x = reinterpret_cast<const bf16_t*>(p.n_out == kD && p.k == kD ? att.get() : act.get());
    if (p.swiglu) a.swiglu = true, a.y = act.get(), a.y_f32 = false;
    else if (p.norm) a.y = p.n_out == 3 * kD ? qkv.get() : y.get();
    else a.y = h.get(), a.beta = 1.0f;
    gemv(a, st);
  };
  auto token = [&](bool finish, bool fused, bool attention) {
    size_t i = 0;
    for (int l = 0; l < kLayers; ++l) {
      product(kDecodeProducts[0], off[i++], fused);
      if (finish && !fused) qkv_finish(qa, st);
      if (attention) cuda::attention(aa, att_scratch.get(), st);
      for (int j = 1; j < 4; ++j) product(kDecodeProducts[j], off[i++]);
    }
    product(kDecodeProducts[4], off[i]);
  };
  const PdlScope scope(true);
  double t[4][2];
  for (int rep = 0; rep < 2; ++rep)
    for (int v = 0; v < 4; ++v) t[v][rep] = graph_ms(st, [&] { token(v == 0 || v == 2, v == 2, v != 1); });
  cudaStreamDestroy(st);
  std::printf(
      "decode chain, Q4_0 llama2-7b, %d keys (two runs, ms a token): whole %.3f %.3f | products only %.3f %.3f | "
      "whole, the QKV finish in the Q|K|V product %.3f %.3f | without the QKV finish %.3f %.3f\n",
      keys, t[0][0], t[0][1], t[1][0], t[1][1], t[2][0], t[2][1], t[3][0], t[3][1]);
}

// Batches of m activation rows over quantized weights (prefill of short prompts, batched decode):
// qgemm (the blocks read on the tensor cores) against the matrix dequantized into bf16 and
// multiplied with cuBLAS, and the matrix-vector kernel (unfused; at most kGemvQuantMaxRows rows
// since the tensor-core kernel is faster beyond, at most 4 where it was measured); a step's
// products (32 layers + output) for each m.
void bench_qgemm(const std::string& only) {
  struct Shape {
    const char* name;
    int n_out, k;
  };
  const Shape shapes[] = {{"qkv 12288x4096", 12288, 4096},
                          {"wo 4096x4096", 4096, 4096},
                          {"gate|up 22016x4096", 22016, 4096},
                          {"down 4096x11008", 4096, 11008},
                          {"output 32000x4096", 32000, 4096}};
  cublasHandle_t blas = nullptr;
  check(cublasCreate(&blas), "cublasCreate");
  for (const auto& fmt : kQuantFormats) {
    const WeightFormat f = fmt.first;
    const char* fname = fmt.second;
    if (!listed(only, fname)) continue;
    const std::vector<int> ms = {1, 2, 4, 8, 16, 32, 64};  // up to kQgemmMaxRows
    std::vector<double> total_q(ms.size()), total_d(ms.size()), total_g(ms.size());
    for (const Shape& s : shapes) {
      const size_t rows = s.n_out;
      const QuantCopies w(f, rows, s.k);
      DeviceBuffer<uint16_t> x, deq(rows * s.k);
      fill<uint16_t>(
          x, static_cast<size_t>(ms.back()) * s.k, [](std::mt19937& r) { return bf16(uni(r)); }, 3);
      DeviceBuffer<float> y(static_cast<size_t>(ms.back()) * rows);
      const double bytes = w.bytes;
      const int times = s.n_out == 32000 ? 1 : 32;
      for (size_t mi = 0; mi < ms.size(); ++mi) {
        const int m = ms[mi];
        int c = 0;
        const double ms_q = time_ms([&] {
          GemvArgs a;
          a.q = w.ref(c++);
          a.n_out = s.n_out, a.k = s.k, a.m = m, a.x = x.get(), a.y = y.get(), a.y_f32 = true;
          qgemm(a, nullptr);
        });
        const double ms_d = time_ms([&] {
          dequantize_bf16(w.ref(c++), static_cast<int64_t>(rows), s.k, deq.get(), nullptr);
          cuda_pass::cublas_gemm(blas, deq.get(), s.n_out, s.k, x.get(), m, y.get(), s.n_out, CUDA_R_32F, 0.0f);
        });
        const double ms_g = !gemv_applies(f, m, s.k) ? 0.0 : time_ms([&] {  // the matrix-vector kernel, unfused
          GemvArgs a;
          a.q = w.ref(c++);
          a.n_out = s.n_out, a.k = s.k, a.m = m, a.x = x.get(), a.y = y.get(), a.y_f32 = true;
          gemv(a, nullptr);
        });
        total_q[mi] += times * ms_q, total_d[mi] += times * ms_d, total_g[mi] += times * ms_g;
        std::printf(
            "qgemm %s m=%-3d %-20s %8.1f us %5.0f GB/s %6.1f TFLOP/s | dequantized + cuBLAS %8.1f | "
            "matrix-vector %8.1f us\n",
            fname, m, s.name, ms_q * 1e3, bytes / ms_q / 1e6, 2.0 * m * rows * s.k / ms_q / 1e9, ms_d * 1e3,
            ms_g * 1e3);
      }
    }
    for (size_t mi = 0; mi < ms.size(); ++mi)
      std::printf(
          "qgemm %s m=%-3d one step's products (32 layers + output): %.2f ms, dequantized + cuBLAS %.2f, "
          "matrix-vector %.2f\n",
          fname, ms[mi], total_q[mi], total_d[mi], total_g[mi]);
  }
  cublasDestroy(blas);
}

struct Cache {
  DeviceBuffer<uint16_t> q, k, v, out;
  DeviceBuffer<int32_t> qpos, kpos;
};

// A layer's K/V of n slots (positions 0..n-1), 32 heads of 128, and m query rows at the last
// m positions.
void make_cache(Cache& c, int n, int m) {
  const size_t kvd = 32 * 128;
  fill<uint16_t>(c.k, n * kvd, [](std::mt19937& r) { return f16(uni(r)); }, 21);
  fill<uint16_t>(c.v, n * kvd, [](std::mt19937& r) { return f16(uni(r)); }, 22);
  fill<uint16_t>(c.q, m * kvd, [](std::mt19937& r) { return f16(uni(r)); }, 23);
  c.out.ensure(m * kvd);
  std::vector<int32_t> kp(n), qp(m);
  for (int i = 0; i < n; ++i) kp[i] = i;
  for (int i = 0; i < m; ++i) qp[i] = n - m + i;
  c.kpos.ensure(n);
  c.qpos.ensure(m);
  check(cudaMemcpy(c.kpos.get(), kp.data(), n * 4, cudaMemcpyHostToDevice), "kpos");
  check(cudaMemcpy(c.qpos.get(), qp.data(), m * 4, cudaMemcpyHostToDevice), "qpos");
}

AttentionArgs args(Cache& c, int n, int m) {
  AttentionArgs a{};
  a.q = c.q.get(), a.m = m, a.qpos = c.qpos.get(), a.k_cache = c.k.get(), a.v_cache = c.v.get();
  a.kpos = c.kpos.get(), a.key_slots = nullptr, a.n_keys = n, a.n_old = n - m;
  a.n_heads = 32, a.n_kv_heads = 32, a.head_dim = 128, a.scale = 1.0f / std::sqrt(128.0f), a.out = c.out.get();
  return a;
}

void bench_decode_attention(const std::vector<int>& lens) {
  for (int n : lens) {
    Cache c;
    make_cache(c, n, 1);
    AttentionArgs a = args(c, n, 1);
    DeviceBuffer<float> scratch(std::max<size_t>(1, attention_scratch_floats(a)));
    const double ms = time_ms([&] { attention(a, scratch.get(), nullptr); });
    const double bytes = 2.0 * n * 32 * 128 * 2;
    std::printf("decode attention %6d keys: %7.1f us, %5.0f GB/s of K/V (x32 layers: %.2f ms)\n", n, ms * 1e3,
                bytes / ms / 1e6, 32 * ms);
  }
}

void bench_prefill_attention(const std::vector<int>& lens, const std::vector<std::string>& kernels) {
  for (int n : lens) {
    Cache c;
    make_cache(c, n, n);
    AttentionArgs a = args(c, n, n);
    const double flop = 4.0 * 128 * 32 * (double(n) * (n + 1) / 2);
    std::printf("prefill attention %6d:", n);
    for (const std::string& k : kernels) {
      ::setenv("LAZYLLM_CUDA_ATTENTION", k.c_str(), 1);
      const int reps = n >= 16384 ? 4 : 8;
      const double ms = time_ms([&] { attention(a, nullptr, nullptr); }, reps, 2);
      std::printf(" | %s %8.2f ms %5.0f TFLOP/s", k.c_str(), ms, flop / ms / 1e9);
    }
    ::unsetenv("LAZYLLM_CUDA_ATTENTION");
    std::printf("\n");
  }
}

void bench_lazy(int n) {
  DeviceBuffer<float> scores;
  fill<float>(scores, n, [](std::mt19937& r) { return std::fabs(uni(r)) * 1e-4f; }, 31);
  DeviceBuffer<int32_t> dest(n + 1);
  const double ms = time_ms([&] { select_top(scores.get(), n - 1, n / 2, dest.get(), nullptr); });
  Cache c;
  make_cache(c, n, 1);
  AttentionArgs a = args(c, n, 1);
  DeviceBuffer<float> imp(n), scratch(importance_scratch_floats(a));
  const double ms_imp = time_ms([&] { last_row_importance(a, 0, scratch.get(), imp.get(), nullptr); });
  std::printf("LazyLLM on the GPU, %d tokens: selection (keep half) %.1f us, importance (32 heads) %.1f us\n", n,
              ms * 1e3, ms_imp * 1e3);
}

// One llama2-7b layer's weight products (Q|K|V and gate|up concatenated, as the forward runs them).
struct LayerProduct {
  const char* name;
  int n_out, k;
};
constexpr LayerProduct kLayerProducts[] = {
    {"qkv", 12288, 4096}, {"wo", 4096, 4096}, {"gate|up", 22016, 4096}, {"down", 4096, 11008}};

// Prefill-sized products over quantized weights, one llama2-7b layer's four products at m rows:
// the dequantization into bf16 alone (its rate counts the blocks read and the bf16 written, against
// the copy rate above), cuBLAS alone over bf16 weights, and weight_gemm (the two in turn, a scratch
// of gate's rows as the forward has).
void bench_prefill_products(const std::string& only) {
  const size_t scratch = size_t{11008} * 4096;
  cublasHandle_t blas = nullptr;
  check(cublasCreate(&blas), "cublasCreate");
  const int max_m = 4096;
  DeviceBuffer<uint16_t> x, deq(size_t{22016} * 4096);
  fill<uint16_t>(
      x, static_cast<size_t>(max_m) * 11008, [](std::mt19937& r) { return bf16(uni(r)); }, 3);
  DeviceBuffer<uint16_t> y(static_cast<size_t>(max_m) * 22016);
  for (const auto& fmt : kQuantFormats) {
    const WeightFormat f = fmt.first;
    if (!listed(only, fmt.second)) continue;
    for (int m : {256, 1024, 4096}) {
      double t_deq = 0, t_blas = 0, t_wg = 0, bytes = 0;
      for (const LayerProduct& s : kLayerProducts) {
        const QuantCopies w(f, s.n_out, s.k);
        int c = 0;
        const double d = time_ms([&] { dequantize_bf16(w.ref(c++), s.n_out, s.k, deq.get(), nullptr); }, 10, 2);
        const double b = time_ms(
            [&] {
              cuda_pass::cublas_gemm(blas, deq.get(), s.n_out, s.k, x.get(), m, y.get(), s.n_out, CUDA_R_16BF, 0.0f);
            },
            10, 2);
        const double g = time_ms(
            [&] {
              cuda_pass::weight_gemm(blas, nullptr, w.ref(c++), s.n_out, s.k, x.get(), m, y.get(), CUDA_R_16BF, 0.0f,
                                     deq.get(), scratch);
            },
            10, 2);
        const double moved = w.bytes + 2.0 * s.n_out * s.k;
        std::printf("prefill %s m=%-4d %-8s dequantize %7.1f us (%5.0f GB/s) cuBLAS %8.1f us weight_gemm %8.1f us\n",
                    fmt.second, m, s.name, d * 1e3, moved / d / 1e6, b * 1e3, g * 1e3);
        t_deq += d, t_blas += b, t_wg += g, bytes += moved;
      }
      std::printf("prefill %s m=%-4d one layer: dequantize %.3f ms (%.0f GB/s), cuBLAS %.3f, weight_gemm %.3f\n",
                  fmt.second, m, t_deq, bytes / t_deq / 1e6, t_blas, t_wg);
    }
  }
  cublasDestroy(blas);
}

// One llama2-7b layer's four products over bf16 weights (random), activations for up to max_m rows.
struct Bf16Layer {
  DeviceBuffer<uint16_t> x, w, y;
  explicit Bf16Layer(int max_m) : y(static_cast<size_t>(max_m) * 22016) {
    fill<uint16_t>(
        x, static_cast<size_t>(max_m) * 11008, [](std::mt19937& r) { return bf16(uni(r)); }, 3);
    fill<uint16_t>(
        w, size_t{22016} * 4096, [](std::mt19937& r) { return bf16(uni(r) * 0.05f); }, 4);
  }
};

// Host time of fn, synchronised before and after (what a first call costs, loading included).
double host_ms(const std::function<void()>& fn) {
  check(cudaDeviceSynchronize(), "sync");
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  check(cudaDeviceSynchronize(), "sync");
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Host time of the layer's four products at m rows through cublasGemmEx (first calls included).
double layer_products_ms(cublasHandle_t blas, const Bf16Layer& b, int m) {
  return host_ms([&] {
    for (const LayerProduct& s : kLayerProducts)
      cuda_pass::cublas_gemm(blas, b.w.get(), s.n_out, s.k, b.x.get(), m, b.y.get(), s.n_out, CUDA_R_16BF, 0.0f);
  });
}

// What a process pays the first time cuBLAS meets a product shape: one llama2-7b layer's four
// products at each m in turn, the first call timed on the host (synchronised) against a second.
void bench_first_shapes() {
  cublasHandle_t blas = nullptr;
  check(cublasCreate(&blas), "cublasCreate");
  Bf16Layer b(4160);
  for (int m :
       {4096, 2048, 1024, 512, 256, 2049, 2050, 2112, 2176, 3073, 3074, 3136, 3585, 4097, 4160, 513, 576, 1025, 1088}) {
    const double first = layer_products_ms(blas, b, m), second = layer_products_ms(blas, b, m);
    std::printf("first shapes m=%-5d first %8.3f ms second %8.3f ms\n", m, first, second);
  }
  cublasDestroy(blas);
}

// The alternative to a kernel choice per exact shape: cuBLASLt with the algorithm chosen once for
// the top of a bucket of rows (T/2, T] and reused for every m in it. Per m: the first call (host,
// synchronised), then the steady time of that reuse against cublasGemmEx's own choice.
void bench_lt_reuse() {
  cublasHandle_t blas = nullptr;
  check(cublasCreate(&blas), "cublasCreate");
  cublasLtHandle_t lt = nullptr;
  check(cublasLtCreate(&lt), "cublasLtCreate");
  const size_t ws_bytes = size_t{32} << 20;
  DeviceBuffer<uint8_t> ws(ws_bytes);
  Bf16Layer b(4096);
  const auto& shapes = kLayerProducts;
  cublasLtMatmulDesc_t desc;
  check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
  const cublasOperation_t ta = CUBLAS_OP_T;
  check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "transa");
  cublasLtMatmulPreference_t pref;
  check(cublasLtMatmulPreferenceCreate(&pref), "pref");
  check(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof(ws_bytes)),
      "pref ws");
  auto layouts = [](int n, int k, int m, cublasLtMatrixLayout_t(&l)[3]) {
    check(cublasLtMatrixLayoutCreate(&l[0], CUDA_R_16BF, k, n, k), "la");
    check(cublasLtMatrixLayoutCreate(&l[1], CUDA_R_16BF, k, m, k), "lb");
    check(cublasLtMatrixLayoutCreate(&l[2], CUDA_R_16BF, n, m, n), "lc");
  };
  auto lt_run = [&](const cublasLtMatmulAlgo_t& algo, int n, int k, int m) {
    cublasLtMatrixLayout_t l[3];
    layouts(n, k, m, l);
    const float alpha = 1.0f, beta = 0.0f;
    check(cublasLtMatmul(lt, desc, &alpha, b.w.get(), l[0], b.x.get(), l[1], &beta, b.y.get(), l[2], b.y.get(), l[2],
                         &algo, ws.get(), ws_bytes, nullptr),
          "cublasLtMatmul");
    for (auto& li : l) cublasLtMatrixLayoutDestroy(li);
  };
  for (int top : {4096, 2048, 1024, 512}) {
    cublasLtMatmulAlgo_t algo[4];
    const double setup = host_ms([&] {
      for (int i = 0; i < 4; ++i) {
        cublasLtMatrixLayout_t l[3];
        layouts(shapes[i].n_out, shapes[i].k, top, l);
        cublasLtMatmulHeuristicResult_t r{};
        int found = 0;
        check(cublasLtMatmulAlgoGetHeuristic(lt, desc, l[0], l[1], l[2], l[2], pref, 1, &r, &found), "heuristic");
        if (found < 1) throw std::runtime_error("no cuBLASLt algorithm");
        algo[i] = r.algo;
        for (auto& li : l) cublasLtMatrixLayoutDestroy(li);
        lt_run(algo[i], shapes[i].n_out, shapes[i].k, top);
      }
    });
    std::printf("lt reuse bucket %d: heuristics and first launch %.3f ms\n", top, setup);
    for (int m : {top / 2 + 1, top / 2 + 64, (3 * top) / 4 + 1, top - 1}) {
      const double first = host_ms([&] {
        for (int i = 0; i < 4; ++i) lt_run(algo[i], shapes[i].n_out, shapes[i].k, m);
      });
      const double reuse = time_ms(
          [&] {
            for (int i = 0; i < 4; ++i) lt_run(algo[i], shapes[i].n_out, shapes[i].k, m);
          },
          10, 2);
      const double own = time_ms(
          [&] {
            for (const auto& sh : shapes)
              cuda_pass::cublas_gemm(blas, b.w.get(), sh.n_out, sh.k, b.x.get(), m, b.y.get(), sh.n_out, CUDA_R_16BF,
                                     0.0f);
          },
          10, 2);
      std::printf(
          "lt reuse m=%-5d first call %7.3f ms, steady %7.3f ms against cublasGemmEx's own choice %7.3f ms (%.3fx)\n",
          m, first, reuse, own, reuse / own);
    }
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatmulDescDestroy(desc);
  cublasLtDestroy(lt);
  cublasDestroy(blas);
}

// SessionOptions::gpu_warmup's effect: cuda_pass::warm_up_products over a llama2-7b layer's four
// products up to 4160 rows ("library"; "none": the control without it), then cublasGemmEx's
// first call at row counts LazyLLM makes and at 40 random ones (host, synchronised) against a
// second.
void bench_warm_grid(const std::string& mode) {
  cublasHandle_t blas = nullptr;
  check(cublasCreate(&blas), "cublasCreate");
  Bf16Layer b(4160);
  const double start = host_ms([&] {
    cuda_pass::cublas_gemm(blas, b.w.get(), 4096, 4096, b.x.get(), 4096, b.y.get(), 4096, CUDA_R_16BF, 0.0f);
  });
  std::printf("warm grid (%s): first cublasGemmEx call of the process %.1f ms\n", mode.c_str(), start);
  if (mode == "library") {
    std::vector<cuda_pass::ProductShape> shapes;
    for (const LayerProduct& p : kLayerProducts)
      shapes.push_back({p.n_out, p.k, p.n_out, CUDA_R_16BF, cuda::WeightFormat::kBf16});
    const cuda_pass::WarmupStats st = cuda_pass::warm_up_products(blas, nullptr, shapes, 4160);
    std::printf("warm grid (library): %d shapes, %d kernel choices asked (%.1f ms), %d launches, %.1f ms in all\n",
                st.shapes, st.queries, st.query_ms, st.launches, st.ms);
  }
  for (int m : {2049, 1025, 513, 3073, 3585, 4097, 2050, 1537, 777, 3333, 4096, 2048, 100, 300}) {
    const double first = layer_products_ms(blas, b, m), second = layer_products_ms(blas, b, m);
    std::printf("warm grid (%s) m=%-5d first %8.3f ms second %8.3f ms\n", mode.c_str(), m, first, second);
  }
  // Row counts no grid names: how many first calls still pay, and how much in all.
  std::mt19937 rng(7);
  int paid = 0;
  double excess = 0;
  for (int i = 0; i < 40; ++i) {
    const int m = 65 + static_cast<int>(rng() % 4096);
    const double first = layer_products_ms(blas, b, m), second = layer_products_ms(blas, b, m);
    paid += first - second > 0.5;
    excess += first - second;
  }
  std::printf(
      "warm grid (%s): 40 random row counts, %d first calls over 0.5 ms more than the second, %.1f ms more in all\n",
      mode.c_str(), paid, excess);
  cublasDestroy(blas);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  try {
    check(cudaSetDevice(0), "cudaSetDevice");
    cudaDeviceProp p{};
    check(cudaGetDeviceProperties(&p, 0), "props");
    std::printf("device: %s, %d SMs, L2 %d MB\n", p.name, p.multiProcessorCount, p.l2CacheSize >> 20);
    prepare_kernels();
    bench_copy();
    if (argc > 1 && std::string(argv[1]) == "--qgemm") {
      bench_qgemm(argc > 2 ? argv[2] : "");
      return 0;
    }
    if (argc > 1 && std::string(argv[1]) == "--warm-grid") {
      bench_warm_grid(argc > 2 ? argv[2] : "library");
      return 0;
    }
    if (argc > 1 && std::string(argv[1]) == "--lt-reuse") {
      bench_lt_reuse();
      return 0;
    }
    if (argc > 1 && std::string(argv[1]) == "--first-shapes") {
      bench_first_shapes();
      return 0;
    }
    if (argc > 1 && std::string(argv[1]) == "--prefill-products") {
      bench_prefill_products(argc > 2 ? argv[2] : "");
      return 0;
    }
    if (argc > 1 && std::string(argv[1]) == "--reads") {  // the matrix-vector kernels' loads alone
      bench_reads(true);
      return 0;
    }
    if (argc > 1 && std::string(argv[1]) == "--products") {  // --reads without its per-matrix table
      bench_reads(false);
      return 0;
    }
    if (argc > 1 && std::string(argv[1]) == "--chain") {  // a decode token's kernels, with parts left out
      for (int keys : {1, 4096}) bench_chain(keys);
      return 0;
    }
    if (argc > 1 && std::string(argv[1]) == "--quant") {  // the quantized products only
      bench_gemv_quant(argc > 2 ? argv[2] : "");
      return 0;
    }
    bench_gemv();
    bench_gemv_quant("");
    bench_decode_attention({4096, 16384, 32768});
    bench_prefill_attention(quick ? std::vector<int>{4096, 16384} : std::vector<int>{4096, 8192, 16384, 32768},
                            std::vector<std::string>{"ws", "wg", "fwd2"});
    bench_lazy(32768);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
