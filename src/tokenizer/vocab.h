// The vocabulary both tokenizer kinds share: token texts, SentencePiece scores, token types
// (GGUF's tokenizer.ggml.token_type values) and the text-to-id index.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lazyllm/tokenizer.h"  // TokenType

namespace lazyllm {

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<TokenType> types;
  std::unordered_map<std::string, int32_t> index;  // a repeated text maps to its last id

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  // The id of a token text, or -1.
  int32_t find(const std::string& text) const {
    auto it = index.find(text);
    return it == index.end() ? -1 : it->second;
  }
};

}  // namespace lazyllm
