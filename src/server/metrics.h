// Server metrics in the Prometheus text format: requests by path and status, tokens in and out,
// histograms of time to first token, time per output token and the prompt fraction computed;
// the batch's steps (sequences per step) and each request's wait from submission to its first step;
// the KV pool's pages (in use by running requests, held by idle ones for the prefix cache, free).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace lazyllm::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  // Appends the _bucket, _sum and _count lines of metric `name`.
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last = +Inf
  double sum_ = 0;
  uint64_t n_ = 0;
};

class Metrics {
 public:
  Metrics();
  void count_request(const std::string& path, int status);
  void count_tokens(int64_t prompt, int64_t completion);
  void count_cancelled() { ++cancelled_; }
  // A forward pass of the step loop over `sequences` requests.
  void count_step(int sequences);
  // Fewest reused tokens that count as a hit. Every prompt shares its first token (BOS) with
  // whatever a slot holds, so a one-token reuse would make nearly every lookup a "hit".
  static constexpr int64_t kMinPrefixHit = 32;
  // A request that looked for a cached prefix, and the prompt tokens it reused (every one counts
  // in the tokens total; a hit needs kMinPrefixHit); `copied`: taken from a running request's
  // context rather than kept by its own slot.
  void count_prefix_lookup(int64_t cached_tokens, bool copied = false) {
    ++prefix_lookups_;
    prefix_cached_tokens_ += cached_tokens;
    if (cached_tokens >= kMinPrefixHit) ++prefix_hits_;
    if (cached_tokens >= kMinPrefixHit && copied) ++prefix_copies_;
  }
  // A request that waited for a prompt prefix another request was computing.
  void count_prefix_wait() { ++prefix_waits_; }
  // A request that had to wait in the queue for KV pages; an idle request's K/V given back to the
  // pool for another's.
  void count_kv_wait() { ++kv_waits_; }
  void count_kv_eviction() { ++kv_evictions_; }
  Histogram ttft_seconds, time_per_token_seconds, prompt_computed_fraction, queue_wait_seconds;
  // Prompt tokens in each batch step that carried any (a whole prompt prefilled alone not included).
  Histogram step_prompt_tokens;
  // Gauges read at render time from the scheduler.
  struct Gauges {
    int slots_busy = 0, slots_total = 0, queued = 0;
    int64_t kv_page_bytes = 0, kv_pages_total = 0, kv_pages_running = 0, kv_pages_idle = 0, kv_pages_free = 0;
  };
  std::string render(const Gauges& g) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::atomic<int64_t> prompt_tokens_{0}, completion_tokens_{0}, cancelled_{0}, steps_{0};
  std::atomic<int64_t> prefix_lookups_{0}, prefix_hits_{0}, prefix_cached_tokens_{0}, prefix_copies_{0},
      prefix_waits_{0};
  std::atomic<int64_t> kv_waits_{0}, kv_evictions_{0};
  Histogram batch_size_;
};

}  // namespace lazyllm::server
