// The CUDA forward pass: construction, buffers, one layer's kernels, the logits and prefill
// (the device half of runtime/prefill.cpp's walk). Decode: cuda_decode.cpp.
#include "runtime/cuda/cuda_forward_pass.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include "cache/kv_pool.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/qgemm.h"
#include "lazyllm/lazyllm.h"
#include "model/weights.h"

namespace lazyllm::cuda_pass {
namespace {

bool env_off(const char* name) {
  const char* e = std::getenv(name);
  return e && (std::string_view(e) == "0" || std::string_view(e) == "off");
}

}  // namespace

CudaForward::CudaForward(const Model& model, int n_ctx, GpuWeights gpu_weights, bool warm_up, KvPool* kv_pool,
                         bool weight_copies)
    : c_(model.config()),
      n_ctx_(n_ctx),
      kv_pool_(kv_pool),
      index_(model.config().n_layers, n_ctx),
      copies_(weight_copies) {
  if (c_.head_dim % 2 != 0) throw Error("CUDA backend: odd head size");
  check(cudaSetDevice(0), "cudaSetDevice");
  w_ = cuda::cuda_weights_for(model, gpu_weights);
  cuda::prepare_kernels();
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cublasCreate(&blas_), "cublasCreate");
  check(cublasSetStream(blas_, stream_), "cublasSetStream");
  // Before this forward pass's own buffers, so the warm-up's operands come and go in free memory.
  if (warm_up) warm_up_products(blas_, stream_, cublas_products(), std::min(n_ctx, kFfnChunkRows));
  const size_t kvd = static_cast<size_t>(c_.n_kv_heads) * c_.head_dim;
  const size_t per_layer = static_cast<size_t>(n_ctx) * kvd;
  if (kv_pool_) {
    paged_kv_ = std::make_unique<cuda::MappedKv>(*kv_pool_, kv_pool_->regions(), kv_pool_->region_pages(n_ctx));
  } else {
    k_cache_.ensure(per_layer * c_.n_layers);
    v_cache_.ensure(per_layer * c_.n_layers);
  }
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
  for (auto* b : {&tokens_d_, &pos_d_, &src_idx_d_, &dst_idx_d_, &key_slots_d_, &row_keys_d_, &part_keys_d_, &dest_d_})
    b->ensure(n_ctx + 1);
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
  use_steady_ = use_graphs_ && !env_off("LAZYLLM_CUDA_STEADY_DECODE");
  pdl_ = cuda::pdl_env_allows();
  use_key_runs_ = !env_off("LAZYLLM_CUDA_KEY_RUNS");
}

CudaForward::~CudaForward() {
  drop_graphs();
  if (blas_) cublasDestroy(blas_);
  if (stream_) cudaStreamDestroy(stream_);
}

Session::DeviceMemory CudaForward::device_memory() const {
  auto bytes = [](const auto&... b) { return static_cast<int64_t>(((b.size() * sizeof(*b.get())) + ... + 0)); };
  Session::DeviceMemory m;
  m.weights = w_->bytes;
  m.dequant_scratch = bytes(dequant_);
  m.weight_copies = copies_.bytes();
  m.kv_cache = bytes(k_cache_, v_cache_, kpos_) + kv_pages() * (kv_pool_ ? kv_pool_->page_bytes() : 0);
  m.aux_cache = bytes(aux_);
  m.scratch = bytes(rope_cos_, rope_sin_, h_[0], h_[1], qkv_, att_scratch_, imp_scratch_, importance_d_, logits_d_, xn_,
                    att_, gu_, act_, q_, k_gather_, v_gather_, pos_gather_, tokens_d_, pos_d_, src_idx_d_, dst_idx_d_,
                    key_slots_d_, row_keys_d_, part_keys_d_, alive_pos_d_, dest_d_, step_d_, steady_d_, steady_keys_d_,
                    slot_table_d_, depth_d_);
  return m;
}

bool CudaForward::reserve_kv(int tokens) {
  if (!paged_kv_) return true;
  return paged_kv_->grow_to(kv_pool_->region_pages(std::min(tokens, n_ctx_)));
}

void CudaForward::release_kv() {
  clear();
  if (paged_kv_) paged_kv_->release();
}

void CudaForward::drop_graphs() {
  for (auto& [cap, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
  for (auto& [cap, exec] : steady_graphs_) cudaGraphExecDestroy(exec);
  steady_graphs_.clear();
}


void CudaForward::sync_stream() {
  check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  staging_used_ = 0;
}

// The context now ends at n (the index already says so): counters, the decode paths' state and
// the logits start over.
void CudaForward::restart_at(int n) {
  n_past_ = n;
  counters_ = {};
  mirror_dirty_ = true;
  last_revived_ = false;
  steady_backoff_ = steady_skip_ = 0;
  logits_.clear();
  selection_.clear();
}

void CudaForward::clear() {
  index_.clear();
  path_stats_ = {};
  restart_at(0);
}

// The K/V of [0, n) stay where they are (slot = position at every layer: KVIndex::keep_prefix
// checks); the slots from n on, and the Aux Cache rows of the tokens forgotten, are written again
// before anything reads them, as the next prefill or decode stores its rows before its attention.
bool CudaForward::keep_prefix(int n) {
  if (!index_.keep_prefix(n)) return false;
  restart_at(n);
  return true;
}

// The rows of [0, n) are copied layer by layer. The source's K/V may have been written on any
// sequence's stream (a batched step runs on the first sequence's), and the source may be
// overwritten right after this returns, so the copy waits for the whole device before and its
// own stream after.
bool CudaForward::copy_prefix_from(const ForwardBackend& src, int n) {
  clear();
  const auto* from = dynamic_cast<const CudaForward*>(&src);
  if (!from || from == this || !shares_weights_with(*from) || !reserve_kv(n) || !index_.copy_prefix(from->index_, n))
    return false;
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  const size_t row_bytes = static_cast<size_t>(c_.n_kv_heads) * c_.head_dim * sizeof(half_t);
  for (int l = 0; l < c_.n_layers; ++l) {
    check(cudaMemcpyAsync(k_cache_at(l), from->k_cache_at(l), n * row_bytes, cudaMemcpyDeviceToDevice, stream_),
          "cudaMemcpyAsync");
    check(cudaMemcpyAsync(v_cache_at(l), from->v_cache_at(l), n * row_bytes, cudaMemcpyDeviceToDevice, stream_),
          "cudaMemcpyAsync");
    check(cudaMemcpyAsync(kpos_at(l), from->kpos_at(l), n * sizeof(int32_t), cudaMemcpyDeviceToDevice, stream_),
          "cudaMemcpyAsync");
  }
  sync_stream();
  restart_at(n);
  return true;
}

// Grows the activation buffers to hold m rows, by at least half again (capped at the context),
// so a session whose batches grow a row at a time does not reallocate (and synchronise the
// device) at every step.
void CudaForward::ensure_rows(int m) {
  if (m <= rows_cap_) return;
  m = std::max(m, std::min(n_ctx_ + 1, rows_cap_ + rows_cap_ / 2));
  rows_cap_ = m;
  const size_t d = c_.n_embd, qd = static_cast<size_t>(c_.n_heads) * c_.head_dim;
  const size_t kvd = static_cast<size_t>(c_.n_kv_heads) * c_.head_dim;
  const size_t ffn_rows = std::min(m, kFfnChunkRows);
  drop_graphs();
  h_[0].ensure(m * d);
  h_[1].ensure(m * d);
  xn_.ensure(m * std::max(d, qd));
  qkv_.ensure(m * (qd + 2 * kvd));
  q_.ensure(m * qd);
  att_.ensure(m * qd);
  gu_.ensure(ffn_rows * 2 * c_.n_ff);
  act_.ensure(ffn_rows * c_.n_ff);
  if (m > cuda::kQgemmMaxRows && w_->scratch_elems > 0) dequant_.ensure(w_->scratch_elems);
}

void CudaForward::ensure_dequant_scratch(int k) {
  if (dequant_.size() >= static_cast<size_t>(k)) return;
  // Only a product the matrix-vector kernels cannot take lands here without ensure_rows having
  // made the buffer; never one of a decode graph (those run only where they all apply).
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(stream_, &st), "cudaStreamIsCapturing");
  if (st != cudaStreamCaptureStatusNone) throw std::logic_error("CUDA forward: dequantization scratch under capture");
  grow(dequant_, std::max<size_t>(w_->scratch_elems, static_cast<size_t>(k) * 256));
}

std::vector<ProductShape> CudaForward::cublas_products() const {
  const int d = c_.n_embd, qd = c_.n_heads * c_.head_dim, ff = c_.n_ff;
  const int qkv_n = qd + 2 * c_.n_kv_heads * c_.head_dim;
  std::vector<ProductShape> out;
  // A quantized matrix is dequantized and multiplied a chunk of rows at a time (weight_gemm), in
  // the scratch ensure_rows makes.
  const auto scratch = static_cast<size_t>(w_->scratch_elems);
  auto add = [&](const cuda::WeightRef& w, int n_out, int k, int ldy, cudaDataType y_type) {
    const int chunk = w.format == cuda::WeightFormat::kBf16 ? n_out : dequant_chunk_rows(n_out, k, scratch);
    for (int rows : {chunk, n_out % chunk}) {
      const ProductShape s{rows, k, ldy, y_type, w.format};
      if (rows > 0 && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
    }
  };
  for (const cuda::CudaLayerWeights& L : w_->layers) {
    for (const cuda::MatrixPart& part : L.wqkv.parts) add(part.ref, static_cast<int>(part.rows), d, qkv_n, CUDA_R_32F);
    add(L.wo.ref, d, qd, d, CUDA_R_32F);
    add(L.wgu.ref, 2 * ff, d, 2 * ff, CUDA_R_16BF);
    add(L.wdown.ref, d, ff, d, CUDA_R_32F);
  }
  return out;
}

void CudaForward::gemm(const cuda::WeightRef& w, int n_out, int k, const bf16_t* x, int m, void* y, cudaDataType y_type,
                       float beta, int ldy) {
  WeightCopy copy;
  if (needs_dequant(w, m, k)) {
    ensure_dequant_scratch(k);
    copy = making_copies_ ? copies_.make(w) : copies_.made(w);
    if (copy.made) ++path_stats_.copy_products;
  }
  weight_gemm(blas_, stream_, w, n_out, k, x, m, y, y_type, beta, dequant_.get(), dequant_.size(), ldy, copy);
}

void CudaForward::ensure_aux() {
  if (aux_.empty()) aux_.ensure(static_cast<size_t>(n_ctx_) * c_.n_embd);
}

// ------------------------------------------------------------------ one layer

void CudaForward::layer_kernels(int l, float* h, const LayerCall& c) {
  const bool fused = fused_layer(l, c.m);
  // Decode-sized rows: the Q|K|V product finishes its rows itself (one kernel fewer a layer).
  const cuda::QkvFinishArgs finish = qkv_finish_args(l, c);
  const bool finished = fused && c.row0 == 0 && qkv_finish_fuses(l, finish);
  layer_qkv(l, h, c.m, fused, finished ? &finish : nullptr);
  layer_attention(l, c, finished);
  layer_output(l, h, c.m, fused);
}

bool CudaForward::qkv_finish_fuses(int l, const cuda::QkvFinishArgs& f) const {
  bool fuses = true;
  for (const cuda::MatrixPart& part : w_->layers[l].wqkv.parts)
    fuses = fuses && cuda::qkv_finish_fuses(f, static_cast<int>(part.row0), static_cast<int>(part.rows));
  return fuses;
}

bool CudaForward::fused_layer(int l, int m) const {
  const cuda::CudaLayerWeights& L = w_->layers[l];
  const int d = c_.n_embd, qd = c_.n_heads * c_.head_dim;
  bool fused = cuda::gemv_applies(m, d) && cuda::gemv_applies(m, c_.n_ff) && cuda::gemv_applies(m, qd) &&
               cuda::gemv_applies(L.wgu.ref.format, m, d);
  for (const cuda::MatrixPart& part : L.wqkv.parts) fused = fused && cuda::gemv_applies(part.ref.format, m, d);
  return fused;
}

void CudaForward::layer_qkv(int l, const float* h, int m, bool fused, const cuda::QkvFinishArgs* finish) {
  const cuda::CudaLayerWeights& L = w_->layers[l];
  const int d = c_.n_embd, qkv_n = c_.n_heads * c_.head_dim + 2 * c_.n_kv_heads * c_.head_dim;
  // Q|K|V is one matrix, or its parts one at a time where their types differ (each a slice of
  // the qkv rows).
  if (!fused) cuda::rmsnorm_bf16(h, L.attn_norm.get(), m, d, c_.rms_eps, xn_.get(), stream_);
  for (const cuda::MatrixPart& part : L.wqkv.parts) {
    float* y = qkv_.get() + part.row0;
    if (fused) {
      cuda::GemvArgs g;
      set_weight(g, part.ref);
      g.n_out = static_cast<int>(part.rows), g.k = d, g.m = m;
      g.norm_in = h, g.norm_w = L.attn_norm.get(), g.eps = c_.rms_eps;
      g.y = y, g.ldy = qkv_n, g.y_f32 = true;
      if (finish) g.finish = *finish, g.finish_row0 = static_cast<int>(part.row0);
      cuda::gemv(g, stream_);
    } else {
      gemm(part.ref, static_cast<int>(part.rows), d, xn_.get(), m, y, CUDA_R_32F, 0.0f, qkv_n);
    }
  }
}

cuda::QkvFinishArgs CudaForward::qkv_finish_args(int l, int m, const int32_t* pos) const {
  const cuda::CudaLayerWeights& L = w_->layers[l];
  cuda::QkvFinishArgs a{};
  a.qkv = qkv_.get(), a.m = m, a.pos = pos, a.bias = L.bqkv.empty() ? nullptr : L.bqkv.get();
  a.rope_cos = rope_cos_.get(), a.rope_sin = rope_sin_.get();
  a.n_heads = c_.n_heads, a.n_kv_heads = c_.n_kv_heads, a.head_dim = c_.head_dim, a.neox = c_.rope_neox;
  a.q = q_.get();
  return a;
}

cuda::QkvFinishArgs CudaForward::qkv_finish_args(int l, const LayerCall& c) const {
  const int hd = c_.head_dim, kvd = c_.n_kv_heads * hd, qd = c_.n_heads * hd;
  const CudaForward& kv = c.kv ? *c.kv : *this;
  const size_t row0 = c.row0;
  cuda::QkvFinishArgs qa = qkv_finish_args(l, c.m, c.d_pos);
  qa.qkv += row0 * (qd + 2 * kvd), qa.q += row0 * qd;
  qa.k_cache = kv.k_cache_at(l), qa.v_cache = kv.v_cache_at(l), qa.kpos = kv.kpos_at(l), qa.slot0 = c.slot0;
  qa.slot0_dev = c.slot0_dev;
  return qa;
}

void CudaForward::layer_attention(int l, const LayerCall& c, bool finished) {
  const int hd = c_.head_dim, kvd = c_.n_kv_heads * hd, qd = c_.n_heads * hd;
  const CudaForward& kv = c.kv ? *c.kv : *this;
  half_t* kc = kv.k_cache_at(l);
  half_t* vc = kv.v_cache_at(l);
  int32_t* kpos = kv.kpos_at(l);
  const size_t row0 = c.row0;
  if (!finished) cuda::qkv_finish(qkv_finish_args(l, c), stream_);

  const half_t *k_att = kc, *v_att = vc;
  const int32_t *kpos_att = kpos, *key_slots = c.key_slots;
  if (c.row_key_end_b) {
    key_slots = nullptr;  // the two runs are slots themselves
  } else if (c.gather_keys) {
    const size_t n = static_cast<size_t>(c.n_keys);
    if (pos_gather_.size() < n) {  // by half again, capped at the context: few reallocations
      const size_t cap = std::min<size_t>(n_ctx_, n + n / 2);
      grow(k_gather_, cap * kvd);
      grow(v_gather_, cap * kvd);
      grow(pos_gather_, cap);
    }
    cuda::gather_kv(kc, vc, kpos, c.key_slots, c.n_keys, kvd, k_gather_.get(), v_gather_.get(), pos_gather_.get(),
                    stream_);
    k_att = k_gather_.get(), v_att = v_gather_.get(), kpos_att = pos_gather_.get(), key_slots = nullptr;
  }
  cuda::AttentionArgs aa{q_.get() + row0 * qd,
                         c.m,
                         c.d_pos,
                         k_att,
                         v_att,
                         kpos_att,
                         key_slots,
                         c.n_keys,
                         c.slot0,
                         c_.n_heads,
                         c_.n_kv_heads,
                         hd,
                         1.0f / std::sqrt(static_cast<float>(hd)),
                         att_.get() + row0 * qd};
  aa.n_keys_dev = c.n_keys_dev;
  aa.row_key_end = c.row_key_end;
  if (c.row_key_end_b) aa.row_key_end_b = c.row_key_end_b, aa.run_b = c.slot0, aa.n_keys = c.key_extent;
  const size_t scratch = cuda::attention_scratch_floats(aa);
  if (scratch) grow(att_scratch_, scratch);
  cuda::attention(aa, att_scratch_.get(), stream_);
  if (c.want_importance) {
    cuda::AttentionArgs ia = aa;
    if (c.row_key_end_b) {  // the importance is over the listed keys, in their order
      ia.key_slots = c.key_slots, ia.n_keys = c.n_keys, ia.row_key_end_b = nullptr, ia.run_b = 0;
    }
    grow(imp_scratch_, cuda::importance_scratch_floats(ia));
    grow(importance_d_, static_cast<size_t>(ia.n_keys));
    cuda::last_row_importance(ia, c.m - 1, imp_scratch_.get(), importance_d_.get(), stream_);
  }
}

void CudaForward::layer_attention_rows(int l, int m, const cuda::SequenceRows& rows, int max_keys) {
  cuda::QkvFinishArgs qa = qkv_finish_args(l, m, pos_d_.get());
  qa.seqs = rows;
  cuda::qkv_finish(qa, stream_);
  cuda::AttentionArgs aa{};
  aa.q = q_.get(), aa.m = m, aa.qpos = pos_d_.get(), aa.n_keys = max_keys;
  aa.n_heads = c_.n_heads, aa.n_kv_heads = c_.n_kv_heads, aa.head_dim = c_.head_dim;
  aa.scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim)), aa.out = att_.get();
  aa.seqs = rows;
  grow(att_scratch_, cuda::attention_scratch_floats(aa));
  cuda::attention(aa, att_scratch_.get(), stream_);
}

void CudaForward::layer_output(int l, float* h, int m, bool fused) {
  const cuda::CudaLayerWeights& L = w_->layers[l];
  const int d = c_.n_embd, qd = c_.n_heads * c_.head_dim, ff = c_.n_ff;
  gemm(L.wo.ref, d, qd, att_.get(), m, h, CUDA_R_32F, 1.0f);
  if (fused) {
    cuda::GemvArgs g;
    set_weight(g, L.wgu.ref);
    g.n_out = ff, g.k = d, g.m = m;
    g.norm_in = h, g.norm_w = L.ffn_norm.get(), g.eps = c_.rms_eps;
    g.swiglu = true, g.y = act_.get(), g.y_f32 = false;
    cuda::gemv(g, stream_);
    gemm(L.wdown.ref, d, ff, act_.get(), m, h, CUDA_R_32F, 1.0f);
    return;
  }
  for (int r0 = 0; r0 < m; r0 += kFfnChunkRows) {
    const int rm = std::min(kFfnChunkRows, m - r0);
    float* hc = h + static_cast<size_t>(r0) * d;
    cuda::rmsnorm_bf16(hc, L.ffn_norm.get(), rm, d, c_.rms_eps, xn_.get(), stream_);
    gemm(L.wgu.ref, 2 * ff, d, xn_.get(), rm, gu_.get(), CUDA_R_16BF, 0.0f);
    cuda::swiglu_bf16(gu_.get(), rm, ff, act_.get(), stream_);
    gemm(L.wdown.ref, d, ff, act_.get(), rm, hc, CUDA_R_32F, 1.0f);
  }
}

void CudaForward::logits_kernels(const float* h_rows, int m) {
  grow(logits_d_, static_cast<size_t>(m) * c_.n_vocab);
  if (cuda::gemv_applies(w_->output.format, m, c_.n_embd)) {
    cuda::GemvArgs g;
    set_weight(g, w_->output);
    g.n_out = c_.n_vocab, g.k = c_.n_embd, g.m = m;
    g.norm_in = h_rows, g.norm_w = w_->output_norm.get(), g.eps = c_.rms_eps;
    g.y = logits_d_.get(), g.y_f32 = true;
    return cuda::gemv(g, stream_);
  }
  cuda::rmsnorm_bf16(h_rows, w_->output_norm.get(), m, c_.n_embd, c_.rms_eps, xn_.get(), stream_);
  gemm(w_->output, c_.n_vocab, c_.n_embd, xn_.get(), m, logits_d_.get(), CUDA_R_32F, 0.0f);
}

void CudaForward::fetch_logits() {
  check(cudaMemcpyAsync(logits_h_.get(), logits_d_.get(), c_.n_vocab * sizeof(float), cudaMemcpyDeviceToHost,
                        stream_),
        "logits to host");
  sync_stream();
  logits_.assign(logits_h_.get(), logits_h_.get() + c_.n_vocab);
}

// ------------------------------------------------------------------ prefill

void CudaForward::prefill(std::span<const int32_t> tokens, const LayerSchedule& sched,
                          const std::function<void(int, int)>& progress) {
  const cuda::PdlScope pdl(pdl_);
  mirror_dirty_ = true;
  last_revived_ = false;
  steady_backoff_ = steady_skip_ = 0;
  run_prefill(*this, index_, counters_, tokens, n_past_, c_.n_vocab, sched, progress);
  n_past_ += static_cast<int>(tokens.size());
}

void CudaForward::prefill_embed(std::span<const int32_t> tokens, std::span<const int32_t> pos,
                                const PrefillPlan& plan) {
  const int n = static_cast<int>(tokens.size());
  prefill_n_ = n, list_ = 0, cur_ = 0;
  ensure_rows(n);
  if (plan.n_lists > 1) ensure_aux();
  grow(alive_pos_d_, static_cast<size_t>(plan.n_lists) * n);
  // The first layer that computes fewer rows than the prompt: from there on the decode step that
  // completes the deferred rows multiplies the same matrices over a large batch again. After the
  // prefill's own buffers, so the copies take only what is left.
  const auto deferred = std::find_if(plan.count.begin(), plan.count.end(), [n](int c) { return c < n; });
  copies_ready_ = deferred != plan.count.end() && copies_.prepare(*w_, static_cast<int>(deferred - plan.count.begin()));
  upload(tokens_d_, std::vector<int32_t>(tokens.begin(), tokens.end()));
  check(cudaMemcpyAsync(alive_pos_d_.get(), pos.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
        "positions to device");
  cuda::embed_rows_any(w_->token_embd.ref, tokens_d_.get(), n, c_.n_embd, h_[cur_].get(), stream_);
}

// On the GPU: no host round trip. The scores are the importance layer l - 1 left in importance_d_
// (its rows were slots slot0_.. in alive order).
void CudaForward::prefill_select(int l, int na, int n_keep, std::span<const int32_t> dest) {
  if (dest.empty()) {
    cuda::select_top(importance_d_.get() + slot0_, na - 1, n_keep - 1, dest_d_.get(), stream_);
  } else {
    upload(dest_d_, std::vector<int32_t>(dest.begin(), dest.end()));
  }
  const size_t n = prefill_n_;
  int32_t* pos = alive_pos_d_.get() + list_ * n;
  cuda::compact_rows(h_[cur_].get(), pos, dest_d_.get(), na, c_.n_embd, h_[1 - cur_].get(), pos + n, aux_.get(),
                     stream_);
  cur_ = 1 - cur_;
  ++list_;
}

void CudaForward::prefill_layer(int l, int m, int slot0, bool want_importance) {
  LayerCall c;
  c.m = m, c.d_pos = alive_pos_d_.get() + list_ * prefill_n_, c.slot0 = slot0, c.n_keys = slot0 + m;
  c.want_importance = want_importance;
  making_copies_ = copies_ready_ && list_ > 0;
  layer_kernels(l, h_[cur_].get(), c);
  making_copies_ = false;
  slot0_ = slot0;
}

std::span<const int32_t> CudaForward::prefill_finish(const PrefillPlan& plan, int n) {
  logits_kernels(h_[cur_].get() + static_cast<size_t>(plan.count.back() - 1) * c_.n_embd);
  const size_t total = static_cast<size_t>(plan.n_lists) * n;
  alive_pos_h_.ensure(total);
  check(
      cudaMemcpyAsync(alive_pos_h_.get(), alive_pos_d_.get(), total * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_),
      "alive lists to host");
  fetch_logits();  // waits for the stream: the lists are there too
  return {alive_pos_h_.get(), total};
}

}  // namespace lazyllm::cuda_pass
