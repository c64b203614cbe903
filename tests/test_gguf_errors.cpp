// Corrupt, truncated and ill-formed GGUF input: every case is a clear lazyllm::Error naming the
// problem, never a crash (the suite also runs under ASan/UBSan, and a fuzzer covers the rest).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "lazyllm/lazyllm.h"
#include "model/gen_model.h"
#include "test_util.h"

namespace lazyllm {
namespace {

// Hand-assembled GGUF bytes, so each field can be set to a bad value on purpose.
struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s, uint64_t len_override = UINT64_MAX) {
    put<uint64_t>(len_override == UINT64_MAX ? s.size() : len_override);
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& pad(size_t a = 32) {
    while (b.size() % a) b.push_back(0);
    return *this;
  }
};

// A valid file: one string metadata entry and one 8x2 f32 tensor.
Bytes valid_file(uint32_t version = 3, uint32_t type = 0, uint64_t offset = 0, uint64_t dim0 = 8) {
  Bytes f;
  f.put<uint32_t>(0x46554747).put<uint32_t>(version).put<uint64_t>(1).put<uint64_t>(1);
  f.str("general.architecture").put<uint32_t>(8).str("llama");
  f.str("w").put<uint32_t>(2).put<uint64_t>(dim0).put<uint64_t>(2).put<uint32_t>(type).put<uint64_t>(offset);
  f.pad();
  for (int i = 0; i < 16; ++i) f.put<float>(static_cast<float>(i));
  return f;
}

void expect_error(const Bytes& f, const std::string& needle) {
  try {
    GGUFFile::parse(f.b.data(), f.b.size(), "test.gguf");
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

TEST(GGUFErrors, ValidFileParses) {
  Bytes f = valid_file();
  auto g = GGUFFile::parse(f.b.data(), f.b.size());
  ASSERT_EQ(g->tensors().size(), 1u);
  EXPECT_EQ(g->get_string("general.architecture"), "llama");
  const float* w = reinterpret_cast<const float*>(g->find_tensor("w")->data);
  EXPECT_EQ(w[15], 15.0f);
}

TEST(GGUFErrors, EveryTruncationIsAnError) {
  Bytes f = valid_file();
  for (size_t cut = 0; cut < f.b.size(); ++cut) {
    EXPECT_THROW(GGUFFile::parse(f.b.data(), cut), Error) << "cut at " << cut;
  }
}

TEST(GGUFErrors, BadMagicAndVersion) {
  Bytes f = valid_file();
  f.b[0] = 'X';
  expect_error(f, "bad magic");
  expect_error(valid_file(1), "version 1");
  expect_error(valid_file(7), "unknown GGUF version 7");
}

TEST(GGUFErrors, AbsurdCounts) {
  Bytes f;
  f.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(uint64_t{1} << 60).put<uint64_t>(0);
  expect_error(f, "tensor count");
  Bytes g;
  g.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(uint64_t{1} << 60);
  expect_error(g, "metadata count");
  Bytes h;  // a string longer than the file
  h.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1).str("k", uint64_t{1} << 62).pad(64);
  expect_error(h, "beyond the end");
  Bytes a;  // an array claiming 2^60 elements
  a.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1).str("arr");
  a.put<uint32_t>(9).put<uint32_t>(5).put<uint64_t>(uint64_t{1} << 60);
  expect_error(a, "more than the file holds");
}

TEST(GGUFErrors, BadTensorInfo) {
  expect_error(valid_file(3, 0, 64), "beyond the end of the file");
  expect_error(valid_file(3, 0, 3), "not aligned");
  expect_error(valid_file(3, 11), "q3_K");  // a real ggml type we do not implement
  expect_error(valid_file(3, 999), "does not support");
  expect_error(valid_file(3, 0, 0, 0), "invalid dimension");
  expect_error(valid_file(3, 8, 0, 8), "not a multiple");  // q8_0 rows must be multiples of 32
  Bytes f = valid_file();
  f.b[4 + 4 + 8 + 8 + 8 + 20 + 4 + 8 + 5 + 8 + 1] = 9;  // the tensor's dimension count
  expect_error(f, "dimensions");
}

TEST(GGUFErrors, BadMetadataTypes) {
  Bytes f;
  f.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1).str("k").put<uint32_t>(42);
  expect_error(f, "invalid type 42");
  Bytes b;
  b.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1).str("flag").put<uint32_t>(7).put<uint8_t>(5);
  expect_error(b, "bool value 5");
  Bytes d;
  d.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(2);
  d.str("k").put<uint32_t>(4).put<uint32_t>(1).str("k").put<uint32_t>(4).put<uint32_t>(2);
  expect_error(d, "duplicate metadata key 'k'");
}

TEST(GGUFErrors, UnreadableFileIsAnError) {
  EXPECT_THROW(Model::load("/nonexistent/model.gguf"), Error);
  EXPECT_THROW(Model::load(test::temp_path("").string()), Error);  // a directory
}

// Model-level validation: writes a tiny model, then variants with one thing wrong.
class ModelErrors : public ::testing::Test {
 protected:
  std::string write_variant(const std::string& name, const std::function<void(GGUFWriter&)>& edit) {
    auto path = test::temp_path(name + ".gguf").string();
    GenModelOptions o;
    o.spec = parse_dims("embd=32,layers=1,heads=2,kv_heads=1,ff=64,vocab=400,ctx=64");
    o.threads = 1;
    std::string base = test::temp_path("base.gguf").string();
    generate_model(o, base);
    auto f = GGUFFile::open(base);
    GGUFWriter w;
    for (const auto& [k, v] : f->metadata())
      if (k != "general.alignment") w.copy_value(k, v);
    for (const auto& t : f->tensors()) w.add_tensor(t.name, t.type, t.dims, std::vector<uint8_t>(t.data, t.data + t.n_bytes));
    edit(w);
    w.write(path);
    return path;
  }
  void expect_load_error(const std::string& path, const std::string& needle) {
    try {
      Model::load(path);
      ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
    }
  }
};

TEST_F(ModelErrors, UnknownArchitectureIsNamed) {
  expect_load_error(write_variant("arch", [](GGUFWriter& w) { w.set_string("general.architecture", "mamba"); }),
                    "unsupported architecture 'mamba'");
}

TEST_F(ModelErrors, MissingHyperparameterIsNamed) {
  // Renaming the architecture key prefix leaves llama.* keys unread: block_count is missing.
  expect_load_error(write_variant("qwen", [](GGUFWriter& w) { w.set_string("general.architecture", "qwen2"); }),
                    "qwen2.embedding_length");
}

TEST_F(ModelErrors, WrongShapeAndMissingTensorsAreNamed) {
  expect_load_error(write_variant("shape", [](GGUFWriter& w) { w.set_uint32("llama.feed_forward_length", 48); }),
                    "blk.0.ffn_gate.weight' has shape");
  expect_load_error(write_variant("layers", [](GGUFWriter& w) { w.set_uint32("llama.block_count", 2); }),
                    "missing tensor 'blk.1.attn_norm.weight'");
  expect_load_error(write_variant("heads", [](GGUFWriter& w) { w.set_uint32("llama.attention.head_count_kv", 3); }),
                    "not a multiple");
}

TEST_F(ModelErrors, PromptLongerThanContextIsAnError) {
  auto model = Model::load(write_variant("ok", [](GGUFWriter&) {}));
  SessionOptions opt;
  opt.n_ctx = 16;
  opt.n_threads = 1;
  Session s(model, opt);
  std::vector<int32_t> prompt(17, 5);
  EXPECT_THROW(s.prefill(prompt), Error);
  std::vector<int32_t> bad = {1, 100000};
  EXPECT_THROW(s.prefill(bad), Error);
  EXPECT_THROW(PruneSchedule::parse("1:0.5", 1), Error);
}

}  // namespace
}  // namespace lazyllm
