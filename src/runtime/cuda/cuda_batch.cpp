// The CUDA backend's batch step (runtime/batch_forward.h). Baseline decodes (nothing pruned) of
// the step's sequences run together: their weight products once over all their rows, which on a
// GPU cost about what one row's do, since decode reads every weight once per step whatever the
// row count. Prefills and LazyLLM decodes run each on its own, as the sequence alone runs them
// (their host-planned layers and graphs are per sequence).
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

  bool prompts_share_products() const override { return false; }

  void run(std::span<const BackendStep> steps) override {
    together_.clear();
    tokens_.clear();
    const BackendStep* first = nullptr;
    for (const BackendStep& st : steps) {
      auto* f = static_cast<CudaForward*>(st.sequence);
      if (!st.prefill && f->baseline_decode_applies(*st.schedule) &&
          (together_.empty() || f->shares_weights_with(*together_.front()))) {
        if (together_.empty()) first = &st;
        together_.push_back(f);
        tokens_.push_back(st.tokens[0]);
      } else {
        serial_.run({&st, 1});
      }
    }
    if (together_.size() == 1) serial_.run({first, 1});  // alone: the sequence's own graph
    else if (!together_.empty()) CudaForward::decode_together(together_, tokens_);
  }

 private:
  const Model& model_;
  SerialBatch serial_;
  std::vector<CudaForward*> together_;
  std::vector<int32_t> tokens_;
};

}  // namespace

std::unique_ptr<BatchForward> make_cuda_batch(const Model& model) { return std::make_unique<CudaBatch>(model); }

}  // namespace lazyllm
