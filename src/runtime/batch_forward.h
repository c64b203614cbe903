// The backend half of a batch step: one forward over several sequences, each over its own caches
// and schedule. A backend computes each layer's weight products once over the rows of every
// sequence in the step (each one's new tokens plus, under LazyLLM, the rows its DecodeStep
// revives) and the attention per sequence over its own keys and selection (prune/lazy_plan.h:
// the per-sequence plans concatenate). The session half is runtime/batch.h.
#pragma once

#include <cstdint>
#include <span>

#include "runtime/forward_backend.h"

namespace lazyllm {

struct LayerSchedule;

// What one sequence computes in a step: a prefill of `tokens` (a whole prompt or a chunk of one,
// after the sequence's n_past()), or the decode of one token.
struct BackendStep {
  ForwardBackend* sequence = nullptr;
  std::span<const int32_t> tokens;
  const LayerSchedule* schedule = nullptr;
  bool prefill = false;
};

class BatchForward {
 public:
  virtual ~BatchForward() = default;
  // Throws Error, changing nothing, where a step could not run (a sequence of another backend or
  // model, a token outside the vocabulary, a context that would overflow, a sequence listed twice).
  virtual void check(std::span<const BackendStep> steps) const = 0;
  // Runs the step: afterwards each sequence's logits() are those of its last token, exactly as
  // if its step had run alone up to the kernels' batch invariance (docs/lazyllm.md). Call check()
  // first; after an exception the step's sequences must be cleared.
  virtual void run(std::span<const BackendStep> steps) = 0;
  // Whether prompts listed in one step share its weight products (one forward over all their
  // rows). Where they do not (each runs as it would alone), a caller loses nothing by giving each
  // prompt a step of its own, and its first token comes without waiting for the others'.
  virtual bool prompts_share_products() const { return true; }
};

}  // namespace lazyllm
