#include "server/generation.h"

#include <exception>

#include "lazyllm/tokenizer.h"
#include "server/stop_matcher.h"

namespace lazyllm::server {
namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void generate(Session& session, Job& job, Metrics& metrics, GenerationResult& r) {
  const Tokenizer& tok = session.model().tokenizer();
  r.prompt_tokens = static_cast<int>(job.prompt.size());
  try {
    session.prefill(job.prompt);
  } catch (const PrefillInterrupted& e) {
    session.reset();
    if (e.cancelled()) r.finish_reason = "cancelled";
    else r.finish_reason = "length", r.timed_out = true;
    return;
  }
  r.prompt_computed_fraction = session.stats().prefill_computed_fraction;
  Sampler sampler(job.sampling);
  StreamDecoder decoder(tok);
  StopMatcher stops(job.stop);
  Clock::time_point last_token;
  r.finish_reason = "length";
  for (int i = 0; i < job.max_tokens; ++i) {
    if (job.cancelled()) {
      r.finish_reason = "cancelled";
      return;
    }
    if (Clock::now() > job.deadline) {
      r.timed_out = true;
      break;
    }
    const int32_t next = sampler.sample(session.logits(), session.history());
    const auto now = Clock::now();
    if (i == 0) r.ttft_ms = ms_between(job.arrival, now);
    else metrics.time_per_token_seconds.observe(ms_between(last_token, now) / 1000.0);
    last_token = now;
    if (tok.is_eog(next) || (!job.end_of_turn.empty() && tok.token_text(next) == job.end_of_turn)) {
      r.finish_reason = "stop";
      break;
    }
    ++r.completion_tokens;
    job.push_text(stops.feed(decoder.feed(next)));
    if (stops.stopped()) {
      r.finish_reason = "stop";
      return;
    }
    if (i + 1 == job.max_tokens || session.n_past() >= session.n_ctx()) break;
    session.decode(next);
  }
  job.push_text(stops.feed(decoder.flush()));
  if (stops.stopped()) r.finish_reason = "stop";
  job.push_text(stops.flush());
}

}  // namespace

void run_job(Session& session, Job& job, Metrics& metrics) {
  GenerationResult r;
  try {
    generate(session, job, metrics, r);
  } catch (const std::exception& e) {
    r.error = e.what();
    session.reset();
  }
  const bool sampled = r.ttft_ms > 0;
  if (!sampled && r.error.empty()) r.ttft_ms = ms_between(job.arrival, Clock::now());
  // A prefill stopped by cancellation or the time limit has no TTFT.
  if (r.error.empty() && (sampled || (!r.timed_out && r.finish_reason != "cancelled"))) {
    metrics.ttft_seconds.observe(r.ttft_ms / 1000.0);
    metrics.prompt_computed_fraction.observe(r.prompt_computed_fraction);
  }
  if (r.finish_reason == "cancelled") metrics.count_cancelled();
  metrics.count_tokens(r.prompt_tokens, r.completion_tokens);
  job.finish(std::move(r));
}

}  // namespace lazyllm::server
