// The CPU forward pass over per-layer token sets, executing LazyLLM's plan (prune/lazy_plan.h).
//
// Prefill (runtime/prefill.h walks it) runs layer by layer over the alive tokens (compacted, with
// their original positions). At a pruning layer, the alive set shrinks to the tokens the last
// token attended to most in the previous layer; the pruned tokens' hidden states go to the Aux
// Cache. Decode computes, layer by
// layer, the rows the DecodeStep plans (the new token and the tokens it revives) over the keys it
// selects. A schedule that prunes nowhere takes exactly the baseline's path.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "cache/aux_cache.h"
#include "cache/kv_cache.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/rope.h"
#include "lazyllm/lazyllm.h"
#include "prune/lazy_plan.h"
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
  void set_matmul_precision(MatmulPrecision p) { precision_ = p; }
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
  using AttentionFn = std::function<void(const float* q, int m, float* out, float* importance)>;

  // Runs layer l on m hidden-state rows `h` (updated in place) of tokens `pos`, storing their K/V
  // from slot slot0 on. Prefill (key_slots empty) attends to every slot of the layer; decode to
  // the listed slots.
  void layer_forward(int l, float* h, int m, const int32_t* pos, int slot0, bool want_importance,
                     std::span<const int32_t> key_slots = {}, const int32_t* row_keys = nullptr);
  void attention_prefill(int l, int n_old, float* q, int m, float* out, bool want_importance);
  void attention_decode(int l, std::span<const int32_t> key_slots, const int32_t* row_keys, float* q, int m,
                        float* out, bool want_importance);
  // Causal attention of m query rows (in position order) over n_keys keys held as contiguous
  // float rows kf/vf: row r sees keys [0, visible[r]), visible nondecreasing. As matrix products
  // per (head, block of rows); Q and the probabilities rounded to half when f16.
  void attention_gemm(float* q, int m, const float* kf, const float* vf, int n_keys, const int32_t* visible,
                      float* out, bool want_importance, bool f16);
  void average_importance(int n_keys);
  void for_rows(int m, const std::function<void(int)>& fn);
  void compute_logits(const float* h);
  void embed(int32_t token, float* out) const;

  const Model& model_;
  const ModelConfig& c_;
  const ModelWeights& w_;
  ThreadPool& pool_;
  int n_ctx_;
  int n_past_ = 0;
  MatmulPrecision precision_ = MatmulPrecision::kF32;
  KVCache kv_;
  AuxCache aux_;
  Rope rope_;
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
  ForwardCounters counters_;
  bool record_selection_ = false;
  std::vector<std::vector<int>> selection_;
};

}  // namespace lazyllm
