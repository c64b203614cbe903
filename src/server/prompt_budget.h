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
// starved).
std::vector<int64_t> share_prompt_budget(std::span<const PromptDemand> demands, int chunk, int64_t budget);

// The order in which a step's prompt work runs, as forwards one after another (the scheduler
// polls its queue between them). `first`: the prompts of fresh requests that this step finishes
// (prefix-cache hits, short prompts), so their first tokens do not wait for other prompts' chunks;
// then the decode tokens; `chunks`: every other prompt piece of the step, each alone, so a request
// that arrives during the step waits for one chunk rather than for the rest of the step (on the
// GPU the pieces ran one after another anyway; on the CPU a 512-token chunk costs far more than the
// weight pass its decode rows would have shared). Indices into `demands` (and `takes`, share_prompt_budget's).
struct StepOrder {
  std::vector<size_t> first, chunks;
};
StepOrder order_step(std::span<const PromptDemand> demands, std::span<const int64_t> takes);

}  // namespace lazyllm::server
