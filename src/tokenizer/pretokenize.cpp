#include "tokenizer/pretokenize.h"

#include <unicode/regex.h>
#include <unicode/unistr.h>

#include <algorithm>

#include "lazyllm/error.h"

namespace lazyllm {
namespace {

// Regexes as the models' tokenizer.json files give them (llama.cpp's for "default" and "falcon",
// which have none of their own); llama.cpp's pre type names. "\s" / "\S" are rewritten to the
// Unicode White_Space property when compiled: ICU's own \s leaves out U+000B and U+0085, which
// the original (Oniguruma / Python) engines count as whitespace.
constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kTekken =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// CJK ideographs, U+0800..U+4E00 and Hangul, as DeepSeek's tokenizers list them.
constexpr const char* kDeepseekCjk = R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";
constexpr const char* kBloom = R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+)";

struct PreType {
  std::vector<std::string_view> names;
  std::vector<const char*> regexes;
  bool ignore_merges = false, add_bos = false, no_bos = false;
};

const std::vector<PreType>& pre_types() {
  static const std::vector<PreType> types = {
      {{"default"}, {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", R"([0-9][0-9][0-9])"}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3"}, {kLlama3}, true, true},
      {{"dbrx", "smaug-bpe"}, {kLlama3}},
      {{"chatglm-bpe"}, {kLlama3}, false, false, true},
      {{"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"}, {kQwen2}},
      {{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code",
        "roberta-bpe", "mpt", "olmo", "jais"},
       {kGpt2}},
      {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"}, {R"(\p{N})", kGpt2}},
      {{"falcon"}, {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, R"([0-9][0-9][0-9])"}},
      {{"deepseek-llm"},
       {R"([\r\n])",
        R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF})"
        R"(\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1})"
        R"(\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5})"
        R"(\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A})"
        R"(\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B})"
        R"(\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC})"
        R"(\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107})"
        R"(\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134})"
        R"(\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4})"
        R"(\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787})"
        R"(\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A})"
        R"(\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2})"
        R"(\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)",
        R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)",
        R"(\s+\z)",  // "\s+$" in the original; each piece is matched on its own, so its end
        kDeepseekCjk, R"(\p{N}+)"}},
      {{"deepseek-coder"}, {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kDeepseekCjk, R"(\p{N})"}},
      {{"deepseek-v3"},
       {R"(\p{N}{1,3})", R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)",
        R"([!-/:-@\[-`\{-~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      {{"poro-chat", "bloom", "gpt3-finnish"}, {kBloom}},
      {{"viking"}, {kBloom, R"(\p{N})"}},
      {{"tekken"}, {kTekken}, true, true},
  };
  return types;
}

std::string with_unicode_whitespace(std::string_view re) {
  std::string out;
  for (size_t i = 0; i < re.size(); ++i) {
    if (re[i] == '\\' && i + 1 < re.size()) {
      if (re[i + 1] == 's') out += R"(\p{White_Space})";
      else if (re[i + 1] == 'S') out += R"(\P{White_Space})";
      else out.append(re.substr(i, 2));
      ++i;
    } else {
      out += re[i];
    }
  }
  return out;
}

}  // namespace

struct PreTokenizer::Patterns {
  std::vector<std::unique_ptr<icu::RegexPattern>> list;
};

PreTokenizer::PreTokenizer() : patterns_(std::make_unique<Patterns>()) {}
PreTokenizer::~PreTokenizer() = default;

std::string PreTokenizer::known_names() {
  std::string s;
  for (const PreType& t : pre_types())
    for (auto n : t.names) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

std::unique_ptr<PreTokenizer> PreTokenizer::create(std::string_view pre_name) {
  const PreType* type = nullptr;
  for (const PreType& t : pre_types())
    if (std::find(t.names.begin(), t.names.end(), pre_name) != t.names.end()) type = &t;
  if (!type)
    throw Error("unknown pre-tokenizer type '" + std::string(pre_name) + "' (tokenizer.ggml.pre); known: " + known_names());
  std::unique_ptr<PreTokenizer> p(new PreTokenizer());
  p->ignore_merges_ = type->ignore_merges;
  p->add_bos_ = type->add_bos;
  p->no_bos_ = type->no_bos;
  for (const char* re : type->regexes) {
    UErrorCode status = U_ZERO_ERROR;
    UParseError where;
    std::unique_ptr<icu::RegexPattern> pattern(
        icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(with_unicode_whitespace(re)), 0, where, status));
    if (U_FAILURE(status))  // a bug in the table above, not bad input
      throw Error("pre-tokenizer '" + std::string(pre_name) + "': regex does not compile (" + u_errorName(status) + ")");
    p->patterns_->list.push_back(std::move(pattern));
  }
  return p;
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  const icu::UnicodeString all = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  // Pieces as [start, end) in UTF-16 units of `all`.
  std::vector<std::pair<int32_t, int32_t>> pieces{{0, all.length()}}, next;
  for (const auto& pattern : patterns_->list) {
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<icu::RegexMatcher> m(pattern->matcher(status));
    if (U_FAILURE(status)) throw Error(std::string("pre-tokenizer: ICU matcher failed (") + u_errorName(status) + ")");
    next.clear();
    for (auto [begin, end] : pieces) {
      // Match the piece as a string of its own: lookahead and \z see its end, not the text's.
      const icu::UnicodeString piece(all, begin, end - begin);
      m->reset(piece);
      int32_t done = 0;
      while (m->find()) {
        const int32_t s = m->start(status), e = m->end(status);
        if (U_FAILURE(status)) throw Error(std::string("pre-tokenizer: ICU match failed (") + u_errorName(status) + ")");
        if (e == s) continue;
        if (s > done) next.emplace_back(begin + done, begin + s);
        next.emplace_back(begin + s, begin + e);
        done = e;
      }
      if (done < end - begin) next.emplace_back(begin + done, end);
    }
    pieces.swap(next);
  }
  std::vector<std::string> out;
  out.reserve(pieces.size());
  for (auto [begin, end] : pieces) {
    std::string s;
    all.tempSubStringBetween(begin, end).toUTF8String(s);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace lazyllm
