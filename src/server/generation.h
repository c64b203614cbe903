// Runs one job on a session: prefill, then sample and decode token by token, streaming text
// (whole UTF-8 characters only, stop strings held back) and checking between tokens for
// cancellation and the time limit.
#pragma once

#include <exception>

#include "lazyllm/lazyllm.h"
#include "server/job.h"
#include "server/metrics.h"

namespace lazyllm::server {

// Thrown by the scheduler's prefill progress check (between layers) to stop the prefill of a job
// that was cancelled or ran past its deadline; run_job turns it into the job's result.
class PrefillInterrupted : public std::exception {
 public:
  explicit PrefillInterrupted(bool cancelled) : cancelled_(cancelled) {}
  bool cancelled() const { return cancelled_; }
  const char* what() const noexcept override { return cancelled_ ? "prefill cancelled" : "prefill timed out"; }

 private:
  bool cancelled_;
};

// The session must be empty (reset). Always ends with job.finish(...); never throws. After an
// interrupted prefill or an error the session is reset (a prefill stopped part way leaves K/V
// rows written but not booked).
void run_job(Session& session, Job& job, Metrics& metrics);

}  // namespace lazyllm::server
