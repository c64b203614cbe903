#include "kernels/cpu/rope.h"

#include <cmath>
#include <numbers>

namespace lazyllm {

Rope::Rope(const ModelConfig& c, const std::vector<float>& freq_factors)
    : head_dim_(c.head_dim), neox_(c.rope_neox), inv_freq_(c.head_dim / 2) {
  const double freq_scale = c.rope_scaling == "linear" ? 1.0 / c.rope_scale_factor : 1.0;
  for (int i = 0; i < head_dim_ / 2; ++i) {
    double f = std::pow(static_cast<double>(c.rope_base), -2.0 * i / head_dim_) * freq_scale;
    if (!freq_factors.empty()) f /= freq_factors[i];
    inv_freq_[i] = f;
  }
}

void Rope::apply(float* x, int n_heads, int32_t pos) const {
  const int half = head_dim_ / 2;
  float cs[512], sn[512];  // head_dim <= 1024 is checked at load
  for (int i = 0; i < half; ++i) {
    double a = pos * inv_freq_[i];
    cs[i] = static_cast<float>(std::cos(a));
    sn[i] = static_cast<float>(std::sin(a));
  }
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim_;
    for (int i = 0; i < half; ++i) {
      // Interleaved pairs (2i, 2i+1) for llama; split halves (i, i+half) for NeoX layouts.
      const int a = neox_ ? i : 2 * i, b = neox_ ? i + half : 2 * i + 1;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs[i] - x1 * sn[i];
      v[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

std::vector<float> llama3_rope_factors(int head_dim, float base, float factor, float low_freq_factor,
                                       float high_freq_factor, int original_context) {
  std::vector<float> out(head_dim / 2);
  const double low_wavelen = original_context / low_freq_factor;
  const double high_wavelen = original_context / high_freq_factor;
  for (int i = 0; i < head_dim / 2; ++i) {
    const double freq = std::pow(static_cast<double>(base), -2.0 * i / head_dim);
    const double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      out[i] = 1.0f;
    } else if (wavelen > low_wavelen) {
      out[i] = factor;
    } else {
      const double smooth = (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      out[i] = static_cast<float>(1.0 / ((1 - smooth) / factor + smooth));
    }
  }
  return out;
}

}  // namespace lazyllm
