// A naive float64 reference of the model and of the whole LazyLLM procedure, written
// independently of the engine (straight loops, one token at a time, no caches shared with it).
// Weights come from the engine's dequantizer, which has its own tests against spec decoders.
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "kernels/cpu/quant.h"
#include "lazyllm/lazyllm.h"
#include "model/weights.h"

namespace lazyllm::test {

using Vec = std::vector<double>;

struct RefMatrix {
  int rows = 0, cols = 0;
  std::vector<double> w;
  Vec apply(const Vec& x) const {
    Vec y(rows, 0.0);
    for (int r = 0; r < rows; ++r) {
      double s = 0;
      for (int c = 0; c < cols; ++c) s += w[size_t(r) * cols + c] * x[c];
      y[r] = s;
    }
    return y;
  }
};

inline RefMatrix ref_matrix(const WeightView& v) {
  RefMatrix m{static_cast<int>(v.rows), static_cast<int>(v.cols), {}};
  m.w.resize(size_t(v.rows) * v.cols);
  std::vector<float> row(v.cols);
  for (int64_t r = 0; r < v.rows; ++r) {
    dequantize_row(v.type, v.data + r * v.row_stride(), row.data(), v.cols);
    for (int64_t c = 0; c < v.cols; ++c) m.w[size_t(r) * v.cols + c] = row[c];
  }
  return m;
}

inline Vec ref_vec(const float* p, int n) { return Vec(p, p + n); }

class ReferenceModel {
 public:
  explicit ReferenceModel(const Model& model) : c_(model.config()) {
    const ModelWeights& w = model.weights();
    embd_ = ref_matrix(w.token_embd);
    out_ = ref_matrix(w.output);
    out_norm_ = ref_vec(w.output_norm, c_.n_embd);
    for (const LayerWeights& L : w.layers) {
      Layer r;
      r.attn_norm = ref_vec(L.attn_norm, c_.n_embd);
      r.ffn_norm = ref_vec(L.ffn_norm, c_.n_embd);
      r.wq = ref_matrix(L.wq); r.wk = ref_matrix(L.wk); r.wv = ref_matrix(L.wv); r.wo = ref_matrix(L.wo);
      r.wg = ref_matrix(L.w_gate); r.wu = ref_matrix(L.w_up); r.wd = ref_matrix(L.w_down);
      if (L.bq) {
        r.bq = ref_vec(L.bq, r.wq.rows); r.bk = ref_vec(L.bk, r.wk.rows); r.bv = ref_vec(L.bv, r.wv.rows);
      }
      layers_.push_back(std::move(r));
    }
    // Rotary frequencies straight from the definitions (base^(-2i/d), linear or llama3 scaling).
    const int half = c_.head_dim / 2;
    inv_freq_.resize(half);
    for (int i = 0; i < half; ++i) {
      double f = std::pow(double(c_.rope_base), -2.0 * i / c_.head_dim);
      if (c_.rope_scaling == "linear") f /= c_.rope_scale_factor;
      if (!w.rope_freq_factors.empty()) f /= w.rope_freq_factors[i];
      inv_freq_[i] = f;
    }
  }

  const ModelConfig& config() const { return c_; }

  // ---- building blocks
  Vec embed(int token) const {
    return Vec(embd_.w.begin() + size_t(token) * c_.n_embd, embd_.w.begin() + size_t(token + 1) * c_.n_embd);
  }
  Vec rmsnorm(const Vec& x, const Vec& w) const {
    double ss = 0;
    for (double v : x) ss += v * v;
    double s = 1.0 / std::sqrt(ss / x.size() + c_.rms_eps);
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
    return y;
  }
  void rope(Vec& x, int n_heads, int pos) const {
    const int hd = c_.head_dim, half = hd / 2;
    for (int h = 0; h < n_heads; ++h)
      for (int i = 0; i < half; ++i) {
        int a = c_.rope_neox ? h * hd + i : h * hd + 2 * i;
        int b = c_.rope_neox ? a + half : a + 1;
        double th = pos * inv_freq_[i], x0 = x[a], x1 = x[b];
        x[a] = x0 * std::cos(th) - x1 * std::sin(th);
        x[b] = x0 * std::sin(th) + x1 * std::cos(th);
      }
  }
  struct KV {
    Vec k, v;
  };
  KV kv(int l, const Vec& h, int pos) const {
    const Layer& L = layers_[l];
    Vec xn = rmsnorm(h, L.attn_norm);
    KV r{L.wk.apply(xn), L.wv.apply(xn)};
    if (!L.bk.empty())
      for (size_t i = 0; i < r.k.size(); ++i) r.k[i] += L.bk[i], r.v[i] += L.bv[i];
    rope(r.k, c_.n_kv_heads, pos);
    return r;
  }
  // Layer l for one token whose K/V are already among `keys` (given as (pos, KV*) pairs);
  // returns the output hidden state and, in `probs`, the head-averaged attention per key.
  Vec layer(int l, const Vec& h, int pos, const std::vector<std::pair<int, const KV*>>& keys, Vec* probs) const {
    const Layer& L = layers_[l];
    const int hd = c_.head_dim, group = c_.n_heads / c_.n_kv_heads;
    Vec xn = rmsnorm(h, L.attn_norm);
    Vec q = L.wq.apply(xn);
    if (!L.bq.empty())
      for (size_t i = 0; i < q.size(); ++i) q[i] += L.bq[i];
    rope(q, c_.n_heads, pos);
    Vec att(q.size(), 0.0);
    if (probs) probs->assign(keys.size(), 0.0);
    for (int hh = 0; hh < c_.n_heads; ++hh) {
      const int g = hh / group;
      Vec sc(keys.size(), -INFINITY);
      double mx = -INFINITY;
      for (size_t j = 0; j < keys.size(); ++j) {
        if (keys[j].first > pos) continue;
        double s = 0;
        for (int i = 0; i < hd; ++i) s += q[hh * hd + i] * keys[j].second->k[g * hd + i];
        sc[j] = s / std::sqrt(double(hd));
        mx = std::max(mx, sc[j]);
      }
      double sum = 0;
      for (double& s : sc) sum += (s = std::isinf(s) ? 0.0 : std::exp(s - mx));
      for (size_t j = 0; j < keys.size(); ++j) {
        double p = sc[j] / sum;
        if (probs) (*probs)[j] += p / c_.n_heads;
        for (int i = 0; i < hd; ++i) att[hh * hd + i] += p * keys[j].second->v[g * hd + i];
      }
    }
    Vec o = L.wo.apply(att), x = h;
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    Vec xn2 = rmsnorm(x, L.ffn_norm);
    Vec g = L.wg.apply(xn2), u = L.wu.apply(xn2);
    for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    Vec dn = L.wd.apply(g);
    for (size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
    return x;
  }
  Vec logits(const Vec& h) const { return out_.apply(rmsnorm(h, out_norm_)); }

 private:
  struct Layer {
    Vec attn_norm, ffn_norm, bq, bk, bv;
    RefMatrix wq, wk, wv, wo, wg, wu, wd;
  };
  ModelConfig c_;
  RefMatrix embd_, out_;
  Vec out_norm_;
  std::vector<Layer> layers_;
  std::vector<double> inv_freq_;
};

// The LazyLLM procedure over a token sequence, in float64: per (token, layer) hidden states,
// KV present only where computed. Baseline = a schedule of all 1.0.
class ReferenceLazy {
 public:
  ReferenceLazy(const ReferenceModel& m, std::vector<double> keep)
      : m_(m), keep_(std::move(keep)), L_(m.config().n_layers) {}

  // Returns the last token's logits after prefill.
  Vec prefill(const std::vector<int>& tokens) {
    const int n = static_cast<int>(tokens.size());
    grow(n);
    std::vector<int> alive(n);
    for (int t = 0; t < n; ++t) alive[t] = t, hidden_[t][0] = m_.embed(tokens[t]);
    Vec imp;  // importance over `alive` tokens from the previous layer
    alive_per_layer.assign(L_, 0);
    for (int l = 0; l < L_; ++l) {
      if (l > 0 && keep_[l] < 1) alive = select(alive, imp, keep_[l], true);
      alive_per_layer[l] = static_cast<int>(alive.size());
      for (int t : alive) kv_[l][t] = std::make_unique<ReferenceModel::KV>(m_.kv(l, hidden_[t][l], t));
      std::vector<std::pair<int, const ReferenceModel::KV*>> keys;
      for (int t : alive) keys.push_back({t, kv_[l][t].get()});
      for (int t : alive) {
        Vec probs;
        hidden_[t][l + 1] = m_.layer(l, hidden_[t][l], t, keys, t == alive.back() ? &probs : nullptr);
        if (t == alive.back()) imp = probs;
        ++computed;
      }
    }
    n_ = n;
    return m_.logits(hidden_[n - 1][L_]);
  }

  Vec decode(int token) {
    const int p = n_;
    grow(p + 1);
    hidden_[p][0] = m_.embed(token);
    std::vector<int> sel(p);
    for (int t = 0; t < p; ++t) sel[t] = t;
    Vec imp;  // over sel (the new token's own key dropped)
    for (int l = 0; l < L_; ++l) {
      if (l > 0 && keep_[l] < 1 && !sel.empty()) {
        std::vector<int> with_new = sel;
        with_new.push_back(p);
        Vec imp_new = imp;
        imp_new.push_back(0);
        sel = select(with_new, imp_new, keep_[l], true);
        sel.pop_back();
      }
      std::vector<int> batch;
      for (int t : sel)
        if (!kv_[l][t]) batch.push_back(t);  // revived: resumes from its state entering layer l
      batch.push_back(p);
      for (int t : batch) kv_[l][t] = std::make_unique<ReferenceModel::KV>(m_.kv(l, hidden_[t][l], t));
      std::vector<std::pair<int, const ReferenceModel::KV*>> keys;
      for (int t : sel) keys.push_back({t, kv_[l][t].get()});
      keys.push_back({p, kv_[l][p].get()});
      for (int t : batch) {
        Vec probs;
        hidden_[t][l + 1] = m_.layer(l, hidden_[t][l], t, keys, t == p ? &probs : nullptr);
        if (t == p) imp.assign(probs.begin(), probs.end() - 1);
        ++computed;
        if (t != p) ++revived;
      }
      selections.push_back(sel);
    }
    ++n_;
    return m_.logits(hidden_[p][L_]);
  }

  // Changes the schedule for later steps (keep 1.0 everywhere: the next decode step computes
  // every deferred pair, as LazyDecode::kComplete does).
  void set_keep(std::vector<double> keep) { keep_ = std::move(keep); }

  std::vector<int> alive_per_layer;
  std::vector<std::vector<int>> selections;  // per decode step and layer, appended
  long computed = 0, revived = 0;

 private:
  // Keeps ceil(keep * n) of `set` (its last element always), the rest by importance,
  // ties to the earlier token; result in position order.
  std::vector<int> select(const std::vector<int>& set, const Vec& imp, double keep, bool) const {
    const int n = static_cast<int>(set.size());
    int n_keep = std::max(1, static_cast<int>(std::ceil(keep * n - 1e-9)));
    std::vector<int> order(n - 1);
    for (int i = 0; i < n - 1; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return imp[a] > imp[b]; });
    order.resize(n_keep - 1);
    std::sort(order.begin(), order.end());
    std::vector<int> out;
    for (int i : order) out.push_back(set[i]);
    out.push_back(set.back());
    return out;
  }
  void grow(int n) {
    while (static_cast<int>(hidden_.size()) < n) {
      hidden_.emplace_back(L_ + 1);
    }
    kv_.resize(L_);
    for (auto& l : kv_) l.resize(n);
  }

  const ReferenceModel& m_;
  std::vector<double> keep_;
  int L_;
  int n_ = 0;
  std::vector<std::vector<Vec>> hidden_;  // [token][layer] state entering that layer
  std::vector<std::vector<std::unique_ptr<ReferenceModel::KV>>> kv_;  // [layer][token]
};

}  // namespace lazyllm::test
