// LongBench's middle truncation: a prompt longer than the budget keeps its first and last
// halves (instructions sit at both ends; the middle of the document goes).
#pragma once

#include <cstdint>
#include <vector>

namespace lazyllm::eval {

// Returns `tokens` unchanged when it fits `max_tokens`; otherwise the first max_tokens/2 and the
// last max_tokens/2 tokens (LongBench's half = int(max_length/2) on each side). Works on token
// ids directly, where LongBench decodes both halves to text and tokenizes again, so the result
// always fits. Throws Error when max_tokens < 2.
std::vector<int32_t> truncate_middle(const std::vector<int32_t>& tokens, int max_tokens);

}  // namespace lazyllm::eval
