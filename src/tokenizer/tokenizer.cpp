#include "tokenizer/tokenizer.h"
#include <cstdio>
#include <queue>
#include "lazyllm/error.h"
namespace lazyllm {
namespace {
int utf8_len(unsigned char c) { return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1; }
}
std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GGUFFile& f) {
  auto t = std::make_unique<Tokenizer>();
  t->model_ = f.get_string_or("tokenizer.ggml.model", "llama");
  if (t->model_ != "llama") throw Error(f.name() + ": tokenizer model '" + t->model_ + "' not supported by this build");
  for (auto s : f.get_string_array("tokenizer.ggml.tokens")) t->tokens_.emplace_back(s);
  if (t->tokens_.empty()) throw Error(f.name() + ": empty vocabulary");
  t->scores_ = f.has("tokenizer.ggml.scores") ? f.get_float_array("tokenizer.ggml.scores") : std::vector<float>(t->tokens_.size(), 0.f);
  if (f.has("tokenizer.ggml.token_type")) for (auto x : f.get_int_array("tokenizer.ggml.token_type")) t->types_.push_back(static_cast<int32_t>(x));
  else t->types_.assign(t->tokens_.size(), 1);
  if (t->scores_.size() != t->tokens_.size() || t->types_.size() != t->tokens_.size()) throw Error(f.name() + ": vocabulary arrays differ in length");
  for (size_t i = 0; i < t->tokens_.size(); ++i) t->index_.emplace(t->tokens_[i], static_cast<int32_t>(i));
  const int32_t n = t->n_vocab();
  auto id = [&](const char* k, int32_t d) { int64_t v = static_cast<int64_t>(f.get_uint_or(k, d)); return v < n ? static_cast<int32_t>(v) : d; };
  t->bos_ = id("tokenizer.ggml.bos_token_id", 1); t->eos_ = id("tokenizer.ggml.eos_token_id", 2); t->unk_ = id("tokenizer.ggml.unknown_token_id", 0);
  t->add_bos_ = f.get_bool_or("tokenizer.ggml.add_bos_token", true);
  t->add_space_prefix_ = f.get_bool_or("tokenizer.ggml.add_space_prefix", true);
  for (int b = 0; b < 256; ++b) { char buf[8]; std::snprintf(buf, sizeof buf, "<0x%02X>", b); auto it = t->index_.find(buf); t->byte_[b] = it == t->index_.end() ? t->unk_ : it->second; }
  return t;
}
void Tokenizer::resegment(const std::string& s, std::vector<int32_t>& out) const {
  auto it = index_.find(s);
  if (it != index_.end()) { out.push_back(it->second); return; }
  for (unsigned char c : s) out.push_back(byte_[c]);
}
std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool) const {
  std::vector<int32_t> out;
  if (add_bos) out.push_back(bos_);
  if (text.empty()) return out;
  std::string s;
  if (add_space_prefix_) s = "\xE2\x96\x81";
  for (char c : text) { if (c == ' ') s += "\xE2\x96\x81"; else s += c; }
  struct Sym { int prev, next; size_t start, len; };
  std::vector<Sym> sym;
  for (size_t i = 0; i < s.size();) { size_t l = std::min<size_t>(utf8_len(s[i]), s.size() - i); sym.push_back({int(sym.size()) - 1, int(sym.size()) + 1, i, l}); i += l; }
  sym.back().next = -1;
  struct Big { int left, right; float score; size_t len; bool operator<(const Big& o) const { return score < o.score || (score == o.score && left > o.left); } };
  std::priority_queue<Big> q;
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    auto it = index_.find(s.substr(sym[l].start, sym[l].len + sym[r].len));
    if (it != index_.end()) q.push({l, r, scores_[it->second], sym[l].len + sym[r].len});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(int(i) - 1, int(i));
  while (!q.empty()) {
    Big b = q.top(); q.pop();
    Sym &L = sym[b.left], &R = sym[b.right];
    if (L.len == 0 || R.len == 0 || L.len + R.len != b.len) continue;
    L.len += R.len; R.len = 0; L.next = R.next; if (R.next >= 0) sym[R.next].prev = b.left;
    try_add(L.prev, b.left); try_add(b.left, L.next);
  }
  for (int i = 0; i != -1; i = sym[i].next) resegment(s.substr(sym[i].start, sym[i].len), out);
  return out;
}
std::string Tokenizer::token_to_piece(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return "";
  const std::string& t = tokens_[id];
  if (types_[id] == 6 && t.size() == 6) return std::string(1, static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
  if (types_[id] == 3) return "";
  std::string out;
  for (size_t i = 0; i < t.size();) { if (t.compare(i, 3, "\xE2\x96\x81") == 0) { out += ' '; i += 3; } else out += t[i++]; }
  return out;
}
std::string Tokenizer::decode(std::span<const int32_t> ids) const { std::string s; for (auto i : ids) s += token_to_piece(i); return s; }
std::string StreamDecoder::feed(int32_t id) {
  pending_ += t_.token_to_piece(id);
  size_t i = 0, ok = 0;
  while (i < pending_.size()) { int l = utf8_len(pending_[i]); if (i + l > pending_.size()) break; i += l; ok = i; }
  std::string out = pending_.substr(0, ok); pending_.erase(0, ok); return out;
}
std::string StreamDecoder::flush() { std::string o; o.swap(pending_); return o; }
}  // namespace lazyllm
