// One request's generation as a state machine that the scheduler advances one step at a time:
// prefill (whole, or chunk by chunk) -> sample -> decode -> sample ... -> finish. Streaming sends
// whole UTF-8 characters only, stop strings are held back, and cancellation and the time limit
// are checked before each prefill chunk and before each sampling, as a request run alone would.
#pragma once

#include <exception>
#include <memory>
#include <string>

#include "lazyllm/lazyllm.h"
#include "lazyllm/tokenizer.h"
#include "runtime/batch.h"
#include "server/job.h"
#include "server/metrics.h"
#include "server/stop_matcher.h"

namespace lazyllm::server {

// Thrown by the scheduler's prefill progress check (between layers of a prefill run alone) to
// stop the prefill of a job that was cancelled or ran past its deadline.
class PrefillInterrupted : public std::exception {
 public:
  explicit PrefillInterrupted(bool cancelled) : cancelled_(cancelled) {}
  bool cancelled() const { return cancelled_; }
  const char* what() const noexcept override { return cancelled_ ? "prefill cancelled" : "prefill timed out"; }

 private:
  bool cancelled_;
};

class Generation {
 public:
  // `session` must run the job's schedule and hold either nothing or the job's first `cached`
  // prompt tokens (a reused prefix, at most all but the last); both outlive this object.
  Generation(Job& job, Session& session, Metrics& metrics, size_t cached = 0);
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  // Once done, job.finish(...) has been called and nothing else may be asked.
  bool done() const { return done_; }
  Job& job() { return job_; }

  // Before a step: ends a prefilling request that was cancelled or is past its deadline.
  // Returns !done().
  bool before_step();
  // Whether the rest of the prompt must be prefilled alone through prefill_alone(): with
  // `chunk` 0 (whole prompts), or a prompt under a pruning schedule longer than `chunk` (its
  // selection needs the whole prompt in one call, and a batch step cannot stop part way).
  bool needs_prefill_alone(int chunk) const;
  // This request's part of the next batch step: its next prompt chunk (at most `chunk` tokens;
  // a pruned prompt whole) or its decode token. Then call stepped() once the step has run.
  SequenceStep next_step(int chunk);
  void stepped();
  // Whether a forward has computed any of this request yet (its queue wait is over).
  bool started() const { return started_; }
  // Prompt tokens still to prefill (0 once decoding), and whether they must go in one step.
  size_t prompt_left() const { return job_.prompt.size() - fed_; }
  bool prompt_whole() const { return !job_.prune.empty(); }
  // Steps this request's prefill has waited for a share of the step's prompt budget.
  int waited = 0;
  // Prefills the whole prompt with Session::prefill (its progress callback may throw
  // PrefillInterrupted), then samples.
  void prefill_alone();
  // The step this request was in failed: the request ends with `error`.
  void fail(const std::string& error);

 private:
  void starting();  // before the request's first forward: its queue wait (usage, metrics)
  void after_prompt();
  void on_logits();  // sample from the logits just computed, then stream, stop or go on
  void flush_and_end();
  void end();

  Job& job_;
  Session& session_;
  Metrics& metrics_;
  const Tokenizer& tok_;
  Sampler sampler_;
  StreamDecoder decoder_;
  StopMatcher stops_;
  GenerationResult r_;
  bool started_ = false;  // starting() has run
  size_t fed_ = 0;      // prompt tokens prefilled
  size_t pending_ = 0;  // prompt tokens in the step under way
  int sampled_ = 0;     // tokens sampled so far (the old loop's index)
  int32_t next_token_ = 0;  // sampled, to be decoded in the next step
  Clock::time_point last_token_;
  bool done_ = false;
};

}  // namespace lazyllm::server
