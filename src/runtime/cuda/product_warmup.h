// Loading cuBLAS's kernels before the first request. A process pays milliseconds the first time
// it runs a cuBLAS kernel (H100, llama2-7b's four layer products: 4-12 ms at a new row count,
// still 3-9 ms with eager module loading). A baseline prefill meets one row count per prompt
// length; LazyLLM's pruned layers and its completing step meet six or seven, so without this the
// first request at a new length pays that many times over.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <tuple>
#include <vector>

#include "kernels/cuda/weight_ref.h"

namespace lazyllm::cuda_pass {

// A product the forward pass hands to cuBLAS: Y (m rows of ldy, y_type) = X (m rows of k) W^T
// with W n_out rows of k in bf16 (the weight itself, or its dequantized copy). `format` is the
// stored weight's: it decides from which row count on cuBLAS takes the product.
struct ProductShape {
  int n_out = 0, k = 0, ldy = 0;
  cudaDataType y_type = CUDA_R_32F;
  cuda::WeightFormat format = cuda::WeightFormat::kBf16;
  // (Plain comparisons: nvcc compiles the benchmark that includes this as C++17.)
  auto key() const { return std::make_tuple(n_out, k, ldy, static_cast<int>(y_type), static_cast<int>(format)); }
  bool operator==(const ProductShape& o) const { return key() == o.key(); }
  bool operator<(const ProductShape& o) const { return key() < o.key(); }
};

struct WarmupStats {
  int shapes = 0;       // products warmed by this call (the rest were already, in this process)
  int queries = 0;      // cuBLASLt kernel choices asked for
  int launches = 0;     // cublasGemmEx calls made (one per distinct kernel)
  double query_ms = 0;  // of which asking cuBLASLt
  double ms = 0;        // host time of the whole warm-up
};

// For each shape not yet warmed up to max_rows in this process: asks cuBLASLt which kernel it
// picks at a grid of row counts up to max_rows (every 16 rows below 1024, then 64 points an
// octave, each with its +1 neighbour) and calls cublasGemmEx once at the first row count of each
// distinct kernel, on throw-away buffers. Skips quietly when those buffers do not fit.
WarmupStats warm_up_products(cublasHandle_t h, cudaStream_t stream, const std::vector<ProductShape>& shapes,
                             int max_rows);

}  // namespace lazyllm::cuda_pass
