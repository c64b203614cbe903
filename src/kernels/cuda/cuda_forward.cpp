// The CUDA forward pass: the same algorithm as the CPU's ForwardState (runtime/forward.cpp) with
// every tensor on the GPU. Which tokens to prune, when, and which to revive are decided on the
// host with the shared prune code (keep_count, select_top) from the importance the GPU computes;
// only that importance vector (one float per key, at pruning layers) comes back to the host.
//
// Layer: RMSNorm -> one QKV GEMM -> bias + RoPE + KV store -> attention -> Wo GEMM accumulating
// into the residual -> RMSNorm -> one gate|up GEMM -> SwiGLU -> down GEMM accumulating into the
// residual. The residual stream is float; GEMM operands are bf16 with float accumulation; Q, K,
// V and the attention probabilities are half, as the CPU's f16 KV cache.
#include "kernels/cuda/cuda_forward.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "kernels/cpu/rope.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_weights.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/ops.h"
#include "lazyllm/lazyllm.h"
#include "model/weights.h"
#include "prune/select.h"

namespace lazyllm {
namespace {

using cuda::bf16_t;
using cuda::check;
using cuda::DeviceBuffer;
using cuda::half_t;

constexpr int kFfnChunkRows = 8192;  // bounds the n_ff-wide buffers during long prefills

// Y (m rows of n_out, float or bf16) = X (m rows of k, bf16) W^T, W n_out rows of k (bf16);
// beta = 1 accumulates into Y (the residual add). Decode-sized m uses the matrix-vector kernel.
void gemm(cublasHandle_t h, const bf16_t* w, int n_out, int k, const bf16_t* x, int m, void* y, cudaDataType y_type,
          float beta) {
  if (cuda::gemv_applies(m, k)) {
    cudaStream_t stream = nullptr;
    check(cublasGetStream(h, &stream), "cublasGetStream");
    return cuda::gemv(w, n_out, k, x, m, y, y_type == CUDA_R_32F, beta, stream);
  }
  const float alpha = 1.0f;
  check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n_out, m, k, &alpha, w, CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, y,
                     y_type, n_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
}

// Host-side index of the GPU KV cache: which slot holds each token at each layer.
class SlotIndex {
 public:
  SlotIndex(int n_layers, int n_ctx)
      : size_(n_layers, 0), slot_(n_layers, std::vector<int32_t>(n_ctx, -1)), depth_(n_ctx, 0) {}
  int size(int l) const { return size_[l]; }
  int slot(int l, int t) const { return slot_[l][t]; }
  int depth(int t) const { return depth_[t]; }
  int append(int l, int t) {
    slot_[l][t] = size_[l];
    depth_[t] = l + 1;
    return size_[l]++;
  }
  void clear() {
    std::fill(size_.begin(), size_.end(), 0);
    for (auto& s : slot_) std::fill(s.begin(), s.end(), -1);
    std::fill(depth_.begin(), depth_.end(), 0);
  }

 private:
  std::vector<int> size_;
  std::vector<std::vector<int32_t>> slot_;
  std::vector<int32_t> depth_;
};

class CudaForward final : public ForwardBackend {
 public:
  CudaForward(const Model& model, int n_ctx);
  ~CudaForward() override;

  void prefill(std::span<const int32_t> tokens, const std::vector<double>& keep, const TokenSelector& selector,
               const std::function<void(int, int)>& progress) override;
  void decode(int32_t token, const std::vector<double>& keep, const TokenSelector& selector) override;
  const std::vector<float>& logits() const override { return logits_; }
  int n_past() const override { return n_past_; }
  int n_ctx() const override { return n_ctx_; }
  void clear() override;
  const ForwardCounters& counters() const override { return counters_; }
  int64_t aux_bytes() const override { return aux_entries_ * c_.n_embd * static_cast<int64_t>(sizeof(float)); }
  int64_t aux_entries() const override { return aux_entries_; }
  int kv_depth(int t) const override { return index_.depth(t); }
  void set_record_selection(bool on) override { record_selection_ = on; }
  const std::vector<std::vector<int>>& last_selection() const override { return selection_; }

 private:
  // Runs layer l on m rows of h (in place) at positions d_pos, storing their K/V in slots
  // slot0.., attending to every slot (key_slots null) or to the listed ones. With
  // want_importance, the last row's head-averaged probabilities come back in importance_.
  void layer_forward(int l, float* h, int m, const int32_t* d_pos, const int32_t* host_pos, int n_keys,
                     const int32_t* key_slots, bool want_importance);
  void compute_logits(const float* h_row);
  template <typename T>
  void upload(DeviceBuffer<T>& dst, const std::vector<T>& src);
  void ensure_rows(int m);
  void ensure_aux();
  void aux_put(int t) {
    if (!aux_has_[t]) aux_has_[t] = 1, ++aux_entries_;
  }
  void aux_erase(int t) {
    if (aux_has_[t]) aux_has_[t] = 0, --aux_entries_;
  }

  const ModelConfig& c_;
  std::shared_ptr<const cuda::CudaWeights> w_;
  int n_ctx_;
  int n_past_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;

  // KV cache: per layer n_ctx slots of kv_dim halves, with each slot's position.
  DeviceBuffer<half_t> k_cache_, v_cache_;
  DeviceBuffer<int32_t> kpos_;
  SlotIndex index_;
  DeviceBuffer<float> rope_cos_, rope_sin_;
  // Aux Cache: a row per position (allocated at the first pruning); aux_has_ on the host.
  DeviceBuffer<float> aux_;
  std::vector<uint8_t> aux_has_;
  int64_t aux_entries_ = 0;
  std::vector<uint8_t> from_prompt_;

  // Activations, grown to the largest batch seen.
  DeviceBuffer<float> h_[2], qkv_, att_scratch_, probs_, importance_d_, logits_d_;
  DeviceBuffer<bf16_t> xn_, att_, gu_, act_;
  DeviceBuffer<half_t> q_;
  DeviceBuffer<int32_t> tokens_d_, pos_d_, src_idx_d_, dst_idx_d_, key_slots_d_;
  std::vector<float> importance_;  // host copy, per key of the last layer that computed it
  std::vector<float> logits_;
  ForwardCounters counters_;
  bool record_selection_ = false;
  std::vector<std::vector<int>> selection_;
};

CudaForward::CudaForward(const Model& model, int n_ctx)
    : c_(model.config()), n_ctx_(n_ctx), index_(model.config().n_layers, n_ctx), aux_has_(n_ctx, 0),
      from_prompt_(n_ctx, 0) {
  if (c_.head_dim % 2 != 0) throw Error("CUDA backend: odd head size");
  check(cudaSetDevice(0), "cudaSetDevice");
  w_ = cuda::cuda_weights_for(model);
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cublasCreate(&blas_), "cublasCreate");
  check(cublasSetStream(blas_, stream_), "cublasSetStream");
  const size_t kvd = static_cast<size_t>(c_.n_kv_heads) * c_.head_dim;
  const size_t per_layer = static_cast<size_t>(n_ctx) * kvd;
  k_cache_.ensure(per_layer * c_.n_layers);
  v_cache_.ensure(per_layer * c_.n_layers);
  kpos_.ensure(static_cast<size_t>(n_ctx) * c_.n_layers);

  // RoPE tables from the CPU's per-pair angles, evaluated in double as the CPU does.
  const Rope rope(c_, model.weights().rope_freq_factors);
  const int half = c_.head_dim / 2;
  std::vector<float> cs(static_cast<size_t>(n_ctx) * half), sn(cs.size());
  for (int p = 0; p < n_ctx; ++p)
    for (int i = 0; i < half; ++i) {
      const double a = p * rope.inv_freq()[i];
      cs[static_cast<size_t>(p) * half + i] = static_cast<float>(std::cos(a));
      sn[static_cast<size_t>(p) * half + i] = static_cast<float>(std::sin(a));
    }
  upload(rope_cos_, cs);
  upload(rope_sin_, sn);
  logits_d_.ensure(c_.n_vocab);
  // Index buffers at full size once, so no reallocation happens under queued kernels.
  for (auto* b : {&tokens_d_, &pos_d_, &src_idx_d_, &dst_idx_d_, &key_slots_d_}) b->ensure(n_ctx + 1);
}

CudaForward::~CudaForward() {
  if (blas_) cublasDestroy(blas_);
  if (stream_) cudaStreamDestroy(stream_);
}

template <typename T>
void CudaForward::upload(DeviceBuffer<T>& dst, const std::vector<T>& src) {
  dst.ensure(std::max<size_t>(src.size(), 1));
  if (!src.empty())
    check(cudaMemcpyAsync(dst.get(), src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice, stream_),
          "cudaMemcpyAsync to device");
  // Host vectors may change right after: the copy must have read them.
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

void CudaForward::clear() {
  n_past_ = 0;
  index_.clear();
  std::fill(aux_has_.begin(), aux_has_.end(), 0);
  aux_entries_ = 0;
  std::fill(from_prompt_.begin(), from_prompt_.end(), 0);
  counters_ = {};
  logits_.clear();
  selection_.clear();
}

void CudaForward::ensure_rows(int m) {
  const size_t d = c_.n_embd, qd = static_cast<size_t>(c_.n_heads) * c_.head_dim;
  const size_t kvd = static_cast<size_t>(c_.n_kv_heads) * c_.head_dim;
  const size_t ffn_rows = std::min(m, kFfnChunkRows);
  if (h_[0].size() >= m * d) return;
  h_[0].ensure(m * d);
  h_[1].ensure(m * d);
  xn_.ensure(m * std::max(d, qd));
  qkv_.ensure(m * (qd + 2 * kvd));
  q_.ensure(m * qd);
  att_.ensure(m * qd);
  gu_.ensure(ffn_rows * 2 * c_.n_ff);
  act_.ensure(ffn_rows * c_.n_ff);
}

void CudaForward::ensure_aux() {
  if (aux_.empty()) aux_.ensure(static_cast<size_t>(n_ctx_) * c_.n_embd);
}

// ------------------------------------------------------------------ one layer

void CudaForward::layer_forward(int l, float* h, int m, const int32_t* d_pos, const int32_t* host_pos, int n_keys,
                                const int32_t* key_slots, bool want_importance) {
  const cuda::CudaLayerWeights& L = w_->layers[l];
  const int d = c_.n_embd, hd = c_.head_dim, qd = c_.n_heads * hd, kvd = c_.n_kv_heads * hd;
  const size_t layer_off = static_cast<size_t>(l) * n_ctx_;
  half_t* kc = k_cache_.get() + layer_off * kvd;
  half_t* vc = v_cache_.get() + layer_off * kvd;
  int32_t* kpos = kpos_.get() + layer_off;

  const int slot0 = index_.size(l);
  for (int i = 0; i < m; ++i) {
    index_.append(l, host_pos[i]);
    ++counters_.token_layers;
    counters_.prompt_token_layers += from_prompt_[host_pos[i]];
  }

  cuda::rmsnorm_bf16(h, L.attn_norm.get(), m, d, c_.rms_eps, xn_.get(), stream_);
  gemm(blas_, L.wqkv.get(), qd + 2 * kvd, d, xn_.get(), m, qkv_.get(), CUDA_R_32F, 0.0f);
  cuda::QkvFinishArgs qa{qkv_.get(), m,  d_pos, L.bqkv.empty() ? nullptr : L.bqkv.get(),
                         rope_cos_.get(), rope_sin_.get(), c_.n_heads, c_.n_kv_heads, hd, c_.rope_neox,
                         q_.get(), kc, vc, kpos, slot0};
  cuda::qkv_finish(qa, stream_);

  cuda::AttentionArgs aa{q_.get(), m, d_pos, kc, vc, kpos, key_slots, key_slots ? n_keys : slot0 + m, slot0,
                         c_.n_heads, c_.n_kv_heads, hd, 1.0f / std::sqrt(static_cast<float>(hd)), att_.get()};
  const size_t scratch = cuda::attention_scratch_floats(aa);
  if (scratch) att_scratch_.ensure(scratch);
  cuda::attention(aa, att_scratch_.get(), stream_);
  if (want_importance) {
    probs_.ensure(static_cast<size_t>(c_.n_heads) * aa.n_keys);
    importance_d_.ensure(aa.n_keys);
    cuda::last_row_importance(aa, m - 1, probs_.get(), importance_d_.get(), stream_);
    importance_.resize(aa.n_keys);
    check(cudaMemcpyAsync(importance_.data(), importance_d_.get(), aa.n_keys * sizeof(float), cudaMemcpyDeviceToHost,
                          stream_),
          "importance to host");
  }
  gemm(blas_, L.wo.get(), d, qd, att_.get(), m, h, CUDA_R_32F, 1.0f);

  for (int r0 = 0; r0 < m; r0 += kFfnChunkRows) {
    const int rm = std::min(kFfnChunkRows, m - r0);
    float* hc = h + static_cast<size_t>(r0) * d;
    cuda::rmsnorm_bf16(hc, L.ffn_norm.get(), rm, d, c_.rms_eps, xn_.get(), stream_);
    gemm(blas_, L.wgu.get(), 2 * c_.n_ff, d, xn_.get(), rm, gu_.get(), CUDA_R_16BF, 0.0f);
    cuda::swiglu_bf16(gu_.get(), rm, c_.n_ff, act_.get(), stream_);
    gemm(blas_, L.wdown.get(), d, c_.n_ff, act_.get(), rm, hc, CUDA_R_32F, 1.0f);
  }
  if (want_importance) check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

void CudaForward::compute_logits(const float* h_row) {
  cuda::rmsnorm_bf16(h_row, w_->output_norm.get(), 1, c_.n_embd, c_.rms_eps, xn_.get(), stream_);
  gemm(blas_, w_->output, c_.n_vocab, c_.n_embd, xn_.get(), 1, logits_d_.get(), CUDA_R_32F, 0.0f);
  logits_.resize(c_.n_vocab);
  check(cudaMemcpyAsync(logits_.data(), logits_d_.get(), c_.n_vocab * sizeof(float), cudaMemcpyDeviceToHost, stream_),
        "logits to host");
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

// ------------------------------------------------------------------ prefill

void CudaForward::prefill(std::span<const int32_t> tokens, const std::vector<double>& keep,
                          const TokenSelector& selector, const std::function<void(int, int)>& progress) {
  // The static/random ablations are evaluation tools; they run on the CPU backend only.
  if (!selector.reselects_at_decode()) throw Error("static and random prune selection run on the CPU backend only (use --device cpu)");
  const int n = static_cast<int>(tokens.size());
  const int d = c_.n_embd, n_layers = c_.n_layers;
  if (n == 0) throw Error("prefill: no tokens");
  if (n_past_ + n > n_ctx_)
    throw Error("prompt of " + std::to_string(n) + " tokens does not fit the context (" + std::to_string(n_past_) +
                " used of " + std::to_string(n_ctx_) + ")");
  for (int32_t t : tokens)
    if (t < 0 || t >= c_.n_vocab) throw Error("token id " + std::to_string(t) + " is out of the vocabulary");

  ensure_rows(n);
  int cur = 0;  // h_[cur] holds the alive rows
  std::vector<int32_t> alive(n);
  for (int i = 0; i < n; ++i) {
    alive[i] = n_past_ + i;
    from_prompt_[alive[i]] = 1;
  }
  upload(tokens_d_, std::vector<int32_t>(tokens.begin(), tokens.end()));
  cuda::embed_rows(w_->token_embd.get(), tokens_d_.get(), n, d, h_[cur].get(), stream_);
  upload(pos_d_, alive);
  counters_.alive_per_layer.assign(n_layers, 0);

  for (int l = 0; l < n_layers; ++l) {
    const int na = static_cast<int>(alive.size());
    const int n_keep = l > 0 ? keep_count(na, keep[l]) : na;
    if (n_keep < na) {
      // Importance of each alive token = the last token's attention to it at layer l-1.
      std::vector<float> score(na - 1);
      for (int i = 0; i < na - 1; ++i) score[i] = importance_[index_.slot(l - 1, alive[i])];
      std::vector<int> kept = select_top(score, n_keep - 1);
      kept.push_back(na - 1);  // the last token is never pruned
      std::vector<int32_t> keep_idx(kept.begin(), kept.end()), pruned_idx, pruned_pos, next_alive;
      size_t next = 0;
      for (int i = 0; i < na; ++i) {
        if (next < kept.size() && kept[next] == i) {
          next_alive.push_back(alive[i]);
          ++next;
        } else {
          pruned_idx.push_back(i);
          pruned_pos.push_back(alive[i]);
          aux_put(alive[i]);  // its hidden state entering layer l
        }
      }
      ensure_aux();
      upload(src_idx_d_, pruned_idx);
      upload(dst_idx_d_, pruned_pos);
      cuda::copy_rows(h_[cur].get(), nullptr, src_idx_d_.get(), dst_idx_d_.get(), static_cast<int>(pruned_idx.size()), d,
                      aux_.get(), stream_);
      upload(src_idx_d_, keep_idx);
      cuda::copy_rows(h_[cur].get(), nullptr, src_idx_d_.get(), nullptr, n_keep, d, h_[1 - cur].get(), stream_);
      cur = 1 - cur;
      alive = std::move(next_alive);
      upload(pos_d_, alive);
    }
    counters_.alive_per_layer[l] = static_cast<int>(alive.size());
    const bool want_importance = l + 1 < n_layers && keep[l + 1] < 1.0;
    layer_forward(l, h_[cur].get(), static_cast<int>(alive.size()), pos_d_.get(), alive.data(), 0, nullptr,
                  want_importance);
    if (progress) progress(l + 1, n_layers);
  }
  compute_logits(h_[cur].get() + (alive.size() - 1) * d);
  n_past_ += n;
}

// ------------------------------------------------------------------ decode

void CudaForward::decode(int32_t token, const std::vector<double>& keep, const TokenSelector& selector) {
  if (!selector.reselects_at_decode()) throw Error("static and random prune selection run on the CPU backend only (use --device cpu)");
  const int d = c_.n_embd, n_layers = c_.n_layers;
  const int p = n_past_;
  if (p >= n_ctx_) throw Error("context is full (" + std::to_string(n_ctx_) + " tokens)");
  if (token < 0 || token >= c_.n_vocab) throw Error("token id " + std::to_string(token) + " is out of the vocabulary");
  from_prompt_[p] = 0;
  if (record_selection_) selection_.assign(n_layers, {});

  // Baseline fast path: nothing pruned now or before, so every earlier token has K/V at every
  // layer and the new token attends to all slots; no per-layer host work.
  const bool prunes = std::any_of(keep.begin() + 1, keep.end(), [](double k) { return k < 1.0; });
  bool all_full = true;
  for (int t = 0; t < p && all_full; ++t) all_full = index_.depth(t) == n_layers;
  const bool fast = !prunes && all_full;
  ensure_rows(fast ? 1 : p + 1);  // before the embedding: growing loses contents
  int cur = 0;
  upload(tokens_d_, std::vector<int32_t>{token});
  cuda::embed_rows(w_->token_embd.get(), tokens_d_.get(), 1, d, h_[cur].get(), stream_);

  if (fast) {
    upload(pos_d_, std::vector<int32_t>{p});
    for (int l = 0; l < n_layers; ++l) {
      layer_forward(l, h_[cur].get(), 1, pos_d_.get(), &p, 0, nullptr, false);
      if (record_selection_)
        for (int t = 0; t < p; ++t) selection_[l].push_back(t);
    }
    compute_logits(h_[cur].get());
    ++n_past_;
    return;
  }

  // The CPU's decode step (runtime/forward.cpp), with rows moved on the GPU.
  std::vector<int> sel(p);
  for (int t = 0; t < p; ++t) sel[t] = t;
  std::vector<int> carry;  // tokens computed at the previous layer in this step (their rows lead h_[cur])
  std::vector<int32_t> batch_tok, src, to_aux_src, to_aux_pos, key_slots;
  std::vector<float> imp_sel;
  ensure_aux();
  for (int l = 0; l < n_layers; ++l) {
    if (l > 0 && keep[l] < 1.0 && !sel.empty()) {
      const int n_keep = keep_count(static_cast<int>(sel.size()) + 1, keep[l]) - 1;
      if (n_keep < static_cast<int>(sel.size())) {
        std::vector<int> kept = select_top(imp_sel, n_keep);
        for (size_t i = 0; i < kept.size(); ++i) sel[i] = sel[kept[i]];
        sel.resize(kept.size());
      }
    }
    // Tokens computed through the previous layer this step that are no longer selected stop here.
    batch_tok.clear(), src.clear(), to_aux_src.clear(), to_aux_pos.clear();
    size_t ci = 0;
    auto carry_to_aux = [&](size_t i) {
      to_aux_src.push_back(static_cast<int32_t>(i));
      to_aux_pos.push_back(carry[i]);
      aux_put(carry[i]);
    };
    for (int t : sel) {
      while (ci < carry.size() && carry[ci] < t) carry_to_aux(ci++);
      const int depth = index_.depth(t);
      if (depth > l) continue;  // has KV here already
      if (depth < l) throw std::logic_error("decode: selected token lost its KV below this layer");
      if (ci < carry.size() && carry[ci] == t) {
        src.push_back(static_cast<int32_t>(ci++));
      } else {
        if (!aux_has_[t]) throw std::logic_error("decode: token to revive is not in the Aux Cache");
        src.push_back(-t - 1);
      }
      batch_tok.push_back(t);
      aux_erase(t);
    }
    for (; ci < carry.size(); ++ci) carry_to_aux(ci);
    const int n_revived = static_cast<int>(batch_tok.size());
    batch_tok.push_back(p);
    src.push_back(static_cast<int32_t>(carry.size()));  // the new token's row follows the carried ones

    if (!to_aux_src.empty()) {
      upload(src_idx_d_, to_aux_src);
      upload(dst_idx_d_, to_aux_pos);
      cuda::copy_rows(h_[cur].get(), nullptr, src_idx_d_.get(), dst_idx_d_.get(), static_cast<int>(to_aux_src.size()),
                      d, aux_.get(), stream_);
    }
    upload(src_idx_d_, src);
    cuda::copy_rows(h_[cur].get(), aux_.get(), src_idx_d_.get(), nullptr, n_revived + 1, d, h_[1 - cur].get(), stream_);
    cur = 1 - cur;
    upload(pos_d_, batch_tok);

    // Keys: the selected tokens and the new one, in position order; slots after this layer's stores.
    const int slot0 = index_.size(l);
    key_slots.clear();
    size_t bi = 0;
    for (int t : sel) {
      const int s = index_.slot(l, t);
      if (s >= 0) {
        key_slots.push_back(s);
      } else {
        while (batch_tok[bi] != t) ++bi;
        key_slots.push_back(slot0 + static_cast<int>(bi));
      }
    }
    key_slots.push_back(slot0 + n_revived);
    upload(key_slots_d_, key_slots);

    const bool want_importance = l + 1 < n_layers && keep[l + 1] < 1.0;
    layer_forward(l, h_[cur].get(), n_revived + 1, pos_d_.get(), batch_tok.data(), static_cast<int>(key_slots.size()),
                  key_slots_d_.get(), want_importance);
    counters_.revived += n_revived;

    carry.assign(batch_tok.begin(), batch_tok.end() - 1);
    if (want_importance) imp_sel.assign(importance_.begin(), importance_.begin() + sel.size());
    if (record_selection_) selection_[l] = sel;
  }
  // Tokens still carried after the last layer now have KV at every layer: nothing to keep.
  compute_logits(h_[cur].get() + static_cast<size_t>(carry.size()) * d);
  ++n_past_;
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

std::string cuda_device_description() {
  const int n = cuda_device_count();
  if (n == 0) return "no CUDA device";
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  char buf[640];
  std::snprintf(buf, sizeof buf, "%s, %d SMs, %.1f GiB", prop.name, prop.multiProcessorCount,
                prop.totalGlobalMem / double(1 << 30));
  return buf;
}

std::unique_ptr<ForwardBackend> make_cuda_forward(const Model& model, int n_ctx) {
  if (cuda_device_count() == 0) throw Error("CUDA backend: no usable GPU");
  return std::make_unique<CudaForward>(model, n_ctx);
}

}  // namespace lazyllm
