// The weight phases of one transformer layer on the CPU, over any number of hidden-state rows:
// before attention (norm, Q/K/V products, biases, RoPE) and after it (output product, residual,
// SwiGLU feed-forward), plus the final norm and logits. Attention is per sequence (each over its
// own keys) and lives with the sequence's caches (cpu_forward.h); a single sequence and a batch of
// several (cpu_batch.h) run these same phases, the batch once over the rows of every sequence.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/rope.h"
#include "lazyllm/lazyllm.h"

namespace lazyllm {

struct ModelWeights;

class CpuLayerOps {
 public:
  CpuLayerOps(const Model& model, ThreadPool& pool);

  // Layer l's products before attention for m rows `h` at positions `pos`: q(), k(), v() then
  // hold m rows each (q: n_heads x head_dim wide, k and v: n_kv_heads x head_dim), rotated.
  void pre_attention(int l, const float* h, int m, const int32_t* pos);
  // Layer l after attention: h += O(att), then h += FFN(h), for m rows; `att` is m rows of
  // n_heads x head_dim (it may be att_buffer(m)).
  void post_attention(int l, float* h, int m, const float* att);
  // Logits of m final hidden rows into out (m rows of n_vocab).
  void logits(const float* h, int m, float* out);

  float* q() { return q_.data(); }
  float* k() { return k_.data(); }
  float* v() { return v_.data(); }
  // Room for m rows of attention output (valid until the next post_attention).
  float* att_buffer(int m);
  // Runs fn(row) for rows [0, m), split over the pool in chunks (serially for small batches).
  void for_rows(int m, const std::function<void(int)>& fn);

  void set_precision(MatmulPrecision p) { precision_ = p; }
  MatmulPrecision precision() const { return precision_; }
  ThreadPool& pool() { return pool_; }
  const Rope& rope() const { return rope_; }
  // Bytes of the row buffers held now (they grow to the largest step's rows).
  int64_t held_bytes() const {
    size_t floats = 0;
    for (const auto* b : {&xn_, &q_, &k_, &v_, &att_, &gate_, &up_, &ffn_out_}) floats += b->capacity();
    return static_cast<int64_t>(floats * sizeof(float));
  }

 private:
  const ModelConfig& c_;
  const ModelWeights& w_;
  ThreadPool& pool_;
  MatmulPrecision precision_ = MatmulPrecision::kF32;
  Rope rope_;
  std::vector<float> xn_, q_, k_, v_, att_, gate_, up_, ffn_out_;
};

}  // namespace lazyllm
