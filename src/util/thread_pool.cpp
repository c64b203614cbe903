#include "util/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LAZYLLM_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define LAZYLLM_CPU_RELAX() asm volatile("yield")
#else
#define LAZYLLM_CPU_RELAX() std::this_thread::yield()
#endif

namespace lazyllm {
namespace {
// About a millisecond of spinning before a worker sleeps: covers the gaps between the
// parallel loops of one decode step, not idle time between requests.
constexpr int kSpinsBeforeSleep = 1 << 14;
// The caller waiting for the last workers of a loop: about 10 microseconds of spinning.
constexpr int kSpinsBeforeYield = 1 << 8;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)), ranges_(static_cast<size_t>(n_threads_)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  wake_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

int ThreadPool::default_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

namespace {
uint64_t pack(uint32_t front, uint32_t back) { return uint64_t{back} << 32 | front; }
}  // namespace

int64_t ThreadPool::take(int owner, bool from_front) {
  std::atomic<uint64_t>& bounds = ranges_[static_cast<size_t>(owner)].bounds;
  uint64_t cur = bounds.load(std::memory_order_acquire);
  for (;;) {
    const auto front = static_cast<uint32_t>(cur), back = static_cast<uint32_t>(cur >> 32);
    if (front >= back) return -1;
    const uint64_t next = from_front ? pack(front + 1, back) : pack(front, back - 1);
    if (bounds.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_acquire))
      return from_front ? front : back - 1;
  }
}

void ThreadPool::run_tasks(int thread_index) {
  for (int64_t task; (task = take(thread_index, true)) >= 0;) (*fn_)(task, thread_index);
  // Own range done: help the others, nearest neighbour first, until every range is empty.
  for (int i = 1; i < n_threads_; ++i) {
    const int victim = (thread_index + i) % n_threads_;
    for (int64_t task; (task = take(victim, false)) >= 0;) (*fn_)(task, thread_index);
  }
}

void ThreadPool::worker_loop(int thread_index) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    uint64_t g;
    while ((g = generation_.load(std::memory_order_acquire)) == seen) {
      if (stop_.load(std::memory_order_relaxed)) return;
      if (++spins < kSpinsBeforeSleep) {
        // Yield after a short spin so a busy machine's other threads (often our own caller)
        // get the core.
        if (spins < kSpinsBeforeYield) LAZYLLM_CPU_RELAX();
        else std::this_thread::yield();
        continue;
      }
      std::unique_lock<std::mutex> lock(mu_);
      wake_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      spins = 0;
    }
    seen = g;
    run_tasks(thread_index);
    active_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  if (n_tasks > std::numeric_limits<uint32_t>::max())
    throw std::length_error("ThreadPool::parallel_for: more than 2^32 - 1 tasks");
  fn_ = &fn;
  for (int t = 0; t < n_threads_; ++t) {
    const auto lo = static_cast<uint32_t>(n_tasks * t / n_threads_), hi = static_cast<uint32_t>(n_tasks * (t + 1) / n_threads_);
    ranges_[static_cast<size_t>(t)].bounds.store(pack(lo, hi), std::memory_order_relaxed);
  }
  active_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    // Under the lock so a worker about to sleep cannot miss the new generation.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_cv_.notify_all();
  run_tasks(0);
  // Spin briefly, then yield: on an oversubscribed machine the worker we wait for may need
  // this very core, and spinning would only delay it.
  for (int spins = 0; active_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kSpinsBeforeYield) LAZYLLM_CPU_RELAX();
    else std::this_thread::yield();
  }
  fn_ = nullptr;
}

}  // namespace lazyllm
