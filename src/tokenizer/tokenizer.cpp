#include "lazyllm/tokenizer.h"

#include <algorithm>
#include <cstdio>

#include "format/gguf.h"
#include "lazyllm/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/spm.h"
#include "tokenizer/vocab.h"
#include "tokenizer/word_memo.h"

namespace lazyllm {
namespace {

// End-of-turn tokens models use without naming them in metadata (the texts llama.cpp looks for).
constexpr std::string_view kEotTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                          "<|endoftext|>", "<EOT>", "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>"};
constexpr std::string_view kEogTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                          "<|endoftext|>", "<|eom_id|>", "<EOT>"};

int hex_digit(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

TokenType to_token_type(int64_t t) {
  return t >= 0 && t <= 6 ? static_cast<TokenType>(t) : TokenType::Undefined;
}

}  // namespace

Tokenizer::Tokenizer() : vocab_(std::make_unique<Vocab>()) {}
Tokenizer::~Tokenizer() = default;

int32_t Tokenizer::n_vocab() const { return vocab_->size(); }
std::string_view Tokenizer::token_text(int32_t id) const { return vocab_->tokens[id]; }
TokenType Tokenizer::token_type(int32_t id) const { return vocab_->types[id]; }

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GGUFFile& f) {
  auto t = std::make_unique<Tokenizer>();
  t->model_ = f.get_string_or("tokenizer.ggml.model", "llama");
  if (t->model_ == "llama") t->kind_ = Kind::SentencePiece;
  else if (t->model_ == "gpt2") t->kind_ = Kind::BytePairBpe;
  else throw Error(f.name() + ": tokenizer model '" + t->model_ + "' not supported (supported: llama, gpt2)");

  Vocab& v = *t->vocab_;
  for (auto s : f.get_string_array("tokenizer.ggml.tokens")) v.tokens.emplace_back(s);
  if (v.tokens.empty()) throw Error(f.name() + ": empty vocabulary");
  v.scores = f.has("tokenizer.ggml.scores") ? f.get_float_array("tokenizer.ggml.scores") : std::vector<float>(v.tokens.size(), 0.f);
  if (f.has("tokenizer.ggml.token_type"))
    for (auto x : f.get_int_array("tokenizer.ggml.token_type")) v.types.push_back(to_token_type(x));
  else
    v.types.assign(v.tokens.size(), TokenType::Normal);
  if (v.scores.size() != v.tokens.size() || v.types.size() != v.tokens.size())
    throw Error(f.name() + ": vocabulary arrays differ in length");
  v.build_index();

  if (t->kind_ == Kind::SentencePiece) {
    t->pre_ = f.get_string_or("tokenizer.ggml.pre", "");  // informational only: no pre-tokenizer
    if (t->pre_.empty()) t->pre_ = "default";
    t->add_space_prefix_ = f.get_bool_or("tokenizer.ggml.add_space_prefix", true);
    t->add_bos_ = true;
  } else {
    if (!f.has("tokenizer.ggml.merges")) throw Error(f.name() + ": byte-level BPE vocabulary without tokenizer.ggml.merges");
    try {
      t->merges_ = std::make_unique<BpeMerges>(f.get_string_array("tokenizer.ggml.merges"));
    } catch (const Error& e) {
      throw Error(f.name() + ": " + e.what());
    }
    // Like llama.cpp: a missing pre type means the generic regexes, with a warning; an unknown
    // one is an error (a wrong split silently changes every prompt).
    t->pre_ = f.get_string_or("tokenizer.ggml.pre", "");
    if (t->pre_.empty()) {
      std::fprintf(stderr, "warning: %s has no tokenizer.ggml.pre; using the 'default' pre-tokenizer, "
                           "which may split text differently from the model's own tokenizer\n", f.name().c_str());
      t->pre_ = "default";
    }
    try {
      t->pre_tokenizer_ = PreTokenizer::create(t->pre_);
    } catch (const Error& e) {
      throw Error(f.name() + ": " + e.what());
    }
    t->add_space_prefix_ = false;
    t->add_bos_ = t->pre_tokenizer_->add_bos_default();
  }
  t->load_special_ids(f);
  t->add_bos_ = f.get_bool_or("tokenizer.ggml.add_bos_token", t->add_bos_);
  if (t->add_bos_ && t->bos_ < 0) throw Error(f.name() + ": the tokenizer adds BOS but has no BOS token");
  if (t->kind_ == Kind::SentencePiece) {
    t->byte_tokens_ = spm_byte_tokens(v, t->unk_);
    v.words_merge_alone = spm_words_merge_alone(v);
  }
  t->special_order_ = special_token_order(v);
  return t;
}

void Tokenizer::load_special_ids(const GGUFFile& f) {
  const bool spm = kind_ == Kind::SentencePiece;
  bos_ = spm ? 1 : -1;  // (llama.cpp's BPE default of 11 names no real token; we use none)
  eos_ = spm ? 2 : -1;
  unk_ = spm ? 0 : -1;
  if (!spm && pre_tokenizer_->no_bos()) bos_ = -1;
  auto read = [&](const char* key, int32_t& id) {
    if (!f.has(key)) return;
    const uint64_t x = f.get_uint(key);
    if (x < static_cast<uint64_t>(n_vocab())) id = static_cast<int32_t>(x);
    else std::fprintf(stderr, "warning: %s: %s = %llu is not a token id; ignored\n", f.name().c_str(), key,
                      static_cast<unsigned long long>(x));
  };
  read("tokenizer.ggml.bos_token_id", bos_);
  read("tokenizer.ggml.eos_token_id", eos_);
  read("tokenizer.ggml.unknown_token_id", unk_);
  read("tokenizer.ggml.eot_token_id", eot_);
  read("tokenizer.ggml.eom_token_id", eom_);
  if (unk_ >= n_vocab()) unk_ = -1;  // the SentencePiece defaults assume a vocabulary of 3+
  if (bos_ >= n_vocab()) bos_ = -1;
  if (eos_ >= n_vocab()) eos_ = -1;
  for (auto text : kEotTexts) {
    if (eot_ >= 0) break;
    eot_ = vocab_->find(text);
  }
  if (eom_ < 0) eom_ = vocab_->find("<|eom_id|>");
  for (int32_t id : {eos_, eot_, eom_})
    if (id >= 0) eog_.push_back(id);
  for (auto text : kEogTexts)
    if (int32_t id = vocab_->find(text); id >= 0) eog_.push_back(id);
  std::sort(eog_.begin(), eog_.end());
  eog_.erase(std::unique(eog_.begin(), eog_.end()), eog_.end());
}

bool Tokenizer::is_eog(int32_t id) const { return std::binary_search(eog_.begin(), eog_.end(), id); }

void Tokenizer::encode_text(std::string_view text, bool space_prefix, std::vector<int32_t>& out) const {
  if (kind_ == Kind::SentencePiece) {
    spm_encode(text, space_prefix, *vocab_, byte_tokens_, out);
    return;
  }
  const std::vector<std::string> words = pre_tokenizer_->split(text);
  WordMemo memo;
  for (const std::string& word : words) {
    if (memo.replay(word, out)) continue;
    const size_t from = out.size();
    merges_->encode_word(byte_unicode::encode(word), *vocab_, pre_tokenizer_->ignore_merges(), unk_, out);
    memo.record(word, from, out);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos) {
    if (bos_ < 0) throw Error("this vocabulary has no BOS token to add");
    out.push_back(bos_);
  }
  // SentencePiece adds its space prefix at the start and after each special token (llama.cpp).
  bool after_special = true;
  for (const Fragment& frag : split_special_tokens(text, special_order_, *vocab_, parse_special)) {
    if (frag.token >= 0) {
      out.push_back(frag.token);
      after_special = true;
    } else {
      encode_text(frag.text, add_space_prefix_ && after_special, out);
      after_special = false;
    }
  }
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return "";
  const std::string& t = vocab_->tokens[id];
  switch (vocab_->types[id]) {
    case TokenType::Control:
    case TokenType::Unknown: return "";
    case TokenType::UserDefined: return t;  // matched as literal text, so it is literal text
    case TokenType::Byte:
      if (kind_ == Kind::SentencePiece && t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
        if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
      }
      break;
    default: break;
  }
  return kind_ == Kind::SentencePiece ? spm_unescape(t) : byte_unicode::decode(t);
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string s;
  for (auto i : ids) s += token_to_piece(i);
  return s;
}

}  // namespace lazyllm
