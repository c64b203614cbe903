// The CUDA backend's batch step (runtime/batch_forward.h). The step's decode tokens (with, under
// LazyLLM, the rows each one's DecodeStep revives) and the prompts (or chunks) of every sequence
// that prunes nothing now or before run in one forward (CudaForward::step_together), their weight
// products once over all their rows, which on a GPU cost about what the largest part's alone would
// (decode reads every weight once per step whatever the row count). A prompt under a pruning
// schedule runs on its own, as the sequence alone runs it (its selection is made among its own
// rows, layer by layer on the GPU); so does a step with no partner (a decode alone keeps its graph).
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
        shared_.push_back({f, st.tokens, st.prefill, st.schedule});
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
