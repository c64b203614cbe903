// The vocabulary both tokenizer kinds share: token texts, SentencePiece scores, token types
// (GGUF's tokenizer.ggml.token_type values) and the text-to-id index.
#pragma once
#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lazyllm/tokenizer.h"  // TokenType

namespace lazyllm {

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<TokenType> types;
  // SentencePiece: no token has a "▁" after another character (see spm_words_merge_alone).
  bool words_merge_alone = false;

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }

  // Indexes tokens by text (a repeated text maps to its last id); call once tokens are set.
  void build_index() {
    index_.clear();
    index_.reserve(tokens.size());
    for (size_t id = 0; id < tokens.size(); ++id) index_[tokens[id]] = static_cast<int32_t>(id);
  }
  // The id of a token text, or -1.
  int32_t find(std::string_view text) const {
    // absl's own string_view: Debian's build of absl does not alias it to std::string_view.
    auto it = index_.find(absl::string_view(text.data(), text.size()));
    return it == index_.end() ? -1 : it->second;
  }

 private:
  // A flat (open-addressing) table looked up by string_view: the encoders make many lookups,
  // most of them misses, which std::unordered_map's chained nodes answer several times slower.
  absl::flat_hash_map<std::string, int32_t> index_;
};

}  // namespace lazyllm
