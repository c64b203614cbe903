#include "server/generation.h"

#include <algorithm>

namespace lazyllm::server {
namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

Generation::Generation(Job& job, Session& session, Metrics& metrics, size_t cached)
    : job_(job),
      session_(session),
      metrics_(metrics),
      tok_(session.model().tokenizer()),
      sampler_(job.sampling),
      decoder_(tok_),
      stops_(job.stop),
      fed_(cached) {
  r_.prompt_tokens = static_cast<int>(job_.prompt.size());
  r_.cached_tokens = static_cast<int>(cached);
}

bool Generation::before_step() {
  if (done_ || fed_ == job_.prompt.size()) return !done_;  // decoding: checked at sampling
  if (job_.cancelled()) {
    r_.finish_reason = "cancelled";
    end();
  } else if (Clock::now() > job_.deadline) {
    r_.finish_reason = "length";
    r_.timed_out = true;
    end();
  }
  return !done_;
}

bool Generation::needs_prefill_alone(int chunk) const {
  if (fed_ == job_.prompt.size()) return false;
  return chunk == 0 || (!job_.prune.empty() && job_.prompt.size() - fed_ > static_cast<size_t>(chunk));
}

void Generation::starting() {
  if (started_) return;
  started_ = true;
  const auto now = Clock::now();
  r_.queue_ms = ms_between(job_.arrival, now);
  metrics_.queue_wait_seconds.observe(ms_between(job_.submitted, now) / 1000.0);
}

SequenceStep Generation::next_step(int chunk) {
  starting();
  if (fed_ < job_.prompt.size()) {
    const size_t rest = job_.prompt.size() - fed_;
    pending_ = (chunk == 0 || !job_.prune.empty()) ? rest : std::min(rest, static_cast<size_t>(chunk));
    return {&session_, std::span<const int32_t>(job_.prompt).subspan(fed_, pending_), true};
  }
  return {&session_, std::span<const int32_t>(&next_token_, 1), false};
}

void Generation::stepped() {
  try {
    if (fed_ < job_.prompt.size()) {
      fed_ += pending_;
      if (fed_ == job_.prompt.size()) after_prompt();
    } else {
      ++sampled_;
      on_logits();
    }
  } catch (const std::exception& e) {
    fail(e.what());
  }
}

void Generation::prefill_alone() {
  starting();
  try {
    session_.prefill(std::span<const int32_t>(job_.prompt).subspan(fed_));
    fed_ = job_.prompt.size();
    after_prompt();
  } catch (const PrefillInterrupted& e) {
    if (e.cancelled()) r_.finish_reason = "cancelled";
    else r_.finish_reason = "length", r_.timed_out = true;
    end();
  } catch (const std::exception& e) {
    fail(e.what());
  }
}

void Generation::fail(const std::string& error) {
  if (done_) return;
  r_.error = error;
  end();
}

void Generation::after_prompt() {
  // Chunks run only without pruning, where the last chunk's fraction (1) is the prompt's.
  r_.prompt_computed_fraction = session_.stats().prefill_computed_fraction;
  r_.finish_reason = "length";
  on_logits();
}

void Generation::on_logits() {
  if (sampled_ >= job_.max_tokens) return flush_and_end();
  if (job_.cancelled()) {
    r_.finish_reason = "cancelled";
    return end();
  }
  if (Clock::now() > job_.deadline) {
    r_.timed_out = true;
    return flush_and_end();
  }
  const int32_t next = sampler_.sample(session_.logits(), session_.history());
  const auto now = Clock::now();
  if (sampled_ == 0) r_.ttft_ms = ms_between(job_.arrival, now);
  else metrics_.time_per_token_seconds.observe(ms_between(last_token_, now) / 1000.0);
  last_token_ = now;
  if (tok_.is_eog(next) || (!job_.end_of_turn.empty() && tok_.token_text(next) == job_.end_of_turn)) {
    r_.finish_reason = "stop";
    return flush_and_end();
  }
  ++r_.completion_tokens;
  job_.push_text(stops_.feed(decoder_.feed(next)));
  if (stops_.stopped()) {
    r_.finish_reason = "stop";
    return end();
  }
  if (sampled_ + 1 == job_.max_tokens || session_.n_past() >= session_.n_ctx()) return flush_and_end();
  next_token_ = next;  // decoded in the next step
}

void Generation::flush_and_end() {
  job_.push_text(stops_.feed(decoder_.flush()));
  if (stops_.stopped()) r_.finish_reason = "stop";
  job_.push_text(stops_.flush());
  end();
}

void Generation::end() {
  done_ = true;
  const bool sampled = r_.ttft_ms > 0;
  if (!sampled && r_.error.empty()) r_.ttft_ms = ms_between(job_.arrival, Clock::now());
  // A prefill stopped by cancellation or the time limit has no TTFT.
  if (r_.error.empty() && (sampled || (!r_.timed_out && r_.finish_reason != "cancelled"))) {
    metrics_.ttft_seconds.observe(r_.ttft_ms / 1000.0);
    metrics_.prompt_computed_fraction.observe(r_.prompt_computed_fraction);
  }
  if (r_.finish_reason == "cancelled") metrics_.count_cancelled();
  metrics_.count_tokens(r_.prompt_tokens, r_.completion_tokens);
  job_.finish(std::move(r_));
}

}  // namespace lazyllm::server
