// The CUDA forward pass: executes LazyLLM's plan (prune/lazy_plan.h), as the CPU's CpuForward
// (runtime/cpu/cpu_forward.cpp) does, with every tensor on the GPU and the shared KVIndex on the host.
//
// Prefill (walked by runtime/prefill.cpp): LazyLLM's selection runs on the GPU too
// (cuda::select_top, the same choice as the shared prune/select.h: ties to the lower index), so a
// pruning layer launches a selection and a compaction and never waits for the host; the host
// learns which tokens stayed alive at each layer once, after the last layer, from the lists the
// GPU kept.
// Baseline decode (nothing pruned): one CUDA graph per context bucket replays the whole token's
// launch chain; the kernels read the token, its position and the key count from device memory.
// LazyLLM decode: a steady step (nothing revives: prune/lazy_plan.h's SteadyDecodePlan) runs as
// one CUDA graph that selects on the GPU, from a device mirror of the KV index's slots and depths;
// if a kept token would revive, the graph says so and the step is redone by the shared DecodeStep,
// which plans each layer from the importance the GPU computes while rows move on the GPU.
//
// Layer: RMSNorm -> one QKV GEMM -> bias + RoPE + KV store -> attention -> Wo GEMM accumulating
// into the residual -> RMSNorm -> one gate|up GEMM -> SwiGLU -> down GEMM accumulating into the
// residual. Decode-sized batches fuse each RMSNorm into the matrix-vector product after it and
// SwiGLU into the gate|up one. The residual stream is float; GEMM operands are bf16 with float
// accumulation; Q, K, V and the attention probabilities are half, as the CPU's f16 KV cache.
#include "runtime/cuda/cuda_forward.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "kernels/cpu/quant.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/pdl.h"
#include "lazyllm/lazyllm.h"
#include "model/weights.h"
#include "prune/lazy_plan.h"
#include "prune/select.h"
#include "runtime/cuda/cuda_weights.h"
#include "runtime/prefill.h"

namespace lazyllm {
namespace {

using cuda::bf16_t;
using cuda::check;
using cuda::DeviceBuffer;
using cuda::half_t;
using cuda::PinnedBuffer;

constexpr int kFfnChunkRows = 8192;  // bounds the n_ff-wide buffers during long prefills
constexpr int kGraphBucket = 1024;   // decode graphs are captured per this many keys of capacity
// Decode batches of this many rows (revivals, completion) gather their listed keys into contiguous
// rows so the prefill's TMA kernel runs instead of the listed-key one (a gather costs one read
// and write of the keys; the attention it speeds up reads them once per block of rows).
constexpr int kGatherRows = 128;

// Columns [0, n) of Y (m rows of ldy, float or bf16) = X (m rows of k, bf16) W^T for W n rows of
// k in bf16, with cuBLAS; beta = 1 accumulates into Y (the residual add).
void cublas_gemm(cublasHandle_t h, const bf16_t* w, int n, int k, const bf16_t* x, int m, void* y, int ldy,
                 cudaDataType y_type, float beta) {
  const float alpha = 1.0f;
  check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w, CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, y,
                     y_type, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
}

// The weight of a matrix-vector product.
void set_weight(cuda::GemvArgs& g, const cuda::WeightRef& w) {
  if (w.format == cuda::WeightFormat::kBf16) g.w = static_cast<const bf16_t*>(w.w);
  else g.q = w;
}

// Whether weight_gemm needs the dequantization scratch for this product.
bool needs_dequant(const cuda::WeightRef& w, int m, int k) {
  return w.format != cuda::WeightFormat::kBf16 && !cuda::gemv_applies(w.format, m, k);
}

// Y (m rows of n_out, float or bf16) = X (m rows of k, bf16) W^T, W n_out rows of k; beta = 1
// accumulates into Y (the residual add). Decode-sized m uses the matrix-vector kernels; larger
// batches cuBLAS, a quantized W dequantized into `scratch` (at least k elements) a chunk of rows
// at a time.
void weight_gemm(cublasHandle_t h, cudaStream_t stream, const cuda::WeightRef& w, int n_out, int k, const bf16_t* x,
                 int m, void* y, cudaDataType y_type, float beta, bf16_t* scratch, size_t scratch_elems) {
  if (cuda::gemv_applies(w.format, m, k)) {
    cuda::GemvArgs g;
    set_weight(g, w);
    g.n_out = n_out, g.k = k, g.m = m, g.x = x, g.y = y, g.y_f32 = y_type == CUDA_R_32F, g.beta = beta;
    return cuda::gemv(g, stream);
  }
  if (w.format == cuda::WeightFormat::kBf16)
    return cublas_gemm(h, static_cast<const bf16_t*>(w.w), n_out, k, x, m, y, n_out, y_type, beta);
  if (scratch_elems < static_cast<size_t>(k)) throw std::logic_error("CUDA forward: no dequantization scratch");
  const int chunk = static_cast<int>(std::min<size_t>(n_out, scratch_elems / k));
  const size_t y_elem = y_type == CUDA_R_32F ? sizeof(float) : sizeof(bf16_t);
  for (int r0 = 0; r0 < n_out; r0 += chunk) {
    const int rows = std::min(chunk, n_out - r0);
    cuda::dequantize_bf16(cuda::weight_rows(w, r0, k), rows, k, scratch, stream);
    cublas_gemm(h, scratch, rows, k, x, m, static_cast<char*>(y) + r0 * y_elem, n_out, y_type, beta);
  }
}

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
  const int32_t* row_key_end = nullptr;  // listed keys: keys visible to each row (optional)
  bool gather_keys = false;  // copy the listed keys together first, so the prefill's fastest kernel runs
  bool want_importance = false;  // the last row's head-averaged probabilities into importance_d_
};

bool env_off(const char* name) {
  const char* e = std::getenv(name);
  return e && (std::string_view(e) == "0" || std::string_view(e) == "off");
}

class CudaForward final : public ForwardBackend, private PrefillDevice {
 public:
  CudaForward(const Model& model, int n_ctx, GpuWeights gpu_weights);
  ~CudaForward() override;

  void prefill(std::span<const int32_t> tokens, const LayerSchedule& s,
               const std::function<void(int, int)>& progress) override;
  void decode(int32_t token, const LayerSchedule& s) override;
  const std::vector<float>& logits() const override { return logits_; }
  int n_past() const override { return n_past_; }
  int n_ctx() const override { return n_ctx_; }
  void clear() override;
  const ForwardCounters& counters() const override { return counters_; }
  int64_t aux_bytes() const override { return aux_entries() * c_.n_embd * static_cast<int64_t>(sizeof(float)); }
  int64_t aux_entries() const override { return index_.aux_entries(); }
  int kv_depth(int t) const override { return index_.depth(t); }
  void set_record_selection(bool on) override { record_selection_ = on; }
  const std::vector<std::vector<int>>& last_selection() const override { return selection_; }
  DecodePathStats decode_path_stats() const override { return path_stats_; }
  Session::DeviceMemory device_memory() const override {
    const int64_t kv =
        static_cast<int64_t>((k_cache_.size() + v_cache_.size()) * sizeof(half_t) + kpos_.size() * sizeof(int32_t));
    return {w_->bytes, static_cast<int64_t>(dequant_.size() * sizeof(bf16_t)), kv};
  }

 private:
  // PrefillDevice: the device half of run_prefill().
  void prefill_embed(std::span<const int32_t> tokens, std::span<const int32_t> pos, const PrefillPlan& plan) override;
  void prefill_select(int l, int n_rows, int n_keep, std::span<const int32_t> dest) override;
  void prefill_layer(int l, int n_rows, int slot0, bool want_importance) override;
  std::span<const int32_t> prefill_finish(const PrefillPlan& plan, int n) override;
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
  cudaGraphExec_t capture(const std::function<void()>& chain);
  void drop_graphs();
  void decode_baseline(int32_t token);
  // Steady lazy decode: the launch chain (keys selected on the GPU, counts and slots from
  // steady_d_), its graph per key capacity, and the attempt (false: redo through DecodeStep).
  void steady_chain(int capacity, const SteadyDecodePlan& plan);
  bool decode_steady(int32_t token, const LayerSchedule& s);
  void upload_index_mirror(int n_tokens);
  // The host path of a decode step: DecodeStep's plan, layer by layer.
  void decode_planned(int32_t token, const LayerSchedule& s);
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
  // weight_gemm() with this session's handles and scratch.
  void gemm(const cuda::WeightRef& w, int n_out, int k, const bf16_t* x, int m, void* y, cudaDataType y_type,
            float beta);
  void ensure_dequant_scratch(int k);

  const ModelConfig& c_;
  std::shared_ptr<const cuda::CudaWeights> w_;
  int n_ctx_;
  int n_past_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;

  // KV cache: per layer n_ctx slots of kv_dim halves, with each slot's position.
  DeviceBuffer<half_t> k_cache_, v_cache_;
  DeviceBuffer<int32_t> kpos_;
  KVIndex index_;  // slots, depths, Aux Cache membership (shared bookkeeping)
  DeviceBuffer<float> rope_cos_, rope_sin_;
  // Aux Cache: a row per position (allocated at the first pruning); membership in index_.
  DeviceBuffer<float> aux_;

  // Activations, grown (geometrically) to the largest batch seen.
  int rows_cap_ = 0;
  DeviceBuffer<float> h_[2], qkv_, att_scratch_, imp_scratch_, importance_d_, logits_d_;
  bool pdl_ = true;  // programmatic dependent launch for this session's kernels (see pdl.h)
  DeviceBuffer<bf16_t> xn_, att_, gu_, act_;
  // Quantized weights dequantized for prefill's products (w_->scratch_elems: the largest layer
  // matrix, gate and up counted apart), made before the first batch the matrix-vector kernels
  // do not take, so decode graphs never see it allocated.
  DeviceBuffer<bf16_t> dequant_;
  DeviceBuffer<half_t> q_;
  // Listed keys gathered together for large decode batches (revivals, completion).
  DeviceBuffer<half_t> k_gather_, v_gather_;
  DeviceBuffer<int32_t> pos_gather_;
  DeviceBuffer<int32_t> tokens_d_, pos_d_, src_idx_d_, dst_idx_d_, key_slots_d_, row_keys_d_;
  // Prefill's alive positions per pruning step (list e at e * n) and the selection's output; the
  // prompt's length, the current list, which of h_ holds the rows, and the first slot of the last
  // layer computed (its importance starts there).
  DeviceBuffer<int32_t> alive_pos_d_, dest_d_;
  PinnedBuffer<int32_t> alive_pos_h_;
  size_t prefill_n_ = 0, list_ = 0;
  int cur_ = 0, slot0_ = 0;
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
  // Steady lazy decode: graphs by key capacity for the selection pattern steady_sig_; the step's
  // descriptor (token, position, miss flag, then per layer the new token's slot, the key count,
  // and the selection's candidates and kept count); the kept keys of each selecting layer; the
  // device mirror of the index (slots by layer and position, depths), stale when mirror_dirty_.
  std::map<int, cudaGraphExec_t> steady_graphs_;
  std::vector<int32_t> steady_sig_;
  DeviceBuffer<int32_t> steady_d_, steady_keys_d_, slot_table_d_, depth_d_;
  PinnedBuffer<int32_t> steady_h_;
  bool use_steady_ = true, mirror_dirty_ = true;
  // When to try: not while host steps revive, and after a miss not for a while (doubling).
  bool last_revived_ = false;
  int steady_backoff_ = 0, steady_skip_ = 0;
  DecodePathStats path_stats_;
  PinnedBuffer<float> importance_h_;  // LazyLLM decode: the new token's attention, per key
  std::vector<float> logits_;
  ForwardCounters counters_;
  bool record_selection_ = false;
  std::vector<std::vector<int>> selection_;
};

CudaForward::CudaForward(const Model& model, int n_ctx, GpuWeights gpu_weights)
    : c_(model.config()), n_ctx_(n_ctx), index_(model.config().n_layers, n_ctx) {
  if (c_.head_dim % 2 != 0) throw Error("CUDA backend: odd head size");
  check(cudaSetDevice(0), "cudaSetDevice");
  w_ = cuda::cuda_weights_for(model, gpu_weights);
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
  for (auto* b : {&tokens_d_, &pos_d_, &src_idx_d_, &dst_idx_d_, &key_slots_d_, &row_keys_d_, &dest_d_})
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
}

CudaForward::~CudaForward() {
  drop_graphs();
  if (blas_) cublasDestroy(blas_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaForward::drop_graphs() {
  for (auto& [cap, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
  for (auto& [cap, exec] : steady_graphs_) cudaGraphExecDestroy(exec);
  steady_graphs_.clear();
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
  counters_ = {};
  path_stats_ = {};
  mirror_dirty_ = true;
  last_revived_ = false;
  steady_backoff_ = steady_skip_ = 0;
  logits_.clear();
  selection_.clear();
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
  if (m > cuda::kGemvMaxRows && w_->scratch_elems > 0) dequant_.ensure(w_->scratch_elems);
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

void CudaForward::gemm(const cuda::WeightRef& w, int n_out, int k, const bf16_t* x, int m, void* y, cudaDataType y_type,
                       float beta) {
  if (needs_dequant(w, m, k)) ensure_dequant_scratch(k);
  weight_gemm(blas_, stream_, w, n_out, k, x, m, y, y_type, beta, dequant_.get(), dequant_.size());
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
    set_weight(g, L.wqkv.ref);
    g.n_out = qd + 2 * kvd, g.k = d, g.m = m;
    g.norm_in = h, g.norm_w = L.attn_norm.get(), g.eps = c_.rms_eps;
    g.y = qkv_.get(), g.y_f32 = true;
    cuda::gemv(g, stream_);
  } else {
    cuda::rmsnorm_bf16(h, L.attn_norm.get(), m, d, c_.rms_eps, xn_.get(), stream_);
    gemm(L.wqkv.ref, qd + 2 * kvd, d, xn_.get(), m, qkv_.get(), CUDA_R_32F, 0.0f);
  }
  cuda::QkvFinishArgs qa{qkv_.get(), m,  c.d_pos, L.bqkv.empty() ? nullptr : L.bqkv.get(),
                         rope_cos_.get(), rope_sin_.get(), c_.n_heads, c_.n_kv_heads, hd, c_.rope_neox,
                         q_.get(), kc, vc, kpos, c.slot0};
  qa.slot0_dev = c.slot0_dev;
  cuda::qkv_finish(qa, stream_);

  const half_t *k_att = kc, *v_att = vc;
  const int32_t *kpos_att = kpos, *key_slots = c.key_slots;
  if (c.gather_keys) {
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
  cuda::AttentionArgs aa{q_.get(), m, c.d_pos, k_att, v_att, kpos_att, key_slots, c.n_keys, c.slot0,
                         c_.n_heads, c_.n_kv_heads, hd, 1.0f / std::sqrt(static_cast<float>(hd)), att_.get()};
  aa.n_keys_dev = c.n_keys_dev;
  aa.row_key_end = c.row_key_end;
  const size_t scratch = cuda::attention_scratch_floats(aa);
  if (scratch) grow(att_scratch_, scratch);
  cuda::attention(aa, att_scratch_.get(), stream_);
  if (c.want_importance) {
    grow(imp_scratch_, cuda::importance_scratch_floats(aa));
    grow(importance_d_, static_cast<size_t>(aa.n_keys));
    cuda::last_row_importance(aa, m - 1, imp_scratch_.get(), importance_d_.get(), stream_);
  }
  gemm(L.wo.ref, d, qd, att_.get(), m, h, CUDA_R_32F, 1.0f);

  if (small) {
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

void CudaForward::logits_kernels(const float* h_row) {
  if (cuda::gemv_applies(1, c_.n_embd)) {
    cuda::GemvArgs g;
    set_weight(g, w_->output);
    g.n_out = c_.n_vocab, g.k = c_.n_embd, g.m = 1;
    g.norm_in = h_row, g.norm_w = w_->output_norm.get(), g.eps = c_.rms_eps;
    g.y = logits_d_.get(), g.y_f32 = true;
    return cuda::gemv(g, stream_);
  }
  cuda::rmsnorm_bf16(h_row, w_->output_norm.get(), 1, c_.n_embd, c_.rms_eps, xn_.get(), stream_);
  gemm(w_->output, c_.n_vocab, c_.n_embd, xn_.get(), 1, logits_d_.get(), CUDA_R_32F, 0.0f);
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
  layer_kernels(l, h_[cur_].get(), c);
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

// ------------------------------------------------------------------ decode

void CudaForward::decode_chain(int capacity) {
  const int32_t* token = step_d_.get();
  const int32_t* pos = step_d_.get() + 1;
  const int32_t* n_keys = step_d_.get() + 2;
  cuda::embed_rows_any(w_->token_embd.ref, token, 1, c_.n_embd, h_[0].get(), stream_);
  for (int l = 0; l < c_.n_layers; ++l) {
    LayerCall c;
    c.m = 1, c.d_pos = pos, c.slot0_dev = pos, c.n_keys = capacity, c.n_keys_dev = n_keys;
    layer_kernels(l, h_[0].get(), c);
  }
  logits_kernels(h_[0].get());
}

cudaGraphExec_t CudaForward::capture(const std::function<void()>& chain) {
  cudaGraph_t graph = nullptr;
  check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  try {
    chain();
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
  return exec;
}

cudaGraphExec_t CudaForward::decode_graph(int capacity) {
  auto it = graphs_.find(capacity);
  if (it != graphs_.end()) return it->second;
  return graphs_[capacity] = capture([&] { decode_chain(capacity); });
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
  index_.mark_prompt(p, false);
  for (int l = 0; l < n_layers; ++l) {
    if (index_.store(l, p) != p) throw std::logic_error("CUDA baseline decode: slot is not the position");
    if (record_selection_)
      for (int t = 0; t < p; ++t) selection_[l].push_back(t);
  }
  counters_.token_layers += n_layers;
  ++n_past_;
}

// ------------------------------------------------------------------ steady lazy decode

// Mirrors the index's slots (every layer, tokens [0, n)) and depths on the GPU for the steady
// graph; after a steady step the graph books the new token there itself.
void CudaForward::upload_index_mirror(int n) {
  const size_t L = c_.n_layers, pitch = static_cast<size_t>(n_ctx_) * sizeof(int32_t);
  if (slot_table_d_.empty()) {
    grow(slot_table_d_, L * n_ctx_);
    grow(depth_d_, static_cast<size_t>(n_ctx_));
  }
  if (n > 0) {
    check(cudaMemcpy2DAsync(slot_table_d_.get(), pitch, index_.slots_of_layer(0), pitch, n * sizeof(int32_t), L,
                            cudaMemcpyHostToDevice, stream_),
          "index slots to device");
    check(cudaMemcpyAsync(depth_d_.get(), index_.depths(), n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
          "index depths to device");
  }
  mirror_dirty_ = false;
}

void CudaForward::steady_chain(int capacity, const SteadyDecodePlan& plan) {
  const int L = c_.n_layers;
  int32_t* sd = steady_d_.get();
  const int32_t *token = sd, *pos = sd + 1, *slot = sd + 3, *n_keys = sd + 3 + L, *nk = sd + 3 + 2 * L;
  int32_t* miss = sd + 2;
  cuda::embed_rows_any(w_->token_embd.ref, token, 1, c_.n_embd, h_[0].get(), stream_);
  const int32_t* keys = nullptr;  // the kept keys' positions since the last selection
  int32_t* keys_out = steady_keys_d_.get();
  for (int l = 0; l < L; ++l) {
    if (plan.selects[l]) {
      cuda::select_top_dev(importance_d_.get(), nk + 2 * l, dest_d_.get(), stream_);
      cuda::SteadyKeysArgs a{keys, dest_d_.get(), nk + 2 * l, pos, depth_d_.get(), plan.need_depth[l], capacity,
                             keys_out, miss};
      cuda::steady_keys(a, stream_);
      keys = keys_out;
      keys_out += n_ctx_ + 1;
    }
    LayerCall c;
    c.m = 1, c.d_pos = pos, c.slot0_dev = slot + l, c.n_keys = capacity, c.n_keys_dev = n_keys + l;
    if (l >= plan.first_listed) {
      cuda::listed_slots(slot_table_d_.get() + static_cast<size_t>(l) * n_ctx_, keys, n_keys + l, slot + l, capacity,
                         key_slots_d_.get(), stream_);
      c.key_slots = key_slots_d_.get();
    }
    c.want_importance = l + 1 < L && plan.selects[l + 1];
    layer_kernels(l, h_[0].get(), c);
  }
  logits_kernels(h_[0].get());
  cuda::steady_book(slot_table_d_.get(), n_ctx_, L, slot, pos, depth_d_.get(), stream_);
}

// One steady step as a graph. Returns false, having booked nothing, when the plan does not
// apply or a kept token had to revive (the GPU's work is then discarded: it wrote only slots
// past each layer's end, which the redone step overwrites, and the mirror, uploaded again).
bool CudaForward::decode_steady(int32_t token, const LayerSchedule& sched) {
  const std::optional<SteadyDecodePlan> plan = plan_steady_decode(index_, sched);
  if (!plan) return false;
  const int L = c_.n_layers, p = n_past_;
  std::vector<int32_t> sig(plan->selects.begin(), plan->selects.end());
  sig.insert(sig.end(), plan->need_depth.begin(), plan->need_depth.end());
  sig.push_back(plan->first_listed);
  if (sig != steady_sig_) {
    for (auto& [cap, exec] : steady_graphs_) cudaGraphExecDestroy(exec);
    steady_graphs_.clear();
    steady_sig_ = sig;
  }
  ensure_rows(1);
  const int n_lists = static_cast<int>(std::count(plan->selects.begin(), plan->selects.end(), 1));
  if (steady_keys_d_.size() < static_cast<size_t>(n_lists) * (n_ctx_ + 1))
    grow(steady_keys_d_, static_cast<size_t>(n_lists) * (n_ctx_ + 1));
  if (steady_d_.empty()) {
    grow(steady_d_, 3 + 4 * static_cast<size_t>(L));
    steady_h_.ensure(3 + 4 * static_cast<size_t>(L));
  }
  if (mirror_dirty_) upload_index_mirror(p);
  steady_h_[0] = token, steady_h_[1] = p, steady_h_[2] = 0;
  for (int l = 0; l < L; ++l) {
    steady_h_[3 + l] = plan->slot[l];
    steady_h_[3 + L + l] = plan->n_keys[l];
    steady_h_[3 + 2 * L + 2 * l] = l > 0 ? plan->n_keys[l - 1] - 1 : 0;
    steady_h_[3 + 2 * L + 2 * l + 1] = plan->n_keys[l] - 1;
  }
  check(cudaMemcpyAsync(steady_d_.get(), steady_h_.get(), (3 + 4 * L) * sizeof(int32_t), cudaMemcpyHostToDevice,
                        stream_),
        "decode step to device");
  // Keys at a layer never exceed p + 1; the capacity is bucketed as the baseline's, within the
  // buffers sized for the context.
  const int capacity = std::min(n_ctx_, (p + 1 + kGraphBucket - 1) / kGraphBucket * kGraphBucket);
  auto it = steady_graphs_.find(capacity);
  if (it == steady_graphs_.end())
    it = steady_graphs_.emplace(capacity, capture([&] { steady_chain(capacity, *plan); })).first;
  check(cudaGraphLaunch(it->second, stream_), "cudaGraphLaunch");
  check(cudaMemcpyAsync(steady_h_.get() + 2, steady_d_.get() + 2, sizeof(int32_t), cudaMemcpyDeviceToHost, stream_),
        "decode step flag to host");
  fetch_logits();  // waits for the stream
  if (steady_h_[2] != 0) {
    ++path_stats_.device_misses;
    return false;
  }
  if (record_selection_) {
    std::vector<int32_t> keys(static_cast<size_t>(n_lists) * (n_ctx_ + 1));
    check(cudaMemcpy(keys.data(), steady_keys_d_.get(), keys.size() * sizeof(int32_t), cudaMemcpyDeviceToHost),
          "kept keys to host");
    const int32_t* list = nullptr;
    for (int l = 0, e = 0; l < L; ++l) {
      if (plan->selects[l]) list = keys.data() + static_cast<size_t>(e++) * (n_ctx_ + 1);
      if (list) selection_[l].assign(list, list + plan->n_keys[l] - 1);
      else for (int t = 0; t < p; ++t) selection_[l].push_back(t);
    }
  }
  record_steady_decode(index_, counters_, *plan);
  ++path_stats_.device_steps;
  ++n_past_;
  return true;
}

void CudaForward::decode(int32_t token, const LayerSchedule& sched) {
  const cuda::PdlScope pdl(pdl_);
  const int d = c_.n_embd, n_layers = c_.n_layers;
  const int p = n_past_;
  if (p >= n_ctx_) throw Error("context is full (" + std::to_string(n_ctx_) + " tokens)");
  if (token < 0 || token >= c_.n_vocab) throw Error("token id " + std::to_string(token) + " is out of the vocabulary");
  if (record_selection_) selection_.assign(n_layers, {});

  // Baseline fast path: nothing pruned now or before, so every earlier token has K/V at every
  // layer (in slot = position) and the new token attends to all slots; no per-layer host work.
  const bool graph_kernels = cuda::attention_reads_key_count(c_.head_dim) && cuda::gemv_applies(1, d) &&
                             cuda::gemv_applies(1, c_.n_ff) && cuda::gemv_applies(1, c_.n_heads * c_.head_dim);
  if (!sched.any() && index_.all_full() && index_.tokens() == p && graph_kernels) {
    mirror_dirty_ = true;
    return decode_baseline(token);
  }

  // A re-selecting step: first as a graph, unless host steps are reviving tokens now or a recent
  // attempt missed (each miss doubles the wait, each success halves it).
  if (use_steady_ && graph_kernels && sched.any() && !last_revived_ && steady_skip_ == 0) {
    if (decode_steady(token, sched)) {
      steady_backoff_ /= 2;
      return;
    }
    if (record_selection_) selection_.assign(n_layers, {});
    steady_backoff_ = std::min(64, std::max(1, 2 * steady_backoff_));
    steady_skip_ = steady_backoff_;
  } else if (steady_skip_ > 0) {
    --steady_skip_;
  }
  const int64_t revived = counters_.revived;
  decode_planned(token, sched);
  last_revived_ = counters_.revived != revived;
  mirror_dirty_ = true;
}

void CudaForward::decode_planned(int32_t token, const LayerSchedule& sched) {
  const int d = c_.n_embd, n_layers = c_.n_layers;
  const int p = n_past_;

  // At most the new token and every token short of full depth are computed at one layer: room
  // for them now, before the embedding (growing loses contents).
  ensure_rows(1 + index_.tokens() - index_.full_depth_tokens());
  if (sched.any()) ensure_aux();
  int cur = 0;
  upload(tokens_d_, std::vector<int32_t>{token});
  cuda::embed_rows_any(w_->token_embd.ref, tokens_d_.get(), 1, d, h_[cur].get(), stream_);

  DecodeStep step(index_, counters_, sched, p);
  std::span<const float> importance;
  std::vector<int32_t> src;
  int prev_rows = 1;
  for (int l = 0; l < n_layers; ++l) {
    const DecodeLayerPlan& plan = step.next_layer(importance);
    const int m = static_cast<int>(plan.rows.size());
    if (!plan.stop_rows.empty()) {
      upload(src_idx_d_, plan.stop_rows);
      upload(dst_idx_d_, plan.stop_tokens);
      cuda::copy_rows(h_[cur].get(), nullptr, src_idx_d_.get(), dst_idx_d_.get(), static_cast<int>(plan.stop_rows.size()),
                      d, aux_.get(), stream_);
    }
    // The rows move only when the batch changes (a revival, a stop); the new token alone stays.
    bool same_rows = m == prev_rows;
    for (int i = 0; i < m && same_rows; ++i) same_rows = plan.row_src[i] == i;
    if (!same_rows) {
      src.resize(m);
      for (int i = 0; i < m; ++i) src[i] = plan.row_src[i] >= 0 ? plan.row_src[i] : -plan.rows[i] - 1;
      upload(src_idx_d_, src);
      cuda::copy_rows(h_[cur].get(), aux_.get(), src_idx_d_.get(), nullptr, m, d, h_[1 - cur].get(), stream_);
      cur = 1 - cur;
    }
    prev_rows = m;
    upload(pos_d_, plan.rows);
    LayerCall c;
    c.m = m, c.d_pos = pos_d_.get(), c.slot0 = plan.slot0, c.n_keys = static_cast<int>(plan.keys.size());
    if (!plan.all_keys) {
      upload(key_slots_d_, plan.key_slots);
      c.key_slots = key_slots_d_.get();
      if (m > 16) {  // batches the flash kernels take: each block of rows stops at its own keys
        upload(row_keys_d_, plan.row_keys);
        c.row_key_end = row_keys_d_.get();
        c.gather_keys = m >= kGatherRows;
      }
    }
    c.want_importance = plan.want_importance;
    layer_kernels(l, h_[cur].get(), c);
    if (c.want_importance) {
      importance_h_.ensure(std::max(c.n_keys, 1));
      check(cudaMemcpyAsync(importance_h_.get(), importance_d_.get(), c.n_keys * sizeof(float), cudaMemcpyDeviceToHost,
                            stream_),
            "importance to host");
      sync_stream();
      importance = {importance_h_.get(), static_cast<size_t>(c.n_keys)};
    }
    if (record_selection_) selection_[l].assign(step.selected().begin(), step.selected().end());
  }
  // Rows still carried after the last layer now have K/V at every layer: nothing to keep.
  logits_kernels(h_[cur].get() + static_cast<size_t>(prev_rows - 1) * d);
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

std::vector<float> cuda_weight_product(const CudaProductCase& c) {
  if (cuda_device_count() == 0) throw Error("CUDA backend: no usable GPU");
  check(cudaSetDevice(0), "cudaSetDevice");
  cuda::prepare_kernels();
  const cuda::PdlScope pdl(false);  // on the legacy default stream; the forward's own tests cover PDL
  const int m = c.m, k = c.k, n_out = c.n_out, w_rows = c.swiglu ? 2 * n_out : n_out;
  const bool norm = !c.norm_w.empty();
  if (c.x.size() != static_cast<size_t>(m) * k || (norm && c.norm_w.size() != static_cast<size_t>(k)) ||
      (!c.y0.empty() && c.y0.size() != static_cast<size_t>(m) * n_out) || (c.swiglu && !c.y0.empty()))
    throw Error("cuda_weight_product: inconsistent case");
  WeightView v;
  v.type = c.type, v.data = c.w, v.rows = w_rows, v.cols = k;
  int64_t bytes = 0;
  const cuda::CudaMatrix W = cuda::upload_matrix({&v}, GpuWeights::kNative, bytes);

  std::vector<uint16_t> xb(c.x.size());
  for (size_t i = 0; i < xb.size(); ++i) xb[i] = fp32_to_bf16(c.x[i]);
  DeviceBuffer<float> xf_d(c.x.size()), nw_d(std::max(1, k)), y_d(static_cast<size_t>(m) * n_out);
  DeviceBuffer<bf16_t> xb_d(c.x.size()), gu_d(static_cast<size_t>(m) * 2 * n_out),
      act_d(static_cast<size_t>(m) * n_out);
  DeviceBuffer<bf16_t> scratch(static_cast<size_t>(std::max(1, c.scratch_rows)) * k);
  check(cudaMemcpy(xf_d.get(), c.x.data(), c.x.size() * sizeof(float), cudaMemcpyHostToDevice), "x to device");
  check(cudaMemcpy(xb_d.get(), xb.data(), xb.size() * sizeof(uint16_t), cudaMemcpyHostToDevice), "x to device");
  if (norm) check(cudaMemcpy(nw_d.get(), c.norm_w.data(), k * sizeof(float), cudaMemcpyHostToDevice), "norm to device");
  if (!c.y0.empty())
    check(cudaMemcpy(y_d.get(), c.y0.data(), c.y0.size() * sizeof(float), cudaMemcpyHostToDevice), "y to device");
  cublasHandle_t blas = nullptr;
  check(cublasCreate(&blas), "cublasCreate");
  const float beta = c.y0.empty() ? 0.0f : 1.0f;
  try {
    if (cuda::gemv_applies(W.ref.format, m, k)) {  // as layer_kernels' decode-sized batches
      cuda::GemvArgs g;
      set_weight(g, W.ref);
      g.n_out = n_out, g.k = k, g.m = m;
      if (norm) g.norm_in = xf_d.get(), g.norm_w = nw_d.get(), g.eps = c.eps;
      else g.x = xb_d.get();
      if (c.swiglu) g.swiglu = true, g.y = act_d.get(), g.y_f32 = false;
      else g.y = y_d.get(), g.y_f32 = true, g.beta = beta;
      cuda::gemv(g, nullptr);
    } else {  // as its prefill
      if (norm) cuda::rmsnorm_bf16(xf_d.get(), nw_d.get(), m, k, c.eps, xb_d.get(), nullptr);
      if (c.swiglu) {
        weight_gemm(blas, nullptr, W.ref, 2 * n_out, k, xb_d.get(), m, gu_d.get(), CUDA_R_16BF, 0.0f, scratch.get(),
                    scratch.size());
        cuda::swiglu_bf16(gu_d.get(), m, n_out, act_d.get(), nullptr);
      } else {
        weight_gemm(blas, nullptr, W.ref, n_out, k, xb_d.get(), m, y_d.get(), CUDA_R_32F, beta, scratch.get(),
                    scratch.size());
      }
    }
    check(cudaDeviceSynchronize(), "cuda_weight_product");
  } catch (...) {
    cublasDestroy(blas);
    throw;
  }
  cublasDestroy(blas);
  std::vector<float> out(static_cast<size_t>(m) * n_out);
  if (c.swiglu) {
    std::vector<uint16_t> a(out.size());
    check(cudaMemcpy(a.data(), act_d.get(), a.size() * sizeof(uint16_t), cudaMemcpyDeviceToHost), "y to host");
    for (size_t i = 0; i < a.size(); ++i) out[i] = bf16_to_fp32(a[i]);
  } else {
    check(cudaMemcpy(out.data(), y_d.get(), out.size() * sizeof(float), cudaMemcpyDeviceToHost), "y to host");
  }
  return out;
}

std::unique_ptr<ForwardBackend> make_cuda_forward(const Model& model, int n_ctx, GpuWeights gpu_weights) {
  if (cuda_device_count() == 0) throw Error("CUDA backend: no usable GPU");
  return std::make_unique<CudaForward>(model, n_ctx, gpu_weights);
}

}  // namespace lazyllm
