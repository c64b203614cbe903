// A batch step for backends without a batched forward (the CUDA backend today): each sequence
// of the step runs its own prefill or decode, one after another, exactly as Session::prefill()
// and decode() run it alone. The scheduling (who joins, chunks, per-request schedules) is the
// same as with a batched forward; only the weight products are not shared between sequences.
#pragma once

#include "runtime/batch_forward.h"

namespace lazyllm {

class Model;

class SerialBatch final : public BatchForward {
 public:
  explicit SerialBatch(const Model& model) : model_(model) {}
  void check(std::span<const BackendStep> steps) const override;
  void run(std::span<const BackendStep> steps) override;
  bool prompts_share_products() const override { return false; }

 private:
  const Model& model_;
};

}  // namespace lazyllm
