// The model's weights on the GPU: matrices in bf16 (F16/BF16 as stored, quantized types
// dequantized at upload), Q/K/V and gate/up concatenated so each is one GEMM; norms and biases
// in float. Uploaded once per Model, kept while the model lives, shared by its CUDA sessions.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/ops.h"

namespace lazyllm {
class Model;
}

namespace lazyllm::cuda {

struct CudaLayerWeights {
  DeviceBuffer<float> attn_norm, ffn_norm;
  DeviceBuffer<bf16_t> wqkv;   // (qd + 2 kvd) rows of n_embd
  DeviceBuffer<float> bqkv;    // empty without QKV biases
  DeviceBuffer<bf16_t> wo;     // n_embd rows of qd
  DeviceBuffer<bf16_t> wgu;    // 2 n_ff rows of n_embd: gate rows, then up rows
  DeviceBuffer<bf16_t> wdown;  // n_embd rows of n_ff
};

struct CudaWeights {
  DeviceBuffer<bf16_t> token_embd;  // n_vocab rows of n_embd
  DeviceBuffer<bf16_t> output_own;  // empty when tied to token_embd
  const bf16_t* output = nullptr;
  DeviceBuffer<float> output_norm;
  std::vector<CudaLayerWeights> layers;
  int64_t bytes = 0;
};

// The weights of `model` on the GPU, uploading them on first use.
std::shared_ptr<const CudaWeights> cuda_weights_for(const Model& model);

}  // namespace lazyllm::cuda
