// lazyllm bench --batch: aggregate decode throughput of B sequences stepped together
// (runtime/batch.h), on the CPU or the GPU, without pruning or all under one schedule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"
#include "lazyllm/lazyllm.h"

namespace lazyllm::cli {

struct BatchBenchArgs {
  std::string model;
  std::vector<int> prompt_lens;
  std::vector<int> batches;
  int gen_len = 32;
  int reps = 3;
  int warmup = 1;
  int threads = 0;
  bool json = false;
  bool f32_math = false;
  uint64_t seed = 1;
  Device device = Device::Cpu;
  GpuWeights gpu_weights = GpuWeights::kNative;
  HostWeights host_weights = HostWeights::kCopy;
  bool serial = false;  // step each sequence on its own (the reference a batched forward is held to)
  PruneFlags prune;     // every sequence's schedule: --lazy or one --prune spec (none: the baseline)
};

int bench_batch(const BatchBenchArgs& a);

}  // namespace lazyllm::cli
