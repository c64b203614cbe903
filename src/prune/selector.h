// Which tokens a pruning layer keeps, by the schedule's selection mode (LazyLLM, static, random).
// The policy lives here, apart from the forward pass, so every backend makes the same choices:
// it sees only importance scores already on the host and token counts.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lazyllm/lazyllm.h"

namespace lazyllm {

class TokenSelector {
 public:
  TokenSelector() = default;  // LazyLLM
  explicit TokenSelector(const PruneSchedule& s) : mode_(s.selection), seed_(s.seed) {}

  // Prefill at pruning layer `layer`: indices (increasing) of the n_keep tokens kept out of
  // n_candidates (the alive tokens but the last, which is always kept). `importance` has one
  // score per candidate; random selection ignores it (may be empty). Random choice depends only
  // on the seed, the layer, the chunk's first position and the counts, so a prompt gets the same
  // tokens in a fresh or a reused session.
  std::vector<int> choose_prefill(int n_candidates, std::span<const float> importance, int n_keep, int layer,
                                  int32_t first_pos) const;

  // LazyLLM re-selects at every decode step from the new token's attention and revives pruned
  // tokens; static and random attend to the KV that prefill left at each layer.
  bool reselects_at_decode() const { return mode_ == PruneSelection::kLazy; }
  // Whether prefill needs the last token's attention row (random never reads it).
  bool needs_importance() const { return mode_ != PruneSelection::kRandom; }

 private:
  PruneSelection mode_ = PruneSelection::kLazy;
  uint64_t seed_ = 0;
};

}  // namespace lazyllm
