#include "kernels/cuda/lt_gemm.h"

#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/cuda_check.h"

namespace lazyllm::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// Row counts share an algorithm within a power-of-two bucket (chosen for the bucket's top).
int row_bucket(int m) {
  int b = 16;
  while (b < m) b <<= 1;
  return b;
}

using AlgoKey = std::tuple<int, int, int, int, bool>;  // n_out, k, bucket, y type, accumulate

std::mutex& algo_mutex() {
  static std::mutex m;
  return m;
}
std::map<AlgoKey, cublasLtMatmulAlgo_t>& algo_cache() {
  static std::map<AlgoKey, cublasLtMatmulAlgo_t> c;
  return c;
}

// The descriptors of one product (column-major, as cuBLAS sees the row-major tensors): D and C
// are n_out x m, A is W (k x n_out, transposed), B is X (k x m).
struct Descs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  Descs(int n_out, int k, int m, cudaDataType y_type) {
    check(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t t = CUBLAS_OP_T, n = CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t), "cublasLt TRANSA");
    check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof n), "cublasLt TRANSB");
    check(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, k, n_out, k), "cublasLtMatrixLayoutCreate");
    check(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, k, m, k), "cublasLtMatrixLayoutCreate");
    check(cublasLtMatrixLayoutCreate(&c, y_type, n_out, m, n_out), "cublasLtMatrixLayoutCreate");
  }
  ~Descs() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

}  // namespace

LtGemm::LtGemm() {
  check(cublasLtCreate(&lt_), "cublasLtCreate");
  workspace_.ensure(kWorkspaceBytes);
}

LtGemm::~LtGemm() {
  if (lt_) cublasLtDestroy(lt_);
}

bool LtGemm::run(cudaStream_t stream, const void* w, int n_out, int k, const void* x, int m, void* y,
                 cudaDataType y_type, float beta) {
  const AlgoKey key{n_out, k, row_bucket(m), static_cast<int>(y_type), beta != 0.0f};
  cublasLtMatmulAlgo_t algo;
  {
    std::lock_guard<std::mutex> lock(algo_mutex());
    auto it = algo_cache().find(key);
    if (it == algo_cache().end()) {
      // Chosen for the bucket's largest row count, so it serves every row count below it.
      const Descs top(n_out, k, std::get<2>(key), y_type);
      cublasLtMatmulPreference_t pref = nullptr;
      check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
      const size_t ws = kWorkspaceBytes;
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      const cublasStatus_t st =
          cublasLtMatmulAlgoGetHeuristic(lt_, top.op, top.a, top.b, top.c, top.c, pref, 1, &result, &found);
      cublasLtMatmulPreferenceDestroy(pref);
      if (st != CUBLAS_STATUS_SUCCESS || found == 0) return false;
      it = algo_cache().emplace(key, result.algo).first;
    }
    algo = it->second;
  }
  const Descs d(n_out, k, m, y_type);
  const float alpha = 1.0f;
  return cublasLtMatmul(lt_, d.op, &alpha, w, d.a, x, d.b, &beta, y, d.c, y, d.c, &algo, workspace_.get(),
                        kWorkspaceBytes, stream) == CUBLAS_STATUS_SUCCESS;
}

}  // namespace lazyllm::cuda
