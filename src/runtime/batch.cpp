#include "runtime/batch.h"

#include <chrono>
#include <vector>

#include "prune/lazy_plan.h"
#include "runtime/cpu/cpu_batch.h"
#include "runtime/cuda/cuda_forward.h"
#include "runtime/serial_batch.h"
#include "util/thread_pool.h"

namespace lazyllm {

SessionBatch::SessionBatch(std::shared_ptr<const Model> model, int n_threads)
    : SessionBatch(std::move(model), SessionBatchOptions{.n_threads = n_threads}) {}

SessionBatch::SessionBatch(std::shared_ptr<const Model> model, SessionBatchOptions options)
    : model_(std::move(model)), options_(options) {
  if (options_.n_threads < 0) throw Error("thread count must be positive");
  if (options_.device != Device::Cpu && options_.device != Device::Cuda) throw Error("a SessionBatch computes on the CPU or CUDA");
  pool_ = std::make_shared<ThreadPool>(options_.n_threads > 0 ? options_.n_threads : ThreadPool::default_threads());
  if (options_.serial) forward_ = std::make_unique<SerialBatch>(*model_);
  else if (options_.device == Device::Cuda) forward_ = make_cuda_batch(*model_);
  else forward_ = std::make_unique<CpuBatch>(*model_, *pool_);
  // The weights' copy (or mapping) is made now, not in the first request's time to first token.
  if (options_.device == Device::Cpu) model_->make_host_resident();
}

SessionBatch::~SessionBatch() = default;

bool SessionBatch::prompts_share_products() const { return forward_->prompts_share_products(); }

int SessionBatch::threads() const { return pool_->size(); }

std::unique_ptr<Session> SessionBatch::new_session(SessionOptions options) {
  if (options.device != options_.device)
    throw Error("this SessionBatch computes on " + std::string(device_name(options_.device)) + ", not " +
                std::string(device_name(options.device)));
  options.n_threads = pool_->size();
  options.gpu_weights = options_.gpu_weights;
  return std::unique_ptr<Session>(new Session(model_, std::move(options), pool_));
}

void SessionBatch::step(std::span<const SequenceStep> steps) {
  std::vector<BackendStep> work(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    Session* s = steps[i].session;
    if (!s || s->pool_ != pool_) throw Error("batch step: sequence " + std::to_string(i) + " is not this batch's");
    // The schedules are the sessions' own (checked before any state changes).
    work[i] = {s->backend_.get(), steps[i].tokens, s->baseline_.get(), steps[i].prefill};
  }
  forward_->check(work);

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> before(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    Session& s = *steps[i].session;
    before[i] = s.backend_->counters().prompt_token_layers;
    work[i].schedule = steps[i].prefill ? &s.prefill_schedule(static_cast<int>(steps[i].tokens.size()))
                                        : &s.decode_schedule();
  }
  try {
    forward_->run(work);
  } catch (...) {
    for (const SequenceStep& st : steps) st.session->reset();
    throw;
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  for (size_t i = 0; i < steps.size(); ++i) {
    Session& s = *steps[i].session;
    if (steps[i].prefill) s.book_prefill(steps[i].tokens, *work[i].schedule, before[i], ms);
    else s.book_decode(steps[i].tokens[0], ms);
  }
}

}  // namespace lazyllm
