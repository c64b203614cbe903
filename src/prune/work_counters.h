// What LazyLLM's plans count as they hand out work, in (token, layer) computations; every backend
// reports them (runtime/forward_backend.h).
#pragma once

#include <cstdint>
#include <vector>

namespace lazyllm {

// Counters of work done, in (token, layer) computations.
struct ForwardCounters {
  int64_t token_layers = 0;         // every token
  int64_t prompt_token_layers = 0;  // tokens that came in through prefill
  int64_t revived = 0;              // (token, layer) computations of revived tokens in decode
  int64_t selections = 0;           // selections run at pruning layers (prefill and decode)
  std::vector<int> alive_per_layer; // last prefill: tokens of that batch computed at each layer
};

}  // namespace lazyllm
