#include "tokenizer/bpe.h"

#include <queue>

#include "lazyllm/error.h"
#include "tokenizer/symbol_merge.h"
#include "tokenizer/utf8.h"

namespace lazyllm {

// 0xFF never occurs in UTF-8, so the pair key cannot be ambiguous.
std::string BpeMerges::key(std::string_view left, std::string_view right) {
  std::string k;
  k.reserve(left.size() + right.size() + 1);
  k.append(left).append(1, '\xFF').append(right);
  return k;
}

namespace {

// FNV-1a, which can hash a key from its parts: the hash of left + '\xFF' + right, piece by piece.
constexpr size_t kFnvBasis = 14695981039346656037ULL, kFnvPrime = 1099511628211ULL;
size_t fnv(size_t h, std::string_view s) {
  for (unsigned char c : s) h = (h ^ c) * kFnvPrime;
  return h;
}

}  // namespace

size_t BpeMerges::PairHash::operator()(std::string_view key) const { return fnv(kFnvBasis, key); }
size_t BpeMerges::PairHash::operator()(Pair p) const { return fnv(fnv(fnv(kFnvBasis, p.left), "\xFF"), p.right); }

bool BpeMerges::PairEq::operator()(Pair p, std::string_view key) const {
  return key.size() == p.left.size() + 1 + p.right.size() && key.starts_with(p.left) && key[p.left.size()] == '\xFF' &&
         key.ends_with(p.right);
}

BpeMerges::BpeMerges(const std::vector<std::string_view>& merges) {
  ranks_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string_view m = merges[i];
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
    if (sp == std::string_view::npos)
      throw Error("tokenizer.ggml.merges[" + std::to_string(i) + "] = '" + std::string(m) + "' is not 'LEFT RIGHT'");
    ranks_.emplace(key(m.substr(0, sp), m.substr(sp + 1)), static_cast<int>(i));  // the first rank wins
  }
}

int BpeMerges::rank(std::string_view left, std::string_view right) const {
  auto it = ranks_.find(Pair{left, right});
  return it == ranks_.end() ? -1 : it->second;
}

void BpeMerges::encode_word(const std::string& word, const Vocab& v, bool ignore_merges, int32_t unk,
                            std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    const int32_t id = v.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  // Symbols are byte ranges of the word, linked left to right; a merged-away symbol has len 0.
  struct Sym { size_t start, len; int prev, next; };
  std::vector<Sym> sym;
  sym.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    int len = utf8::check_char(std::string_view(word).substr(i));
    if (len <= 0) len = 1;  // the word is our own byte-level spelling; stay safe all the same
    sym.push_back({i, static_cast<size_t>(len), static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1});
    i += len;
  }
  sym.back().next = -1;

  struct Pair {
    int rank, left, right;
    size_t left_len, right_len;  // to tell a stale pair (a side merged since) from a live one
  };
  auto later = [](const Pair& a, const Pair& b) { return a.rank > b.rank || (a.rank == b.rank && a.left > b.left); };
  std::priority_queue<Pair, std::vector<Pair>, decltype(later)> queue(later);
  const std::string_view w = word;
  auto add_pair = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const int rk = rank(w.substr(sym[l].start, sym[l].len), w.substr(sym[r].start, sym[r].len));
    if (rk >= 0) queue.push({rk, l, r, sym[l].len, sym[r].len});
  };
  for (size_t i = 1; i < sym.size(); ++i) add_pair(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!queue.empty()) {
    const Pair p = queue.top();
    queue.pop();
    Sym& L = sym[p.left];
    Sym& R = sym[p.right];
    if (L.next != p.right || L.len != p.left_len || R.len != p.right_len) continue;
    merge_symbols(sym, p.left, p.right);
    add_pair(L.prev, p.left);
    add_pair(p.left, L.next);
  }

  for (int i = 0; i != -1; i = sym[i].next) {
    const std::string_view piece = w.substr(sym[i].start, sym[i].len);
    const int32_t id = v.find(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (size_t j = 0; j < piece.size();) {
      int len = utf8::check_char(piece.substr(j));
      if (len <= 0) len = 1;
      const std::string_view ch = piece.substr(j, len);
      const int32_t cid = v.find(ch);
      if (cid >= 0) out.push_back(cid);
      else if (unk >= 0) out.push_back(unk);
      else throw Error("the vocabulary has no token for '" + std::string(ch) + "' and no unknown token");
      j += len;
    }
  }
}

}  // namespace lazyllm
