// Byte-level BPE (tokenizer.ggml.model = gpt2): a pre-tokenized word, spelled in the byte-level
// alphabet, starts as one symbol per character; the adjacent pair with the lowest merge rank
// (tokenizer.ggml.merges order) merges first, the leftmost among equals, until none applies.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace lazyllm {

class BpeMerges {
 public:
  // Each entry is "LEFT RIGHT" (split at the first space after the first byte). Throws Error
  // naming the entry when one has no such space.
  explicit BpeMerges(const std::vector<std::string_view>& merges);

  // The rank of merging left+right, or -1 when there is no such merge.
  int rank(std::string_view left, std::string_view right) const;
  size_t size() const { return ranks_.size(); }

  // Appends the tokens of one word. ignore_merges: a word that is itself a token is taken whole
  // (Llama 3). A final symbol missing from the vocabulary falls back to its characters' tokens,
  // then to unk; when neither exists it throws Error.
  void encode_word(const std::string& word, const Vocab& v, bool ignore_merges, int32_t unk,
                   std::vector<int32_t>& out) const;

 private:
  // Keys are "LEFT\xFFRIGHT"; lookups pass the two halves, so no key string is built per pair.
  struct Pair {
    std::string_view left, right;
  };
  struct PairHash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const;
    size_t operator()(Pair p) const;
  };
  struct PairEq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
    bool operator()(Pair p, std::string_view key) const;
    bool operator()(std::string_view key, Pair p) const { return (*this)(p, key); }
  };
  static std::string key(std::string_view left, std::string_view right);
  std::unordered_map<std::string, int, PairHash, PairEq> ranks_;
};

}  // namespace lazyllm
