// The prefill's matrix products through cuBLASLt with the algorithm chosen once per (output
// width, inner size, row bucket, output type, accumulate) and reused for every row count in the
// bucket, process-wide. cublasGemmEx chooses again for every new row count, about 1 ms per new
// shape on a 7B model: every prompt of a new length paid it, and LazyLLM's pruned layers and
// completing step meet more row counts than the baseline does.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "kernels/cuda/device_buffer.h"

namespace lazyllm::cuda {

class LtGemm {
 public:
  LtGemm();
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // Y (m rows of n_out, float or bf16) = X (m rows of k, bf16) W^T + beta Y, W n_out rows of k
  // (bf16), float accumulation. Returns false where cuBLASLt offers no algorithm (the caller
  // falls back to cublasGemmEx).
  bool run(cudaStream_t stream, const void* w, int n_out, int k, const void* x, int m, void* y, cudaDataType y_type,
           float beta);

 private:
  cublasLtHandle_t lt_ = nullptr;
  DeviceBuffer<unsigned char> workspace_;
};

}  // namespace lazyllm::cuda
