#include "server/scheduler.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "server/generation.h"

namespace lazyllm::server {

Scheduler::Scheduler(std::shared_ptr<const Model> model, SchedulerOptions options, Metrics& metrics)
    : model_(std::move(model)), options_(std::move(options)), metrics_(metrics) {
  if (options_.parallel < 1) throw Error("--parallel must be at least 1");
  if (options_.queue < 0) throw Error("--queue must not be negative");
  slots_.resize(options_.parallel);
  for (auto& slot : slots_) session_for(slot, options_.default_prune);  // allocate up front
  n_ctx_ = slots_.front().session->n_ctx();
  for (auto& slot : slots_) threads_.emplace_back([this, &slot] { work(slot); });
}

Scheduler::~Scheduler() { shutdown(std::chrono::milliseconds(0)); }

Scheduler::Reservation::Reservation(Reservation&& o) noexcept
    : owner_(std::exchange(o.owner_, nullptr)), admission_(o.admission_) {}

Scheduler::Reservation& Scheduler::Reservation::operator=(Reservation&& o) noexcept {
  if (this != &o) {
    release();
    owner_ = std::exchange(o.owner_, nullptr);
    admission_ = o.admission_;
  }
  return *this;
}

void Scheduler::Reservation::release() {
  if (!owner_) return;
  {
    std::lock_guard lock(owner_->mu_);
    --owner_->reserved_;
  }
  owner_->idle_cv_.notify_all();
  owner_ = nullptr;
}

Scheduler::Reservation Scheduler::reserve() {
  Reservation r;
  std::lock_guard lock(mu_);
  if (!accepting_) {
    r.admission_ = Admission::ShuttingDown;
  } else if (queue_.size() + running_.size() + reserved_ >= static_cast<size_t>(options_.parallel + options_.queue)) {
    r.admission_ = Admission::QueueFull;
  } else {
    ++reserved_;
    r.owner_ = this;
    r.admission_ = Admission::Accepted;
  }
  return r;
}

Scheduler::Admission Scheduler::submit(std::shared_ptr<Job> job, Reservation& place) {
  if (place.owner_ != this) {
    if (place.admission_ == Admission::Accepted) throw std::logic_error("Scheduler::submit: the place was used or is another's");
    return place.admission_;
  }
  {
    std::lock_guard lock(mu_);
    --reserved_;
    place.owner_ = nullptr;
    if (!accepting_) return place.admission_ = Admission::ShuttingDown;
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return Admission::Accepted;
}

Scheduler::Admission Scheduler::submit(std::shared_ptr<Job> job) {
  Reservation place = reserve();
  return submit(std::move(job), place);
}

void Scheduler::shutdown(std::chrono::milliseconds grace) {
  std::unique_lock lock(mu_);
  accepting_ = false;
  idle_cv_.wait_for(lock, grace, [&] { return queue_.empty() && running_.empty(); });
  for (auto& j : queue_) j->cancel();
  for (auto& j : running_) j->cancel();
  stopping_ = true;
  lock.unlock();
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

int Scheduler::busy() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(running_.size());
}

int Scheduler::queued() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(queue_.size());
}

Session& Scheduler::session_for(Slot& slot, const PruneSchedule& prune) {
  const std::string key = prune.to_string();
  if (!slot.session) {
    SessionOptions o;
    o.n_ctx = options_.n_ctx;
    o.n_threads = options_.threads_per_slot;
    o.prune = prune;
    o.prune_policy = options_.prune_policy;
    // Called after each layer of a prefill: a long prompt stops within a layer of its job's
    // cancellation or deadline (run_job catches this and resets the session).
    o.on_prefill_progress = [&slot](int, int) {
      if (slot.job && (slot.job->cancelled() || Clock::now() > slot.job->deadline))
        throw PrefillInterrupted(slot.job->cancelled());
    };
    slot.session = std::make_unique<Session>(model_, o);
    slot.schedule = key;
  } else if (slot.schedule != key) {
    // Another request's schedule: same caches, thread pool and KV index, new plan.
    slot.session->reset(prune);
    slot.schedule = key;
  } else {
    slot.session->reset();
  }
  return *slot.session;
}

void Scheduler::work(Slot& slot) {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
      running_.push_back(job);
    }
    if (job->cancelled()) {
      GenerationResult r;
      r.finish_reason = "cancelled";
      metrics_.count_cancelled();
      job->finish(r);
    } else if (Clock::now() > job->deadline) {  // timed out in the queue: skip the prefill
      GenerationResult r;
      r.finish_reason = "length";
      r.timed_out = true;
      r.prompt_tokens = static_cast<int>(job->prompt.size());
      job->finish(r);
    } else {
      try {
        Session& session = session_for(slot, job->prune);
        slot.job = job.get();
        run_job(session, *job, metrics_);
        slot.job = nullptr;
      } catch (const std::exception& e) {  // a session could not be created
        slot.job = nullptr;
        GenerationResult r;
        r.error = e.what();
        job->finish(r);
      }
    }
    {
      std::lock_guard lock(mu_);
      running_.erase(std::find(running_.begin(), running_.end(), job));
    }
    idle_cv_.notify_all();
  }
}

}  // namespace lazyllm::server
