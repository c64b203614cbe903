#include "server/scheduler.h"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <utility>

#include "runtime/prefill.h"
#include "server/generation.h"
#include "server/prompt_budget.h"
#include "util/byte_size.h"

namespace lazyllm::server {

// A request in the batch: its job, its session (an index into sessions_) and its progress.
struct Scheduler::Running {
  std::shared_ptr<Job> job;
  int session = -1;
  std::unique_ptr<Generation> gen;
};

Scheduler::Scheduler(std::shared_ptr<const Model> model, SchedulerOptions options, Metrics& metrics)
    : model_(std::move(model)),
      options_(std::move(options)),
      metrics_(metrics),
      batch_(model_, SessionBatchOptions{.n_threads = options_.threads > 0 ? options_.threads : 1,
                                         .device = options_.device,
                                         .gpu_weights = options_.gpu_weights,
                                         .serial = options_.serial_batch}) {
  if (options_.parallel < 1) throw Error("--parallel must be at least 1");
  if (options_.queue < 0) throw Error("--queue must not be negative");
  if (options_.prefill_chunk < 0) throw Error("--prefill-chunk must not be negative");
  if (options_.step_prompt_tokens == 0) options_.step_prompt_tokens = 4 * options_.prefill_chunk;
  if (options_.step_prompt_tokens < options_.prefill_chunk)
    throw Error("--step-prompt-tokens " + std::to_string(options_.step_prompt_tokens) +
                " is less than --prefill-chunk " + std::to_string(options_.prefill_chunk));
  if (options_.kv_memory < 0) throw Error("--kv-memory must not be negative");
  const int ctx = options_.n_ctx > 0 ? options_.n_ctx : model_->config().n_ctx_train;
  const int64_t full = KvPool::session_bytes(*model_, options_.device, ctx);
  const int64_t kv_bytes = options_.kv_memory > 0 ? options_.kv_memory : options_.parallel * full;
  if (kv_bytes < full)
    throw Error("--kv-memory " + format_size(kv_bytes) + " holds less than one request's context of " +
                std::to_string(ctx) + " tokens (" + format_size(full) + "): raise --kv-memory or lower --ctx");
  kv_pool_ = KvPool::create(*model_, options_.device, kv_bytes);
  SessionOptions o;
  o.n_ctx = options_.n_ctx;
  o.kv_pool = kv_pool_;
  o.prune = options_.default_prune;
  o.prune_policy = options_.prune_policy;
  o.device = options_.device;
  o.gpu_warmup = options_.gpu_warmup;
  o.gpu_weight_copies = options_.gpu_weight_copies;
  // Called after each layer of a prefill run alone (never by a batch step): a long prompt stops
  // within a layer of its job's cancellation or deadline.
  o.on_prefill_progress = [this](int, int) {
    if (alone_ && (alone_->cancelled() || Clock::now() > alone_->deadline)) throw PrefillInterrupted(alone_->cancelled());
  };
  for (int i = 0; i < options_.parallel; ++i) {  // allocate up front
    sessions_.push_back(batch_.new_session(o));
    free_sessions_.push_back(options_.parallel - 1 - i);
  }
  n_ctx_ = sessions_.front()->n_ctx();
  thread_ = std::thread([this] { loop(); });
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
    job->submitted = Clock::now();
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
  if (thread_.joinable()) thread_.join();
}

int Scheduler::busy() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(running_.size());
}

int Scheduler::queued() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(queue_.size());
}

void Scheduler::loop() {
  std::vector<Running> active;
  active.reserve(options_.parallel);  // never reallocated: a step keeps indices into it
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !active.empty(); });
      if (active.empty() && queue_.empty()) return;  // stopping, nothing left
    }
    admit(active, false);
    step(active);
    // Finished requests leave; their sessions wait for the next ones.
    for (auto it = active.begin(); it != active.end();) {
      if (!it->gen->done()) {
        ++it;
        continue;
      }
      free_sessions_.push_back(it->session);
      count_idle_pages();  // before retire(): once a job is no longer running, the gauges say so
      retire(it->job);
      it = active.erase(it);
    }
  }
}

size_t Scheduler::admit(std::vector<Running>& active, bool between_chunks) {
  std::vector<std::shared_ptr<Job>> joining;
  {
    std::lock_guard lock(mu_);
    while (active.size() + joining.size() < static_cast<size_t>(options_.parallel) && !queue_.empty()) {
      joining.push_back(std::move(queue_.front()));
      queue_.pop_front();
      running_.push_back(joining.back());
    }
  }
  const size_t taken = joining.size();
  // Jobs that go back to the head of the queue, in order: those waiting for a prefix another
  // request is computing, and, once one finds no KV pages, it and those after it (until
  // running requests finish).
  std::vector<std::shared_ptr<Job>> back;
  for (size_t i = 0; i < joining.size(); ++i) {
    const Start s = start(joining[i], active, !between_chunks);
    if (s == Start::kStarted) continue;
    if (s == Start::kDeferred) {
      back.push_back(std::move(joining[i]));
      continue;
    }
    back.insert(back.end(), std::make_move_iterator(joining.begin() + static_cast<ptrdiff_t>(i)),
                std::make_move_iterator(joining.end()));
    break;
  }
  if (!back.empty()) {
    std::lock_guard lock(mu_);
    for (size_t j = back.size(); j-- > 0;) {
      running_.erase(std::find(running_.begin(), running_.end(), back[j]));
      queue_.push_front(std::move(back[j]));
    }
  }
  return taken;
}

int64_t Scheduler::idle_kv_pages(int except) const {
  int64_t idle = 0;
  for (int i : free_sessions_)
    if (i != except) idle += sessions_[i]->kv_pages();
  return idle;
}

Metrics::Gauges Scheduler::gauges() const {
  Metrics::Gauges g;
  {
    std::lock_guard lock(mu_);
    g.slots_busy = static_cast<int>(running_.size());
    g.queued = static_cast<int>(queue_.size());
  }
  g.slots_total = options_.parallel;
  g.kv_page_bytes = kv_pool_->page_bytes();
  g.kv_pages_total = kv_pool_->pages();
  g.kv_pages_free = kv_pool_->free_pages();
  g.kv_pages_idle = std::min(idle_pages_.load(), g.kv_pages_total - g.kv_pages_free);
  g.kv_pages_running = g.kv_pages_total - g.kv_pages_free - g.kv_pages_idle;
  return g;
}

bool Scheduler::make_room(int index, int tokens) {
  const int64_t want = kv_pool_->pages_for(tokens) - sessions_[index]->kv_pages();
  if (kv_pool_->free_pages() + idle_kv_pages(index) < want)
    return false;                                          // running requests hold the rest: keep the caches
  for (int other : free_sessions_) {                       // least recently freed first
    if (kv_pool_->free_pages() >= want) break;
    if (other == index || sessions_[other]->kv_pages() == 0) continue;
    sessions_[other]->release_kv();
    metrics_.count_kv_eviction();
  }
  return kv_pool_->free_pages() >= want;
}

Scheduler::SessionPick Scheduler::pick_session(const Job& job, const std::vector<Running>& active) const {
  // free_sessions_ runs from the least to the most recently freed. A miss takes the least
  // recently used Session, so the caches of recent requests stay for the requests that follow.
  SessionPick p;
  if (!options_.prefix_cache || job.prompt.empty()) return p;
  auto common = [&](const std::vector<int32_t>& held) {
    const size_t limit = std::min(held.size(), job.prompt.size() - 1);  // the last token is computed
    size_t n = 0;
    while (n < limit && held[n] == job.prompt[n]) ++n;
    return n;
  };
  // Only tokens computed without pruning serve (Session::unpruned_prefix: a pruned token was
  // chosen by a later one), to a request with a schedule too: it prunes among the tokens it
  // computes after the prefix.
  auto reusable = [&](const Session& held) {
    return std::min(common(held.history()), static_cast<size_t>(held.unpruned_prefix()));
  };
  for (size_t i = 0; i < free_sessions_.size(); ++i)
    if (const size_t n = reusable(*sessions_[free_sessions_[i]]); n > p.cached) p.cached = n, p.pick = i;
  // A running request's context (what it has computed so far) serves as well, by copy: requests
  // that arrive together with one system prompt or document compute it once.
  size_t coming = 0;  // the longest prefix a running request without a schedule will have computed
  for (const Running& a : active) {
    if (const size_t n = reusable(*sessions_[a.session]); n >= kMinCopiedPrefix && n > std::max(p.cached, p.copied))
      p.donor = a.session, p.copied = n;
    if (a.job->prune.empty()) coming = std::max(coming, common(a.job->prompt));
  }
  p.wait = coming >= std::max(p.cached, p.copied) + kMinCopiedPrefix;
  if (p.donor >= 0) p.pick = 0, p.cached = 0;
  return p;
}

Scheduler::Start Scheduler::start(const std::shared_ptr<Job>& job, std::vector<Running>& active,
                                  bool count_prefix_wait) {
  GenerationResult r;
  if (job->cancelled()) {
    r.finish_reason = "cancelled";
    metrics_.count_cancelled();
  } else if (Clock::now() > job->deadline) {  // timed out in the queue: skip the prefill
    r.finish_reason = "length";
    r.timed_out = true;
    r.prompt_tokens = static_cast<int>(job->prompt.size());
  } else {
    const auto [pick, cached, donor, copied, wait] = pick_session(*job, active);
    const int index = free_sessions_[pick];
    Session& session = *sessions_[index];
    auto refuse = [&](const char* why) {
      r.error = why;
      job->finish(std::move(r));
      retire(job);
      return Start::kStarted;
    };
    // Refused here, not by the step, so that one bad request cannot fail the others'; and
    // before waiting for pages, which such a request would wait for in vain.
    try {
      check_prefill(job->prompt, 0, session.n_ctx(), model_->config().n_vocab);
    } catch (const std::exception& e) {
      return refuse(e.what());
    }
    // Bounded: a prefix that never comes (its request held back by others' prefills) stops
    // being waited for.
    if (wait && job->prefix_waits < kMaxPrefixWaits) {
      if (job->prefix_waits == 0) metrics_.count_prefix_wait();
      if (count_prefix_wait || job->prefix_waits == 0) ++job->prefix_waits;
      return Start::kDeferred;
    }
    // K/V for the prompt and every token it may generate, taken now so no step runs out.
    const int kv_tokens = static_cast<int>(
        std::min<int64_t>(static_cast<int64_t>(job->prompt.size()) + std::max(job->max_tokens, 1), session.n_ctx()));
    if (!make_room(index, kv_tokens)) {
      if (!job->waited_for_kv) metrics_.count_kv_wait();
      job->waited_for_kv = true;
      return Start::kNoKv;
    }
    size_t kept = 0;
    try {
      if (cached > 0 && session.keep_prefix(static_cast<int>(cached), job->prune)) {
        kept = cached;
      } else {
        // A copy goes between sessions without a schedule; then this request's (the caches stay).
        if (donor >= 0) {
          session.reset(PruneSchedule{});
          if (session.copy_prefix(*sessions_[donor], static_cast<int>(copied)) &&
              session.keep_prefix(static_cast<int>(copied), job->prune))
            kept = copied;
        }
        if (kept == 0) session.reset(job->prune);
      }
      if (!session.reserve_kv(kv_tokens)) throw Error("the KV pool has no pages for this request");
    } catch (const std::exception& e) {
      return refuse(e.what());
    }
    if (options_.prefix_cache) metrics_.count_prefix_lookup(static_cast<int64_t>(kept), kept > 0 && donor >= 0);
    free_sessions_.erase(free_sessions_.begin() + static_cast<ptrdiff_t>(pick));
    count_idle_pages();
    auto gen = std::make_unique<Generation>(*job, session, metrics_, kept);
    active.push_back({job, index, std::move(gen)});
    return Start::kStarted;
  }
  job->finish(std::move(r));
  retire(job);
  return Start::kStarted;
}

void Scheduler::step(std::vector<Running>& active) {
  const int chunk = options_.prefill_chunk;
  Part decodes;
  std::vector<size_t> prefilling;
  std::optional<size_t> alone;
  for (size_t i = 0; i < active.size(); ++i) {
    Running& a = active[i];
    if (!a.gen->before_step()) continue;  // cancelled or timed out between prefill chunks
    if (a.gen->needs_prefill_alone(chunk)) {
      if (!alone) alone = i;  // the others wait for a later step
      continue;
    }
    if (a.gen->prompt_left() > 0) prefilling.push_back(i);
    else decodes.push_back({i, 0});
  }
  // Prompts share step_prompt_tokens a step (each at most a chunk), so a step's cost stays
  // bounded however many requests prefill (prompt_budget.h: who goes first).
  std::vector<PromptDemand> demands;
  for (size_t i : prefilling) {
    const Running& a = active[i];
    demands.push_back({.left = static_cast<int64_t>(a.gen->prompt_left()),
                       .waited = a.gen->waited,
                       .whole = a.gen->prompt_whole(),
                       .fresh = !a.gen->started()});
  }
  const std::vector<int64_t> takes = share_prompt_budget(demands, chunk, options_.step_prompt_tokens);
  for (size_t k = 0; k < prefilling.size(); ++k) {
    Running& a = active[prefilling[k]];
    if (takes[k] == 0) ++a.gen->waited;
    else a.gen->waited = 0;
  }
  const StepOrder order = order_step(demands, takes);
  Part first;
  for (size_t k : order.first) first.push_back({prefilling[k], takes[k]});
  std::vector<Part> parts = fresh_prompt_parts(std::move(first));
  parts.push_back(std::move(decodes));
  for (size_t k : order.chunks) parts.push_back({{prefilling[k], takes[k]}});
  bool ran = false;
  for (const auto& part : parts) {
    if (part.empty()) continue;
    if (ran) {
      if (options_.between_forwards) options_.between_forwards();
      answer_arrivals(active);
    }
    run_part(active, part);
    ran = true;
  }
  if (alone) {
    Running& a = active[*alone];
    metrics_.count_step(1);
    alone_ = &a.gen->job();
    a.gen->prefill_alone();
    alone_ = nullptr;
  }
}

std::vector<Scheduler::Part> Scheduler::fresh_prompt_parts(Part prompts) const {
  if (batch_.prompts_share_products()) return {std::move(prompts)};
  std::vector<Part> parts;
  for (const auto& p : prompts) parts.push_back({p});
  return parts;
}

void Scheduler::run_part(std::vector<Running>& active, const Part& part) {
  if (part.empty()) return;
  const int chunk = options_.prefill_chunk;
  std::vector<SequenceStep> work;
  int64_t prompt_tokens = 0;
  for (const auto& [i, take] : part) {
    Running& a = active[i];
    prompt_tokens += take;
    work.push_back(a.gen->next_step(take > 0 ? static_cast<int>(take) : chunk));
  }
  metrics_.count_step(static_cast<int>(work.size()));
  if (prompt_tokens > 0) metrics_.step_prompt_tokens.observe(static_cast<double>(prompt_tokens));
  bool failed = false;
  try {
    batch_.step(work);
  } catch (const std::exception& e) {  // the sessions were reset or left unchanged
    for (const auto& [i, take] : part) active[i].gen->fail(e.what());
    failed = true;
  }
  if (!failed)
    for (const auto& [i, take] : part) active[i].gen->stepped();
}

void Scheduler::answer_arrivals(std::vector<Running>& active) {
  {
    std::lock_guard lock(mu_);
    if (queue_.empty() || active.size() >= static_cast<size_t>(options_.parallel)) return;
  }
  const size_t before = active.size();
  if (admit(active, true) == 0) return;
  const int chunk = options_.prefill_chunk;
  Part prompts;
  for (size_t i = before; i < active.size(); ++i) {
    Generation& g = *active[i].gen;
    if (g.prompt_left() > 0 && g.prompt_left() <= static_cast<size_t>(chunk) && !g.needs_prefill_alone(chunk) &&
        g.before_step())
      prompts.push_back({i, static_cast<int64_t>(g.prompt_left())});
  }
  const std::vector<Part> parts = fresh_prompt_parts(std::move(prompts));
  for (size_t k = 0; k < parts.size(); ++k) {
    if (k > 0 && options_.between_forwards) options_.between_forwards();
    run_part(active, parts[k]);
  }
}

void Scheduler::retire(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard lock(mu_);
    running_.erase(std::find(running_.begin(), running_.end(), job));
  }
  idle_cv_.notify_all();
}

}  // namespace lazyllm::server
