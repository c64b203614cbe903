// A fixed pool of worker threads for data-parallel loops. The calling thread takes part,
// so a pool of N threads starts N-1 workers. Each thread owns a contiguous range of the task
// indices and takes them front to back; a thread that runs out steals single tasks from the
// back of another's range. Consecutive tasks usually touch consecutive memory (rows of one
// weight matrix), so each thread streams one long run that the hardware prefetchers follow,
// while stealing still balances uneven tasks and preempted threads.
//
// Decode issues hundreds of small parallel loops per token, so waking workers must cost
// microseconds, not a futex round trip: workers spin briefly on a generation counter before
// sleeping on a condition variable, and the caller spins until the last worker is done.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lazyllm {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(task, thread_index) for every task in [0, n_tasks); returns when all are done.
  // thread_index is in [0, size()) and identifies per-thread scratch space.
  void parallel_for(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn);

  // Default thread count: the cores this process may run on.
  static int default_threads();

 private:
  void worker_loop(int thread_index);
  void run_tasks(int thread_index);
  // Takes the next task of thread `owner`'s range: from its front for the owner itself, from
  // its back for a thief. Returns -1 when the range is empty.
  int64_t take(int owner, bool from_front);

  // A range [front, back) packed into one word, so owner and thieves agree through one CAS.
  struct alignas(64) TaskRange {
    std::atomic<uint64_t> bounds{0};
  };

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  std::vector<TaskRange> ranges_;
};

}  // namespace lazyllm
