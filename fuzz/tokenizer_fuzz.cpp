// libFuzzer target: both tokenizers on real vocabularies. Encode of arbitrary bytes (with and
// without special-token parsing, with and without BOS) and streaming decode of arbitrary ids
// (negative and out-of-range ones included) must never crash, and:
//   - every id encode gives is a token of the vocabulary; BOS comes first when asked for;
//     without special-token parsing no control token comes out of the text;
//   - valid UTF-8 text decodes back to itself (byte-level BPE exactly; SentencePiece up to the
//     space prefix, when no user-defined token and no unknown token was involved);
//   - StreamDecoder's output is valid UTF-8 at every step, and all of it together with flush()
//     is decode() with each byte that cannot form UTF-8 replaced by U+FFFD (an unfinished
//     character at the end by one U+FFFD).
//
// The vocabularies (GGUF files: vocab-only or whole models) come from $LAZYLLM_FUZZ_VOCABS, a
// ':'-separated list of paths; scripts/fuzz.sh sets it from the shared test data (../shared).
//
// Input: byte 0 selects: bits 0-2 the vocabulary (modulo their number), bit 4 special-token
// parsing, bit 5 add BOS, bit 6 decode mode. Encode mode: the rest is the text, and its ids are
// then stream-decoded too. Decode mode: the rest is 16-bit little-endian values v, each the id
// v mod (n_vocab + 16) - 8.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "format/gguf.h"
#include "fuzz_util.h"
#include "lazyllm/error.h"
#include "lazyllm/tokenizer.h"

using namespace lazyllm;

namespace {

std::vector<std::unique_ptr<Tokenizer>> g_tokenizers;

// decode() as StreamDecoder must give it: each byte that cannot start valid UTF-8 becomes U+FFFD,
// and so does an unfinished character at the end.
std::string sanitize(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const int len = utf8::check_char(s.substr(i));
    if (len == 0) return out + std::string(utf8::kReplacementUtf8);
    if (len < 0) {
      out += utf8::kReplacementUtf8;
      ++i;
    } else {
      out.append(s.substr(i, static_cast<size_t>(len)));
      i += static_cast<size_t>(len);
    }
  }
  return out;
}

void check_stream(const Tokenizer& t, const std::vector<int32_t>& ids) {
  StreamDecoder d(t);
  std::string all;
  for (int32_t id : ids) {
    const std::string piece = d.feed(id);
    LAZYLLM_FUZZ_CHECK(fuzz::valid_utf8(piece));
    all += piece;
  }
  all += d.flush();
  LAZYLLM_FUZZ_CHECK(d.flush().empty());
  LAZYLLM_FUZZ_CHECK(all == sanitize(t.decode(ids)));
}

void check_encode(const Tokenizer& t, std::string_view text, bool add_bos, bool parse_special) {
  std::vector<int32_t> ids;
  try {
    ids = t.encode(text, add_bos, parse_special);
  } catch (const Error&) {
    LAZYLLM_FUZZ_CHECK(add_bos && t.bos() < 0);  // the one documented failure
    return;
  }
  LAZYLLM_FUZZ_CHECK(!add_bos || (!ids.empty() && ids[0] == t.bos()));
  bool special = false, unknown = false;
  for (size_t i = add_bos ? 1 : 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    LAZYLLM_FUZZ_CHECK(id >= 0 && id < t.n_vocab());
    const TokenType type = t.token_type(id);
    if (!parse_special) LAZYLLM_FUZZ_CHECK(type != TokenType::Control);
    special |= type == TokenType::Control || type == TokenType::UserDefined;
    unknown |= type == TokenType::Unknown;
  }
  if (text.empty()) LAZYLLM_FUZZ_CHECK(ids.size() == (add_bos ? 1u : 0u));
  if (!text.empty() && !special && !unknown && fuzz::valid_utf8(text)) {
    const std::string back = t.decode(std::span(ids).subspan(add_bos ? 1 : 0));
    if (t.kind() == Tokenizer::Kind::BytePairBpe) {
      LAZYLLM_FUZZ_CHECK(back == text);
    } else if (text.find("\xE2\x96\x81") == std::string_view::npos) {  // "▁" decodes as a space
      LAZYLLM_FUZZ_CHECK(back == text || back == " " + std::string(text));
    }
  }
  check_stream(t, ids);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* list = std::getenv("LAZYLLM_FUZZ_VOCABS");
  if (!list || !*list) {
    std::fprintf(stderr, "tokenizer_fuzz: set LAZYLLM_FUZZ_VOCABS to a ':'-separated list of GGUF vocabularies\n");
    std::exit(2);
  }
  std::string_view rest = list;
  while (!rest.empty() && g_tokenizers.size() < 8) {
    const size_t colon = rest.find(':');
    const std::string path(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    if (path.empty()) continue;
    try {
      auto f = GGUFFile::open(path);
      g_tokenizers.push_back(Tokenizer::from_gguf(*f));
      const Tokenizer& t = *g_tokenizers.back();
      std::fprintf(stderr, "tokenizer_fuzz: vocabulary %zu: %s (%s, pre %s, %d tokens)\n", g_tokenizers.size() - 1,
                   path.c_str(), std::string(t.kind_name()).c_str(), std::string(t.pre_name()).c_str(), t.n_vocab());
    } catch (const Error& e) {
      std::fprintf(stderr, "tokenizer_fuzz: cannot load %s: %s\n", path.c_str(), e.what());
      std::exit(2);
    }
  }
  if (g_tokenizers.empty()) {
    std::fprintf(stderr, "tokenizer_fuzz: LAZYLLM_FUZZ_VOCABS names no vocabulary\n");
    std::exit(2);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t sel = data[0];
  const Tokenizer& t = *g_tokenizers[(sel & 7) % g_tokenizers.size()];
  const bool parse_special = sel & 0x10, add_bos = sel & 0x20, decode_mode = sel & 0x40;
  if (!decode_mode) {
    // An exact-size heap copy, so ASan reports a read even one byte past the end.
    const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    check_encode(t, text, add_bos, parse_special);
    return 0;
  }
  std::vector<int32_t> ids;
  const int64_t range = int64_t{t.n_vocab()} + 16;
  for (size_t i = 1; i + 1 < size; i += 2) {
    const int64_t v = data[i] | (data[i + 1] << 8);
    ids.push_back(static_cast<int32_t>(v % range - 8));
  }
  for (int32_t id : ids) {
    const bool in_range = id >= 0 && id < t.n_vocab();
    if (!in_range) LAZYLLM_FUZZ_CHECK(t.token_to_piece(id).empty() && !t.is_eog(id));
    else (void)t.token_text(id);
  }
  check_stream(t, ids);
  return 0;
}
