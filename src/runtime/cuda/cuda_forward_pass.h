// The CUDA forward pass (CudaForward), declared for its source files: cuda_forward_pass.cpp
// (construction, buffers, one layer, prefill) and cuda_decode.cpp (the decode paths); the entry
// points the rest of the engine calls are in cuda_forward.cpp (runtime/cuda/cuda_forward.h).
//
// It executes LazyLLM's plan (prune/lazy_plan.h), as the CPU's CpuForward
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
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
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
#include "runtime/cuda/cuda_forward.h"
#include "runtime/cuda/cuda_weights.h"
#include "runtime/cuda/kv_pages.h"
#include "runtime/cuda/product_warmup.h"
#include "runtime/cuda/weight_copies.h"
#include "runtime/cuda/weight_gemm.h"
#include "runtime/prefill.h"

namespace lazyllm::cuda_pass {

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

class CudaForward;

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
  // Listed keys that are two runs of slots, [0, ...) and the rows' own [slot0, ...): each row's
  // keys in the second run (row_key_end then counts those in the first), and the slots' extent.
  // Attention reads the runs in place (no gather); the listed form still serves the importance.
  const int32_t* row_key_end_b = nullptr;
  int key_extent = 0;
  bool want_importance = false;  // the last row's head-averaged probabilities into importance_d_
  // A shared step's prompt (step_together): its rows start at row0 of the activations and its K/V
  // are another sequence's (null: this one's).
  int row0 = 0;
  const CudaForward* kv = nullptr;
};

class CudaForward final : public ForwardBackend, private PrefillDevice {
 public:
  CudaForward(const Model& model, int n_ctx, GpuWeights gpu_weights, bool warm_up, KvPool* kv_pool = nullptr,
              bool weight_copies = true);
  ~CudaForward() override;

  void prefill(std::span<const int32_t> tokens, const LayerSchedule& s,
               const std::function<void(int, int)>& progress) override;
  void decode(int32_t token, const LayerSchedule& s) override;
  const std::vector<float>& logits() const override { return logits_; }
  int n_past() const override { return n_past_; }
  int n_ctx() const override { return n_ctx_; }
  void clear() override;
  bool keep_prefix(int n) override;
  bool copy_prefix_from(const ForwardBackend& src, int n) override;
  const ForwardCounters& counters() const override { return counters_; }
  int64_t aux_bytes() const override { return aux_entries() * c_.n_embd * static_cast<int64_t>(sizeof(float)); }
  int64_t aux_entries() const override { return index_.aux_entries(); }
  int kv_depth(int t) const override { return index_.depth(t); }
  void set_record_selection(bool on) override { record_selection_ = on; }
  const std::vector<std::vector<int>>& last_selection() const override { return selection_; }
  DecodePathStats decode_path_stats() const override { return path_stats_; }
  Session::DeviceMemory device_memory() const override;
  bool reserve_kv(int tokens) override;
  void release_kv() override;
  int64_t kv_pages() const override { return paged_kv_ ? paged_kv_->mapped() * 2 * c_.n_layers : 0; }

  const ModelConfig& config() const { return c_; }
  // Whether decode() would take the baseline path for this schedule (nothing pruned now or
  // before, every product and the attention of a kind a graph can run).
  bool baseline_decode_applies(const LayerSchedule& s) const;
  bool shares_weights_with(const CudaForward& o) const { return w_ == o.w_; }
  // Whether a step of this sequence can share a forward with others (step_together): any decode
  // (the baseline's one row, or a LazyLLM step's rows planned layer by layer), or a prompt or a
  // chunk of one without pruning after a context whose every token reached every layer (slot =
  // position).
  bool joins_shared_step(bool prefill, const LayerSchedule& s) const;
  // One sequence's part of a shared step: a decode token, or a prompt (chunk) to prefill, under
  // the sequence's schedule.
  struct SharedRows {
    CudaForward* seq = nullptr;
    std::span<const int32_t> tokens;
    bool prefill = false;
    const LayerSchedule* schedule = nullptr;
  };
  // The steps of several sequences (each joins_shared_step, all sharing one copy of the weights,
  // none listed twice, each fitting its context) in one forward: every weight product runs once
  // over all their rows, on one sequence's stream and buffers; the attention runs per sequence
  // over its own caches. Afterwards each sequence is as after its own decode() or prefill(), with
  // logits equal up to the products' batch invariance (docs/lazyllm.md).
  static void step_together(std::span<const SharedRows> parts);
  // This sequence's K/V cache and key positions at layer l (slot 0).
  half_t* k_cache_at(int l) const {
    if (paged_kv_) return static_cast<half_t*>(paged_kv_->region(2 * l));
    return k_cache_.get() + static_cast<size_t>(l) * n_ctx_ * c_.n_kv_heads * c_.head_dim;
  }
  half_t* v_cache_at(int l) const {
    if (paged_kv_) return static_cast<half_t*>(paged_kv_->region(2 * l + 1));
    return v_cache_.get() + static_cast<size_t>(l) * n_ctx_ * c_.n_kv_heads * c_.head_dim;
  }
  int32_t* kpos_at(int l) const { return kpos_.get() + static_cast<size_t>(l) * n_ctx_; }

 private:
  // PrefillDevice: the device half of run_prefill().
  void prefill_embed(std::span<const int32_t> tokens, std::span<const int32_t> pos, const PrefillPlan& plan) override;
  void prefill_select(int l, int n_rows, int n_keep, std::span<const int32_t> dest) override;
  void prefill_layer(int l, int n_rows, int slot0, bool want_importance) override;
  std::span<const int32_t> prefill_finish(const PrefillPlan& plan, int n) override;
  // The GPU work of layer l on c.m rows of h (in place); no host bookkeeping, no synchronization.
  // In three parts, so a batch of sequences can share the weight products (step_together):
  void layer_kernels(int l, float* h, const LayerCall& c);
  // Decode-sized batches: RMSNorm fused into the products after it, SwiGLU into gate|up.
  bool fused_layer(int l, int m) const;
  // RMSNorm and the Q|K|V product of m rows of h into qkv_, or, with `finish` (fused products
  // whose parts all allow it: cuda::qkv_finish_fuses), finished by the products themselves.
  void layer_qkv(int l, const float* h, int m, bool fused, const cuda::QkvFinishArgs* finish = nullptr);
  bool qkv_finish_fuses(int l, const cuda::QkvFinishArgs& f) const;
  // qkv_finish's arguments for m rows of qkv_ at positions pos into q_, caches not set.
  cuda::QkvFinishArgs qkv_finish_args(int l, int m, const int32_t* pos) const;
  // The same for c's rows, with c's caches and slots.
  cuda::QkvFinishArgs qkv_finish_args(int l, const LayerCall& c) const;
  // Bias, RoPE and the K/V store of the c.m rows in qkv_ (unless `finished` by the products), then
  // their attention into att_.
  void layer_attention(int l, const LayerCall& c, bool finished = false);
  // The same for rows of several sequences, each over its own caches (step_together's decode rows).
  void layer_attention_rows(int l, int m, const cuda::SequenceRows& rows, int max_keys);
  // The output product of att_ into the residual h, then the feed-forward block, on m rows.
  void layer_output(int l, float* h, int m, bool fused);
  // Final RMSNorm and output product of m rows (the last ones of their sequences) into logits_d_
  // (asynchronous).
  void logits_kernels(const float* h_rows, int m = 1);
  // Copies the first row of logits_d_ to logits_ (waits for the stream).
  void fetch_logits();
  // After a baseline decode step at position p whose logits are in logits_: the host's books.
  void book_baseline_decode(int p);
  // Baseline decode of one token whose id, position and key count are in step_d_: the launch
  // chain a graph captures. `capacity` sizes the attention launch (keys read from step_d_[2]).
  void decode_chain(int capacity);
  cudaGraphExec_t decode_graph(int capacity);
  cudaGraphExec_t capture(const std::function<void()>& chain);
  void drop_graphs();
  void decode_baseline(int32_t token);
  // Whether every product and the attention of a decode step are kernels a graph can run.
  bool graph_kernels_apply() const;
  // Steady lazy decode: the launch chain (keys selected on the GPU, counts and slots from
  // steady_d_), its graph per key capacity, and the attempt (false: redo through DecodeStep).
  void steady_chain(int capacity, const SteadyDecodePlan& plan);
  bool decode_steady(int32_t token, const LayerSchedule& s);
  void upload_index_mirror(int n_tokens);
  // The host path of a decode step: DecodeStep's plan, layer by layer.
  void decode_planned(int32_t token, const LayerSchedule& s);
  // A planned decode layer's parts, launched on this object's stream with its index buffers
  // (decode_planned, or step_together for each LazyLLM part): the rows that stop go from `rows`
  // (the previous layer's) to `aux`; the layer's rows gathered from `rows` (carried) and `aux`
  // (revived) into `out`; the attention call over the plan's keys and slots, each row's key
  // count in `row_keys` where the flash kernels need it.
  void stash_stopped_rows(const DecodeLayerPlan& plan, const float* rows, float* aux);
  void gather_planned_rows(const DecodeLayerPlan& plan, const float* rows, const float* aux, float* out);
  LayerCall planned_call(const DecodeLayerPlan& plan, DeviceBuffer<int32_t>& row_keys);
  template <typename T>
  void upload(DeviceBuffer<T>& dst, const std::vector<T>& src);
  // The same into dst from element `at` on, which must already have room (no growing: the
  // elements before `at` are in use).
  template <typename T>
  void upload_at(DeviceBuffer<T>& dst, size_t at, const std::vector<T>& src);
  void sync_stream();
  void restart_at(int n);
  template <typename T>
  void grow(DeviceBuffer<T>& b, size_t n) {  // reallocation invalidates captured graphs
    if (n > b.size()) drop_graphs();
    b.ensure(n);
  }
  void ensure_rows(int m);
  void ensure_aux();
  // weight_gemm() with this forward pass's cuBLAS handle, stream and scratch.
  void gemm(const cuda::WeightRef& w, int n_out, int k, const bf16_t* x, int m, void* y, cudaDataType y_type,
            float beta, int ldy = 0);
  void ensure_dequant_scratch(int k);
  // The products prefill hands to cuBLAS (for product_warmup.h), one entry per distinct shape.
  std::vector<ProductShape> cublas_products() const;

  const ModelConfig& c_;
  std::shared_ptr<const cuda::CudaWeights> w_;
  int n_ctx_;
  int n_past_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;

  // KV cache: per layer n_ctx slots of kv_dim halves, with each slot's position. With a KvPool
  // the K and V rows are pool pages mapped into paged_kv_'s regions as the context grows.
  KvPool* kv_pool_ = nullptr;
  std::unique_ptr<cuda::MappedKv> paged_kv_;
  DeviceBuffer<half_t> k_cache_, v_cache_;
  DeviceBuffer<int32_t> kpos_;
  KVIndex index_;  // slots, depths, Aux Cache membership (shared bookkeeping)
  DeviceBuffer<float> rope_cos_, rope_sin_;
  // Aux Cache: a row per position (allocated at the first pruning); membership in index_.
  DeviceBuffer<float> aux_;

  // Activations, grown (geometrically) to the largest batch seen.
  int rows_cap_ = 0;
  DeviceBuffer<float> h_[2], qkv_, att_scratch_, imp_scratch_, importance_d_, logits_d_;
  bool use_key_runs_ = true;  // $LAZYLLM_CUDA_KEY_RUNS=0: gather a batch's keys even where they are two runs
  bool pdl_ = true;  // programmatic dependent launch for this forward pass's kernels (see pdl.h)
  DeviceBuffer<bf16_t> xn_, att_, gu_, act_;
  // Quantized weights dequantized for prefill's products (w_->scratch_elems: the largest layer
  // matrix, gate and up counted apart), made before the first batch the matrix-vector kernels
  // do not take, so decode graphs never see it allocated.
  DeviceBuffer<bf16_t> dequant_;
  // bf16 copies of the matrices of the layers a pruned prefill defers rows at, for the decode
  // steps that compute those rows; making_copies_ while such a layer of the prefill runs.
  WeightCopies copies_;
  bool copies_ready_ = false, making_copies_ = false;
  DeviceBuffer<half_t> q_;
  // Listed keys gathered together for large decode batches (revivals, completion).
  DeviceBuffer<half_t> k_gather_, v_gather_;
  DeviceBuffer<int32_t> pos_gather_;
  DeviceBuffer<int32_t> tokens_d_, pos_d_, src_idx_d_, dst_idx_d_, key_slots_d_, row_keys_d_;
  // step_together: per layer, each decode row's K cache, V cache and key positions (device
  // pointers); a LazyLLM step's keys per row (row_keys_d_ holds the decode rows' key counts).
  DeviceBuffer<uint64_t> row_caches_d_;
  DeviceBuffer<int32_t> part_keys_d_;
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

template <typename T>
void CudaForward::upload(DeviceBuffer<T>& dst, const std::vector<T>& src) {
  grow(dst, std::max<size_t>(src.size(), 1));
  upload_at(dst, 0, src);
}

template <typename T>
void CudaForward::upload_at(DeviceBuffer<T>& dst, size_t dst_at, const std::vector<T>& src) {
  if (dst_at + src.size() > dst.size()) throw std::logic_error("CUDA forward: upload past a buffer's end");
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
  check(cudaMemcpyAsync(dst.get() + dst_at, staging_.get() + at, bytes, cudaMemcpyHostToDevice, stream_),
        "cudaMemcpyAsync to device");
  staging_used_ = at + bytes;
}

}  // namespace lazyllm::cuda_pass
