// Prompts repeat words: within one text, a word met before gets the tokens it got then (each
// word is encoded on its own, so its tokens do not depend on where it stands).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lazyllm {

class WordMemo {
 public:
  // Appends the tokens `word` got earlier in this text and returns true, or returns false.
  bool replay(std::string_view word, std::vector<int32_t>& out) const {
    auto it = seen_.find(word);
    if (it == seen_.end()) return false;
    for (size_t i = it->second.first; i < it->second.second; ++i) out.push_back(out[i]);
    return true;
  }
  // out[from, out.size()) are `word`'s tokens; `word` must outlive the memo.
  void record(std::string_view word, size_t from, const std::vector<int32_t>& out) {
    seen_.emplace(word, std::pair{from, out.size()});
  }

 private:
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen_;  // word -> its range of out
};

}  // namespace lazyllm
