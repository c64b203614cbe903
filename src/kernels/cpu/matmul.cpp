// Weight-times-activation products. Two paths, both splitting the rows of W across threads:
//  - small batches (decode): fused dequantize+dot SIMD kernels stream each weight row once
//    (8-bit activations with VNNI for Q8_0/Q4_0);
//  - larger batches (prefill): each task takes a tile of W rows and multiplies it with all
//    activations: our AVX-512 or AVX2 f32 kernel (any weight type, decoded per tile), the bf16
//    kernel for quantized weights in fast math where it beats the f32 one (bf16_gemm_preferred),
//    the AVX2 integer kernel for Q8_0/Q4_0 weights in fast math where the f32 kernel is the AVX2
//    one, or OpenBLAS sgemm on CPUs without AVX2 + FMA (or with LAZYLLM_CPU_TARGET below it, see
//    cpu_features.h). Weights stay in their stored form in memory.
// Every output is computed by exactly one task, in an order fixed by the shapes alone (tiles
// never depend on the thread count; fused rows are independent of their grouping), so results
// are bitwise reproducible across runs and thread counts. Per-thread scratch: at most
// kMaxTileFloats floats (8 MiB) for sgemm tiles, plus an aligned copy of small batches.
#include "kernels/cpu/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/attention_products.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dot_int8.h"
#include "kernels/cpu/dot_kernels.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/gemm_f32.h"
#include "kernels/cpu/gemm_int8.h"
#include "lazyllm/lazyllm.h"
#include "util/thread_pool.h"

namespace lazyllm {
namespace {

// Batches up to this size use the fused kernels, larger ones a GEMM: measured crossovers on
// Zen 4 (f32 weights need no decoding, so the GEMM wins sooner for them; for Q4_0/Q8_0 the
// 8-bit fused path runs ~125 GFLOP/s on 2 threads at any batch from 2 to 32, the bf16 GEMM
// 127 at 16 and 210 at 32).
int64_t max_fused_batch(DType t) {
  if (t == DType::F32) return 8;
  return dtype_info(t).block_elems > 1 ? 16 : 32;
}
// Fused tasks cover up to this many weight bytes (whole rows; by_balance below usually
// decides): long sequential runs keep the hardware prefetchers streaming. With 64 KiB tasks
// the two threads' interleaved short runs reached ~30 GB/s on F32 decode against ~40 GB/s
// with 1 MiB (bench_matmul, 2 threads, best of 4 alternating runs; raw read ~49 GB/s).
constexpr int64_t kFusedTaskBytes = 1024 * 1024;
// sgemm repacks all of X for every call, so tiles of W must be tall to amortize it
// (OpenBLAS reaches ~92% of its best rate at 256 rows, ~60% at 16). Tiles are capped so
// the per-thread float scratch stays under kMaxTileFloats, and shrink for short matrices so
// there are still several tiles to share out.
constexpr int64_t kMaxTileRows = 256, kMinTileRows = 16, kMinTiles = 8;
constexpr int64_t kMaxTileFloats = 2 * 1024 * 1024;


int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t m) { return ceil_div(a, m) * m; }

// A float buffer aligned to 64 bytes, reused by the calling thread across calls.
float* aligned_scratch(std::vector<float>& buf, size_t n) {
  if (buf.size() < n + 16) buf.resize(n + 16);
  const auto p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<float*>((p + 63) / 64 * 64);
}

// Rows of each target, in tasks of up to kFusedTaskBytes of weights (whole rows), at least about
// 8 tasks per thread per target for balance.
struct RowTask {
  size_t target;
  int64_t r0, nr;
};

std::vector<RowTask> row_tasks(std::span<const MatmulTarget> targets, int threads) {
  std::vector<RowTask> tasks;
  for (size_t i = 0; i < targets.size(); ++i) {
    const WeightView& w = targets[i].w;
    const int64_t by_bytes = ceil_div(kFusedTaskBytes, std::max<int64_t>(w.row_stride(), 1));
    const int64_t by_balance = std::max<int64_t>(1, w.rows / (8 * threads));
    const int64_t rows_per_task = std::min(by_bytes, by_balance);
    for (int64_t r0 = 0; r0 < w.rows; r0 += rows_per_task) tasks.push_back({i, r0, std::min(rows_per_task, w.rows - r0)});
  }
  return tasks;
}

// Small batches: every target (all of one weight type, sharing x) streams its rows through the
// fused dequantize-dot kernels, all targets' rows in one parallel loop.
void matmul_fused(std::span<const MatmulTarget> targets, const float* x, int64_t n, int64_t ldx, ThreadPool& pool) {
  const DType type = targets[0].w.type;
  const int64_t k = targets[0].w.cols;
  // Vector loads that straddle cache lines are slow, and every weight row re-reads all of x:
  // stage x in a 64-byte aligned copy (cheap: n * k floats against rows * k weights).
  thread_local std::vector<float> x_buf, xs_buf;
  const int64_t ldx_a = round_up(k, 16);
  float* xa = aligned_scratch(x_buf, static_cast<size_t>(n * ldx_a));
  for (int64_t t = 0; t < n; ++t) std::copy(x + t * ldx, x + t * ldx + k, xa + t * ldx_a);
  // Per-activation terms some formats hoist out of the inner loop (computed once, shared).
  const int64_t xs_len = kernels::xsum_len(type, k);
  float* xs = xs_len > 0 ? aligned_scratch(xs_buf, static_cast<size_t>(n * xs_len)) : nullptr;
  for (int64_t t = 0; t < n && xs; ++t) kernels::compute_xsums(type, xa + t * ldx_a, k, xs + t * xs_len);

  // Each row's result is independent of how rows are grouped into tasks, so the chunk size
  // may follow the thread count without affecting the output.
  const std::vector<RowTask> tasks = row_tasks(targets, pool.size());
  pool.parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t task, int) {
    const RowTask& tk = tasks[static_cast<size_t>(task)];
    const MatmulTarget& t = targets[tk.target];
    const int64_t stride = t.w.row_stride();
    kernels::dot_rows(type, t.w.data + tk.r0 * stride, stride, tk.nr, k, xa, ldx_a, xs, static_cast<int>(n),
                      t.y + tk.r0, t.ldy);
  });
}

// Decode and short batches with 8-bit activations (Q8_0/Q4_0/Q4_K/Q5_K/Q6_K weights on AVX2 or VNNI CPUs): x
// quantized once per call and shared by every target (Q, K and V read the same input), all
// targets' rows split across threads in one parallel loop as in matmul_fused.
void matmul_int8(std::span<const MatmulTarget> targets, const float* x, int64_t n, int64_t ldx, ThreadPool& pool) {
  const int64_t k = targets[0].w.cols, nb = k / 32;
  bool q4 = false, q6k = false;
  for (const auto& t : targets) {
    q4 = q4 || t.w.type == DType::Q4_0;
    q6k = q6k || t.w.type == DType::Q6_K;
  }
  thread_local std::vector<int8_t> q_buf, q4_buf;
  thread_local std::vector<int16_t> sum16_buf;
  thread_local std::vector<float> d_buf, dg_buf;
  thread_local std::vector<int32_t> s_buf, offg_buf;
  const int64_t ng = kernels::q4_0_group_values(k);
  q_buf.resize(static_cast<size_t>(n * k));
  d_buf.resize(static_cast<size_t>(n * nb));
  s_buf.resize(static_cast<size_t>(n * nb));
  if (q4) {
    q4_buf.resize(static_cast<size_t>(n * k));
    dg_buf.resize(static_cast<size_t>(n * ng));
    offg_buf.resize(static_cast<size_t>(n * ng));
  }
  if (q6k) sum16_buf.resize(static_cast<size_t>(n * (k / 16)));
  std::vector<kernels::QuantizedRow> xq(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    int8_t* q = q_buf.data() + t * k;
    float* d = d_buf.data() + t * nb;
    int32_t* s = s_buf.data() + t * nb;
    kernels::quantize_row_q8(x + t * ldx, k, q, d, s);
    xq[t] = {q, d, s};
    if (q6k) {
      int16_t* s16 = sum16_buf.data() + t * (k / 16);
      kernels::sum_codes16(q, k, s16);
      xq[t].sum16 = s16;
    }
    if (q4) {
      xq[t].q4 = q4_buf.data() + t * k;
      xq[t].dg = dg_buf.data() + t * ng;
      xq[t].offg = offg_buf.data() + t * ng;
      kernels::prepare_q4_0_row(q, d, s, k, q4_buf.data() + t * k, dg_buf.data() + t * ng, offg_buf.data() + t * ng);
    }
  }
  const std::vector<RowTask> tasks = row_tasks(targets, pool.size());
  pool.parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t task, int) {
    const RowTask& tk = tasks[static_cast<size_t>(task)];
    const MatmulTarget& t = targets[tk.target];
    const int64_t stride = t.w.row_stride();
    kernels::dot_rows_int8(t.w.type, t.w.data + tk.r0 * stride, stride, tk.nr, k, xq.data(), static_cast<int>(n),
                           t.y + tk.r0, t.ldy);
  });
}

// Rows of W per sgemm tile. Depends only on the shape (never on the thread count), so every
// output element always comes from the same sgemm call shape.
int64_t tile_rows(int64_t rows, int64_t k) {
  const int64_t for_tiles = round_up(ceil_div(rows, kMinTiles), kMinTileRows);
  const int64_t for_memory = kMaxTileFloats / std::max<int64_t>(k, 1) / kMinTileRows * kMinTileRows;
  return std::clamp(std::min({kMaxTileRows, for_tiles, for_memory}), kMinTileRows, kMaxTileRows);
}

// Prefill in f32 with our AVX-512 or AVX2 kernel: each task takes a 32-row tile of W (dequantized
// unless it is f32), packs it and multiplies it with every activation row.
void matmul_f32_tiles(const WeightView& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
                      ThreadPool& pool) {
  const int64_t k = w.cols, stride = w.row_stride();
  const bool direct = w.type == DType::F32 && reinterpret_cast<uintptr_t>(w.data) % alignof(float) == 0;
  constexpr int64_t tile = kernels::kF32TileRows;
  pool.parallel_for(ceil_div(w.rows, tile), [&](int64_t task, int) {
    thread_local std::vector<float> wf;
    thread_local std::vector<float> packed;
    if (packed.size() < static_cast<size_t>(tile * k)) packed.resize(static_cast<size_t>(tile * k));
    const int64_t r0 = task * tile, nr = std::min(tile, w.rows - r0);
    const float* rows;
    int64_t ldw = k;
    if (direct) {
      rows = reinterpret_cast<const float*>(w.data + r0 * stride);
      ldw = stride / static_cast<int64_t>(sizeof(float));
    } else {
      if (wf.size() < static_cast<size_t>(tile * k)) wf.resize(static_cast<size_t>(tile * k));
      kernels::dequantize_rows(w.type, w.data + r0 * stride, stride, nr, k, wf.data(), k);
      rows = wf.data();
    }
    kernels::pack_tile_f32(rows, ldw, nr, k, packed.data());
    kernels::gemm_f32_tile(x, n, ldx, packed.data(), k, nr, y + r0, ldy);
  });
}

void matmul_gemm(const WeightView& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy, ThreadPool& pool) {
  const int64_t k = w.cols, stride = w.row_stride();
  const int64_t rows_per_tile = tile_rows(w.rows, k);
  // F32 weights are multiplied in place when they are float-aligned (GGUF data always is).
  const bool direct = w.type == DType::F32 && reinterpret_cast<uintptr_t>(w.data) % alignof(float) == 0;
  const int64_t tasks = ceil_div(w.rows, rows_per_tile);
  pool.parallel_for(tasks, [&](int64_t task, int) {
    thread_local std::vector<float> scratch;
    const int64_t r0 = task * rows_per_tile, nr = std::min(rows_per_tile, w.rows - r0);
    const float* tile;
    if (direct) {
      tile = reinterpret_cast<const float*>(w.data + r0 * stride);
    } else {
      if (scratch.size() < static_cast<size_t>(nr * k)) scratch.resize(static_cast<size_t>(nr * k));
      kernels::dequantize_rows(w.type, w.data + r0 * stride, stride, nr, k, scratch.data(), k);
      tile = scratch.data();
    }
    // Y[:, r0:r0+nr] = X · tileᵀ
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(nr),
                static_cast<int>(k), 1.0f, x, static_cast<int>(ldx), tile, static_cast<int>(k), 0.0f, y + r0,
                static_cast<int>(ldy));
  });
}

// Prefill in bf16: X is rounded once (shared by all tasks), each task dequantizes and packs a
// 32-row tile of W and multiplies it with every activation row.
void matmul_bf16(const WeightView& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy, ThreadPool& pool) {
  const int64_t k = w.cols, stride = w.row_stride();
  thread_local std::vector<uint16_t> xb_buf;
  if (xb_buf.size() < static_cast<size_t>(n * k)) xb_buf.resize(static_cast<size_t>(n * k));
  uint16_t* xb = xb_buf.data();
  constexpr int64_t kRoundRows = 16;
  pool.parallel_for(ceil_div(n, kRoundRows), [&](int64_t task, int) {
    const int64_t t0 = task * kRoundRows;
    kernels::round_rows_to_bf16(x + t0 * ldx, std::min(kRoundRows, n - t0), k, ldx, xb + t0 * k, k);
  });
  constexpr int64_t tile = kernels::kBf16TileRows;
  pool.parallel_for(ceil_div(w.rows, tile), [&](int64_t task, int) {
    thread_local std::vector<float> wf;
    thread_local std::vector<uint16_t> packed;
    if (wf.size() < static_cast<size_t>(tile * k)) wf.resize(static_cast<size_t>(tile * k));
    if (packed.size() < static_cast<size_t>(tile * k)) packed.resize(static_cast<size_t>(tile * k));
    const int64_t r0 = task * tile, nr = std::min(tile, w.rows - r0);
    kernels::dequantize_rows(w.type, w.data + r0 * stride, stride, nr, k, wf.data(), k);
    kernels::pack_tile_bf16(wf.data(), nr, k, packed.data());
    kernels::gemm_bf16_tile(xb, n, k, packed.data(), k, nr, y + r0, ldy);
  });
}

// Prefill with 8-bit activations (Q8_0/Q4_0 weights in fast math without AVX512_BF16): X is
// quantized once per 32-value block (shared by all tasks), each task packs a 32-row tile of W's
// codes and scales and multiplies it with every activation row.
void matmul_int8_gemm(const WeightView& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
                      ThreadPool& pool) {
  const int64_t k = w.cols, nb = k / 32, stride = w.row_stride();
  thread_local std::vector<int8_t> q_buf;
  thread_local std::vector<float> d_buf;
  thread_local std::vector<int32_t> s_buf;
  if (q_buf.size() < static_cast<size_t>(n * k)) q_buf.resize(static_cast<size_t>(n * k));
  if (d_buf.size() < static_cast<size_t>(n * nb)) d_buf.resize(static_cast<size_t>(n * nb));
  if (s_buf.size() < static_cast<size_t>(n * nb)) s_buf.resize(static_cast<size_t>(n * nb));
  int8_t* q = q_buf.data();
  float* d = d_buf.data();
  int32_t* s = s_buf.data();
  constexpr int64_t kQuantRows = 16;
  pool.parallel_for(ceil_div(n, kQuantRows), [&](int64_t task, int) {
    for (int64_t t = task * kQuantRows; t < std::min(n, (task + 1) * kQuantRows); ++t)
      kernels::quantize_row_q8(x + t * ldx, k, q + t * k, d + t * nb, s + t * nb);
  });
  const kernels::Int8Activations xa{q, d, s, k, nb};
  constexpr int64_t tile = kernels::kInt8TileRows;
  const auto bytes = static_cast<size_t>(kernels::int8_tile_bytes(k));
  pool.parallel_for(ceil_div(w.rows, tile), [&](int64_t task, int) {
    thread_local std::vector<float> packed_buf;
    uint8_t* packed = reinterpret_cast<uint8_t*>(aligned_scratch(packed_buf, bytes / sizeof(float)));
    const int64_t r0 = task * tile, nr = std::min(tile, w.rows - r0);
    kernels::pack_tile_int8(w.type, w.data + r0 * stride, stride, nr, k, packed);
    kernels::gemm_int8_tile(w.type, xa, n, packed, k, nr, y + r0, ldy);
  });
}

bool takes_int8_path(const WeightView& w, int64_t n, MatmulPrecision precision) {
  return n <= max_fused_batch(w.type) && precision == MatmulPrecision::kFast && kernels::int8_dot_supported(w.type);
}

bool use_bf16(const WeightView& w, MatmulPrecision precision) {
  // f32 weights keep full precision (they are what reference comparisons use); f16 weights
  // would lose mantissa bits in bf16.
  return precision == MatmulPrecision::kFast && w.type != DType::F32 && w.type != DType::F16 && w.cols % 2 == 0 &&
         kernels::bf16_gemm_preferred();
}

}  // namespace

void use_single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void matmul(const WeightView& w, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy, ThreadPool& pool,
            MatmulPrecision precision) {
  use_single_threaded_blas();
  if (n <= 0 || w.rows <= 0) return;
  if (w.cols % dtype_info(w.type).block_elems != 0)
    throw std::invalid_argument("matmul: row length is not a multiple of the block size");
  if (w.cols == 0) {
    for (int64_t t = 0; t < n; ++t) std::fill(y + t * ldy, y + t * ldy + w.rows, 0.0f);
    return;
  }
  if (takes_int8_path(w, n, precision)) {
    const MatmulTarget target{w, y, ldy};
    matmul_int8({&target, 1}, x, n, ldx, pool);
  }
  else if (n <= max_fused_batch(w.type)) {
    const MatmulTarget target{w, y, ldy};
    matmul_fused({&target, 1}, x, n, ldx, pool);
  }
  else if (use_bf16(w, precision))
    matmul_bf16(w, x, n, ldx, y, ldy, pool);
  else if (precision == MatmulPrecision::kFast && kernels::int8_gemm_preferred(w.type))
    matmul_int8_gemm(w, x, n, ldx, y, ldy, pool);
  else if (kernels::f32_gemm_supported())
    matmul_f32_tiles(w, x, n, ldx, y, ldy, pool);
  else
    matmul_gemm(w, x, n, ldx, y, ldy, pool);
}

void matmul_shared_input(std::span<const MatmulTarget> targets, const float* x, int64_t n, int64_t ldx,
                         ThreadPool& pool, MatmulPrecision precision) {
  // Together when every target takes the same small-batch path: all 8-bit (any mix of types), or
  // all fused float kernels of one weight type.
  bool int8 = n > 0 && !targets.empty(), fused = int8;
  for (const auto& t : targets) {
    const bool ok = t.w.rows > 0 && t.w.cols > 0 && t.w.cols == targets[0].w.cols &&
                    t.w.cols % dtype_info(t.w.type).block_elems == 0;
    int8 = int8 && ok && takes_int8_path(t.w, n, precision);
    fused = fused && ok && t.w.type == targets[0].w.type && n <= max_fused_batch(t.w.type) &&
            !takes_int8_path(t.w, n, precision);
  }
  if (!int8 && !fused) {
    for (const auto& t : targets) matmul(t.w, x, n, ldx, t.y, t.ldy, pool, precision);
    return;
  }
  use_single_threaded_blas();
  if (int8) matmul_int8(targets, x, n, ldx, pool);
  else matmul_fused(targets, x, n, ldx, pool);
}

CpuKernels cpu_kernels() {
  // The same checks matmul makes to choose its paths.
  CpuKernels k;
  k.level = kernels::cpu_level_name(kernels::cpu_level());
  k.detected = kernels::cpu_level_name(kernels::cpu_detected_level());
  const auto cap = kernels::cpu_level_cap();
  k.cap = cap ? kernels::cpu_level_name(*cap) : "none";
  k.vector = std::string("hwy-") + kernels::simd_target_name();
  k.decode_int8 = kernels::int8_dot_kernel_name();
  k.gemm_f32 = kernels::f32_gemm_supported() ? std::string(kernels::f32_gemm_kernel_name()) : "openblas-sgemm";
  k.gemm_bf16 = kernels::bf16_gemm_preferred() ? "bf16-avx512" : "none";
  const bool int8_gemm = !kernels::bf16_gemm_preferred() && kernels::int8_gemm_preferred(DType::Q8_0);
  k.gemm_int8 = int8_gemm ? std::string(kernels::int8_gemm_kernel_name()) : "none";
  k.attention = kernels::attention_products_on_f32_kernels() ? k.gemm_f32 : "openblas-sgemm";
  const char* core = openblas_get_corename();
  k.openblas = core ? core : "unknown";
  return k;
}

float dot_row(DType t, const void* row, const float* x, int64_t n) {
  if (n % dtype_info(t).block_elems != 0) throw std::invalid_argument("dot_row: length is not a multiple of the block size");
  // Same kernel and same hoisted terms as matmul's fused path, so the results agree bitwise.
  std::vector<float> xsum(static_cast<size_t>(kernels::xsum_len(t, n)));
  kernels::compute_xsums(t, x, n, xsum.data());
  float y = 0;
  kernels::dot_rows(t, static_cast<const uint8_t*>(row), 0, 1, n, x, 0, xsum.empty() ? nullptr : xsum.data(), 1, &y, 1);
  return y;
}

}  // namespace lazyllm
