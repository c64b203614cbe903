// The model's tensors, bound by name and checked against the configuration's shapes.
// Large matrices stay in the mapped file in their stored type; small vectors (norms,
// biases) are converted to float once.
#pragma once

#include <vector>

#include "kernels/cpu/matmul.h"
#include "lazyllm/lazyllm.h"

namespace lazyllm {

struct LayerWeights {
  const float* attn_norm = nullptr;
  WeightView wq, wk, wv, wo;
  const float* bq = nullptr;  // QKV biases (qwen2), else null
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* ffn_norm = nullptr;
  WeightView w_gate, w_up, w_down;
};

struct ModelWeights {
  WeightView token_embd;  // n_vocab rows of n_embd
  const float* output_norm = nullptr;
  WeightView output;      // n_vocab rows of n_embd (token_embd when tied)
  std::vector<LayerWeights> layers;
  std::vector<float> rope_freq_factors;  // per rotary pair; empty = all 1 (rope_freqs.weight)
  std::vector<std::vector<float>> owned;  // float copies of small non-f32 vectors
};

// Reads the configuration from GGUF metadata. Throws Error for unknown architectures or
// missing/inconsistent hyperparameters.
ModelConfig read_model_config(const GGUFFile& file, int n_vocab);

// Binds every tensor the configuration needs. Throws Error naming a missing or ill-shaped tensor.
std::unique_ptr<ModelWeights> bind_weights(const GGUFFile& file, const ModelConfig& config);

}  // namespace lazyllm
