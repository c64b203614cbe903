#include "runtime/cuda/product_warmup.h"

#include <cublasLt.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/qgemm.h"
#include "runtime/cuda/cuda_forward.h"
#include "runtime/cuda/weight_gemm.h"

namespace lazyllm::cuda_pass {
namespace {

using cuda::check;

// The first row count cuBLAS takes for the shape's weight format (below it the matrix-vector or
// the quantized tensor-core kernels do).
int first_cublas_rows(const ProductShape& s) {
  int m = 1;
  while (cuda::gemv_applies(s.format, m, s.k) || cuda::qgemm_applies(s.format, m, s.k)) ++m;
  return m;
}

// Row counts to ask about: every 16 below 1024, then 64 an octave, each with its +1 neighbour
// (one more row can need one more tile).
std::vector<int> row_grid(int lo, int max_rows) {
  std::vector<int> grid;
  for (int m = lo; m <= max_rows;) {
    grid.push_back(m);
    if (m + 1 <= max_rows) grid.push_back(m + 1);
    const int step = std::max(16, static_cast<int>(std::bit_floor(static_cast<unsigned>(m))) / 64);
    m = (m / step + 1) * step;
  }
  return grid;
}

// What cublasGemmEx's choice depends on, as cuBLASLt sees it.
struct LtProblem {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  LtProblem(const ProductShape& s, int m) {
    check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t ta = CUBLAS_OP_T;
    check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "transa");
    check(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, s.k, s.n_out, s.k), "layout A");
    check(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, s.k, m, s.k), "layout B");
    check(cublasLtMatrixLayoutCreate(&c, s.y_type, s.n_out, m, s.ldy), "layout C");
  }
  ~LtProblem() {
    cublasLtMatrixLayoutDestroy(c);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatmulDescDestroy(desc);
  }
  LtProblem(const LtProblem&) = delete;
  LtProblem& operator=(const LtProblem&) = delete;
};

// What this process has warmed per shape: up to which row count, and the kernels it launched.
struct Warmed {
  int rows = 0;
  std::vector<cublasLtMatmulAlgo_t> algos;
};
std::mutex g_mutex;
GpuWarmupTotals g_totals;
std::map<ProductShape, Warmed>& warmed() {
  static std::map<ProductShape, Warmed> done;
  return done;
}

}  // namespace

WarmupStats warm_up_products(cublasHandle_t h, cudaStream_t stream, const std::vector<ProductShape>& shapes,
                             int max_rows) {
  WarmupStats st;
  if (max_rows < 2) return st;
  const auto t0 = std::chrono::steady_clock::now();
  std::lock_guard lock(g_mutex);
  std::vector<ProductShape> todo;
  for (const ProductShape& s : shapes) {
    if (warmed()[s].rows < max_rows && std::find(todo.begin(), todo.end(), s) == todo.end()) todo.push_back(s);
  }
  if (todo.empty()) return st;

  // Throw-away operands, sized for the largest shape at max_rows; their values do not matter.
  size_t w_elems = 0, x_elems = 0, y_bytes = 0;
  for (const ProductShape& s : todo) {
    w_elems = std::max(w_elems, static_cast<size_t>(s.n_out) * s.k);
    x_elems = std::max(x_elems, static_cast<size_t>(max_rows) * s.k);
    y_bytes = std::max(y_bytes, static_cast<size_t>(max_rows) * s.ldy * (s.y_type == CUDA_R_32F ? 4 : 2));
  }
  cuda::DeviceBuffer<cuda::bf16_t> w, x;
  cuda::DeviceBuffer<uint8_t> y;
  try {
    w.ensure(w_elems), x.ensure(x_elems), y.ensure(y_bytes);
  } catch (const std::exception&) {
    cudaGetLastError();  // not enough free memory now: requests load their kernels as before
    return st;
  }
  check(cudaMemsetAsync(w.get(), 0, w_elems * sizeof(cuda::bf16_t), stream), "warm-up operands");
  check(cudaMemsetAsync(x.get(), 0, x_elems * sizeof(cuda::bf16_t), stream), "warm-up operands");

  cublasLtHandle_t lt = nullptr;
  check(cublasLtCreate(&lt), "cublasLtCreate");
  const std::unique_ptr<cublasLtContext, decltype(&cublasLtDestroy)> lt_owner(lt, cublasLtDestroy);
  cublasLtMatmulPreference_t pref = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, decltype(&cublasLtMatmulPreferenceDestroy)> pref_owner(
      pref, cublasLtMatmulPreferenceDestroy);
  // cuBLAS's default workspace: 32 MiB from compute capability 9.0, else 4 MiB.
  int dev = 0, major = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "compute capability");
  const size_t ws = (major >= 9 ? size_t{32} : size_t{4}) << 20;
  check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
        "workspace preference");

  for (const ProductShape& s : todo) {
    Warmed& done = warmed()[s];
    for (int m : row_grid(std::max(first_cublas_rows(s), done.rows + 1), max_rows)) {
      const auto q0 = std::chrono::steady_clock::now();
      const LtProblem p(s, m);
      cublasLtMatmulHeuristicResult_t r{};
      int found = 0;
      ++st.queries;
      const cublasStatus_t asked = cublasLtMatmulAlgoGetHeuristic(lt, p.desc, p.a, p.b, p.c, p.c, pref, 1, &r, &found);
      st.query_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - q0).count();
      if (asked != CUBLAS_STATUS_SUCCESS || found < 1) continue;
      // Compared whole: configurations that differ only in launch parameters (split-K count,
      // swizzling) are rare here (H100, llama2-7b: naming kernels by the rest found as many).
      const bool known = std::any_of(done.algos.begin(), done.algos.end(), [&](const cublasLtMatmulAlgo_t& a) {
        return std::memcmp(&a, &r.algo, sizeof(a)) == 0;
      });
      if (known) continue;
      done.algos.push_back(r.algo);
      ++st.launches;
      cublas_gemm(h, w.get(), s.n_out, s.k, x.get(), m, y.get(), s.ldy, s.y_type, 0.0f);
    }
    done.rows = max_rows;
    ++st.shapes;
  }
  check(cudaStreamSynchronize(stream), "warm-up");
  st.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  g_totals.shapes += st.shapes, g_totals.launches += st.launches, g_totals.ms += st.ms;
  return st;
}

}  // namespace lazyllm::cuda_pass

namespace lazyllm {

GpuWarmupTotals cuda_warmup_totals() {
  std::lock_guard lock(cuda_pass::g_mutex);
  return cuda_pass::g_totals;
}

}  // namespace lazyllm
