// Cuts text around special tokens before the tokenizer proper sees it, as llama.cpp does:
// user-defined tokens always match their literal text; control and unknown tokens only when
// the caller asks to parse special tokens. Longer tokens are matched first.
#pragma once
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace lazyllm {

struct Fragment {
  int32_t token = -1;     // a special token's id, or -1 for plain text
  std::string_view text;  // the plain text (a view into the caller's text)
};

// The ids of the tokens that may be cut out (control, user-defined, unknown; non-empty text),
// longest text first.
std::vector<int32_t> special_token_order(const Vocab& v);

std::vector<Fragment> split_special_tokens(std::string_view text, std::span<const int32_t> order,
                                           const Vocab& v, bool parse_special);

}  // namespace lazyllm
