#include "runtime/batch.h"

#include <chrono>
#include <vector>

#include "prune/lazy_plan.h"
#include "runtime/cpu/cpu_batch.h"
#include "util/thread_pool.h"

namespace lazyllm {

SessionBatch::SessionBatch(std::shared_ptr<const Model> model, int n_threads)
    : model_(std::move(model)),
      pool_(std::make_shared<ThreadPool>(n_threads > 0 ? n_threads : ThreadPool::default_threads())),
      forward_(std::make_unique<CpuBatch>(*model_, *pool_)) {
  if (n_threads < 0) throw Error("thread count must be positive");
}

SessionBatch::~SessionBatch() = default;

int SessionBatch::threads() const { return pool_->size(); }

std::unique_ptr<Session> SessionBatch::new_session(SessionOptions options) {
  if (options.device != Device::Cpu) throw Error("a session batch computes on the CPU");
  options.n_threads = pool_->size();
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
