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

// A file of tensors given as (name, dims, ggml type, offset) over `data_bytes` of data.
struct TensorInfo {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = 0;
  uint64_t offset = 0;
};
Bytes tensor_file(const std::vector<TensorInfo>& ts, size_t data_bytes = 64) {
  Bytes f;
  f.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(ts.size()).put<uint64_t>(0);
  for (const auto& t : ts) {
    f.str(t.name).put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) f.put<uint64_t>(d);
    f.put<uint32_t>(t.type).put<uint64_t>(t.offset);
  }
  f.pad();
  f.b.resize(f.b.size() + data_bytes, 0);
  return f;
}

TEST(GGUFErrors, HugeAndZeroDimensions) {
  expect_error(tensor_file({{"w", {uint64_t{1} << 41}}}), "invalid dimension 2199023255552");
  expect_error(tensor_file({{"w", {8, 0}}}), "invalid dimension 0");
  expect_error(tensor_file({{"w", {}}}), "has 0 dimensions");
  expect_error(tensor_file({{"w", {1, 1, 1, 1, 1}}}), "has 5 dimensions");
  // Element count overflowing int64.
  expect_error(tensor_file({{"w", {uint64_t{1} << 40, uint64_t{1} << 30}}}), "invalid dimension");
  // 2^62 f32 elements: the byte size (2^64) would wrap to 0 and pass a naive range check.
  expect_error(tensor_file({{"w", {uint64_t{1} << 40, uint64_t{1} << 22}}}), "larger than the whole file");
  expect_error(tensor_file({{"w", {uint64_t{1} << 40, uint64_t{1} << 21, 2}}}), "larger than the whole file");
  // Large but representable: simply beyond the end of this small file.
  expect_error(tensor_file({{"w", {16, 2}}}), "beyond the end of the file");
}

TEST(GGUFErrors, BadTensorOffsets) {
  expect_error(tensor_file({{"w", {8}, 0, 64}}), "beyond the end of the file");
  expect_error(tensor_file({{"w", {8}, 0, 32}}, 63), "beyond the end of the file");  // 1 byte short
  expect_error(tensor_file({{"w", {8}, 0, UINT64_MAX - 31}}), "beyond the end of the file");  // offset + size wraps
  expect_error(tensor_file({{"w", {8}, 0, 16}}), "offset is not aligned");
  // Two tensors may not share a name.
  expect_error(tensor_file({{"w", {8}, 0, 0}, {"w", {8}, 0, 32}}), "duplicate tensor name 'w'");
  // An offset aligned to the declared alignment, not to 32.
  Bytes f;
  f.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(1).put<uint64_t>(1);
  f.str("general.alignment").put<uint32_t>(4).put<uint32_t>(64);
  f.str("w").put<uint32_t>(1).put<uint64_t>(8).put<uint32_t>(0).put<uint64_t>(32);
  f.pad(64);
  f.b.resize(f.b.size() + 128, 0);
  expect_error(f, "offset is not aligned");
  for (uint32_t bad : {0u, 3u, 48u}) {
    Bytes g;
    g.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
    g.str("general.alignment").put<uint32_t>(4).put<uint32_t>(bad);
    expect_error(g, "general.alignment must be a power of two");
  }
  Bytes h;  // alignment of the wrong type
  h.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1);
  h.str("general.alignment").put<uint32_t>(8).str("32");
  expect_error(h, "general.alignment must be a power of two");
}

TEST(GGUFErrors, BadArrays) {
  Bytes n;  // arrays of arrays
  n.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1).str("arr");
  n.put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(1);
  expect_error(n, "array 'arr' is nested");
  Bytes s;  // 2^60 strings
  s.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1).str("strs");
  s.put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(uint64_t{1} << 60).put<uint64_t>(0);
  expect_error(s, "array 'strs' claims 1152921504606846976 strings");
  Bytes l;  // a string inside an array longer than the file
  l.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1).str("strs");
  l.put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(1).str("abc", uint64_t{1} << 60);
  expect_error(l, "beyond the end");
  Bytes t;  // an unknown element type
  t.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1).str("arr");
  t.put<uint32_t>(9).put<uint32_t>(13).put<uint64_t>(1);
  expect_error(t, "invalid element type 13");
  Bytes u;  // 2^62 u64 elements: the byte count would overflow
  u.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(1).str("arr");
  u.put<uint32_t>(9).put<uint32_t>(10).put<uint64_t>(uint64_t{1} << 62);
  expect_error(u, "more than the file holds");
}

// Every cut of a writer-produced file holding every metadata type, arrays and tensors.
TEST(GGUFErrors, EveryTruncationOfARichFileIsAnError) {
  GGUFWriter w;
  w.set_uint8("u8", 1);
  w.set_int8("i8", -1);
  w.set_uint16("u16", 2);
  w.set_int16("i16", -2);
  w.set_uint32("u32", 3);
  w.set_int32("i32", -3);
  w.set_uint64("u64", 4);
  w.set_int64("i64", -4);
  w.set_float32("f32", 0.5f);
  w.set_float64("f64", 0.25);
  w.set_bool("b", true);
  w.set_string("s", "text");
  w.set_string_array("sa", {"a", "bc", ""});
  w.set_float32_array("fa", {1, 2});
  w.set_int32_array("ia", {3, 4, 5});
  w.add_tensor("t0", DType::F32, {8, 2}, std::vector<uint8_t>(64, 1));
  w.add_tensor("t1", DType::Q8_0, {32}, std::vector<uint8_t>(34, 2));
  w.add_tensor("t2", DType::F16, {3}, std::vector<uint8_t>(6, 3));
  const auto path = test::temp_path("rich.gguf").string();
  w.write(path);
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  auto whole = GGUFFile::parse(bytes.data(), bytes.size());
  const GGUFTensor& last = whole->tensors().back();
  const size_t data_end = static_cast<size_t>(last.data - bytes.data()) + static_cast<size_t>(last.n_bytes);
  ASSERT_LT(data_end, bytes.size());  // the last tensor is followed by padding
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    // A copy of exactly `cut` bytes, so ASan sees any read past the end.
    std::vector<uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    if (cut < data_end) {
      EXPECT_THROW(GGUFFile::parse(part.data(), part.size()), Error) << "cut at " << cut;
    } else {
      // Only the trailing padding is missing: every byte the file describes is there.
      EXPECT_EQ(GGUFFile::parse(part.data(), part.size())->tensors().size(), 3u) << "cut at " << cut;
    }
  }
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

TEST_F(ModelErrors, MissingQwen2BiasIsNamed) {
  // The llama model declared as qwen2 (hyperparameters copied): the QKV biases are missing.
  auto path = write_variant("qwen-bias", [](GGUFWriter& w) {
    w.set_string("general.architecture", "qwen2");
    const std::pair<const char*, uint32_t> keys[] = {{"context_length", 64}, {"embedding_length", 32}, {"block_count", 1},
                                                     {"feed_forward_length", 64}, {"attention.head_count", 2},
                                                     {"attention.head_count_kv", 1}};
    for (const auto& [k, v] : keys) w.set_uint32(std::string("qwen2.") + k, v);
  });
  expect_load_error(path, "missing tensor 'blk.0.attn_q.bias'");
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
