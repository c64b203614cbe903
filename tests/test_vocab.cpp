// Tokenizers against llama.cpp's test vectors in ../shared/vocab (every .inp text must encode to
// its .out ids exactly), plus the pieces the vectors do not reach: the byte-level alphabet,
// special-token parsing, end-of-generation tokens, and streaming decoding of split characters.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "lazyllm/error.h"
#include "lazyllm/lazyllm.h"
#include "lazyllm/tokenizer.h"
#include "test_util.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/utf8.h"

namespace lazyllm {
namespace {

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<Tokenizer> load_vocab(const std::string& name) {
  return Model::load_tokenizer((test::shared_dir() / "vocab" / name).string());
}

// ---------------------------------------------------------------------------------------------
// Every vocabulary in ../shared/vocab against its vectors.

class VocabVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabVectors, EncodeMatchesLlamaCpp) {
  const std::string vocab = "ggml-vocab-" + GetParam() + ".gguf";
  LAZYLLM_REQUIRE_SHARED("vocab/" + vocab);
  const auto dir = test::shared_dir() / "vocab";
  auto tok = load_vocab(vocab);
  // .inp: texts, each followed by "\n__ggml_vocab_test__\n"; .out: one line of ids per text.
  const std::string inp = read_all(dir / (vocab + ".inp"));
  std::istringstream outs(read_all(dir / (vocab + ".out")));
  const std::string sep = "\n__ggml_vocab_test__\n";
  size_t pos = 0, n = 0;
  std::string line;
  while (pos < inp.size() && std::getline(outs, line)) {
    size_t end = inp.find(sep, pos);
    if (end == std::string::npos) end = inp.size();
    const std::string text = inp.substr(pos, end - pos);
    pos = end + sep.size();
    std::vector<int32_t> want;
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) want.push_back(id);
    const std::vector<int32_t> got = tok->encode(text, false, false);
    EXPECT_EQ(got, want) << vocab << " text #" << n << ": '" << text << "'";
    // Decoding gives the text back (SentencePiece adds one leading space).
    if (tok->kind() == Tokenizer::Kind::BytePairBpe) {
      EXPECT_EQ(tok->decode(got), text) << "text #" << n;
    }
    ++n;
  }
  EXPECT_GT(n, 40u);
  EXPECT_EQ(pos, inp.size()) << "more texts than id lines";
}

INSTANTIATE_TEST_SUITE_P(Shared, VocabVectors,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "deepseek-llm", "starcoder"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) if (c == '-') c = '_';
                           return n;
                         });

// Every vocabulary file present is covered by the list above.
TEST(VocabVectors, EveryVocabFileIsListed) {
  const auto dir = test::shared_dir() / "vocab";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "shared vocab not found: " << dir;
  const std::set<std::string> listed = {"llama-spm", "phi-3", "gpt-2", "deepseek-llm", "starcoder"};
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    if (f.size() < 16 || f.rfind("ggml-vocab-", 0) != 0 || f.substr(f.size() - 5) != ".gguf") continue;
    EXPECT_TRUE(listed.count(f.substr(11, f.size() - 16))) << f << " has no test";
  }
}

// ---------------------------------------------------------------------------------------------
// The byte-level alphabet.

TEST(ByteUnicode, MapsEveryByteToADistinctPrintableCodePointAndBack) {
  std::set<uint32_t> seen;
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = byte_unicode::to_codepoint(static_cast<uint8_t>(b));
    EXPECT_TRUE(seen.insert(cp).second) << "byte " << b;
    EXPECT_EQ(byte_unicode::to_byte(cp), b);
    EXPECT_LE(cp, 0x143u);
  }
  EXPECT_EQ(byte_unicode::to_codepoint(' '), 0x120u);   // "Ġ"
  EXPECT_EQ(byte_unicode::to_codepoint('\n'), 0x10Au);  // "Ċ"
  EXPECT_EQ(byte_unicode::to_codepoint('A'), static_cast<uint32_t>('A'));
  EXPECT_EQ(byte_unicode::to_codepoint(0xAD), 0x143u);  // soft hyphen, the last shifted byte
  EXPECT_EQ(byte_unicode::to_byte(0x144), -1);
  EXPECT_EQ(byte_unicode::to_byte(0x20), -1);  // a raw space is not in the alphabet
}

TEST(ByteUnicode, EncodeDecodeRoundTripsAllBytes) {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  const std::string spelled = byte_unicode::encode(all);
  EXPECT_EQ(byte_unicode::decode(spelled), all);
  EXPECT_EQ(byte_unicode::encode(" hi\n"), "\xC4\xA0hi\xC4\x8A");
  // A character outside the alphabet is kept, not dropped.
  EXPECT_EQ(byte_unicode::decode("a\xE4\xB8\x96"), "a\xE4\xB8\x96");
}

TEST(Utf8, CheckCharAcceptsOnlyValidSequences) {
  EXPECT_EQ(utf8::check_char("a"), 1);
  EXPECT_EQ(utf8::check_char("\xC3\xA9"), 2);
  EXPECT_EQ(utf8::check_char("\xE2\x82\xAC"), 3);
  EXPECT_EQ(utf8::check_char("\xF0\x9F\xA6\x99"), 4);
  EXPECT_EQ(utf8::check_char("\xF0\x9F"), 0);      // unfinished
  EXPECT_EQ(utf8::check_char("\x80"), -1);         // continuation byte first
  EXPECT_EQ(utf8::check_char("\xC0\xAF"), -1);     // overlong
  EXPECT_EQ(utf8::check_char("\xED\xA0\x80"), -1);  // surrogate
  EXPECT_EQ(utf8::check_char("\xF4\x90\x80\x80"), -1);  // past U+10FFFF
  EXPECT_EQ(utf8::check_char("\xE2\x28"), -1);     // bad continuation
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE details.

TEST(VocabBpe, ReportsModelPreTypeAndSpecialTokens) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
  auto gpt2 = load_vocab("ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(gpt2->kind(), Tokenizer::Kind::BytePairBpe);
  EXPECT_EQ(gpt2->model_name(), "gpt2");
  EXPECT_EQ(gpt2->pre_name(), "gpt-2");
  EXPECT_EQ(gpt2->bos(), 50256);
  EXPECT_EQ(gpt2->eos(), 50256);
  EXPECT_EQ(gpt2->eot(), 50256);  // "<|endoftext|>", found by its text
  EXPECT_TRUE(gpt2->is_eog(50256));
  EXPECT_FALSE(gpt2->is_eog(0));
  EXPECT_FALSE(gpt2->add_bos());  // GPT-2 adds no BOS unless the metadata says so

  auto ds = load_vocab("ggml-vocab-deepseek-llm.gguf");
  EXPECT_EQ(ds->pre_name(), "deepseek-llm");
  EXPECT_TRUE(ds->add_bos());  // tokenizer.ggml.add_bos_token
  EXPECT_EQ(ds->encode("Hi", true, false).front(), 100000);
  EXPECT_TRUE(ds->is_eog(100001));
  EXPECT_EQ(ds->eot(), 100001);  // "<｜end▁of▁sentence｜>"
}

TEST(VocabBpe, SpecialTokensParsedOnlyWhenAsked) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
  auto tok = load_vocab("ggml-vocab-gpt-2.gguf");
  const std::string text = "Hello<|endoftext|> world";
  const auto parsed = tok->encode(text, false, true);
  const auto plain = tok->encode(text, false, false);
  const std::vector<int32_t> hello = tok->encode("Hello", false, false), world = tok->encode(" world", false, false);
  std::vector<int32_t> want = hello;
  want.push_back(50256);
  want.insert(want.end(), world.begin(), world.end());
  EXPECT_EQ(parsed, want);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256), 0);
  EXPECT_GT(plain.size(), parsed.size());
  EXPECT_EQ(tok->decode(plain), text);
  EXPECT_EQ(tok->decode(parsed), "Hello world");  // control tokens have no text
  // Adjacent special tokens and a special token alone.
  EXPECT_EQ(tok->encode("<|endoftext|><|endoftext|>", false, true), (std::vector<int32_t>{50256, 50256}));
}

TEST(VocabBpe, UserDefinedTokensAlwaysMatch) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-deepseek-llm.gguf");
  auto tok = load_vocab("ggml-vocab-deepseek-llm.gguf");
  ASSERT_EQ(tok->token_type(100014), TokenType::UserDefined);
  ASSERT_EQ(tok->token_text(100014), "\xC3\xBC");  // "ü"
  for (bool parse_special : {false, true}) {
    const auto ids = tok->encode("\xC3\xBC", false, parse_special);
    EXPECT_EQ(ids, (std::vector<int32_t>{100014}));
  }
  // Control tokens only with parse_special.
  const std::string bos_text(tok->token_text(100000));
  EXPECT_EQ(tok->encode(bos_text, false, true), (std::vector<int32_t>{100000}));
  EXPECT_GT(tok->encode(bos_text, false, false).size(), 1u);
}

TEST(VocabBpe, StreamingHoldsSplitCharactersUntilComplete) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
  auto tok = load_vocab("ggml-vocab-gpt-2.gguf");
  const std::string text = "Gr\xC3\xBC\xC3\x9F" "e \xF0\x9F\xA6\x99 \xE4\xB8\x96\xE7\x95\x8C \xE2\x80\x94 ok";
  const auto ids = tok->encode(text, false, false);
  // The llama emoji is not one GPT-2 token: at least one token ends inside a character.
  bool some_piece_is_partial = false;
  for (int32_t id : ids) {
    const std::string p = tok->token_to_piece(id);
    for (size_t i = 0; i < p.size();) {
      const int len = utf8::check_char(std::string_view(p).substr(i));
      if (len <= 0) { some_piece_is_partial = true; break; }
      i += len;
    }
  }
  ASSERT_TRUE(some_piece_is_partial) << "the test needs a character split across tokens";
  StreamDecoder dec(*tok);
  std::string joined;
  for (int32_t id : ids) {
    const std::string piece = dec.feed(id);
    for (size_t i = 0; i < piece.size();) {
      const int len = utf8::check_char(std::string_view(piece).substr(i));
      ASSERT_GT(len, 0) << "broken UTF-8 emitted after token " << id;
      i += len;
    }
    joined += piece;
  }
  EXPECT_EQ(dec.flush(), "");
  EXPECT_EQ(joined, text);
  EXPECT_EQ(tok->decode(ids), text);
}

TEST(VocabBpe, StreamingReplacesBytesThatCanNeverBeUtf8) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
  auto tok = load_vocab("ggml-vocab-gpt-2.gguf");
  // Byte 0xFF, a lone continuation byte 0x80 and the lead byte 0xE4 are GPT-2 tokens of their own
  // (encoding cannot produce them from invalid text, which becomes U+FFFD, but a model can).
  auto byte_token = [&](char b) {
    const std::string spelled = byte_unicode::encode(std::string(1, b));
    for (int32_t id = 0; id < tok->n_vocab(); ++id)
      if (tok->token_text(id) == spelled) return std::vector<int32_t>{id};
    return std::vector<int32_t>{};
  };
  const auto ff = byte_token('\xFF'), cont = byte_token('\x80'), lead = byte_token('\xE4');
  ASSERT_EQ(ff.size() + cont.size() + lead.size(), 3u);
  ASSERT_EQ(tok->token_to_piece(ff[0]), "\xFF");
  StreamDecoder dec(*tok);
  EXPECT_EQ(dec.feed(ff[0]), utf8::kReplacementUtf8);
  EXPECT_EQ(dec.feed(cont[0]), utf8::kReplacementUtf8);
  EXPECT_EQ(dec.feed(lead[0]), "");  // may still become a character
  EXPECT_EQ(dec.feed(tok->encode("a", false, false)[0]), std::string(utf8::kReplacementUtf8) + "a");
  EXPECT_EQ(dec.feed(lead[0]), "");
  EXPECT_EQ(dec.flush(), utf8::kReplacementUtf8);  // never finished
}

TEST(VocabBpe, LongWhitespaceRunAndInvalidUtf8AreHandled) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf");
  auto tok = load_vocab("ggml-vocab-gpt-2.gguf");
  const std::string spaces(20000, ' ');  // one pre-token; merging must not be quadratic
  const auto ids = tok->encode(spaces + "x", false, false);
  EXPECT_EQ(tok->decode(ids), spaces + "x");
  // Invalid UTF-8 input becomes U+FFFD rather than failing.
  EXPECT_EQ(tok->decode(tok->encode(std::string("a\xC3(b"), false, false)), "a\xEF\xBF\xBD(b");
}

// ---------------------------------------------------------------------------------------------
// SentencePiece details.

TEST(VocabSpm, StreamingNeverSplitsUtf8) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf");
  auto tok = load_vocab("ggml-vocab-llama-spm.gguf");
  const std::string text = "Gr\xC3\xBC\xC3\x9F" "e, \xE4\xB8\x96\xE7\x95\x8C! \xF0\x9F\xA6\x99 na\xC3\xAFve caf\xC3\xA9 \xE2\x80\x94 ok";
  std::vector<int32_t> ids = tok->encode(text, false, false);
  StreamDecoder dec(*tok);
  std::string joined;
  for (int32_t id : ids) {
    std::string piece = dec.feed(id);
    for (size_t i = 0; i < piece.size();) {
      const int len = utf8::check_char(std::string_view(piece).substr(i));
      ASSERT_GT(len, 0) << "broken UTF-8 in piece of token " << id;
      i += len;
    }
    joined += piece;
  }
  joined += dec.flush();
  EXPECT_EQ(joined, " " + text);  // SentencePiece adds the leading space
  EXPECT_EQ(tok->decode(ids), " " + text);
}

TEST(VocabSpm, ControlTokensParsedOnlyWhenAsked) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf");
  auto tok = load_vocab("ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(tok->kind(), Tokenizer::Kind::SentencePiece);
  EXPECT_EQ(tok->pre_name(), "default");
  const auto parsed = tok->encode("Hello</s>", true, true);
  ASSERT_EQ(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), 1);
  EXPECT_EQ(parsed.back(), 2);
  const auto plain = tok->encode("Hello</s>", true, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  EXPECT_GT(plain.size(), 3u);
}

TEST(VocabSpm, Phi3EndOfTurnTokens) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-phi-3.gguf");
  auto tok = load_vocab("ggml-vocab-phi-3.gguf");
  EXPECT_EQ(tok->eos(), 32000);
  EXPECT_EQ(tok->eot(), 32007);  // "<|end|>"
  EXPECT_TRUE(tok->is_eog(32000));
  EXPECT_TRUE(tok->is_eog(32007));
  EXPECT_FALSE(tok->is_eog(32001));  // "<|assistant|>"
}

}  // namespace
}  // namespace lazyllm
