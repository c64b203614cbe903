#include "runtime/serial_batch.h"

#include <algorithm>
#include <string>
#include <vector>

namespace lazyllm {

void SerialBatch::check(std::span<const BackendStep> steps) const {
  const int n_vocab = model_.config().n_vocab;
  std::vector<const ForwardBackend*> seen;
  for (size_t i = 0; i < steps.size(); ++i) {
    const BackendStep& st = steps[i];
    const std::string which = "batch step: sequence " + std::to_string(i);
    if (!st.sequence) throw Error(which + " has no backend");
    if (!st.schedule) throw Error(which + " has no schedule");
    if (std::find(seen.begin(), seen.end(), st.sequence) != seen.end()) throw Error(which + " is listed twice");
    seen.push_back(st.sequence);
    if (st.tokens.empty()) throw Error(which + " has no tokens");
    if (!st.prefill && st.tokens.size() != 1) throw Error(which + ": a decode step takes exactly one token");
    if (st.sequence->n_past() + static_cast<int64_t>(st.tokens.size()) > st.sequence->n_ctx())
      throw Error(which + ": " + std::to_string(st.tokens.size()) + " tokens after " +
                  std::to_string(st.sequence->n_past()) + " overflow the context of " +
                  std::to_string(st.sequence->n_ctx()));
    for (int32_t t : st.tokens)
      if (t < 0 || t >= n_vocab)
        throw Error(which + ": token id " + std::to_string(t) + " is outside the vocabulary (" +
                    std::to_string(n_vocab) + ")");
  }
}

void SerialBatch::run(std::span<const BackendStep> steps) {
  for (const BackendStep& st : steps) {
    if (st.prefill) st.sequence->prefill(st.tokens, *st.schedule);
    else st.sequence->decode(st.tokens[0], *st.schedule);
  }
}

}  // namespace lazyllm
