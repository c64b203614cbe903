// The CUDA backend's batch step (runtime/batch_forward.h). The step's baseline rows run in one
// forward (CudaForward::step_together): the decode tokens and the prompts (or chunks) of every
// sequence that prunes nothing now or before, their weight products once over all their rows,
// which on a GPU cost about what the largest part's alone would (decode reads every weight once
// per step whatever the row count). Prompts under a pruning schedule and LazyLLM decode steps run
// each on its own, as the sequence alone runs them (their layers are planned per sequence).
#include <string>
#include <vector>

#include "runtime/cuda/cuda_forward.h"
#include "runtime/cuda/cuda_forward_pass.h"
#include "runtime/serial_batch.h"

namespace lazyllm {
namespace {

using cuda_pass::CudaForward;

class CudaBatch final : public BatchForward {
 public:
  explicit CudaBatch(const Model& model) : model_(model), serial_(model) {}

  void check(std::span<const BackendStep> steps) const override {
    serial_.check(steps);
    for (size_t i = 0; i < steps.size(); ++i) {
      const auto* f = dynamic_cast<const CudaForward*>(steps[i].sequence);
      if (!f || &f->config() != &model_.config())
        throw Error("batch step: sequence " + std::to_string(i) + " is not computed on the GPU for this batch's model");
    }
  }

  void run(std::span<const BackendStep> steps) override {
    shared_.clear();
    const BackendStep* first = nullptr;
    for (const BackendStep& st : steps) {
      auto* f = static_cast<CudaForward*>(st.sequence);
      if (f->joins_shared_step(st.prefill, *st.schedule) &&
          (shared_.empty() || f->shares_weights_with(*shared_.front().seq))) {
        if (shared_.empty()) first = &st;
        shared_.push_back({f, st.tokens, st.prefill});
      } else {
        serial_.run({&st, 1});
      }
    }
    if (shared_.size() == 1) serial_.run({first, 1});  // alone: the sequence's own path (a decode's graph)
    else if (!shared_.empty()) CudaForward::step_together(shared_);
  }

 private:
  const Model& model_;
  SerialBatch serial_;
  std::vector<CudaForward::SharedRows> shared_;
};

}  // namespace

std::unique_ptr<BatchForward> make_cuda_batch(const Model& model) { return std::make_unique<CudaBatch>(model); }

}  // namespace lazyllm
