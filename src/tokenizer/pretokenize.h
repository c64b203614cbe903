// Pre-tokenizers of byte-level BPE vocabularies, chosen by tokenizer.ggml.pre: each splits text
// with a sequence of regexes, and each regex cuts every piece so far into its matches and the
// text between them (Hugging Face's Split with "isolated" behaviour). Regexes run on ICU, whose
// \p{..} categories and lookahead give the exact Unicode semantics the vocabularies were built with.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lazyllm {

class PreTokenizer {
 public:
  // Throws Error for a pre type this build does not know (see known_names()).
  static std::unique_ptr<PreTokenizer> create(std::string_view pre_name);
  ~PreTokenizer();

  // The pieces of text, in order; together they are the text again. Invalid UTF-8 becomes U+FFFD.
  std::vector<std::string> split(std::string_view text) const;

  // Llama 3 style: a word that is a token is taken whole, and BOS is added by default.
  bool ignore_merges() const { return ignore_merges_; }
  bool add_bos_default() const { return add_bos_; }
  // ChatGLM-4: the vocabulary has no BOS token.
  bool no_bos() const { return no_bos_; }

  static std::string known_names();

 private:
  PreTokenizer();
  struct Patterns;
  std::unique_ptr<Patterns> patterns_;
  bool ignore_merges_ = false, add_bos_ = false, no_bos_ = false;
};

}  // namespace lazyllm
