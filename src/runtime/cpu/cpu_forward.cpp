#include "runtime/cpu/cpu_forward.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/vec_ops.h"
#include "model/weights.h"
#include "prune/select.h"
#include "runtime/prefill.h"
#include "util/thread_pool.h"

namespace lazyllm {
namespace {

constexpr int kAttnBlockRows = 64;   // query rows per prefill attention task
constexpr int kFfnChunkRows = 512;   // rows per FFN chunk, bounds the n_ff-wide buffers
constexpr int kBatchedDecodeRows = 4;  // decode batches from this many rows attend by matrix products

}  // namespace

struct CpuForward::Scratch {
  std::vector<float> xn, q, k, v, att, gate, up, ffn_out, hidden, batch, kf, vf;
  std::vector<std::vector<float>> per_thread;  // attention score rows
  std::vector<float> imp_heads;                // last row's probabilities, per head
};

CpuForward::CpuForward(const Model& model, int n_ctx, bool kv_f16, ThreadPool& pool)
    : model_(model),
      c_(model.config()),
      w_(model.weights()),
      pool_(pool),
      n_ctx_(n_ctx),
      kv_(c_.n_layers, c_.n_kv_heads * c_.head_dim, n_ctx, kv_f16),
      aux_(c_.n_embd, kv_.index()),
      rope_(c_, w_.rope_freq_factors),
      s_(std::make_unique<Scratch>()) {
  use_single_threaded_blas();  // attention's cblas calls run inside our pool's tasks
  s_->per_thread.resize(pool.size());
}

CpuForward::~CpuForward() = default;

Session::DeviceMemory CpuForward::held_memory() const {
  Session::DeviceMemory m;
  m.kv_cache = kv_.bytes();
  m.aux_cache = aux_.capacity_bytes();
  const Scratch& s = *s_;
  size_t floats = importance_.capacity() + logits_.capacity();
  for (const auto* v : {&s.xn, &s.q, &s.k, &s.v, &s.att, &s.gate, &s.up, &s.ffn_out, &s.hidden, &s.batch, &s.kf, &s.vf,
                        &s.imp_heads})
    floats += v->capacity();
  for (const auto& v : s.per_thread) floats += v.capacity();
  m.scratch = static_cast<int64_t>(floats * sizeof(float) + lists_.capacity() * sizeof(int32_t));
  return m;
}

void CpuForward::clear() {
  n_past_ = 0;
  kv_.clear();
  counters_ = {};
  logits_.clear();
  selection_.clear();
}

void CpuForward::embed(int32_t token, float* out) const {
  const WeightView& e = w_.token_embd;
  dequantize_row(e.type, e.data + token * e.row_stride(), out, c_.n_embd);
}

void CpuForward::compute_logits(const float* h) {
  std::vector<float> xn(c_.n_embd);
  rmsnorm(h, w_.output_norm, xn.data(), c_.n_embd, c_.rms_eps);
  logits_.resize(c_.n_vocab);
  matmul(w_.output, xn.data(), 1, c_.n_embd, logits_.data(), c_.n_vocab, pool_, precision_);
}

// ------------------------------------------------------------------ one layer

// Runs fn(row) for rows [0, m), split over the pool in chunks (serially for small batches).
void CpuForward::for_rows(int m, const std::function<void(int)>& fn) {
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

void CpuForward::layer_forward(int l, float* h, int m, const int32_t* pos, int slot0, bool want_importance,
                               std::span<const int32_t> key_slots, const int32_t* row_keys) {
  const LayerWeights& L = w_.layers[l];
  const int d = c_.n_embd, hd = c_.head_dim;
  const int qd = c_.n_heads * hd, kvd = c_.n_kv_heads * hd;
  Scratch& s = *s_;
  s.xn.resize(static_cast<size_t>(m) * d);
  s.q.resize(static_cast<size_t>(m) * qd);
  s.k.resize(static_cast<size_t>(m) * kvd);
  s.v.resize(static_cast<size_t>(m) * kvd);
  s.att.resize(static_cast<size_t>(m) * qd);

  for_rows(m, [&](int i) { rmsnorm(h + int64_t{i} * d, L.attn_norm, s.xn.data() + int64_t{i} * d, d, c_.rms_eps); });
  const MatmulTarget qkv[] = {{L.wq, s.q.data(), qd}, {L.wk, s.k.data(), kvd}, {L.wv, s.v.data(), kvd}};
  matmul_shared_input(qkv, s.xn.data(), m, d, pool_, precision_);
  for_rows(m, [&](int i) {
    float* qi = s.q.data() + int64_t{i} * qd;
    float* ki = s.k.data() + int64_t{i} * kvd;
    float* vi = s.v.data() + int64_t{i} * kvd;
    if (L.bq) {
      add_inplace(qi, L.bq, qd);
      add_inplace(ki, L.bk, kvd);
      add_inplace(vi, L.bv, kvd);
    }
    rope_.apply(qi, c_.n_heads, pos[i]);
    rope_.apply(ki, c_.n_kv_heads, pos[i]);
  });

  const int n_old = kv_.layer(l).size();
  kv_.layer(l).reserve_more(m);
  for (int i = 0; i < m; ++i) kv_.write(l, slot0 + i, pos[i], s.k.data() + int64_t{i} * kvd, s.v.data() + int64_t{i} * kvd);

  if (!key_slots.empty()) {
    attention_decode(l, key_slots, row_keys, s.q.data(), m, s.att.data(), want_importance);
  } else {
    attention_prefill(l, n_old, s.q.data(), m, s.att.data(), want_importance);
  }

  // Output projection and residual (xn is free again and has room for m x d).
  matmul(L.wo, s.att.data(), m, qd, s.xn.data(), d, pool_, precision_);
  for_rows(m, [&](int i) { add_inplace(h + int64_t{i} * d, s.xn.data() + int64_t{i} * d, d); });

  // SwiGLU feed-forward, in row chunks so the n_ff-wide buffers stay bounded.
  const int ff = c_.n_ff;
  for (int r0 = 0; r0 < m; r0 += kFfnChunkRows) {
    const int rm = std::min(kFfnChunkRows, m - r0);
    s.gate.resize(static_cast<size_t>(rm) * ff);
    s.up.resize(static_cast<size_t>(rm) * ff);
    s.ffn_out.resize(static_cast<size_t>(rm) * d);
    float* hc = h + int64_t{r0} * d;
    for_rows(rm, [&](int i) { rmsnorm(hc + int64_t{i} * d, L.ffn_norm, s.xn.data() + int64_t{i} * d, d, c_.rms_eps); });
    const MatmulTarget gate_up[] = {{L.w_gate, s.gate.data(), ff}, {L.w_up, s.up.data(), ff}};
    matmul_shared_input(gate_up, s.xn.data(), rm, d, pool_, precision_);
    for_rows(rm, [&](int i) { silu_mul(s.gate.data() + int64_t{i} * ff, s.up.data() + int64_t{i} * ff, ff); });
    matmul(L.w_down, s.gate.data(), rm, ff, s.ffn_out.data(), d, pool_, precision_);
    for_rows(rm, [&](int i) { add_inplace(hc + int64_t{i} * d, s.ffn_out.data() + int64_t{i} * d, d); });
  }
}

// ------------------------------------------------------------------ attention

// Prefill: the m new rows are the last m slots of the layer, in position order; every older slot
// has a smaller position. Row i sees the old slots and new slots up to itself. Scores and the
// weighted sum are matrix products per (head, block of query rows). Q and the probabilities are
// rounded to half precision before meeting the half-precision K and V, as llama.cpp does with its
// f16 cache, so results agree with it closely.
void CpuForward::attention_prefill(int l, int n_old, float* q, int m, float* out, bool want_importance) {
  const LayerKV& kv = kv_.layer(l);
  const int kvd = c_.n_kv_heads * c_.head_dim;
  const int n_keys = n_old + m;
  Scratch& s = *s_;
  const bool f16 = kv.is_f16();
  if (f16) {
    s.kf.resize(static_cast<size_t>(n_keys) * kvd);
    s.vf.resize(static_cast<size_t>(n_keys) * kvd);
    constexpr int conv_rows = 256;
    pool_.parallel_for((n_keys + conv_rows - 1) / conv_rows, [&](int64_t task, int) {
      const int j0 = static_cast<int>(task) * conv_rows, j1 = std::min(n_keys, j0 + conv_rows);
      f16_to_f32(kv.k16(j0), s.kf.data() + int64_t{j0} * kvd, int64_t{j1 - j0} * kvd);
      f16_to_f32(kv.v16(j0), s.vf.data() + int64_t{j0} * kvd, int64_t{j1 - j0} * kvd);
    });
  }
  std::vector<int32_t> visible(m);
  for (int r = 0; r < m; ++r) visible[r] = n_old + r + 1;
  attention_gemm(q, m, f16 ? s.kf.data() : kv.k32(0), f16 ? s.vf.data() : kv.v32(0), n_keys, visible.data(), out,
                 want_importance, f16);
}

void CpuForward::attention_gemm(float* q, int m, const float* kf, const float* vf, int n_keys, const int32_t* visible,
                                float* out, bool want_importance, bool f16) {
  const int hd = c_.head_dim, qd = c_.n_heads * hd, kvd = c_.n_kv_heads * hd;
  const int group = c_.n_heads / c_.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int n_blocks = (m + kAttnBlockRows - 1) / kAttnBlockRows;
  Scratch& s = *s_;
  if (want_importance) s.imp_heads.assign(static_cast<size_t>(c_.n_heads) * n_keys, 0.0f);
  if (f16) pool_.parallel_for(m, [&](int64_t i, int) { round_to_f16(q + i * qd, qd); });

  pool_.parallel_for(int64_t{n_blocks} * c_.n_heads, [&](int64_t task, int thread) {
    const int b = n_blocks - 1 - static_cast<int>(task / c_.n_heads);  // longest rows first
    const int h = static_cast<int>(task % c_.n_heads), g = h / group;
    const int r0 = b * kAttnBlockRows, rm = std::min(kAttnBlockRows, m - r0);
    const int kmax = visible[r0 + rm - 1];
    std::vector<float>& sc = s.per_thread[thread];
    if (sc.size() < static_cast<size_t>(rm) * kmax) sc.resize(static_cast<size_t>(rm) * kmax);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rm, kmax, hd, 1.0f, q + int64_t{r0} * qd + h * hd, qd,
                kf + g * hd, kvd, 0.0f, sc.data(), kmax);
    for (int r = 0; r < rm; ++r) {
      float* row = sc.data() + int64_t{r} * kmax;
      const int vis = visible[r0 + r];
      for (int j = 0; j < vis; ++j) row[j] *= scale;
      softmax_inplace(row, vis);
      std::fill(row + vis, row + kmax, 0.0f);
      if (want_importance && r0 + r == m - 1)
        std::copy(row, row + kmax, s.imp_heads.data() + int64_t{h} * n_keys);
      if (f16) round_to_f16(row, vis);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rm, hd, kmax, 1.0f, sc.data(), kmax,
                vf + g * hd, kvd, 0.0f, out + int64_t{r0} * qd + h * hd, qd);
  });
  if (want_importance) average_importance(n_keys);
}

// Decode: queries attend to the listed slots only (the selected set), masked by position. The
// new token alone (a plain decode step) reads the half-precision rows directly; a batch with
// revived rows gathers the listed keys once and runs the prefill's matrix products.
void CpuForward::attention_decode(int l, std::span<const int32_t> slots, const int32_t* visible, float* q, int m,
                                  float* out, bool want_importance) {
  const LayerKV& kv = kv_.layer(l);
  const int hd = c_.head_dim, qd = c_.n_heads * hd;
  const int group = c_.n_heads / c_.n_kv_heads;
  const int n_keys = static_cast<int>(slots.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Scratch& s = *s_;
  const bool f16 = kv.is_f16();
  const int kvd = kv.kv_dim();

  // visible[r]: the keys row r sees (the plan's row_keys: keys are by position, so a prefix).
  if (m >= kBatchedDecodeRows) {
    s.kf.resize(static_cast<size_t>(n_keys) * kvd);
    s.vf.resize(static_cast<size_t>(n_keys) * kvd);
    constexpr int conv_rows = 64;
    pool_.parallel_for((n_keys + conv_rows - 1) / conv_rows, [&](int64_t task, int) {
      const int j0 = static_cast<int>(task) * conv_rows, j1 = std::min(n_keys, j0 + conv_rows);
      for (int j = j0; j < j1; ++j) {
        float* kd = s.kf.data() + int64_t{j} * kvd;
        float* vd = s.vf.data() + int64_t{j} * kvd;
        if (f16) {
          f16_to_f32(kv.k16(slots[j]), kd, kvd);
          f16_to_f32(kv.v16(slots[j]), vd, kvd);
        } else {
          std::copy(kv.k32(slots[j]), kv.k32(slots[j]) + kvd, kd);
          std::copy(kv.v32(slots[j]), kv.v32(slots[j]) + kvd, vd);
        }
      }
    });
    attention_gemm(q, m, s.kf.data(), s.vf.data(), n_keys, visible, out, want_importance, f16);
    return;
  }

  if (want_importance) s.imp_heads.assign(static_cast<size_t>(c_.n_heads) * n_keys, 0.0f);
  if (f16) round_to_f16(q, int64_t{m} * qd);
  pool_.parallel_for(int64_t{m} * c_.n_heads, [&](int64_t task, int thread) {
    const int r = static_cast<int>(task / c_.n_heads), h = static_cast<int>(task % c_.n_heads);
    const int g = h / group, nv = visible[r];
    const float* qh = q + int64_t{r} * qd + h * hd;
    std::vector<float>& sc = s.per_thread[thread];
    if (sc.size() < static_cast<size_t>(n_keys)) sc.resize(n_keys);
    if (f16) dot_rows_f16(kv.k16(0) + g * hd, kvd, slots.data(), nv, qh, hd, sc.data());
    else dot_rows_f32(kv.k32(0) + g * hd, kvd, slots.data(), nv, qh, hd, sc.data());
    for (int j = 0; j < nv; ++j) sc[j] *= scale;
    std::fill(sc.begin() + nv, sc.begin() + n_keys, 0.0f);
    softmax_inplace(sc.data(), nv);
    if (want_importance && r == m - 1) std::copy(sc.begin(), sc.begin() + n_keys, s.imp_heads.begin() + int64_t{h} * n_keys);
    float* o = out + int64_t{r} * qd + h * hd;
    if (f16) {
      round_to_f16(sc.data(), nv);
      weighted_sum_rows_f16(kv.v16(0) + g * hd, kvd, slots.data(), nv, sc.data(), hd, o);
    } else {
      weighted_sum_rows_f32(kv.v32(0) + g * hd, kvd, slots.data(), nv, sc.data(), hd, o);
    }
  });
  if (want_importance) average_importance(n_keys);
}

void CpuForward::average_importance(int n_keys) {
  importance_.assign(n_keys, 0.0f);
  for (int h = 0; h < c_.n_heads; ++h)
    for (int j = 0; j < n_keys; ++j) importance_[j] += s_->imp_heads[int64_t{h} * n_keys + j];
  for (float& x : importance_) x /= static_cast<float>(c_.n_heads);
}

// ------------------------------------------------------------------ prefill

void CpuForward::prefill(std::span<const int32_t> tokens, const LayerSchedule& sched,
                         const std::function<void(int, int)>& progress) {
  std::vector<int> size_before(c_.n_layers);
  for (int l = 0; l < c_.n_layers; ++l) size_before[l] = kv_.layer(l).size();
  run_prefill(*this, kv_.index(), counters_, tokens, n_past_, c_.n_vocab, sched, progress);
  for (int l = 0; l < c_.n_layers; ++l) kv_.check_follows_index(l, size_before[l]);
  n_past_ += static_cast<int>(tokens.size());
}

void CpuForward::prefill_embed(std::span<const int32_t> tokens, std::span<const int32_t> pos, const PrefillPlan&) {
  const int n = static_cast<int>(tokens.size()), d = c_.n_embd;
  s_->hidden.resize(static_cast<size_t>(n) * d);
  lists_.assign(pos.begin(), pos.end());
  list_ = 0;
  prefill_n_ = n;
  for (int i = 0; i < n; ++i) embed(tokens[i], s_->hidden.data() + int64_t{i} * d);
}

void CpuForward::prefill_select(int l, int na, int n_keep, std::span<const int32_t> dest) {
  const int d = c_.n_embd;
  const size_t n = prefill_n_;
  std::vector<int32_t> to(dest.begin(), dest.end());
  if (to.empty()) {
    // The last token's attention at layer l - 1 over that layer's slots; the rows held
    // slot0_ .. slot0_ + na - 1.
    const std::span<const float> score(importance_.data() + slot0_, na - 1);
    const std::vector<int> kept = select_top(score, n_keep - 1);
    to.assign(na, -1);
    for (size_t j = 0; j < kept.size(); ++j) to[kept[j]] = static_cast<int32_t>(j);
    to[na - 1] = n_keep - 1;
  }
  lists_.resize((list_ + 2) * n);
  const int32_t* alive = lists_.data() + list_ * n;
  int32_t* next = lists_.data() + (list_ + 1) * n;
  float* h = s_->hidden.data();
  // Kept rows move down in order (to[i] <= i); the others enter the Aux Cache as they are.
  for (int i = 0; i < na; ++i) {
    const float* row = h + int64_t{i} * d;
    if (to[i] >= 0) {
      if (to[i] != i) std::copy(row, row + d, h + int64_t{to[i]} * d);
      next[to[i]] = alive[i];
    } else {
      aux_.put(alive[i], row);
    }
  }
  ++list_;
}

void CpuForward::prefill_layer(int l, int m, int slot0, bool want_importance) {
  slot0_ = slot0;
  layer_forward(l, s_->hidden.data(), m, lists_.data() + list_ * prefill_n_, slot0, want_importance);
}

std::span<const int32_t> CpuForward::prefill_finish(const PrefillPlan& plan, int) {
  compute_logits(s_->hidden.data() + static_cast<size_t>(plan.count.back() - 1) * c_.n_embd);
  return lists_;
}

// ------------------------------------------------------------------ decode

void CpuForward::decode(int32_t token, const LayerSchedule& sched) {
  const int d = c_.n_embd, n_layers = c_.n_layers;
  const int p = n_past_;
  if (p >= n_ctx_) throw Error("context is full (" + std::to_string(n_ctx_) + " tokens)");
  if (token < 0 || token >= c_.n_vocab) throw Error("token id " + std::to_string(token) + " is out of the vocabulary");

  DecodeStep step(kv_.index(), counters_, sched, p);
  // rows: the hidden states entering the current layer of the rows the plan computes there;
  // the previous layer's rows move into it as the plan says.
  std::vector<float>& rows = s_->batch;
  std::vector<float> prev(d);
  embed(token, prev.data());
  std::span<const float> importance;
  if (record_selection_) selection_.assign(n_layers, {});

  for (int l = 0; l < n_layers; ++l) {
    const DecodeLayerPlan& plan = step.next_layer(importance);
    for (size_t i = 0; i < plan.stop_rows.size(); ++i)
      aux_.put(plan.stop_tokens[i], prev.data() + int64_t{plan.stop_rows[i]} * d);
    const int m = static_cast<int>(plan.rows.size());
    rows.resize(static_cast<size_t>(m) * d);
    for (int i = 0; i < m; ++i) {
      const float* src = plan.row_src[i] >= 0 ? prev.data() + int64_t{plan.row_src[i]} * d : aux_.get(plan.rows[i]);
      std::copy(src, src + d, rows.data() + int64_t{i} * d);
    }
    layer_forward(l, rows.data(), m, plan.rows.data(), plan.slot0, plan.want_importance, plan.key_slots,
                  plan.row_keys.data());
    importance = importance_;
    if (record_selection_) selection_[l].assign(step.selected().begin(), step.selected().end());
    prev.swap(rows);
  }
  // Rows still carried after the last layer now have K/V at every layer: nothing to keep.
  compute_logits(prev.data() + (prev.size() / d - 1) * d);
  ++n_past_;
}

void CpuForward::compute_kv(int l, const float* hidden, int32_t pos, float* k, float* v) {
  const LayerWeights& L = w_.layers[l];
  const int d = c_.n_embd, kvd = c_.n_kv_heads * c_.head_dim;
  std::vector<float> xn(d);
  rmsnorm(hidden, L.attn_norm, xn.data(), d, c_.rms_eps);
  const MatmulTarget kv[] = {{L.wk, k, kvd}, {L.wv, v, kvd}};
  matmul_shared_input(kv, xn.data(), 1, d, pool_, precision_);
  if (L.bk) {
    add_inplace(k, L.bk, kvd);
    add_inplace(v, L.bv, kvd);
  }
  rope_.apply(k, c_.n_kv_heads, pos);
}

}  // namespace lazyllm
