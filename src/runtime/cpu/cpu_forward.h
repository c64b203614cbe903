// The CPU forward pass over per-layer token sets, executing LazyLLM's plan (prune/lazy_plan.h).
//
// Prefill (runtime/prefill.h walks it) runs layer by layer over the alive tokens (compacted, with
// their original positions). At a pruning layer, the alive set shrinks to the tokens the last
// token attended to most in the previous layer; the pruned tokens' hidden states go to the Aux
// Cache. Decode computes, layer by
// layer, the rows the DecodeStep plans (the new token and the tokens it revives) over the keys it
// selects. A schedule that prunes nowhere takes exactly the baseline's path.
//
// Either step also runs layer by layer from outside (begin_*, layer_rows, attend, end_layer,
// end_step), so a batch (cpu_batch.h) can compute layer l of several sequences with one set of
// weight products (cpu_layer.h) while each sequence attends over its own caches. prefill() and
// decode() are that walk with the products over this sequence's rows alone.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "cache/aux_cache.h"
#include "cache/kv_cache.h"
#include "cache/kv_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/rope.h"
#include "lazyllm/lazyllm.h"
#include "prune/lazy_plan.h"
#include "runtime/cpu/cpu_layer.h"
#include "runtime/forward_backend.h"
#include "runtime/prefill.h"

namespace lazyllm {

struct ModelWeights;
struct LayerWeights;

// The CPU backend.
class CpuForward final : public ForwardBackend, private PrefillDevice {
 public:
  CpuForward(const Model& model, int n_ctx, bool kv_f16, ThreadPool& pool);
  ~CpuForward() override;

  void prefill(std::span<const int32_t> tokens, const LayerSchedule& s,
               const std::function<void(int, int)>& progress = {}) override;
  void decode(int32_t token, const LayerSchedule& s) override;

  const std::vector<float>& logits() const override { return logits_; }
  int n_past() const override { return n_past_; }
  int n_ctx() const override { return n_ctx_; }
  void clear() override;
  bool keep_prefix(int n) override;
  bool copy_prefix_from(const ForwardBackend& src, int n) override;
  // K/V pages counted against `pool` from now on (the rows stay in the layers' vectors).
  void set_kv_pool(KvPool* pool) { kv_pool_ = pool; }
  bool reserve_kv(int tokens) override;
  void release_kv() override;
  int64_t kv_pages() const override { return kv_pool_ ? kv_pool_->pages_for(kv_reserved_) : 0; }

  const ForwardCounters& counters() const override { return counters_; }
  int64_t aux_bytes() const override { return aux_.bytes(); }
  int64_t aux_entries() const override { return aux_.entries(); }
  int kv_depth(int t) const override { return kv_.depth(t); }
  const KVIndex& index() const { return kv_.index(); }
  const KVCache& kv() const { return kv_; }
  const AuxCache& aux() const { return aux_; }
  // When set, decode() records the tokens the new token attended to at each layer.
  void set_record_selection(bool on) override { record_selection_ = on; }
  const std::vector<std::vector<int>>& last_selection() const override { return selection_; }
  // Prefill products of quantized/bf16 weights in bf16 (kFast) or f32 (see matmul.h).
  void set_matmul_precision(MatmulPrecision p) { ops_.set_precision(p); }
  MatmulPrecision matmul_precision() const { return ops_.precision(); }
  ThreadPool& pool() const { return pool_; }
  const Model& model() const { return model_; }

  // ---- A step walked layer by layer (a batch of sequences drives several at once).
  // Throw Error, changing nothing, where decode(token) or prefill(tokens) would refuse.
  void check_decode(int32_t token) const;
  void check_prefill(std::span<const int32_t> tokens) const;
  // Start a step; `s` must outlive it. Then, for every layer l in order: layer_rows(l), the
  // caller's pre-attention products over the rows, attend(l, ...), the post-attention ones,
  // end_layer(l); finally end_step() with the logits of final_row() in logits_buffer().
  void begin_decode(int32_t token, const LayerSchedule& s);
  void begin_prefill(std::span<const int32_t> tokens, const LayerSchedule& s);
  struct LayerRows {
    float* h = nullptr;             // m hidden-state rows entering layer l (updated in place)
    int m = 0;
    const int32_t* pos = nullptr;   // their positions
  };
  // Plans layer l of the step (selection, revival) and gathers the rows it computes.
  LayerRows layer_rows(int l);
  // Stores the rows' K/V (m rows of k, v, rotated) and writes their attention over this
  // sequence's keys of layer l into `out` (m rows; q rows rotated, overwritten).
  void attend(int l, float* q, const float* k, const float* v, float* out);
  void end_layer(int l);
  // The hidden state whose logits the step yields (valid after the last end_layer).
  const float* final_row() const;
  float* logits_buffer();
  void end_step();
  // Forgets a step that did not reach end_step (an exception part way); clear() the sequence too.
  void abandon_step();
  // Host memory held now, by the estimate's parts (MemoryEstimate): K/V storage, Aux Cache
  // storage, and the forward pass's own buffers (not the matmul paths' staging).
  Session::DeviceMemory held_memory() const;
  // Recomputes layer l's K/V for one hidden state at position pos (no cache change); for tests.
  void compute_kv(int l, const float* hidden, int32_t pos, float* k, float* v);

 private:
  struct Scratch;

  // PrefillDevice: the device half of run_prefill().
  void prefill_embed(std::span<const int32_t> tokens, std::span<const int32_t> pos, const PrefillPlan& plan) override;
  void prefill_select(int l, int n_rows, int n_keep, std::span<const int32_t> dest) override;
  void prefill_layer(int l, int n_rows, int slot0, bool want_importance) override;
  std::span<const int32_t> prefill_finish(const PrefillPlan& plan, int n) override;

  // Layer l of the current step over this sequence's rows alone.
  void layer_forward(int l);
  void attention_prefill(int l, int n_old, float* q, int m, float* out, bool want_importance);
  void attention_decode(int l, std::span<const int32_t> key_slots, const int32_t* row_keys, float* q, int m,
                        float* out, bool want_importance);
  // Causal attention of m query rows (in position order) over n_keys keys held as contiguous
  // float rows kf/vf: row r sees keys [0, visible[r]), visible nondecreasing. As matrix products
  // per (head, block of rows); Q and the probabilities rounded to half when f16.
  void attention_gemm(float* q, int m, const float* kf, const float* vf, int n_keys, const int32_t* visible,
                      float* out, bool want_importance, bool f16);
  void average_importance(int n_keys);
  void embed(int32_t token, float* out) const;

  const Model& model_;
  const ModelConfig& c_;
  const ModelWeights& w_;
  ThreadPool& pool_;
  int n_ctx_;
  int n_past_ = 0;
  CpuLayerOps ops_;
  KVCache kv_;
  KvPool* kv_pool_ = nullptr;
  int kv_reserved_ = 0;  // tokens of K/V the pool's pages count
  AuxCache aux_;
  std::unique_ptr<Scratch> s_;
  // Attention probabilities of the last query row at the last layer run, averaged over heads,
  // one per key in the order the keys were given.
  std::vector<float> importance_;
  // Prefill of n tokens: the alive lists (positions; list e at e * n), the current one, and the
  // first slot of the last layer computed (its rows' importance starts there).
  std::vector<int32_t> lists_;
  size_t list_ = 0, prefill_n_ = 0;
  int slot0_ = 0;
  std::vector<float> logits_;
  // The step under way: a prefill walk, or a decode step with the plan of its current layer.
  std::optional<PrefillWalk> walk_;
  PrefillWalk::Layer prefill_layer_;
  std::vector<int> size_before_;
  int step_tokens_ = 0;
  std::optional<DecodeStep> step_;
  const DecodeLayerPlan* decode_plan_ = nullptr;
  std::span<const float> importance_in_;
  ForwardCounters counters_;
  bool record_selection_ = false;
  std::vector<std::vector<int>> selection_;
};

}  // namespace lazyllm
