#include "eval/truncate.h"

#include <algorithm>
#include <string>

#include "lazyllm/error.h"

namespace lazyllm::eval {

std::vector<int32_t> truncate_middle(const std::vector<int32_t>& tokens, int max_tokens) {
  if (max_tokens < 2)
    throw Error("prompt budget of " + std::to_string(max_tokens) +
                " tokens is too small (the context must exceed the generation length by 2 or more)");
  if (static_cast<int64_t>(tokens.size()) <= max_tokens) return tokens;
  const size_t half = static_cast<size_t>(max_tokens / 2);
  std::vector<int32_t> out(tokens.begin(), tokens.begin() + half);
  out.insert(out.end(), tokens.end() - half, tokens.end());
  return out;
}

size_t prefix_after_cut(size_t k, size_t full, size_t cut) {
  const size_t half = cut / 2;
  if (cut >= full || k <= half) return std::min(k, cut);
  const size_t dropped = full - cut;  // the middle: tokens [half, half + dropped) of the uncut prompt
  return k <= half + dropped ? half : std::min(k - dropped, cut);
}

}  // namespace lazyllm::eval
