#include "runtime/cpu/cpu_layer.h"

#include <algorithm>

#include "kernels/cpu/vec_ops.h"
#include "model/weights.h"
#include "util/thread_pool.h"

namespace lazyllm {
namespace {

constexpr int kFfnChunkRows = 512;  // rows per FFN chunk, bounds the n_ff-wide buffers

}  // namespace

CpuLayerOps::CpuLayerOps(const Model& model, ThreadPool& pool)
    : c_(model.config()), w_(model.weights()), pool_(pool), rope_(c_, w_.rope_freq_factors) {}

void CpuLayerOps::for_rows(int m, const std::function<void(int)>& fn) {
  constexpr int kChunk = 16;
  if (m <= kChunk) {
    for (int i = 0; i < m; ++i) fn(i);
    return;
  }
  pool_.parallel_for((m + kChunk - 1) / kChunk, [&](int64_t task, int) {
    const int i0 = static_cast<int>(task) * kChunk, i1 = std::min(m, i0 + kChunk);
    for (int i = i0; i < i1; ++i) fn(i);
  });
}

float* CpuLayerOps::att_buffer(int m) {
  att_.resize(static_cast<size_t>(m) * c_.n_heads * c_.head_dim);
  return att_.data();
}

void CpuLayerOps::pre_attention(int l, const float* h, int m, const int32_t* pos) {
  const LayerWeights& L = w_.layers[l];
  const int d = c_.n_embd, hd = c_.head_dim;
  const int qd = c_.n_heads * hd, kvd = c_.n_kv_heads * hd;
  xn_.resize(static_cast<size_t>(m) * d);
  q_.resize(static_cast<size_t>(m) * qd);
  k_.resize(static_cast<size_t>(m) * kvd);
  v_.resize(static_cast<size_t>(m) * kvd);

  for_rows(m, [&](int i) { rmsnorm(h + int64_t{i} * d, L.attn_norm, xn_.data() + int64_t{i} * d, d, c_.rms_eps); });
  const MatmulTarget qkv[] = {{L.wq, q_.data(), qd}, {L.wk, k_.data(), kvd}, {L.wv, v_.data(), kvd}};
  matmul_shared_input(qkv, xn_.data(), m, d, pool_, precision_);
  for_rows(m, [&](int i) {
    float* qi = q_.data() + int64_t{i} * qd;
    float* ki = k_.data() + int64_t{i} * kvd;
    float* vi = v_.data() + int64_t{i} * kvd;
    if (L.bq) {
      add_inplace(qi, L.bq, qd);
      add_inplace(ki, L.bk, kvd);
      add_inplace(vi, L.bv, kvd);
    }
    rope_.apply(qi, c_.n_heads, pos[i]);
    rope_.apply(ki, c_.n_kv_heads, pos[i]);
  });
}

void CpuLayerOps::post_attention(int l, float* h, int m, const float* att) {
  const LayerWeights& L = w_.layers[l];
  const int d = c_.n_embd, qd = c_.n_heads * c_.head_dim;
  // Output projection and residual (xn has room for m x d).
  xn_.resize(static_cast<size_t>(m) * d);
  matmul(L.wo, att, m, qd, xn_.data(), d, pool_, precision_);
  for_rows(m, [&](int i) { add_inplace(h + int64_t{i} * d, xn_.data() + int64_t{i} * d, d); });

  // SwiGLU feed-forward, in row chunks so the n_ff-wide buffers stay bounded.
  const int ff = c_.n_ff;
  for (int r0 = 0; r0 < m; r0 += kFfnChunkRows) {
    const int rm = std::min(kFfnChunkRows, m - r0);
    gate_.resize(static_cast<size_t>(rm) * ff);
    up_.resize(static_cast<size_t>(rm) * ff);
    ffn_out_.resize(static_cast<size_t>(rm) * d);
    float* hc = h + int64_t{r0} * d;
    for_rows(rm, [&](int i) { rmsnorm(hc + int64_t{i} * d, L.ffn_norm, xn_.data() + int64_t{i} * d, d, c_.rms_eps); });
    const MatmulTarget gate_up[] = {{L.w_gate, gate_.data(), ff}, {L.w_up, up_.data(), ff}};
    matmul_shared_input(gate_up, xn_.data(), rm, d, pool_, precision_);
    for_rows(rm, [&](int i) { silu_mul(gate_.data() + int64_t{i} * ff, up_.data() + int64_t{i} * ff, ff); });
    matmul(L.w_down, gate_.data(), rm, ff, ffn_out_.data(), d, pool_, precision_);
    for_rows(rm, [&](int i) { add_inplace(hc + int64_t{i} * d, ffn_out_.data() + int64_t{i} * d, d); });
  }
}

void CpuLayerOps::logits(const float* h, int m, float* out) {
  const int d = c_.n_embd;
  xn_.resize(static_cast<size_t>(m) * d);
  for (int i = 0; i < m; ++i) rmsnorm(h + int64_t{i} * d, w_.output_norm, xn_.data() + int64_t{i} * d, d, c_.rms_eps);
  matmul(w_.output, xn_.data(), m, d, out, c_.n_vocab, pool_, precision_);
}

}  // namespace lazyllm
