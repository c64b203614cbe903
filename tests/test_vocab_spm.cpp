// SentencePiece-style vocabularies: llama.cpp's test vectors in ../shared/vocab, encoded
// exactly, and streaming decoding that never emits a broken UTF-8 sequence.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "lazyllm/lazyllm.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace lazyllm {
namespace {

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The .inp texts (separated by "\n__ggml_vocab_test__\n") and the .out id lists.
void check_vectors(const std::string& vocab) {
  const auto dir = test::shared_dir() / "vocab";
  auto tok = Model::load_tokenizer((dir / vocab).string());
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
    EXPECT_EQ(tok->encode(text, false, false), want) << "text #" << n << ": '" << text << "'";
    ++n;
  }
  EXPECT_GT(n, 40u);
}

TEST(VocabSpm, LlamaSpmVectors) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf");
  check_vectors("ggml-vocab-llama-spm.gguf");
}

TEST(VocabSpm, Phi3Vectors) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-phi-3.gguf");
  check_vectors("ggml-vocab-phi-3.gguf");
}

TEST(VocabSpm, StreamingNeverSplitsUtf8) {
  LAZYLLM_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf");
  auto tok = Model::load_tokenizer((test::shared_dir() / "vocab/ggml-vocab-llama-spm.gguf").string());
  const std::string text = "Grüße, 世界! 🦙 naïve café — ok";
  std::vector<int32_t> ids = tok->encode(text, false, false);
  StreamDecoder dec(*tok);
  std::string joined;
  for (int32_t id : ids) {
    std::string piece = dec.feed(id);
    // Each emitted piece is whole UTF-8: no lead byte without its continuation bytes.
    for (size_t i = 0; i < piece.size();) {
      unsigned char c = piece[i];
      size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
      ASSERT_LE(i + len, piece.size()) << "split character in piece of token " << id;
      i += len;
    }
    joined += piece;
  }
  joined += dec.flush();
  EXPECT_EQ(joined, " " + text);  // SentencePiece adds the leading space
  EXPECT_EQ(tok->decode(ids), " " + text);
}

}  // namespace
}  // namespace lazyllm
