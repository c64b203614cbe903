// N parallel slots, each a lazyllm::Session over the one shared Model and run by its own
// thread, fed from a bounded queue. A job whose pruning schedule differs from its slot's gets a
// fresh Session (a Session's schedule is fixed at construction). A request takes its place in
// the queue (reserve) before it is prepared, so a full queue costs a request no tokenization.
// A prefill stops between layers once its job is cancelled or past its deadline.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "lazyllm/lazyllm.h"
#include "server/job.h"
#include "server/metrics.h"

namespace lazyllm::server {

struct SchedulerOptions {
  int parallel = 1;          // slots
  int queue = 16;            // jobs that may wait for a slot
  int n_ctx = 0;             // context of each slot (0 = the model's)
  int threads_per_slot = 1;  // compute threads of each slot's Session
  PruneSchedule default_prune;
  PrunePolicy prune_policy = PrunePolicy::kAuto;
};

class Scheduler {
 public:
  Scheduler(std::shared_ptr<const Model> model, SchedulerOptions options, Metrics& metrics);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  enum class Admission { Accepted, QueueFull, ShuttingDown };

  // A place in the queue, held from reserve() until a job is submitted on it or it is dropped.
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& o) noexcept;
    Reservation& operator=(Reservation&& o) noexcept;
    ~Reservation() { release(); }
    // Accepted when the place is held; otherwise why there was none.
    Admission admission() const { return admission_; }

   private:
    friend class Scheduler;
    void release();
    Scheduler* owner_ = nullptr;  // set while the place is held
    Admission admission_ = Admission::ShuttingDown;
  };

  // Queued, running and reserved jobs together are at most parallel + queue.
  Reservation reserve();
  // Queues the job on a held place (Accepted), or ShuttingDown (the place is then given back).
  Admission submit(std::shared_ptr<Job> job, Reservation& place);
  // reserve() and submit() at once.
  Admission submit(std::shared_ptr<Job> job);
  // Stops admitting, lets running and queued jobs finish for up to `grace`, cancels the rest,
  // and joins the slot threads.
  void shutdown(std::chrono::milliseconds grace);

  int busy() const;
  int queued() const;
  int slots() const { return options_.parallel; }
  int n_ctx() const { return n_ctx_; }

 private:
  struct Slot {
    std::unique_ptr<Session> session;
    std::string schedule;  // the session's prune schedule, as text
    Job* job = nullptr;    // the job running (read by the prefill progress check, on the slot's thread)
  };
  void work(Slot& slot);
  Session& session_for(Slot& slot, const PruneSchedule& prune);

  std::shared_ptr<const Model> model_;
  SchedulerOptions options_;
  Metrics& metrics_;
  int n_ctx_ = 0;
  std::vector<Slot> slots_;
  std::vector<std::thread> threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // workers: a job arrived or stopping
  std::condition_variable idle_cv_;  // shutdown: a job finished
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::shared_ptr<Job>> running_;
  int reserved_ = 0;
  bool accepting_ = true;
  bool stopping_ = false;
};

}  // namespace lazyllm::server
