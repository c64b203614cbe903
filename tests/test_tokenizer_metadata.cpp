// What a byte-level BPE tokenizer takes from GGUF metadata, on small hand-made vocabularies:
// merge ranks, ignore_merges (Llama 3), BOS/EOT/EOM ids and add_bos_token, and clear errors for
// malformed or unsupported vocabularies. Also SentencePiece merging word by word, and its
// whole-text fallback for vocabularies with a "▁" inside a token.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>

#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "lazyllm/error.h"
#include "lazyllm/tokenizer.h"
#include "test_util.h"
#include "tokenizer/byte_unicode.h"

namespace lazyllm {
namespace {

// Ids 0..255 are the bytes; then "ab", "bc", "abc", and special tokens.
constexpr int32_t kAb = 256, kBc = 257, kAbc = 258, kBegin = 259, kEotId = 260, kEomId = 261, kTool = 262, kStop = 263;

std::unique_ptr<Tokenizer> make(const std::string& name, const std::function<void(GGUFWriter&)>& edit) {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_unicode::encode(std::string(1, static_cast<char>(b))));
  for (const char* t : {"ab", "bc", "abc", "<|begin|>", "<|eot_id|>", "<|eom_id|>", "<tool>", "<stop>"}) tokens.push_back(t);
  types.assign(tokens.size(), 1);
  types[kBegin] = types[kEotId] = types[kEomId] = types[kStop] = 3;
  types[kTool] = 4;
  GGUFWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "gpt-2");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_int32_array("tokenizer.ggml.token_type", types);
  w.set_string_array("tokenizer.ggml.merges", {"a b", "b c", "ab c"});
  w.set_uint32("tokenizer.ggml.bos_token_id", kBegin);
  edit(w);
  const auto path = test::temp_path(name + ".gguf").string();
  w.write(path);
  return Tokenizer::from_gguf(*GGUFFile::open(path));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

using Ids = std::vector<int32_t>;

TEST(TokenizerMetadata, LowestMergeRankMergesFirst) {
  auto t = make("rank", [](GGUFWriter&) {});
  EXPECT_EQ(t->encode("abc", false, false), (Ids{kAbc}));  // a+b, then ab+c
  auto swapped = make("rank2", [](GGUFWriter& w) { w.set_string_array("tokenizer.ggml.merges", {"b c", "a b", "ab c"}); });
  EXPECT_EQ(swapped->encode("abc", false, false), (Ids{'a', kBc}));  // b+c first; there is no "a bc"
  auto none = make("rank3", [](GGUFWriter& w) { w.set_string_array("tokenizer.ggml.merges", {"x y"}); });
  EXPECT_EQ(none->encode("abc", false, false), (Ids{'a', 'b', 'c'}));
}

TEST(TokenizerMetadata, Llama3TakesWholeWordsThatAreTokens) {
  auto t = make("llama3", [](GGUFWriter& w) {
    w.set_string("tokenizer.ggml.pre", "llama-bpe");
    w.set_string_array("tokenizer.ggml.merges", {"x y"});
  });
  EXPECT_EQ(t->encode("abc", false, false), (Ids{kAbc}));
  EXPECT_TRUE(t->add_bos());  // the Llama 3 default
  EXPECT_EQ(t->encode("abc", true, false), (Ids{kBegin, kAbc}));
  EXPECT_EQ(t->pre_name(), "llama-bpe");
}

TEST(TokenizerMetadata, AddBosComesFromMetadata) {
  EXPECT_FALSE(make("bos1", [](GGUFWriter&) {})->add_bos());
  EXPECT_TRUE(make("bos2", [](GGUFWriter& w) { w.set_bool("tokenizer.ggml.add_bos_token", true); })->add_bos());
  EXPECT_FALSE(make("bos3", [](GGUFWriter& w) {
                 w.set_string("tokenizer.ggml.pre", "llama3");
                 w.set_bool("tokenizer.ggml.add_bos_token", false);
               })->add_bos());
  EXPECT_NE(error_of([] {
              make("bos4", [](GGUFWriter& w) {
                w.remove("tokenizer.ggml.bos_token_id");
                w.set_bool("tokenizer.ggml.add_bos_token", true);
              });
            }).find("no BOS token"),
            std::string::npos);
}

TEST(TokenizerMetadata, EotAndEomIdsAreHonoured) {
  // By metadata: an id whose text is not one of the usual end-of-turn names.
  auto t = make("eot", [](GGUFWriter& w) {
    w.set_uint32("tokenizer.ggml.eot_token_id", kStop);
    w.set_uint32("tokenizer.ggml.eom_token_id", kTool);
    w.set_uint32("tokenizer.ggml.eos_token_id", kBegin);
  });
  EXPECT_EQ(t->eot(), kStop);
  EXPECT_EQ(t->eom(), kTool);
  for (int32_t id : {kStop, kTool, kBegin, kEotId, kEomId}) EXPECT_TRUE(t->is_eog(id)) << id;
  EXPECT_FALSE(t->is_eog(kAbc));
  EXPECT_FALSE(t->is_eog(-1));
  // By text when the metadata names none.
  auto u = make("eot2", [](GGUFWriter&) {});
  EXPECT_EQ(u->eot(), kEotId);
  EXPECT_EQ(u->eom(), kEomId);
  EXPECT_FALSE(u->is_eog(kStop));
  // An id past the vocabulary is ignored (with a warning), as llama.cpp does.
  auto v = make("eot3", [](GGUFWriter& w) { w.set_uint32("tokenizer.ggml.eot_token_id", 99999); });
  EXPECT_EQ(v->eot(), kEotId);
}

TEST(TokenizerMetadata, SpecialTokens) {
  auto t = make("special", [](GGUFWriter&) {});
  EXPECT_EQ(t->encode("ab<tool>c", false, false), (Ids{kAb, kTool, 'c'}));  // user-defined: always
  EXPECT_EQ(t->encode("<stop>", false, true), (Ids{kStop}));                 // control: when asked
  EXPECT_EQ(t->encode("<stop>", false, false).size(), 6u);
  EXPECT_EQ(t->decode(Ids{kAb, kTool, kStop, 'c'}), "ab<tool>c");
}

TEST(TokenizerMetadata, MissingPreTypeMeansDefault) {
  auto t = make("nopre", [](GGUFWriter& w) { w.remove("tokenizer.ggml.pre"); });
  EXPECT_EQ(t->pre_name(), "default");
  EXPECT_EQ(t->encode("abc", false, false), (Ids{kAbc}));
}

TEST(TokenizerMetadata, MalformedVocabulariesAreClearErrors) {
  EXPECT_NE(error_of([] { make("e1", [](GGUFWriter& w) { w.remove("tokenizer.ggml.merges"); }); })
                .find("without tokenizer.ggml.merges"),
            std::string::npos);
  EXPECT_NE(error_of([] { make("e2", [](GGUFWriter& w) { w.set_string_array("tokenizer.ggml.merges", {"a b", "abc"}); }); })
                .find("tokenizer.ggml.merges[1] = 'abc'"),
            std::string::npos);
  EXPECT_NE(error_of([] { make("e3", [](GGUFWriter& w) { w.set_string("tokenizer.ggml.pre", "nope"); }); })
                .find("unknown pre-tokenizer type 'nope'"),
            std::string::npos);
  EXPECT_NE(error_of([] { make("e4", [](GGUFWriter& w) { w.set_string("tokenizer.ggml.model", "bert"); }); })
                .find("tokenizer model 'bert' not supported"),
            std::string::npos);
  EXPECT_NE(error_of([] { make("e5", [](GGUFWriter& w) { w.set_int32_array("tokenizer.ggml.token_type", {1, 1}); }); })
                .find("differ in length"),
            std::string::npos);
}

TEST(TokenizerMetadata, MissingCharacterWithoutUnknownTokenIsAnError) {
  // A vocabulary without the byte alphabet cannot spell text; it says so instead of dropping it.
  GGUFWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "gpt-2");
  w.set_string_array("tokenizer.ggml.tokens", {"a", "b"});
  w.set_string_array("tokenizer.ggml.merges", {"a b"});
  const auto path = test::temp_path("nobytes.gguf").string();
  w.write(path);
  auto t = Tokenizer::from_gguf(*GGUFFile::open(path));
  EXPECT_EQ(t->encode("ab", false, false), (Ids{0, 1}));
  EXPECT_NE(error_of([&] { t->encode("abz", false, false); }).find("no token for 'z'"), std::string::npos);
}

// A SentencePiece vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then `pieces` by score.
constexpr int32_t kSpmByte0 = 3, kSpmPiece0 = 3 + 256;
std::unique_ptr<Tokenizer> make_spm(const std::string& name, const std::vector<std::pair<std::string, float>>& pieces) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
    types.push_back(6);
  }
  std::vector<float> scores(tokens.size(), 0.f);
  for (const auto& [text, score] : pieces) {
    tokens.push_back(text);
    types.push_back(1);
    scores.push_back(score);
  }
  GGUFWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_float32_array("tokenizer.ggml.scores", scores);
  w.set_int32_array("tokenizer.ggml.token_type", types);
  const auto path = test::temp_path(name + ".gguf").string();
  w.write(path);
  return Tokenizer::from_gguf(*GGUFFile::open(path));
}

#define SP "\xE2\x96\x81"  // "▁"

TEST(TokenizerMetadata, SpmMergesWordByWordLikeTheWholeText) {
  enum : int32_t { kSp = kSpmPiece0, kA, kB, kX, kSpA, kSpB, kAB, kSpAB };
  auto t = make_spm("spm_words",
                    {{SP, -5}, {"a", -5}, {"b", -5}, {"x", -5}, {SP "a", -1}, {SP "b", -1}, {"ab", -2}, {SP "ab", -3}});
  EXPECT_EQ(t->encode("ab ab b ab", false, false), (Ids{kSpAB, kSpAB, kSpB, kSpAB}));  // repeated words too
  EXPECT_EQ(t->encode("a  b", false, false), (Ids{kSpA, kSp, kSpB}));
  // A stray lead byte takes the escaped space after it into its character, so no word starts there.
  EXPECT_EQ(t->encode("\xF0 x", false, false),
            (Ids{kSp, kSpmByte0 + 0xF0, kSpmByte0 + 0xE2, kSpmByte0 + 0x96, kSpmByte0 + 0x81, kX}));
}

TEST(TokenizerMetadata, SpmTokenWithASpaceInsideMergesAcrossWords) {
  enum : int32_t { kSp = kSpmPiece0, kA, kB, kSpA, kSpB, kASp };
  auto t = make_spm("spm_across", {{SP, -5}, {"a", -5}, {"b", -5}, {SP "a", -1}, {SP "b", -1}, {"a" SP, 0}});
  EXPECT_EQ(t->encode("a b", false, false), (Ids{kSp, kASp, kB}));
  EXPECT_EQ(t->encode("b a b", false, false), (Ids{kSpB, kSp, kASp, kB}));
}

#undef SP

}  // namespace
}  // namespace lazyllm
