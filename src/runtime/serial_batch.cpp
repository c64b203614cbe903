#include "runtime/serial_batch.h"

#include <algorithm>
#include <string>
#include <vector>

#include "runtime/prefill.h"

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
    if (!st.prefill && st.tokens.size() != 1) throw Error(which + ": a decode step takes exactly one token");
    try {  // a decode token is checked as a one-token prefill: it must fit and be in the vocabulary
      check_prefill(st.tokens, st.sequence->n_past(), st.sequence->n_ctx(), n_vocab);
    } catch (const Error& e) {
      throw Error(which + ": " + e.what());
    }
  }
}

void SerialBatch::run(std::span<const BackendStep> steps) {
  for (const BackendStep& st : steps) {
    if (st.prefill) st.sequence->prefill(st.tokens, *st.schedule);
    else st.sequence->decode(st.tokens[0], *st.schedule);
  }
}

}  // namespace lazyllm
