// The model's weights on the GPU: matrices in bf16 (F16/BF16 as stored, other types converted at
// upload) or, for the quantized types the kernels read directly (GpuWeights::kNative: Q8_0,
// Q4_0, Q4_K, Q5_K, Q6_K), in their GGUF blocks (kernels/cuda/weight_ref.h); Q/K/V and gate/up
// concatenated so each is one product (Q/K/V of different quantized types, as in Q4_K_M files,
// kept as parts of their own types); norms and biases in float. Uploaded once per
// Model and form, kept while the model lives, shared by its CUDA sessions.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/weight_ref.h"
#include "lazyllm/lazyllm.h"

namespace lazyllm {
struct WeightView;
}

namespace lazyllm::cuda {

// A slice of a matrix's rows in one format: rows [row0, row0 + rows).
struct MatrixPart {
  WeightRef ref;
  int64_t row0 = 0, rows = 0;
};

// One matrix: rows of cols in ref's format (the buffer holds the quants, then the scales), or,
// when its parts have different quantized types, the parts uploaded apart (`split`; ref unset).
struct CudaMatrix {
  DeviceBuffer<uint8_t> data;
  WeightRef ref;
  int64_t rows = 0, cols = 0;
  std::vector<CudaMatrix> split;
  std::vector<MatrixPart> parts;  // the whole matrix as one part, or the split parts in order
};

struct CudaLayerWeights {
  DeviceBuffer<float> attn_norm, ffn_norm;
  CudaMatrix wqkv;           // (qd + 2 kvd) rows of n_embd
  DeviceBuffer<float> bqkv;  // empty without QKV biases
  CudaMatrix wo;             // n_embd rows of qd
  CudaMatrix wgu;            // 2 n_ff rows of n_embd: gate rows, then up rows
  CudaMatrix wdown;          // n_embd rows of n_ff
};

struct CudaWeights {
  CudaMatrix token_embd;  // n_vocab rows of n_embd
  CudaMatrix output_own;  // empty when tied to token_embd
  WeightRef output;
  DeviceBuffer<float> output_norm;
  std::vector<CudaLayerWeights> layers;
  int64_t bytes = 0;
  // bf16 elements of the largest quantized layer matrix (or gate or up half) that prefill's
  // products dequantize at once; 0 when every layer matrix is bf16.
  int64_t scratch_elems = 0;
};

// Uploads the row-wise concatenation of `parts` (same column count) as one matrix in the form
// `mode` gives them (runtime/gpu_weight_plan.h); adds its bytes to `bytes`.
// split_types: parts of different quantized types with native kernels stay apart in their own
// types (gpu_split_parts) instead of going to bf16 together.
CudaMatrix upload_matrix(std::initializer_list<const WeightView*> parts, GpuWeights mode, int64_t& bytes,
                         bool split_types = false);

// The weights of `model` on the GPU in `mode`, uploading them on first use.
std::shared_ptr<const CudaWeights> cuda_weights_for(const Model& model, GpuWeights mode);

}  // namespace lazyllm::cuda
