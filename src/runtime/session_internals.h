// The tests' access to a session's backend: the caches, counters and recorded selections behind
// the public API. Not part of the API (include/lazyllm/).
#pragma once

#include "lazyllm/lazyllm.h"
#include "runtime/cpu/cpu_forward.h"
#include "runtime/forward_backend.h"

namespace lazyllm {

struct SessionInternals {
  // The backend running the session (either device).
  static ForwardBackend& backend(Session& s) { return *s.backend_; }
  // The CPU backend; throws Error for a session on another device.
  static CpuForward& cpu(Session& s);
};

}  // namespace lazyllm
