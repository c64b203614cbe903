#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace lazyllm {

std::vector<int32_t> special_token_order(const Vocab& v) {
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < v.size(); ++id) {
    const TokenType t = v.types[id];
    if ((t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown) && !v.tokens[id].empty())
      ids.push_back(id);
  }
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return v.tokens[a].size() > v.tokens[b].size(); });
  return ids;
}

std::vector<Fragment> split_special_tokens(std::string_view text, std::span<const int32_t> order,
                                           const Vocab& v, bool parse_special) {
  std::vector<Fragment> frags{{-1, text}}, next;
  for (int32_t id : order) {
    const TokenType t = v.types[id];
    if (!parse_special && t != TokenType::UserDefined) continue;
    const std::string& special = v.tokens[id];
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (size_t at; (at = rest.find(special)) != std::string_view::npos;) {
        if (at > 0) next.push_back({-1, rest.substr(0, at)});
        next.push_back({id, {}});
        rest.remove_prefix(at + special.size());
      }
      if (!rest.empty()) next.push_back({-1, rest});
    }
    frags.swap(next);
  }
  return frags;
}

}  // namespace lazyllm
