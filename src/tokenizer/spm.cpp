#include "tokenizer/spm.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>

#include "tokenizer/symbol_merge.h"
#include "tokenizer/word_memo.h"

namespace lazyllm {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // "▁"

// Length of the character a byte starts, reading stray bytes as one-byte characters.
int utf8_len(unsigned char c) { return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1; }

}  // namespace

std::array<int32_t, 256> spm_byte_tokens(const Vocab& v, int32_t unk) {
  std::array<int32_t, 256> ids{};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    const int32_t id = v.find(buf);
    ids[b] = id >= 0 ? id : unk;
  }
  return ids;
}

bool spm_words_merge_alone(const Vocab& v) {
  for (std::string_view t : v.tokens) {
    while (t.starts_with(kSpace)) t.remove_prefix(kSpace.size());
    if (t.find(kSpace) != std::string_view::npos) return false;
  }
  return true;
}

void spm_encode(std::string_view text, bool space_prefix, const Vocab& v,
                const std::array<int32_t, 256>& byte_tokens, std::vector<int32_t>& out) {
  if (text.empty()) return;
  // Pieces are looked up as views of s, the text with its spaces escaped, so it is built once.
  const size_t n_spaces = std::count(text.begin(), text.end(), ' ');
  std::string s;
  s.reserve(text.size() + (n_spaces + space_prefix) * (kSpace.size() - 1));
  if (space_prefix) s = kSpace;
  for (char c : text) {
    if (c == ' ') s += kSpace;
    else s += c;
  }
  const std::string_view sv = s;

  // One symbol per character, linked within its word. When no token has a "▁" after another
  // character (Vocab::words_merge_alone), no merge can join a "▁" to the character before it,
  // so each word, from a "▁" that follows another character, merges on its own, in a heap that
  // stays small and in cache; the result is the one whole-text merging gives. Otherwise the
  // whole text is one word.
  struct Sym {
    int prev, next;
    uint32_t start, len;
  };
  std::vector<Sym> sym;
  std::vector<int> word_starts{0};
  sym.reserve(s.size());
  bool prev_space = true;
  for (size_t i = 0; i < s.size();) {
    const size_t l = std::min<size_t>(utf8_len(s[i]), s.size() - i);
    const bool space = sv.substr(i, l) == kSpace;
    const int k = int(sym.size());
    if (v.words_merge_alone && space && !prev_space) word_starts.push_back(k);
    const bool first = word_starts.back() == k;
    if (first && k > 0) sym.back().next = -1;
    sym.push_back({first ? -1 : k - 1, k + 1, uint32_t(i), uint32_t(l)});
    prev_space = space;
    i += l;
  }
  sym.back().next = -1;
  word_starts.push_back(int(sym.size()));

  // Best score first; among equal scores the leftmost pair. (Only one live pair per left symbol
  // exists at a time, so this order fixes the merges whatever the heap's layout.)
  struct Bigram {
    float score;
    int left, right;
    uint32_t len;
    bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
  };
  auto bigram = [&](int l, int r) -> std::optional<Bigram> {
    if (l < 0 || r < 0) return std::nullopt;
    const uint32_t len = sym[l].len + sym[r].len;
    const int32_t id = v.find(sv.substr(sym[l].start, len));
    if (id < 0) return std::nullopt;
    return Bigram{v.scores[id], l, r, len};
  };
  std::vector<Bigram> heap;
  WordMemo memo;
  for (size_t w = 0; w + 1 < word_starts.size(); ++w) {
    const int first = word_starts[w], last = word_starts[w + 1];
    const std::string_view word =
        sv.substr(sym[first].start, sym[last - 1].start + sym[last - 1].len - sym[first].start);
    if (memo.replay(word, out)) continue;
    heap.clear();
    for (int i = first + 1; i < last; ++i)
      if (auto b = bigram(i - 1, i)) heap.push_back(*b);
    std::make_heap(heap.begin(), heap.end());
    auto push = [&](int l, int r) {
      if (auto b = bigram(l, r)) {
        heap.push_back(*b);
        std::push_heap(heap.begin(), heap.end());
      }
    };
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      const Bigram b = heap.back();
      heap.pop_back();
      Sym &L = sym[b.left], &R = sym[b.right];
      if (L.len == 0 || R.len == 0 || L.len + R.len != b.len) continue;  // stale: a side merged since
      merge_symbols(sym, b.left, b.right);
      push(L.prev, b.left);
      push(b.left, L.next);
    }
    const size_t from = out.size();
    for (int i = first; i != -1; i = sym[i].next) {
      const std::string_view piece = sv.substr(sym[i].start, sym[i].len);
      const int32_t id = v.find(piece);
      if (id >= 0) out.push_back(id);
      else
        for (unsigned char c : piece) out.push_back(byte_tokens[c]);
    }
    memo.record(word, from, out);
  }
}

std::string spm_unescape(std::string_view t) {
  std::string out;
  for (size_t i = 0; i < t.size();) {
    if (t.substr(i, kSpace.size()) == kSpace) {
      out += ' ';
      i += kSpace.size();
    } else {
      out += t[i++];
    }
  }
  return out;
}

}  // namespace lazyllm
