// The transformer forward pass over per-layer token sets, with LazyLLM built in.
//
// Prefill runs layer by layer over the alive tokens (compacted, with their original positions).
// At a pruning layer, the alive set shrinks to the tokens the last token attended to most in the
// previous layer; the pruned tokens' hidden states go to the Aux Cache. Decode re-selects tokens
// at every step from the new token's own attention and revives pruned tokens from the Aux Cache
// where they stopped. A keep fraction of 1.0 everywhere takes exactly the baseline's path.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "cache/aux_cache.h"
#include "cache/kv_cache.h"
#include "kernels/cpu/rope.h"
#include "lazyllm/lazyllm.h"
#include "prune/selector.h"

namespace lazyllm {

struct ModelWeights;
struct LayerWeights;

// Counters of work done, in (token, layer) computations.
struct ForwardCounters {
  int64_t token_layers = 0;         // every token
  int64_t prompt_token_layers = 0;  // tokens that came in through prefill
  int64_t revived = 0;              // (token, layer) computations of revived tokens in decode
  std::vector<int> alive_per_layer; // last prefill: tokens of that batch computed at each layer
};

class ForwardState {
 public:
  ForwardState(const Model& model, int n_ctx, bool kv_f16, ThreadPool& pool);
  ~ForwardState();

  // Computes tokens at positions [n_past(), n_past() + n) and the last one's logits.
  // `keep`: the schedule's keep fraction per layer; `selector`: how pruning layers choose tokens.
  void prefill(std::span<const int32_t> tokens, const std::vector<double>& keep, const TokenSelector& selector = {},
               const std::function<void(int, int)>& progress = {});
  // Computes one new token at position n_past() and its logits.
  void decode(int32_t token, const std::vector<double>& keep, const TokenSelector& selector = {});

  const std::vector<float>& logits() const { return logits_; }
  int n_past() const { return n_past_; }
  int n_ctx() const { return n_ctx_; }
  void clear();

  const ForwardCounters& counters() const { return counters_; }
  const KVCache& kv() const { return kv_; }
  const AuxCache& aux() const { return aux_; }
  // When set, decode() records the tokens the new token attended to at each layer.
  void set_record_selection(bool on) { record_selection_ = on; }
  const std::vector<std::vector<int>>& last_selection() const { return selection_; }
  // Recomputes layer l's K/V for one hidden state at position pos (no cache change); for tests.
  void compute_kv(int l, const float* hidden, int32_t pos, float* k, float* v);

 private:
  struct Scratch;
  using AttentionFn = std::function<void(const float* q, int m, float* out, float* importance)>;

  // Runs layer l on m hidden-state rows `h` (updated in place) of tokens `pos`, storing their K/V.
  void layer_forward(int l, float* h, int m, const int32_t* pos, bool want_importance, bool decode_mode,
                     std::span<const int> decode_keys);
  void attention_prefill(int l, int n_old, float* q, int m, float* out, bool want_importance);
  void attention_decode(int l, std::span<const int> key_tokens, float* q, const int32_t* qpos, int m,
                        float* out, bool want_importance);
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
  KVCache kv_;
  AuxCache aux_;
  Rope rope_;
  std::vector<uint8_t> from_prompt_;
  std::unique_ptr<Scratch> s_;
  // Attention probabilities of the last query row at the last layer run, averaged over heads,
  // one per key in the order the keys were given.
  std::vector<float> importance_;
  std::vector<float> logits_;
  ForwardCounters counters_;
  bool record_selection_ = false;
  std::vector<std::vector<int>> selection_;
};

}  // namespace lazyllm
