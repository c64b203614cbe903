// The model's weights on the GPU: matrices in bf16 (F16/BF16 as stored, other types converted at
// upload) or, for the quantized types the kernels read directly (GpuWeights::kNative: Q8_0,
// Q4_0), in their GGUF blocks (split into quants and scales, kernels/cuda/weight_ref.h); Q/K/V
// and gate/up concatenated so each is one product; norms and biases in float. Uploaded once per
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

// One matrix: rows of cols in ref's format (the buffer holds the quants, then the scales).
struct CudaMatrix {
  DeviceBuffer<uint8_t> data;
  WeightRef ref;
  int64_t rows = 0, cols = 0;
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
CudaMatrix upload_matrix(std::initializer_list<const WeightView*> parts, GpuWeights mode, int64_t& bytes);

// The weights of `model` on the GPU in `mode`, uploading them on first use.
std::shared_ptr<const CudaWeights> cuda_weights_for(const Model& model, GpuWeights mode);

}  // namespace lazyllm::cuda
