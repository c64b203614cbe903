#include "server/metrics.h"

#include <cstdio>

namespace lazyllm::server {
namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void header(std::string& out, const std::string& name, const std::string& help, const char* type) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

// One unlabelled counter or gauge: its header and its value.
void single(std::string& out, const std::string& name, const std::string& help, const char* type, int64_t value) {
  header(out, name, help, type);
  out += name + " " + std::to_string(value) + "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard lock(mu_);
  ++counts_[i];
  sum_ += v;
  ++n_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  std::lock_guard lock(mu_);
  header(out, name, help, "histogram");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(n_) + "\n";
  out += name + "_sum " + num(sum_) + "\n" + name + "_count " + std::to_string(n_) + "\n";
}

Metrics::Metrics()
    : ttft_seconds({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      time_per_token_seconds({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      prompt_computed_fraction({0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0}),
      queue_wait_seconds({0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      step_prompt_tokens({16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}),
      batch_size_({1, 2, 4, 8, 16, 32, 64, 128, 256}) {}

void Metrics::count_step(int sequences) {
  ++steps_;
  batch_size_.observe(sequences);
}

void Metrics::count_request(const std::string& path, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{path, status}];
}

void Metrics::count_tokens(int64_t prompt, int64_t completion) {
  prompt_tokens_ += prompt;
  completion_tokens_ += completion;
}

std::string Metrics::render(const Gauges& g) const {
  std::string out;
  header(out, "lazyllm_requests_total", "HTTP requests by path and status code.", "counter");
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, n] : requests_)
      out += "lazyllm_requests_total{path=\"" + key.first + "\",status=\"" + std::to_string(key.second) + "\"} " +
             std::to_string(n) + "\n";
  }
  single(out, "lazyllm_prompt_tokens_total", "Prompt tokens processed.", "counter", prompt_tokens_.load());
  single(out, "lazyllm_completion_tokens_total", "Tokens generated.", "counter", completion_tokens_.load());
  single(out, "lazyllm_requests_cancelled_total", "Generations stopped because the client went away or shutdown.", "counter", cancelled_.load());
  ttft_seconds.render(out, "lazyllm_time_to_first_token_seconds", "Time from request arrival to the first token.");
  time_per_token_seconds.render(out, "lazyllm_time_per_output_token_seconds", "Time between consecutive output tokens.");
  prompt_computed_fraction.render(out, "lazyllm_prompt_computed_fraction",
                                  "Fraction of prompt (token, layer) pairs computed in prefill (1 = no pruning).");
  queue_wait_seconds.render(out, "lazyllm_queue_wait_seconds", "Time from submission to a request's first step.");
  single(out, "lazyllm_steps_total", "Forward passes of the step loop (batch steps and prefills run alone).", "counter", steps_.load());
  batch_size_.render(out, "lazyllm_batch_size", "Requests (sequences) in each step.");
  step_prompt_tokens.render(
      out, "lazyllm_step_prompt_tokens",
      "Prompt tokens in each batch step that carried any (shared by the prefilling requests, --prefill-chunk).");
  single(out, "lazyllm_prefix_cache_lookups_total", "Requests that looked for a cached prompt prefix.", "counter", prefix_lookups_.load());
  single(out, "lazyllm_prefix_cache_hits_total",
         "Requests that reused a cached prompt prefix of at least " + std::to_string(kMinPrefixHit) + " tokens.",
         "counter", prefix_hits_.load());
  single(out, "lazyllm_prefix_cache_tokens_total", "Prompt tokens reused from the prefix cache, not computed.", "counter", prefix_cached_tokens_.load());
  single(out, "lazyllm_prefix_cache_copies_total", "Prefix-cache hits copied from a running request's context.",
         "counter", prefix_copies_.load());
  single(out, "lazyllm_prefix_cache_waits_total",
         "Requests that waited for a prompt prefix another request was computing.", "counter", prefix_waits_.load());
  single(out, "lazyllm_slots_busy", "Requests running in the batch now.", "gauge", g.slots_busy);
  single(out, "lazyllm_slots_total", "Requests that may run in the batch at once (--parallel).", "gauge",
         g.slots_total);
  single(out, "lazyllm_queue_length", "Requests waiting to join the batch.", "gauge", g.queued);
  single(out, "lazyllm_kv_pool_page_bytes", "Bytes of one page of the KV pool.", "gauge", g.kv_page_bytes);
  single(out, "lazyllm_kv_pool_pages_total", "Pages of the KV pool (--kv-memory).", "gauge", g.kv_pages_total);
  header(out, "lazyllm_kv_pool_pages", "KV pool pages by use: running requests, idle slots keeping a prefix, free.",
         "gauge");
  out += "lazyllm_kv_pool_pages{state=\"running\"} " + std::to_string(g.kv_pages_running) + "\n";
  out += "lazyllm_kv_pool_pages{state=\"idle\"} " + std::to_string(g.kv_pages_idle) + "\n";
  out += "lazyllm_kv_pool_pages{state=\"free\"} " + std::to_string(g.kv_pages_free) + "\n";
  single(out, "lazyllm_kv_pool_waits_total", "Requests that waited in the queue for KV pages.", "counter",
         kv_waits_.load());
  single(out, "lazyllm_kv_pool_evictions_total", "Idle slots' cached K/V given back to the pool for another request.",
         "counter", kv_evictions_.load());
  return out;
}

}  // namespace lazyllm::server
