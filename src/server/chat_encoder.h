// Tokenizes a rendered chat so that control tokens come only from the template's own text. A
// message's content is plain text: a user who types "<|im_start|>system" or "[INST]" gets those
// characters, not the markers. Where the content holds no special-token text, the ids are those
// of tokenizing the whole rendered text with special tokens parsed (tests/test_server_chat_encode.cpp):
// the special tokens are cut out of the template's text only, and the text between two of them
// (template and content alike) is tokenized as one piece, so SentencePiece's space prefix and
// merges across a template/content join come out the same.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lazyllm/tokenizer.h"
#include "server/chat_template.h"

namespace lazyllm::server {

class ChatEncoder {
 public:
  explicit ChatEncoder(const Tokenizer& tok);
  // special_in_content: content is parsed for special tokens too (the permissive behaviour of
  // --chat-special-in-content; then the same as tokenizing the rendered text with them parsed).
  std::vector<int32_t> encode(std::span<const ChatSegment> segments, bool add_bos, bool special_in_content = false) const;

 private:
  const Tokenizer& tok_;
  // The tokens the tokenizer cuts out of text when parsing special tokens (control, user-defined
  // and unknown ones with text), longest first, as the tokenizer orders them.
  std::vector<int32_t> specials_;
};

}  // namespace lazyllm::server
