#include "server/chat_encoder.h"

#include <algorithm>
#include <string>
#include <string_view>

#include "lazyllm/error.h"

namespace lazyllm::server {
namespace {

struct Piece {
  int32_t token = -1;     // a special token, or -1 for text
  std::string_view text;  // a view into a segment
};

}  // namespace

ChatEncoder::ChatEncoder(const Tokenizer& tok) : tok_(tok) {
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    const TokenType t = tok.token_type(id);
    if ((t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown) && !tok.token_text(id).empty())
      specials_.push_back(id);
  }
  std::stable_sort(specials_.begin(), specials_.end(),
                   [&](int32_t a, int32_t b) { return tok.token_text(a).size() > tok.token_text(b).size(); });
}

std::vector<int32_t> ChatEncoder::encode(std::span<const ChatSegment> segments, bool add_bos,
                                         bool special_in_content) const {
  // Special tokens are cut out of the template's segments, longest first (as the tokenizer does
  // over a whole text); content stays text.
  std::vector<Piece> pieces, next;
  for (const auto& s : segments) pieces.push_back({s.content && !special_in_content ? -2 : -1, s.text});
  for (int32_t id : specials_) {
    const std::string_view special = tok_.token_text(id);
    next.clear();
    for (const Piece& p : pieces) {
      if (p.token != -1) {
        next.push_back(p);
        continue;
      }
      std::string_view rest = p.text;
      for (size_t at; (at = rest.find(special)) != std::string_view::npos;) {
        if (at > 0) next.push_back({-1, rest.substr(0, at)});
        next.push_back({id, {}});
        rest.remove_prefix(at + special.size());
      }
      if (!rest.empty()) next.push_back({-1, rest});
    }
    pieces.swap(next);
  }
  // The text between two special tokens is tokenized as one piece, with special tokens left as
  // text (user-defined ones still match, as they would in the whole text).
  std::vector<int32_t> ids;
  if (add_bos) {
    if (tok_.bos() < 0) throw Error("this vocabulary has no BOS token to add");
    ids.push_back(tok_.bos());
  }
  std::string text;
  auto flush = [&] {
    if (text.empty()) return;
    const std::vector<int32_t> part = tok_.encode(text, false, false);
    ids.insert(ids.end(), part.begin(), part.end());
    text.clear();
  };
  for (const Piece& p : pieces) {
    if (p.token >= 0) {
      flush();
      ids.push_back(p.token);
    } else {
      text += p.text;
    }
  }
  flush();
  return ids;
}

}  // namespace lazyllm::server
