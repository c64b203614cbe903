#include "runtime/cpu/cpu_forward.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cpu/attention_heads.h"
#include "kernels/cpu/attention_products.h"
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
// Decode batches from this many rows attend by matrix products over keys converted to float once
// per layer; smaller ones (a budgeted re-selection's steps carry 1-5 rows) read the half-precision
// keys directly, per row and head, which costs less than converting every listed key.
constexpr int kBatchedDecodeRows = 8;

}  // namespace

struct CpuForward::Scratch {
  std::vector<float> hidden, batch, prev, kf, vf;
  std::vector<std::vector<float>> per_thread;       // attention score rows
  std::vector<std::vector<float>> pack_per_thread;  // and the keys or values packed for their products
  std::vector<float> imp_heads;                // last row's probabilities, per head
};

CpuForward::CpuForward(const Model& model, int n_ctx, bool kv_f16, ThreadPool& pool)
    : model_(model),
      c_(model.config()),
      w_(model.weights()),
      pool_(pool),
      n_ctx_(n_ctx),
      ops_(model, pool),
      kv_(c_.n_layers, c_.n_kv_heads * c_.head_dim, n_ctx, kv_f16),
      aux_(c_.n_embd, kv_.index()),
      s_(std::make_unique<Scratch>()) {
  use_single_threaded_blas();  // attention's cblas calls (where no f32 kernel runs) run inside our pool's tasks
  s_->per_thread.resize(pool.size());
  s_->pack_per_thread.resize(pool.size());
}

CpuForward::~CpuForward() {
  if (kv_pool_) kv_pool_->give(kv_pool_->pages_for(kv_reserved_));
}

Session::DeviceMemory CpuForward::held_memory() const {
  Session::DeviceMemory m;
  m.kv_cache = kv_.bytes();
  m.aux_cache = aux_.capacity_bytes();
  const Scratch& s = *s_;
  size_t floats = importance_.capacity() + logits_.capacity();
  for (const auto* v : {&s.hidden, &s.batch, &s.prev, &s.kf, &s.vf, &s.imp_heads}) floats += v->capacity();
  for (const auto& v : s.per_thread) floats += v.capacity();
  for (const auto& v : s.pack_per_thread) floats += v.capacity();
  m.scratch = static_cast<int64_t>(floats * sizeof(float) + lists_.capacity() * sizeof(int32_t)) + ops_.held_bytes();
  return m;
}

void CpuForward::clear() {
  abandon_step();
  n_past_ = 0;
  kv_.clear();
  counters_ = {};
  logits_.clear();
  selection_.clear();
}

bool CpuForward::reserve_kv(int tokens) {
  tokens = std::min(tokens, n_ctx_);
  if (!kv_pool_ || tokens <= kv_reserved_) return true;
  if (!kv_pool_->take(kv_pool_->pages_for(tokens) - kv_pool_->pages_for(kv_reserved_))) return false;
  kv_.reserve(tokens);
  kv_reserved_ = tokens;
  return true;
}

void CpuForward::release_kv() {
  clear();
  kv_.release();
  if (kv_pool_) kv_pool_->give(kv_pool_->pages_for(kv_reserved_));
  kv_reserved_ = 0;
}

bool CpuForward::keep_prefix(int n) {
  abandon_step();
  if (!kv_.keep_prefix(n)) return false;
  n_past_ = n;
  counters_ = {};
  logits_.clear();
  selection_.clear();
  return true;
}

bool CpuForward::copy_prefix_from(const ForwardBackend& src, int n) {
  clear();
  const auto* from = dynamic_cast<const CpuForward*>(&src);
  if (!from || from == this || &from->model_ != &model_ || !reserve_kv(n) || !kv_.copy_prefix(from->kv_, n))
    return false;
  n_past_ = n;
  return true;
}

void CpuForward::embed(int32_t token, float* out) const {
  const WeightView& e = w_.token_embd;
  dequantize_row(e.type, e.data + token * e.row_stride(), out, c_.n_embd);
}

// ------------------------------------------------------------------ one layer

void CpuForward::layer_forward(int l) {
  const LayerRows r = layer_rows(l);
  ops_.pre_attention(l, r.h, r.m, r.pos);
  float* att = ops_.att_buffer(r.m);
  attend(l, ops_.q(), ops_.k(), ops_.v(), att);
  ops_.post_attention(l, r.h, r.m, att);
  end_layer(l);
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
    std::vector<float>& pack = s.pack_per_thread[thread];
    kernels::attention_scores(q + int64_t{r0} * qd + h * hd, qd, rm, kf + g * hd, kvd, kmax, hd, sc.data(), kmax, pack);
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
    kernels::attention_values(sc.data(), kmax, rm, vf + g * hd, kvd, kmax, hd, out + int64_t{r0} * qd + h * hd, qd,
                              pack);
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
  // A task takes a block of the query heads of one K/V head, which share each key and value row's
  // loading (attention_heads.h); blocks split a group only as far as keeps every thread busy.
  const int n_kv = c_.n_kv_heads;
  const int splits = std::clamp((2 * pool_.size() + m * n_kv - 1) / (m * n_kv), 1, group);
  const int per = (group + splits - 1) / splits, blocks = (group + per - 1) / per;
  pool_.parallel_for(int64_t{m} * n_kv * blocks, [&](int64_t task, int thread) {
    const int r = static_cast<int>(task / (n_kv * blocks)), rest = static_cast<int>(task % (n_kv * blocks));
    const int g = rest / blocks, h0 = g * group + (rest % blocks) * per;
    const int nh = std::min(per, (g + 1) * group - h0), nv = visible[r];
    const float* qh = q + int64_t{r} * qd + h0 * hd;
    float* o = out + int64_t{r} * qd + h0 * hd;
    std::vector<float>& sc = s.per_thread[thread];
    if (sc.size() < static_cast<size_t>(nh) * n_keys) sc.resize(static_cast<size_t>(nh) * n_keys);
    if (f16) kernels::dot_rows_f16_heads(kv.k16(0) + g * hd, kvd, slots.data(), nv, qh, hd, nh, hd, sc.data(), n_keys);
    else
      for (int i = 0; i < nh; ++i)
        dot_rows_f32(kv.k32(0) + g * hd, kvd, slots.data(), nv, qh + i * hd, hd, sc.data() + int64_t{i} * n_keys);
    for (int i = 0; i < nh; ++i) {
      float* row = sc.data() + int64_t{i} * n_keys;
      for (int j = 0; j < nv; ++j) row[j] *= scale;
      std::fill(row + nv, row + n_keys, 0.0f);
      softmax_inplace(row, nv);
      if (want_importance && r == m - 1) std::copy(row, row + n_keys, s.imp_heads.begin() + int64_t{h0 + i} * n_keys);
      if (f16) round_to_f16(row, nv);
    }
    if (f16)
      kernels::weighted_sum_rows_f16_heads(kv.v16(0) + g * hd, kvd, slots.data(), nv, sc.data(), n_keys, nh, hd, o, hd);
    else
      for (int i = 0; i < nh; ++i)
        weighted_sum_rows_f32(kv.v32(0) + g * hd, kvd, slots.data(), nv, sc.data() + int64_t{i} * n_keys, hd,
                              o + i * hd);
  });
  if (want_importance) average_importance(n_keys);
}

void CpuForward::average_importance(int n_keys) {
  importance_.assign(n_keys, 0.0f);
  for (int h = 0; h < c_.n_heads; ++h)
    for (int j = 0; j < n_keys; ++j) importance_[j] += s_->imp_heads[int64_t{h} * n_keys + j];
  for (float& x : importance_) x /= static_cast<float>(c_.n_heads);
}

// ------------------------------------------------------------------ steps

void CpuForward::check_decode(int32_t token) const {
  if (n_past_ >= n_ctx_) throw Error("context is full (" + std::to_string(n_ctx_) + " tokens)");
  if (token < 0 || token >= c_.n_vocab) throw Error("token id " + std::to_string(token) + " is out of the vocabulary");
}

void CpuForward::check_prefill(std::span<const int32_t> tokens) const {
  lazyllm::check_prefill(tokens, n_past_, n_ctx_, c_.n_vocab);
}

void CpuForward::begin_prefill(std::span<const int32_t> tokens, const LayerSchedule& sched) {
  if (walk_ || step_) throw std::logic_error("CpuForward: a step is already under way");
  size_before_.resize(c_.n_layers);
  for (int l = 0; l < c_.n_layers; ++l) size_before_[l] = kv_.layer(l).size();
  step_tokens_ = static_cast<int>(tokens.size());
  walk_.emplace(static_cast<PrefillDevice&>(*this), kv_.index(), counters_, tokens, n_past_, c_.n_vocab, sched);
}

void CpuForward::begin_decode(int32_t token, const LayerSchedule& sched) {
  if (walk_ || step_) throw std::logic_error("CpuForward: a step is already under way");
  check_decode(token);
  step_.emplace(kv_.index(), counters_, sched, n_past_);
  // prev: the hidden states entering the current layer of the rows the plan computes there.
  s_->prev.resize(c_.n_embd);
  embed(token, s_->prev.data());
  importance_in_ = {};
  if (record_selection_) selection_.assign(c_.n_layers, {});
}

CpuForward::LayerRows CpuForward::layer_rows(int l) {
  if (walk_) {
    prefill_layer_ = walk_->begin_layer(l);
    slot0_ = prefill_layer_.slot0;
    return {s_->hidden.data(), prefill_layer_.n_rows, lists_.data() + list_ * prefill_n_};
  }
  if (!step_) throw std::logic_error("CpuForward: no step under way");
  // The previous layer's rows move into this one as the plan says.
  const int d = c_.n_embd;
  const DecodeLayerPlan& plan = step_->next_layer(importance_in_);
  decode_plan_ = &plan;
  const std::vector<float>& prev = s_->prev;
  for (size_t i = 0; i < plan.stop_rows.size(); ++i)
    aux_.put(plan.stop_tokens[i], prev.data() + int64_t{plan.stop_rows[i]} * d);
  const int m = static_cast<int>(plan.rows.size());
  std::vector<float>& rows = s_->batch;
  rows.resize(static_cast<size_t>(m) * d);
  for (int i = 0; i < m; ++i) {
    const float* src = plan.row_src[i] >= 0 ? prev.data() + int64_t{plan.row_src[i]} * d : aux_.get(plan.rows[i]);
    std::copy(src, src + d, rows.data() + int64_t{i} * d);
  }
  return {rows.data(), m, plan.rows.data()};
}

void CpuForward::attend(int l, float* q, const float* k, const float* v, float* out) {
  const int kvd = c_.n_kv_heads * c_.head_dim;
  const bool prefill = walk_.has_value();
  const int m = prefill ? prefill_layer_.n_rows : static_cast<int>(decode_plan_->rows.size());
  const int slot0 = prefill ? prefill_layer_.slot0 : decode_plan_->slot0;
  const int32_t* pos = prefill ? lists_.data() + list_ * prefill_n_ : decode_plan_->rows.data();
  const int n_old = kv_.layer(l).size();
  kv_.layer(l).reserve_more(m);
  for (int i = 0; i < m; ++i) kv_.write(l, slot0 + i, pos[i], k + int64_t{i} * kvd, v + int64_t{i} * kvd);
  if (prefill) {
    // Every slot of the layer up to each row's own.
    attention_prefill(l, n_old, q, m, out, prefill_layer_.want_importance);
  } else {
    attention_decode(l, decode_plan_->key_slots, decode_plan_->row_keys.data(), q, m, out,
                     decode_plan_->want_importance);
  }
}

void CpuForward::end_layer(int) {
  if (walk_) return;
  importance_in_ = importance_;
  if (record_selection_) selection_[decode_plan_->layer].assign(step_->selected().begin(), step_->selected().end());
  s_->prev.swap(s_->batch);
}

const float* CpuForward::final_row() const {
  const int d = c_.n_embd;
  if (walk_) return s_->hidden.data() + static_cast<size_t>(walk_->plan().count.back() - 1) * d;
  // Rows still carried after the last layer now have K/V at every layer: nothing to keep.
  return s_->prev.data() + (s_->prev.size() / d - 1) * d;
}

float* CpuForward::logits_buffer() {
  logits_.resize(c_.n_vocab);
  return logits_.data();
}

void CpuForward::end_step() {
  if (walk_) {
    walk_->finish();
    for (int l = 0; l < c_.n_layers; ++l) kv_.check_follows_index(l, size_before_[l]);
    n_past_ += step_tokens_;
    walk_.reset();
  } else {
    ++n_past_;
    step_.reset();
    decode_plan_ = nullptr;
  }
}

void CpuForward::abandon_step() {
  walk_.reset();
  step_.reset();
  decode_plan_ = nullptr;
}

void CpuForward::prefill(std::span<const int32_t> tokens, const LayerSchedule& sched,
                         const std::function<void(int, int)>& progress) {
  try {
    begin_prefill(tokens, sched);
    for (int l = 0; l < c_.n_layers; ++l) {
      layer_forward(l);
      if (progress) progress(l + 1, c_.n_layers);
    }
    ops_.logits(final_row(), 1, logits_buffer());
    end_step();
  } catch (...) {
    abandon_step();
    throw;
  }
}

void CpuForward::decode(int32_t token, const LayerSchedule& sched) {
  try {
    begin_decode(token, sched);
    for (int l = 0; l < c_.n_layers; ++l) layer_forward(l);
    ops_.logits(final_row(), 1, logits_buffer());
    end_step();
  } catch (...) {
    abandon_step();
    throw;
  }
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

void CpuForward::prefill_layer(int, int, int, bool) {
  // prefill() computes each layer itself (layer_forward), between the walk's begin_layer calls.
  throw std::logic_error("CpuForward::prefill_layer: not used");
}

std::span<const int32_t> CpuForward::prefill_finish(const PrefillPlan&, int) { return lists_; }

void CpuForward::compute_kv(int l, const float* hidden, int32_t pos, float* k, float* v) {
  const LayerWeights& L = w_.layers[l];
  const int d = c_.n_embd, kvd = c_.n_kv_heads * c_.head_dim;
  std::vector<float> xn(d);
  rmsnorm(hidden, L.attn_norm, xn.data(), d, c_.rms_eps);
  const MatmulTarget kv[] = {{L.wk, k, kvd}, {L.wv, v, kvd}};
  matmul_shared_input(kv, xn.data(), 1, d, pool_, ops_.precision());
  if (L.bk) {
    add_inplace(k, L.bk, kvd);
    add_inplace(v, L.bv, kvd);
  }
  ops_.rope().apply(k, c_.n_kv_heads, pos);
}

}  // namespace lazyllm
