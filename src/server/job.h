// One generation request as the scheduler sees it: its inputs, and a channel through which the
// scheduler that runs it hands text and the final result to the HTTP handler waiting on it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "lazyllm/lazyllm.h"

namespace lazyllm::server {

using Clock = std::chrono::steady_clock;

struct GenerationResult {
  std::string finish_reason;  // "stop", "length" or "cancelled"
  int prompt_tokens = 0;
  int cached_tokens = 0;  // prompt tokens whose K/V came from the prefix cache (not computed)
  int completion_tokens = 0;
  double ttft_ms = 0;  // request arrival to first token (queueing included)
  // Request arrival to the start of the first forward that computes it (its prompt's first chunk,
  // or its prefill alone): the part of ttft_ms spent before any of its work ran.
  double queue_ms = 0;
  double prompt_computed_fraction = 1.0;
  bool timed_out = false;  // stopped by the per-request time limit
  std::string error;       // set when generation failed
};

class Job {
 public:
  // Inputs, fixed before the job is submitted.
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  PruneSchedule prune;
  int max_tokens = 16;
  std::vector<std::string> stop;  // stop strings, the template's end-of-turn text included
  std::string end_of_turn;        // a vocabulary token that ends the turn like EOS ("" = none)
  Clock::time_point arrival = Clock::now();
  Clock::time_point deadline = Clock::time_point::max();
  Clock::time_point submitted;  // set by Scheduler::submit (queue wait is measured from it)
  bool waited_for_kv = false;   // set by the step loop when the KV pool could not hold it yet
  int prefix_waits = 0;         // steps it waited for a prefix another request was computing

  // Producer side (the scheduler's step loop).
  void push_text(const std::string& text);
  void finish(GenerationResult result);

  // Consumer side (the HTTP handler). Waits up to `timeout` for text or the end; appends new
  // text to `text`. Returns true once finished and every piece of text has been taken.
  bool wait(std::string& text, std::chrono::milliseconds timeout);
  bool done() const;
  // Only after done().
  const GenerationResult& result() const { return result_; }

  // Either side: ask the scheduler to stop it before its next step (client gone, shutdown).
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string pending_;
  bool done_ = false;
  GenerationResult result_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace lazyllm::server
