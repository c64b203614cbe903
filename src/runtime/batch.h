// Continuous batching in the library: several sessions stepped by one forward pass.
//
// A SessionBatch makes sessions that share its threads (on the CPU) or its GPU weights (on CUDA,
// where a prefill under a pruning schedule runs on its own within the step:
// runtime/cuda/cuda_batch.cpp); step() runs one step of any of them together: each contributes a decode
// token or a prefill (a whole prompt or a chunk of one), with its own KV cache, Aux Cache and LazyLLM schedule. Each
// layer's weight products (Q/K/V, output, feed-forward, norms, logits) run once over the rows of every sequence in the
// step, and each sequence attends over its own keys and selection, so sequences of any lengths and schedules mix;
// sessions join and leave between steps simply by being listed or not. Per sequence the result is
// what Session::prefill()/decode() computes alone, with the same LazyLLM selections and counters,
// up to the weight products' dependence on the batch's row count (docs/lazyllm.md says which
// kernels are bitwise batch-invariant). A prefill under a pruning schedule prunes among the
// tokens of that call only, as Session::prefill() does: callers prefill such a prompt whole (its
// selection needs the last prompt token's attention at each pruning layer) and chunk only
// prompts that run the baseline.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "lazyllm/lazyllm.h"

namespace lazyllm {

class BatchForward;

// One session's part of a step.
struct SequenceStep {
  Session* session = nullptr;
  std::span<const int32_t> tokens;  // prefill: the prompt or its next chunk; decode: one token
  bool prefill = false;
};

struct SessionBatchOptions {
  int n_threads = 0;            // the CPU's compute threads (0 = all cores)
  Device device = Device::Cpu;  // where every session of the batch computes
  GpuWeights gpu_weights = GpuWeights::kNative;  // CUDA: the weights' form (one copy per Model)
  // Run each sequence's step on its own, one after another (SerialBatch), instead of one forward
  // over all of them: to check the batched forward against the sequences run alone.
  bool serial = false;
};

class SessionBatch {
 public:
  // Sessions of `model` on the CPU, computing on n_threads threads (0 = all cores).
  SessionBatch(std::shared_ptr<const Model> model, int n_threads);
  SessionBatch(std::shared_ptr<const Model> model, SessionBatchOptions options);
  ~SessionBatch();
  SessionBatch(const SessionBatch&) = delete;
  SessionBatch& operator=(const SessionBatch&) = delete;

  // A session that can join this batch's steps (it also works alone, on the batch's threads).
  // The batch's sessions share its threads: drive them (step(), or their own prefill/decode)
  // from one thread at a time.
  // options.device must be the batch's; options.n_threads and gpu_weights are the batch's. Its
  // prefill progress callback is not called by step() (a step is the unit of interruption).
  std::unique_ptr<Session> new_session(SessionOptions options);
  // Runs one step of every listed session (each at most once). Throws Error, changing nothing,
  // where a session is not this batch's, a decode lists other than one token, or a prompt or
  // token would not fit (context, vocabulary). After any other exception the listed sessions
  // have been reset.
  void step(std::span<const SequenceStep> steps);
  int threads() const;
  Device device() const { return options_.device; }
  // Whether prompts listed in one step() share its weight products (BatchForward): on the CPU
  // and the GPU they do (on the GPU those without pruning); with options.serial each runs on its own.
  bool prompts_share_products() const;

 private:
  std::shared_ptr<const Model> model_;
  SessionBatchOptions options_;
  std::shared_ptr<ThreadPool> pool_;
  std::unique_ptr<BatchForward> forward_;
};

}  // namespace lazyllm
