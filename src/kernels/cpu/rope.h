// Rotary position embedding. Every token is rotated by its original position, so a token
// computed late (LazyLLM revival) gets exactly the rotation it would have had in order.
#pragma once

#include <cstdint>
#include <vector>

#include "lazyllm/lazyllm.h"

namespace lazyllm {

class Rope {
 public:
  Rope(const ModelConfig& c, const std::vector<float>& freq_factors);
  // Rotates `n_heads` consecutive heads of head_dim values in place.
  void apply(float* x, int n_heads, int32_t pos) const;
  // Angle per position of each rotary pair (the GPU backend builds its tables from these).
  const std::vector<double>& inv_freq() const { return inv_freq_; }
  bool neox() const { return neox_; }

 private:
  int head_dim_;
  bool neox_;
  std::vector<double> inv_freq_;  // per rotary pair
};

// Llama 3.1 "llama3" per-pair frequency divisors (what converters store as rope_freqs.weight).
std::vector<float> llama3_rope_factors(int head_dim, float base, float factor, float low_freq_factor,
                                       float high_freq_factor, int original_context);

}  // namespace lazyllm
