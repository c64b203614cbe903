// Runs one job on a session: prefill, then sample and decode token by token, streaming text
// (whole UTF-8 characters only, stop strings held back) and checking between tokens for
// cancellation and the time limit.
#pragma once

#include "lazyllm/lazyllm.h"
#include "server/job.h"
#include "server/metrics.h"

namespace lazyllm::server {

// The session must be empty (reset). Always ends with job.finish(...); never throws.
void run_job(Session& session, Job& job, Metrics& metrics);

}  // namespace lazyllm::server
