// LongBench's middle truncation: a prompt longer than the budget keeps its first and last
// halves (instructions sit at both ends; the middle of the document goes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lazyllm::eval {

// Returns `tokens` unchanged when it fits `max_tokens`; otherwise the first max_tokens/2 and the
// last max_tokens/2 tokens (LongBench's half = int(max_length/2) on each side). Works on token
// ids directly, where LongBench decodes both halves to text and tokenizes again, so the result
// always fits. Throws Error when max_tokens < 2.
std::vector<int32_t> truncate_middle(const std::vector<int32_t>& tokens, int max_tokens);

// How many tokens of a prompt cut by truncate_middle from `full` to `cut` tokens come from the
// uncut prompt's first k: k where the cut is after them, the first half when it falls among them.
size_t prefix_after_cut(size_t k, size_t full, size_t cut);

}  // namespace lazyllm::eval
