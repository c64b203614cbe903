// Turns CUDA runtime and cuBLAS failures into lazyllm::Error naming the call.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "lazyllm/error.h"

namespace lazyllm::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}
inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("cuBLAS: ") + what + ": " + cublasGetStatusString(s));
}
// After a kernel launch: catches bad launch configurations at once (not asynchronous faults).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace lazyllm::cuda

#define LAZYLLM_CUDA_CHECK(call) ::lazyllm::cuda::check((call), #call)
