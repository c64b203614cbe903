// The CUDA forward pass: the same algorithm as the CPU's ForwardState (runtime/forward.cpp) with
// every tensor on the GPU.
//
// Prefill: LazyLLM's selection runs on the GPU too (cuda::select_top, the same choice as the
// shared prune/select.h: ties to the lower index), so a pruning layer launches a selection and a
// compaction and never waits for the host; the host learns which tokens stayed alive at each
// layer once, after the last layer, from the lists the GPU kept, and only then fills in its
// bookkeeping (slots, KV depth, Aux Cache entries).
// Baseline decode (nothing pruned): one CUDA graph per context bucket replays the whole token's
// launch chain; the kernels read the token, its position and the key count from device memory.
// LazyLLM decode (re-selection and revival) decides on the host with the shared prune code from
// the importance the GPU computes, as the CPU does step for step, with rows moved on the GPU.
//
// Layer: RMSNorm -> one QKV GEMM -> bias + RoPE + KV store -> attention -> Wo GEMM accumulating
// into the residual -> RMSNorm -> one gate|up GEMM -> SwiGLU -> down GEMM accumulating into the
// residual. Decode-sized batches fuse each RMSNorm into the matrix-vector product after it and
// SwiGLU into the gate|up one. The residual stream is float; GEMM operands are bf16 with float
// accumulation; Q, K, V and the attention probabilities are half, as the CPU's f16 KV cache.
#include "kernels/cuda/cuda_forward.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

#include "kernels/cpu/rope.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_weights.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.h"
#include "lazyllm/lazyllm.h"
#include "model/weights.h"
#include "prune/select.h"

namespace lazyllm {
namespace {

using cuda::bf16_t;
using cuda::check;
using cuda::DeviceBuffer;
using cuda::half_t;
using cuda::PinnedBuffer;

constexpr int kFfnChunkRows = 8192;  // bounds the n_ff-wide buffers during long prefills
constexpr int kGraphBucket = 1024;   // decode graphs are captured per this many keys of capacity

// Y (m rows of n_out, float or bf16) = X (m rows of k, bf16) W^T, W n_out rows of k (bf16);
// beta = 1 accumulates into Y (the residual add). Decode-sized m uses the matrix-vector kernel.
void gemm(cublasHandle_t h, cudaStream_t stream, const bf16_t* w, int n_out, int k, const bf16_t* x, int m, void* y,
          cudaDataType y_type, float beta) {
  if (cuda::gemv_applies(m, k)) return cuda::gemv(w, n_out, k, x, m, y, y_type == CUDA_R_32F, beta, stream);
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
    set(l, t, size_[l]);
    return size_[l]++;
  }
  // Takes m slots at layer l now; set() says later which token holds each (prefill learns its
  // alive sets from the GPU after the last layer).
  int reserve(int l, int m) {
    const int s = size_[l];
    size_[l] += m;
    return s;
  }
  void set(int l, int t, int s) {
    slot_[l][t] = s;
    depth_[t] = std::max(depth_[t], l + 1);
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

// What one layer computes: m rows at positions d_pos, stored from slot slot0 (or the slot in
// device memory at slot0_dev), attending to every slot [0, n_keys) (or n_keys from n_keys_dev,
// n_keys then the capacity) or to the listed key_slots.
struct LayerCall {
  int m = 0;
  const int32_t* d_pos = nullptr;
  int slot0 = 0;
  const int32_t* slot0_dev = nullptr;
  int n_keys = 0;
  const int32_t* n_keys_dev = nullptr;
  const int32_t* key_slots = nullptr;
  bool want_importance = false;  // the last row's head-averaged probabilities into importance_d_
};

bool env_off(const char* name) {
  const char* e = std::getenv(name);
  return e && (std::string_view(e) == "0" || std::string_view(e) == "off");
}

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
  // The GPU work of layer l on c.m rows of h (in place); no host bookkeeping, no synchronization.
  void layer_kernels(int l, float* h, const LayerCall& c);
  // Final RMSNorm and output product of one row into logits_d_ (asynchronous).
  void logits_kernels(const float* h_row);
  // Copies logits_d_ to logits_ (waits for the stream).
  void fetch_logits();
  // Baseline decode of one token whose id, position and key count are in step_d_: the launch
  // chain a graph captures. `capacity` sizes the attention launch (keys read from step_d_[2]).
  void decode_chain(int capacity);
  cudaGraphExec_t decode_graph(int capacity);
  void drop_graphs();
  void decode_baseline(int32_t token);
  template <typename T>
  void upload(DeviceBuffer<T>& dst, const std::vector<T>& src);
  void sync_stream();
  template <typename T>
  void grow(DeviceBuffer<T>& b, size_t n) {  // reallocation invalidates captured graphs
    if (n > b.size()) drop_graphs();
    b.ensure(n);
  }
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
  DeviceBuffer<float> h_[2], qkv_, att_scratch_, imp_scratch_, importance_d_, logits_d_;
  bool pdl_ = true;  // programmatic dependent launch for this session's kernels (see pdl.h)
  DeviceBuffer<bf16_t> xn_, att_, gu_, act_;
  DeviceBuffer<half_t> q_;
  DeviceBuffer<int32_t> tokens_d_, pos_d_, src_idx_d_, dst_idx_d_, key_slots_d_;
  // Prefill's alive positions per pruning step (list e at e * n) and the selection's output.
  DeviceBuffer<int32_t> alive_pos_d_, dest_d_;
  PinnedBuffer<int32_t> alive_pos_h_;
  // Baseline decode: token, position (= its slot), key count; in pinned memory and on the GPU.
  DeviceBuffer<int32_t> step_d_;
  PinnedBuffer<int32_t> step_h_;
  PinnedBuffer<float> logits_h_;
  // Page-locked staging for upload(): host lists are copied here so their copies to the device
  // can be queued without waiting for the stream (a copy from pageable memory waits for it).
  // Space is reused only once the stream has drained (sync_stream).
  PinnedBuffer<uint8_t> staging_;
  size_t staging_used_ = 0;
  bool use_graphs_ = true;
  std::map<int, cudaGraphExec_t> graphs_;  // by key capacity
  std::vector<float> importance_;  // host copy (LazyLLM decode), per key of the last layer that computed it
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
  cuda::prepare_kernels();
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
  logits_h_.ensure(c_.n_vocab);
  // Index buffers at full size once, so no reallocation happens under queued kernels.
  for (auto* b : {&tokens_d_, &pos_d_, &src_idx_d_, &dst_idx_d_, &key_slots_d_, &dest_d_}) b->ensure(n_ctx + 1);
  step_d_.ensure(4);
  step_h_.ensure(4);
  // Decode attention's partial results for one row over the whole context, so decode graphs
  // never see this buffer move.
  cuda::AttentionArgs cap{};
  cap.m = 1, cap.n_heads = c_.n_heads, cap.n_kv_heads = c_.n_kv_heads, cap.head_dim = c_.head_dim;
  cap.n_keys = (n_ctx + kGraphBucket - 1) / kGraphBucket * kGraphBucket;
  att_scratch_.ensure(std::max<size_t>(1, cuda::attention_scratch_floats(cap)));
  // Importance over up to the whole context, allocated once (prefill's selection reads it while
  // later layers run).
  cap.n_keys = n_ctx;
  importance_d_.ensure(n_ctx);
  imp_scratch_.ensure(cuda::importance_scratch_floats(cap));
  use_graphs_ = !env_off("LAZYLLM_CUDA_GRAPHS");
  pdl_ = cuda::pdl_env_allows();
}

CudaForward::~CudaForward() {
  drop_graphs();
  if (blas_) cublasDestroy(blas_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaForward::drop_graphs() {
  for (auto& [cap, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
}

template <typename T>
void CudaForward::upload(DeviceBuffer<T>& dst, const std::vector<T>& src) {
  grow(dst, std::max<size_t>(src.size(), 1));
  if (src.empty()) return;
  const size_t bytes = src.size() * sizeof(T);
  size_t at = (staging_used_ + 15) & ~size_t{15};
  if (at + bytes > staging_.size()) {
    // Full: wait until the queued copies have read it, and grow it so that what was queued
    // since the stream last drained (a decode step's lists) fits next time without a wait.
    const size_t want = at + bytes;
    sync_stream();
    at = 0;
    staging_.ensure(std::max(want, 2 * staging_.size()));
  }
  std::memcpy(staging_.get() + at, src.data(), bytes);
  check(cudaMemcpyAsync(dst.get(), staging_.get() + at, bytes, cudaMemcpyHostToDevice, stream_),
        "cudaMemcpyAsync to device");
  staging_used_ = at + bytes;
}

void CudaForward::sync_stream() {
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  staging_used_ = 0;
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
  drop_graphs();
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

void CudaForward::layer_kernels(int l, float* h, const LayerCall& c) {
  const cuda::CudaLayerWeights& L = w_->layers[l];
  const int d = c_.n_embd, hd = c_.head_dim, qd = c_.n_heads * hd, kvd = c_.n_kv_heads * hd, ff = c_.n_ff;
  const int m = c.m;
  const size_t layer_off = static_cast<size_t>(l) * n_ctx_;
  half_t* kc = k_cache_.get() + layer_off * kvd;
  half_t* vc = v_cache_.get() + layer_off * kvd;
  int32_t* kpos = kpos_.get() + layer_off;
  // Decode-sized batches: RMSNorm fused into the products after it, SwiGLU into gate|up.
  const bool small = cuda::gemv_applies(m, d) && cuda::gemv_applies(m, ff) && cuda::gemv_applies(m, qd);

  if (small) {
    cuda::GemvArgs g;
    g.w = L.wqkv.get(), g.n_out = qd + 2 * kvd, g.k = d, g.m = m;
    g.norm_in = h, g.norm_w = L.attn_norm.get(), g.eps = c_.rms_eps;
    g.y = qkv_.get(), g.y_f32 = true;
    cuda::gemv(g, stream_);
  } else {
    cuda::rmsnorm_bf16(h, L.attn_norm.get(), m, d, c_.rms_eps, xn_.get(), stream_);
    gemm(blas_, stream_, L.wqkv.get(), qd + 2 * kvd, d, xn_.get(), m, qkv_.get(), CUDA_R_32F, 0.0f);
  }
  cuda::QkvFinishArgs qa{qkv_.get(), m,  c.d_pos, L.bqkv.empty() ? nullptr : L.bqkv.get(),
                         rope_cos_.get(), rope_sin_.get(), c_.n_heads, c_.n_kv_heads, hd, c_.rope_neox,
                         q_.get(), kc, vc, kpos, c.slot0};
  qa.slot0_dev = c.slot0_dev;
  cuda::qkv_finish(qa, stream_);

  cuda::AttentionArgs aa{q_.get(), m, c.d_pos, kc, vc, kpos, c.key_slots, c.n_keys, c.slot0,
                         c_.n_heads, c_.n_kv_heads, hd, 1.0f / std::sqrt(static_cast<float>(hd)), att_.get()};
  aa.n_keys_dev = c.n_keys_dev;
  const size_t scratch = cuda::attention_scratch_floats(aa);
  if (scratch) grow(att_scratch_, scratch);
  cuda::attention(aa, att_scratch_.get(), stream_);
  if (c.want_importance) {
    grow(imp_scratch_, cuda::importance_scratch_floats(aa));
    grow(importance_d_, static_cast<size_t>(aa.n_keys));
    cuda::last_row_importance(aa, m - 1, imp_scratch_.get(), importance_d_.get(), stream_);
  }
  gemm(blas_, stream_, L.wo.get(), d, qd, att_.get(), m, h, CUDA_R_32F, 1.0f);

  if (small) {
    cuda::GemvArgs g;
    g.w = L.wgu.get(), g.n_out = ff, g.k = d, g.m = m;
    g.norm_in = h, g.norm_w = L.ffn_norm.get(), g.eps = c_.rms_eps;
    g.swiglu = true, g.y = act_.get(), g.y_f32 = false;
    cuda::gemv(g, stream_);
    gemm(blas_, stream_, L.wdown.get(), d, ff, act_.get(), m, h, CUDA_R_32F, 1.0f);
    return;
  }
  for (int r0 = 0; r0 < m; r0 += kFfnChunkRows) {
    const int rm = std::min(kFfnChunkRows, m - r0);
    float* hc = h + static_cast<size_t>(r0) * d;
    cuda::rmsnorm_bf16(hc, L.ffn_norm.get(), rm, d, c_.rms_eps, xn_.get(), stream_);
    gemm(blas_, stream_, L.wgu.get(), 2 * ff, d, xn_.get(), rm, gu_.get(), CUDA_R_16BF, 0.0f);
    cuda::swiglu_bf16(gu_.get(), rm, ff, act_.get(), stream_);
    gemm(blas_, stream_, L.wdown.get(), d, ff, act_.get(), rm, hc, CUDA_R_32F, 1.0f);
  }
}

void CudaForward::logits_kernels(const float* h_row) {
  if (cuda::gemv_applies(1, c_.n_embd)) {
    cuda::GemvArgs g;
    g.w = w_->output, g.n_out = c_.n_vocab, g.k = c_.n_embd, g.m = 1;
    g.norm_in = h_row, g.norm_w = w_->output_norm.get(), g.eps = c_.rms_eps;
    g.y = logits_d_.get(), g.y_f32 = true;
    return cuda::gemv(g, stream_);
  }
  cuda::rmsnorm_bf16(h_row, w_->output_norm.get(), 1, c_.n_embd, c_.rms_eps, xn_.get(), stream_);
  gemm(blas_, stream_, w_->output, c_.n_vocab, c_.n_embd, xn_.get(), 1, logits_d_.get(), CUDA_R_32F, 0.0f);
}

void CudaForward::fetch_logits() {
  check(cudaMemcpyAsync(logits_h_.get(), logits_d_.get(), c_.n_vocab * sizeof(float), cudaMemcpyDeviceToHost,
                        stream_),
        "logits to host");
  sync_stream();
  logits_.assign(logits_h_.get(), logits_h_.get() + c_.n_vocab);
}

// ------------------------------------------------------------------ prefill

void CudaForward::prefill(std::span<const int32_t> tokens, const std::vector<double>& keep,
                          const TokenSelector& selector, const std::function<void(int, int)>& progress) {
  // The static/random ablations are evaluation tools; they run on the CPU backend only.
  if (!selector.reselects_at_decode()) throw Error("static and random prune selection run on the CPU backend only (use --device cpu)");
  const cuda::PdlScope pdl(pdl_);
  const int n = static_cast<int>(tokens.size());
  const int d = c_.n_embd, n_layers = c_.n_layers;
  if (n == 0) throw Error("prefill: no tokens");
  if (n_past_ + n > n_ctx_)
    throw Error("prompt of " + std::to_string(n) + " tokens does not fit the context (" + std::to_string(n_past_) +
                " used of " + std::to_string(n_ctx_) + ")");
  for (int32_t t : tokens)
    if (t < 0 || t >= c_.n_vocab) throw Error("token id " + std::to_string(t) + " is out of the vocabulary");

  // The schedule's alive counts are known up front; only which tokens survive is the GPU's.
  std::vector<int> count(n_layers), list_of(n_layers);
  int n_lists = 1;
  for (int l = 0, na = n; l < n_layers; ++l) {
    const int n_keep = l > 0 ? keep_count(na, keep[l]) : na;
    if (n_keep < na) ++n_lists;
    count[l] = na = n_keep;
    list_of[l] = n_lists - 1;
  }
  ensure_rows(n);
  if (n_lists > 1) ensure_aux();
  grow(alive_pos_d_, static_cast<size_t>(n_lists) * n);
  std::vector<int32_t> pos0(n);
  for (int i = 0; i < n; ++i) {
    pos0[i] = n_past_ + i;
    from_prompt_[pos0[i]] = 1;
  }
  upload(tokens_d_, std::vector<int32_t>(tokens.begin(), tokens.end()));
  check(cudaMemcpyAsync(alive_pos_d_.get(), pos0.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
        "positions to device");
  int cur = 0;  // h_[cur] holds the alive rows
  cuda::embed_rows(w_->token_embd.get(), tokens_d_.get(), n, d, h_[cur].get(), stream_);
  counters_.alive_per_layer.assign(n_layers, 0);

  std::vector<int> slot0(n_layers);
  int na = n;
  for (int l = 0; l < n_layers; ++l) {
    int32_t* pos = alive_pos_d_.get() + static_cast<size_t>(list_of[l]) * n;
    if (count[l] < na) {
      // Importance of each alive token = the last token's attention to it at layer l-1, whose
      // rows were slots slot0[l-1].. in alive order. Keep the n_keep-1 best but the last token
      // (never pruned), compact the kept rows, send the others' hidden states (entering layer l)
      // to the Aux Cache.
      cuda::select_top(importance_d_.get() + slot0[l - 1], na - 1, count[l] - 1, dest_d_.get(), stream_);
      cuda::compact_rows(h_[cur].get(), pos - n, dest_d_.get(), na, d, h_[1 - cur].get(), pos, aux_.get(), stream_);
      cur = 1 - cur;
      na = count[l];
    }
    counters_.alive_per_layer[l] = na;
    LayerCall c;
    c.m = na, c.d_pos = pos, c.slot0 = slot0[l] = index_.reserve(l, na), c.n_keys = slot0[l] + na;
    c.want_importance = l + 1 < n_layers && keep[l + 1] < 1.0;
    layer_kernels(l, h_[cur].get(), c);
    counters_.token_layers += na;
    counters_.prompt_token_layers += na;  // every row of a prefill is a prompt token
    if (progress) progress(l + 1, n_layers);
  }
  logits_kernels(h_[cur].get() + static_cast<size_t>(na - 1) * d);

  // The alive lists come back with the logits: the host's slot index, KV depths and Aux Cache
  // entries follow from them.
  alive_pos_h_.ensure(static_cast<size_t>(n_lists) * n);
  check(cudaMemcpyAsync(alive_pos_h_.get(), alive_pos_d_.get(), static_cast<size_t>(n_lists) * n * sizeof(int32_t),
                        cudaMemcpyDeviceToHost, stream_),
        "alive lists to host");
  fetch_logits();
  for (int l = 0; l < n_layers; ++l) {
    const int32_t* list = alive_pos_h_.get() + static_cast<size_t>(list_of[l]) * n;
    for (int i = 0; i < count[l]; ++i) index_.set(l, list[i], slot0[l] + i);
    if (l > 0 && list_of[l] != list_of[l - 1]) {
      // Tokens alive at l-1 but not at l (both lists in position order) went to the Aux Cache.
      const int32_t* prev = alive_pos_h_.get() + static_cast<size_t>(list_of[l - 1]) * n;
      for (int i = 0, j = 0; i < count[l - 1]; ++i) {
        if (j < count[l] && list[j] == prev[i]) ++j;
        else aux_put(prev[i]);
      }
    }
  }
  n_past_ += n;
}

// ------------------------------------------------------------------ decode

void CudaForward::decode_chain(int capacity) {
  const int32_t* token = step_d_.get();
  const int32_t* pos = step_d_.get() + 1;
  const int32_t* n_keys = step_d_.get() + 2;
  cuda::embed_rows(w_->token_embd.get(), token, 1, c_.n_embd, h_[0].get(), stream_);
  for (int l = 0; l < c_.n_layers; ++l) {
    LayerCall c;
    c.m = 1, c.d_pos = pos, c.slot0_dev = pos, c.n_keys = capacity, c.n_keys_dev = n_keys;
    layer_kernels(l, h_[0].get(), c);
  }
  logits_kernels(h_[0].get());
}

cudaGraphExec_t CudaForward::decode_graph(int capacity) {
  auto it = graphs_.find(capacity);
  if (it != graphs_.end()) return it->second;
  cudaGraph_t graph = nullptr;
  check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  try {
    decode_chain(capacity);
  } catch (...) {
    cudaStreamEndCapture(stream_, &graph);
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  check(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  check(e, "cudaGraphInstantiate");
  graphs_[capacity] = exec;
  return exec;
}

// Nothing pruned now or before: every earlier token has K/V at every layer in slot = position,
// and the new token attends to all of them. The token, its position and the key count go to the
// GPU in one small copy; the chain of kernels is replayed from a graph (or launched directly
// with LAZYLLM_CUDA_GRAPHS=0: the same kernels, the same results).
void CudaForward::decode_baseline(int32_t token) {
  const int p = n_past_, n_layers = c_.n_layers;
  ensure_rows(1);
  step_h_[0] = token, step_h_[1] = p, step_h_[2] = p + 1;
  check(cudaMemcpyAsync(step_d_.get(), step_h_.get(), 3 * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
        "decode step to device");
  const int capacity = (p + 1 + kGraphBucket - 1) / kGraphBucket * kGraphBucket;
  if (use_graphs_) {
    check(cudaGraphLaunch(decode_graph(capacity), stream_), "cudaGraphLaunch");
  } else {
    decode_chain(capacity);
  }
  fetch_logits();  // also: step_h_ may be written again
  for (int l = 0; l < n_layers; ++l) {
    index_.append(l, p);
    if (record_selection_)
      for (int t = 0; t < p; ++t) selection_[l].push_back(t);
  }
  counters_.token_layers += n_layers;
  ++n_past_;
}

void CudaForward::decode(int32_t token, const std::vector<double>& keep, const TokenSelector& selector) {
  if (!selector.reselects_at_decode()) throw Error("static and random prune selection run on the CPU backend only (use --device cpu)");
  const cuda::PdlScope pdl(pdl_);
  const int d = c_.n_embd, n_layers = c_.n_layers;
  const int p = n_past_;
  if (p >= n_ctx_) throw Error("context is full (" + std::to_string(n_ctx_) + " tokens)");
  if (token < 0 || token >= c_.n_vocab) throw Error("token id " + std::to_string(token) + " is out of the vocabulary");
  from_prompt_[p] = 0;
  if (record_selection_) selection_.assign(n_layers, {});

  // Baseline fast path: nothing pruned now or before, so every earlier token has K/V at every
  // layer (in slot = position) and the new token attends to all slots; no per-layer host work.
  const bool prunes = std::any_of(keep.begin() + 1, keep.end(), [](double k) { return k < 1.0; });
  bool all_full = true;
  for (int t = 0; t < p && all_full; ++t) all_full = index_.depth(t) == n_layers;
  for (int l = 0; l < n_layers && all_full; ++l) all_full = index_.size(l) == p;
  if (!prunes && all_full && cuda::attention_reads_key_count(c_.head_dim) && cuda::gemv_applies(1, d) &&
      cuda::gemv_applies(1, c_.n_ff) && cuda::gemv_applies(1, c_.n_heads * c_.head_dim))
    return decode_baseline(token);

  ensure_rows(p + 1);  // before the embedding: growing loses contents
  int cur = 0;
  upload(tokens_d_, std::vector<int32_t>{token});
  cuda::embed_rows(w_->token_embd.get(), tokens_d_.get(), 1, d, h_[cur].get(), stream_);

  // The CPU's decode step (runtime/forward.cpp), with rows moved on the GPU.
  std::vector<int> sel(p);
  for (int t = 0; t < p; ++t) sel[t] = t;
  std::vector<int> carry;  // tokens computed at the previous layer in this step (their rows lead h_[cur])
  std::vector<int32_t> batch_tok, src, to_aux_src, to_aux_pos, key_slots;
  std::vector<float> imp_sel;
  if (prunes) ensure_aux();
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

    const int m = n_revived + 1;
    for (int i = 0; i < m; ++i) {
      index_.append(l, batch_tok[i]);
      ++counters_.token_layers;
      counters_.prompt_token_layers += from_prompt_[batch_tok[i]];
    }
    LayerCall c;
    c.m = m, c.d_pos = pos_d_.get(), c.slot0 = slot0, c.n_keys = static_cast<int>(key_slots.size());
    c.key_slots = key_slots_d_.get();
    c.want_importance = l + 1 < n_layers && keep[l + 1] < 1.0;
    layer_kernels(l, h_[cur].get(), c);
    if (c.want_importance) {
      importance_.resize(c.n_keys);
      check(cudaMemcpyAsync(importance_.data(), importance_d_.get(), c.n_keys * sizeof(float),
                            cudaMemcpyDeviceToHost, stream_),
            "importance to host");
      sync_stream();
    }
    counters_.revived += n_revived;

    carry.assign(batch_tok.begin(), batch_tok.end() - 1);
    if (c.want_importance) imp_sel.assign(importance_.begin(), importance_.begin() + sel.size());
    if (record_selection_) selection_[l] = sel;
  }
  // Tokens still carried after the last layer now have KV at every layer: nothing to keep.
  logits_kernels(h_[cur].get() + static_cast<size_t>(carry.size()) * d);
  fetch_logits();
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

std::vector<int32_t> cuda_select_top_dest(std::span<const float> scores, int k) {
  if (cuda_device_count() == 0) throw Error("CUDA backend: no usable GPU");
  check(cudaSetDevice(0), "cudaSetDevice");
  const int n = static_cast<int>(scores.size());
  DeviceBuffer<float> s(std::max(n, 1));
  DeviceBuffer<int32_t> dest(n + 1);
  if (n > 0) check(cudaMemcpy(s.get(), scores.data(), n * sizeof(float), cudaMemcpyHostToDevice), "scores to device");
  cuda::select_top(s.get(), n, k, dest.get(), nullptr);
  std::vector<int32_t> out(n + 1);
  check(cudaMemcpy(out.data(), dest.get(), (n + 1) * sizeof(int32_t), cudaMemcpyDeviceToHost), "dest to host");
  return out;
}

std::unique_ptr<ForwardBackend> make_cuda_forward(const Model& model, int n_ctx) {
  if (cuda_device_count() == 0) throw Error("CUDA backend: no usable GPU");
  return std::make_unique<CudaForward>(model, n_ctx);
}

}  // namespace lazyllm
