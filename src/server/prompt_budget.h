// How a step's prompt budget is shared among the requests still prefilling (the scheduler's
// policy, apart from its threads and sessions so it can be tested on its own).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace lazyllm::server {

struct PromptDemand {
  int64_t left = 0;    // prompt tokens still to compute
  int waited = 0;      // steps this request got no share
  bool whole = false;  // must go in one step (a pruned prompt) or wait
  bool fresh = false;  // has not taken part in a step yet
};

// The prompt tokens each request takes this step (0: it waits), in the order given. Each takes at
// most `chunk` (a whole prompt: all or nothing), all together at most `budget`, the shortest rest
// first with a request moving up by a chunk for each step it waited (a long prompt is never
// starved). A fresh request whose whole rest fits in one chunk (a prefix-cache hit, a short
// prompt) is answered by this step, so the step is kept to one chunk of prompt tokens: its first
// token is not held behind other prompts' chunks.
std::vector<int64_t> share_prompt_budget(std::span<const PromptDemand> demands, int chunk, int64_t budget);

}  // namespace lazyllm::server
