// fuzzywuzzy's fuzz.ratio as LongBench runs it: its requirements do not install
// python-Levenshtein, so fuzzywuzzy falls back to difflib.SequenceMatcher, whose ratio counts
// the characters of recursively found longest matching blocks (not an edit distance).
#include <array>
#include <cmath>
#include <string>
#include <unordered_map>
#include <vector>

#include "eval/metrics.h"
#include "eval/text.h"

namespace lazyllm::eval {
namespace {

struct Matcher {
  std::u32string a, b;
  std::vector<char> popular;  // per position of b: an element difflib's autojunk ignores

  Matcher(std::u32string a_, std::u32string b_) : a(std::move(a_)), b(std::move(b_)), popular(b.size(), 0) {
    // autojunk: in a b of 200+ elements, those occurring more than len(b)/100 + 1 times cannot
    // start or be inside a match found by the search (only the extension below passes them).
    if (b.size() >= 200) {
      std::unordered_map<char32_t, size_t> count;
      for (char32_t c : b) ++count[c];
      const size_t ntest = b.size() / 100 + 1;
      for (size_t j = 0; j < b.size(); ++j) popular[j] = count[b[j]] > ntest;
    }
  }

  // difflib's find_longest_match without isjunk: the longest block, earliest in a, then in b.
  void longest(size_t alo, size_t ahi, size_t blo, size_t bhi, size_t& bi, size_t& bj, size_t& bk) const {
    bi = alo, bj = blo, bk = 0;
    std::vector<size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
    for (size_t i = alo; i < ahi; ++i) {
      for (size_t j = blo; j < bhi; ++j) {
        cur[j + 1] = (a[i] == b[j] && !popular[j]) ? (j > blo ? prev[j] : 0) + 1 : 0;
        if (cur[j + 1] > bk) bi = i + 1 - cur[j + 1], bj = j + 1 - cur[j + 1], bk = cur[j + 1];
      }
      std::swap(prev, cur);
    }
    while (bi > alo && bj > blo && a[bi - 1] == b[bj - 1]) --bi, --bj, ++bk;
    while (bi + bk < ahi && bj + bk < bhi && a[bi + bk] == b[bj + bk]) ++bk;
  }

  // Sum of the sizes of get_matching_blocks().
  size_t matches() const {
    size_t total = 0;
    std::vector<std::array<size_t, 4>> queue{{0, a.size(), 0, b.size()}};
    while (!queue.empty()) {
      const auto [alo, ahi, blo, bhi] = queue.back();
      queue.pop_back();
      size_t i, j, k;
      longest(alo, ahi, blo, bhi, i, j, k);
      if (!k) continue;
      total += k;
      if (alo < i && blo < j) queue.push_back({alo, i, blo, j});
      if (i + k < ahi && j + k < bhi) queue.push_back({i + k, ahi, j + k, bhi});
    }
    return total;
  }
};

}  // namespace

int fuzz_ratio(std::string_view s1, std::string_view s2) {
  if (s1 == s2) return 100;
  if (s1.empty() || s2.empty()) return 0;
  Matcher m(to_code_points(s1), to_code_points(s2));
  const double ratio = 2.0 * static_cast<double>(m.matches()) / static_cast<double>(m.a.size() + m.b.size());
  return static_cast<int>(std::nearbyint(100 * ratio));  // Python's round(): half to even
}

}  // namespace lazyllm::eval
