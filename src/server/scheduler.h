// Continuous batching: one step loop (one thread) drives up to `parallel` running requests over
// one SessionBatch, fed from a bounded queue. Each step runs one forward pass over every running
// request's next piece of work (a decode token or a prompt chunk); requests join from the queue
// and leave between steps. Each running request owns one of the batch's sessions, reset to its
// pruning schedule when it joins (Session::reset(schedule): nothing is reallocated). A prompt
// that must be prefilled whole and does not fit a chunk runs as a step of its own, checked
// after each layer (docs/server.md, Scheduling). A request takes its place in the queue
// (reserve) before it is prepared, so a full queue costs a request no tokenization.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "cache/kv_pool.h"
#include "lazyllm/lazyllm.h"
#include "runtime/batch.h"
#include "server/job.h"
#include "server/metrics.h"

namespace lazyllm::server {

class Generation;

struct SchedulerOptions {
  int parallel = 1;       // requests running at once (sessions of the batch)
  int queue = 16;         // jobs that may wait for a place in the batch
  int n_ctx = 0;          // context of each session (0 = the model's)
  int threads = 1;        // compute threads of the one SessionBatch
  int prefill_chunk = 512;  // prompt tokens per step for unpruned prompts (0 = whole prompts)
  // Prompt tokens of all the prefilling requests together in one step (0: 4 x prefill_chunk);
  // at least prefill_chunk.
  int step_prompt_tokens = 0;
  PruneSchedule default_prune;
  PrunePolicy prune_policy = PrunePolicy::kAuto;
  Device device = Device::Cpu;  // CUDA: one copy of the weights on the GPU for every request
  // Idle Sessions keep their last request's K/V, and a request takes the one (computed without
  // pruning) sharing the longest prompt prefix, computing only the rest (see pick_session).
  bool prefix_cache = true;
  GpuWeights gpu_weights = GpuWeights::kNative;
  bool gpu_warmup = true;  // SessionOptions::gpu_warmup
  bool gpu_weight_copies = false;  // SessionOptions::gpu_weight_copies (each slot's session would hold its own)
  // Bytes of the KV pool every session takes its K/V pages from (0: room for `parallel` full
  // contexts). A request joins the batch only when the pool has pages for its prompt and its
  // max_tokens (taking them from idle sessions' cached prefixes, least recently used first);
  // until then it waits in the queue.
  int64_t kv_memory = 0;
  // Tests: called on the step loop's thread between a step's forwards, before the requests that
  // arrived meanwhile are admitted.
  std::function<void()> between_forwards;
  // Tests: a batch whose sequences run one after another (SessionBatchOptions::serial), whose
  // prompts therefore share no products.
  bool serial_batch = false;
};

class Scheduler {
 public:
  // Shortest prefix copied from a running request's context (a shorter one costs more to look
  // up and copy than it saves; see pick_session).
  static constexpr size_t kMinCopiedPrefix = 32;
  // Steps a request waits at most for a prefix another request is computing.
  static constexpr int kMaxPrefixWaits = 256;
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
  // and joins the step loop.
  void shutdown(std::chrono::milliseconds grace);

  int busy() const;
  int queued() const;
  int slots() const { return options_.parallel; }
  int n_ctx() const { return n_ctx_; }
  const KvPool& kv_pool() const { return *kv_pool_; }
  // Slots, queue and KV pool now, for /metrics.
  Metrics::Gauges gauges() const;

 private:
  struct Running;
  void loop();
  // Moves queued jobs into the batch while it has free places (start()). `between_chunks`: polled
  // within a step, where a job that waits for a prefix being computed keeps its count of waits.
  // Returns the jobs taken from the queue (0 when none was waiting).
  size_t admit(std::vector<Running>& active, bool between_chunks);
  // Takes a job from the queue into the batch, or finishes it at once (cancelled, timed out,
  // a prompt or schedule its session cannot take): kStarted. kNoKv, changing nothing but idle
  // sessions' caches, when the KV pool cannot hold it yet; kDeferred, changing nothing, while a
  // running request is still computing a prefix the job shares (pick_session).
  enum class Start { kStarted, kNoKv, kDeferred };
  Start start(const std::shared_ptr<Job>& job, std::vector<Running>& active, bool count_prefix_wait = true);
  // Frees KV pages until session `index` can grow to `tokens` tokens of context, giving back
  // idle sessions' cached K/V from the least recently used; false when it cannot.
  bool make_room(int index, int tokens);
  // The prefix cache: which idle Session the job takes (an index into free_sessions_) and how
  // many of its prompt tokens that Session already holds (its longest common prefix with the
  // Session's last context, all but the last prompt token at most; only contexts computed
  // without pruning count, since a pruned one was selected by its own prompt; 0 with the cache
  // off). A job with a schedule prunes among the tokens after the prefix. When a
  // running request's context shares a longer prefix (at least kMinCopiedPrefix tokens), the
  // job takes the least recently used idle Session and a copy of that prefix (`donor`, an index
  // into sessions_, and `copied` tokens). `wait`: a running request still prefilling shares at
  // least kMinCopiedPrefix more prompt tokens than are available now, so the job waits for it
  // (a burst of requests with one document computes the document once).
  struct SessionPick {
    size_t pick = 0, cached = 0;
    int donor = -1;
    size_t copied = 0;
    bool wait = false;
  };
  SessionPick pick_session(const Job& job, const std::vector<Running>& active) const;
  // One batch step over every running request that can take part, then at most one prefill
  // that must run alone. The step's work runs as a few forwards in the order of order_step
  // (prompt_budget.h); between them, requests that arrived and whose prompt rest fits one chunk
  // (prefix-cache hits) are admitted and answered at once.
  void step(std::vector<Running>& active);
  // Work for one forward: (index into active, prompt tokens; 0: its decode token) each.
  using Part = std::vector<std::pair<size_t, int64_t>>;
  // One forward over active[i]'s next piece of work for each listed (i, prompt tokens; 0: decode).
  void run_part(std::vector<Running>& active, const Part& part);
  // Fresh prompts a forward would finish: that one forward where the batch shares prompts'
  // products, else one forward each, so each first token is sent once computed.
  std::vector<Part> fresh_prompt_parts(Part prompts) const;
  // Between a step's forwards: admits what arrived and runs the new requests whose prompt rest
  // fits one chunk.
  void answer_arrivals(std::vector<Running>& active);
  void retire(const std::shared_ptr<Job>& job);
  // KV pages the idle Sessions hold (their cached prefixes), but for Session `except`.
  int64_t idle_kv_pages(int except = -1) const;
  void count_idle_pages() { idle_pages_ = idle_kv_pages(); }

  std::shared_ptr<const Model> model_;
  SchedulerOptions options_;
  Metrics& metrics_;
  int n_ctx_ = 0;
  SessionBatch batch_;
  std::shared_ptr<KvPool> kv_pool_;
  std::atomic<int64_t> idle_pages_{0};  // pages idle sessions hold (set by the step loop)
  std::vector<std::unique_ptr<Session>> sessions_;
  std::vector<int> free_sessions_;  // the loop's own, from the least to the most recently freed
  const Job* alone_ = nullptr;      // the job prefilling alone (read by the progress check, on the loop's thread)
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // loop: a job arrived or stopping
  std::condition_variable idle_cv_;  // shutdown: a job finished
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::shared_ptr<Job>> running_;
  int reserved_ = 0;
  bool accepting_ = true;
  bool stopping_ = false;
};

}  // namespace lazyllm::server
