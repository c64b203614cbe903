// ThreadPool: every task runs exactly once on a valid thread index, each thread walks its own
// range front to back, and blocked threads' tasks are stolen by the others.
#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace lazyllm {
namespace {

TEST(ThreadPool, RunsEveryTaskExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 3, 7, 64, 1000}) {
      std::vector<std::atomic<int>> runs(static_cast<size_t>(n));
      std::atomic<bool> bad_index{false};
      pool.parallel_for(n, [&](int64_t task, int thread) {
        if (thread < 0 || thread >= pool.size()) bad_index = true;
        runs[static_cast<size_t>(task)].fetch_add(1);
      });
      EXPECT_FALSE(bad_index) << threads << " threads, " << n << " tasks";
      for (int64_t t = 0; t < n; ++t) ASSERT_EQ(runs[static_cast<size_t>(t)].load(), 1) << "task " << t << " of " << n;
    }
  }
}

TEST(ThreadPool, EachThreadTakesItsOwnTasksInOrder) {
  constexpr int kThreads = 3;
  constexpr int64_t kTasks = 300;
  ThreadPool pool(kThreads);
  std::mutex mu;
  std::vector<std::vector<int64_t>> order(kThreads);
  pool.parallel_for(kTasks, [&](int64_t task, int thread) {
    std::lock_guard<std::mutex> lock(mu);
    order[static_cast<size_t>(thread)].push_back(task);
  });
  for (int t = 0; t < kThreads; ++t) {
    // Tasks of the thread's own range [lo, hi) must appear in increasing order.
    const int64_t lo = kTasks * t / kThreads, hi = kTasks * (t + 1) / kThreads;
    int64_t last = -1;
    for (int64_t task : order[static_cast<size_t>(t)]) {
      if (task < lo || task >= hi) continue;
      EXPECT_GT(task, last) << "thread " << t;
      last = task;
    }
  }
}

TEST(ThreadPool, BlockedThreadsTasksAreStolen) {
  // Task 0 (the caller's range) waits until every other task is done, which can only happen if
  // the other threads take the rest of the caller's range too. A time limit turns a missing
  // steal into a failure instead of a hang.
  for (int threads : {2, 4}) {
    ThreadPool pool(threads);
    constexpr int64_t kTasks = 64;
    std::atomic<int64_t> done{0};
    std::atomic<bool> timed_out{false};
    pool.parallel_for(kTasks, [&](int64_t task, int) {
      if (task == 0) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (done.load() < kTasks - 1) {
          if (std::chrono::steady_clock::now() > deadline) {
            timed_out = true;
            break;
          }
          std::this_thread::yield();
        }
      }
      done.fetch_add(1);
    });
    EXPECT_FALSE(timed_out) << threads << " threads";
    EXPECT_EQ(done.load(), kTasks);
  }
}

}  // namespace
}  // namespace lazyllm
