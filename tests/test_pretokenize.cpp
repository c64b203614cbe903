// BPE pre-tokenizers: every known type compiles and splits text into pieces that add up to the
// text; hand-checked splits for the Llama 3 and Qwen2 regexes (no shared vectors cover them).
#include <gtest/gtest.h>

#include <sstream>

#include "lazyllm/error.h"
#include "tokenizer/pretokenize.h"

namespace lazyllm {
namespace {

std::vector<std::string> split(std::string_view pre, std::string_view text) {
  return PreTokenizer::create(pre)->split(text);
}

TEST(PreTokenize, EveryKnownTypeCompilesAndKeepsTheText) {
  const std::string text = "Hello, WORLD! I'M 12345 caf\xC3\xA9\n\n\t  \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\xA6\x99 x=a+b;  \xE2\x80\x94" "end ";
  std::istringstream names(PreTokenizer::known_names());
  int n = 0;
  for (std::string name; std::getline(names, name, ',');) {
    if (name.front() == ' ') name.erase(0, 1);
    std::string joined;
    for (const auto& piece : split(name, text)) {
      EXPECT_FALSE(piece.empty()) << name;
      joined += piece;
    }
    EXPECT_EQ(joined, text) << name;
    ++n;
  }
  EXPECT_GE(n, 30);
}

TEST(PreTokenize, UnknownTypeIsAnErrorNamingIt) {
  try {
    PreTokenizer::create("no-such-pre");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'no-such-pre'"), std::string::npos) << e.what();
  }
}

TEST(PreTokenize, Llama3) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split("llama-bpe", "Hello world 12345!!\n\n  x"),
            (V{"Hello", " world", " ", "123", "45", "!!\n\n", " ", " x"}));
  // Contractions match in any case; a letter run takes one leading non-letter.
  EXPECT_EQ(split("llama3", "I'M here's"), (V{"I", "'M", " here", "'s"}));
  EXPECT_EQ(split("llama3", "(abc)\r\n"), (V{"(abc", ")\r\n"}));
  EXPECT_TRUE(PreTokenizer::create("llama3")->ignore_merges());
  EXPECT_TRUE(PreTokenizer::create("llama3")->add_bos_default());
}

TEST(PreTokenize, Qwen2SplitsDigitsOneByOne) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split("qwen2", "x 2024"), (V{"x", " ", "2", "0", "2", "4"}));
  EXPECT_FALSE(PreTokenizer::create("qwen2")->ignore_merges());
}

TEST(PreTokenize, Gpt2WhitespaceBeforeAWordStaysWithTheWord) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split("gpt-2", "a   b\n"), (V{"a", "  ", " b", "\n"}));
  // U+0085 (NEL) and U+000B are whitespace, as in the original regex engines.
  EXPECT_EQ(split("gpt-2", "a\xC2\x85\x0B b"), (V{"a", "\xC2\x85\x0B", " b"}));
}

}  // namespace
}  // namespace lazyllm
