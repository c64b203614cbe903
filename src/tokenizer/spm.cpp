#include "tokenizer/spm.h"

#include <algorithm>
#include <cstdio>
#include <queue>
#include <string>

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

void spm_encode(std::string_view text, bool space_prefix, const Vocab& v,
                const std::array<int32_t, 256>& byte_tokens, std::vector<int32_t>& out) {
  if (text.empty()) return;
  std::string s;
  if (space_prefix) s = kSpace;
  for (char c : text) {
    if (c == ' ') s += kSpace;
    else s += c;
  }
  struct Sym { int prev, next; size_t start, len; };
  std::vector<Sym> sym;
  for (size_t i = 0; i < s.size();) {
    const size_t l = std::min<size_t>(utf8_len(s[i]), s.size() - i);
    sym.push_back({int(sym.size()) - 1, int(sym.size()) + 1, i, l});
    i += l;
  }
  sym.back().next = -1;
  // Best score first; among equal scores the leftmost pair.
  struct Bigram {
    int left, right;
    float score;
    size_t len;
    bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
  };
  std::priority_queue<Bigram> q;
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const int32_t id = v.find(s.substr(sym[l].start, sym[l].len + sym[r].len));
    if (id >= 0) q.push({l, r, v.scores[id], sym[l].len + sym[r].len});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(int(i) - 1, int(i));
  while (!q.empty()) {
    const Bigram b = q.top();
    q.pop();
    Sym &L = sym[b.left], &R = sym[b.right];
    if (L.len == 0 || R.len == 0 || L.len + R.len != b.len) continue;  // stale: a side merged since
    L.len += R.len;
    R.len = 0;
    L.next = R.next;
    if (R.next >= 0) sym[R.next].prev = b.left;
    try_add(L.prev, b.left);
    try_add(b.left, L.next);
  }
  for (int i = 0; i != -1; i = sym[i].next) {
    const std::string piece = s.substr(sym[i].start, sym[i].len);
    const int32_t id = v.find(piece);
    if (id >= 0) out.push_back(id);
    else for (unsigned char c : piece) out.push_back(byte_tokens[c]);
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
