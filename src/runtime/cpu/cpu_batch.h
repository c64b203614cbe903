// The CPU's batch step (runtime/batch_forward.h): layer by layer, the rows of every sequence
// are gathered into one matrix for the weight phases (cpu_layer.h), and each sequence attends
// over its own caches (CpuForward::attend).
#pragma once

#include <vector>

#include "runtime/batch_forward.h"
#include "runtime/cpu/cpu_forward.h"
#include "runtime/cpu/cpu_layer.h"

namespace lazyllm {

class CpuBatch final : public BatchForward {
 public:
  // Sequences of the step must be CpuForward objects of `model` on `pool`.
  CpuBatch(const Model& model, ThreadPool& pool);
  void check(std::span<const BackendStep> steps) const override;
  void run(std::span<const BackendStep> steps) override;

 private:
  static MatmulPrecision cpu_precision_of(std::span<const BackendStep> steps);
  const Model& model_;
  ThreadPool& pool_;
  CpuLayerOps ops_;
  std::vector<CpuForward*> seqs_;
  std::vector<CpuForward::LayerRows> rows_;
  std::vector<float> h_, final_, logits_;
  std::vector<int32_t> pos_;
};

}  // namespace lazyllm
