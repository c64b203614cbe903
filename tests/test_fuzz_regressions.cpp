// Inputs the libFuzzer targets (fuzz/) found to crash, hang, allocate without bound or trip a
// sanitizer, kept as tests of the fix. Each test names the target and the input that found it
// (the inputs also sit in the target's seed corpus, fuzz/corpus/TARGET/).
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <string>

#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "lazyllm/lazyllm.h"
#include "model/gen_model.h"
#include "model/weights.h"
#include "test_util.h"

namespace lazyllm {
namespace {

// The tiny llama config_fuzz starts from (embedding 8, 2 heads, 1 KV head, 1 layer), written
// with `edit` applied; with_tensors false leaves the tensors out (metadata only).
std::string write_model(const std::string& name, const std::function<void(GGUFWriter&)>& edit, bool with_tensors) {
  const std::string base = test::temp_path("fuzz_base.gguf").string();
  GenModelOptions o;
  o.spec = parse_dims("embd=8,layers=1,heads=2,kv_heads=1,ff=16,vocab=400,ctx=64");
  o.threads = 1;
  generate_model(o, base);
  auto f = GGUFFile::open(base);
  GGUFWriter w;
  for (const auto& [k, v] : f->metadata())
    if (k != "general.alignment") w.copy_value(k, v);
  if (with_tensors)
    for (const auto& t : f->tensors()) w.add_tensor(t.name, t.type, t.dims, std::vector<uint8_t>(t.data, t.data + t.n_bytes));
  edit(w);
  const std::string path = test::temp_path(name + ".gguf").string();
  w.write(path);
  return path;
}

std::string load_error(const std::string& path) {
  try {
    Model::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded)";
}

std::string config_error(const std::string& path) {
  auto f = GGUFFile::open(path);
  try {
    read_model_config(*f, 400);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

// config_fuzz: "set @.block_count u32 16777216". read_model_config accepts block counts up to
// 2^24, and bind_weights reserved room for 8 vectors per layer (3 GiB) before looking for a
// single tensor; with the global tensors present it then built 2^24 empty layers (5 GiB more).
// A block count beyond the file's tensor count now fails before anything is allocated.
TEST(FuzzRegression, HugeBlockCountFailsBeforeAllocating) {
  const std::string bare = load_error(
      write_model("fuzz_layers_bare", [](GGUFWriter& w) { w.set_uint32("llama.block_count", 1u << 24); }, false));
  EXPECT_NE(bare.find("block_count 16777216 is more than the file's 0 tensors"), std::string::npos) << bare;
  // The bound with the model's 12 tensors present (2^24 layers here would cost gigabytes if the
  // check regressed; 13 shows the same bound cheaply).
  const std::string full =
      load_error(write_model("fuzz_layers", [](GGUFWriter& w) { w.set_uint32("llama.block_count", 13); }, true));
  EXPECT_NE(full.find("block_count 13 is more than the file's 12 tensors"), std::string::npos) << full;
  // A block count the tensors could hold still names the first missing tensor.
  const std::string two =
      load_error(write_model("fuzz_layers2", [](GGUFWriter& w) { w.set_uint32("llama.block_count", 2); }, true));
  EXPECT_NE(two.find("missing tensor 'blk.1.attn_norm.weight'"), std::string::npos) << two;
}

// config_fuzz: "set @.attention.key_length u32 65536" with head_count 65536. head size x head
// count was multiplied in int: signed overflow (UBSan), and a product that wrapped around could
// match embedding_length — 1024 x 4194305 = 2^32 + 1024 passed as an embedding of 1024.
TEST(FuzzRegression, HeadSizeTimesHeadCountDoesNotOverflow) {
  const std::string overflow = config_error(write_model("fuzz_heads", [](GGUFWriter& w) {
    w.set_uint32("llama.attention.key_length", 65536);
    w.set_uint32("llama.attention.head_count", 65536);
    w.set_uint32("llama.attention.head_count_kv", 65536);
  }, false));
  EXPECT_NE(overflow.find("does not fit embedding_length 8"), std::string::npos) << overflow;
  const std::string wrapped = config_error(write_model("fuzz_heads_wrap", [](GGUFWriter& w) {
    w.set_uint32("llama.embedding_length", 1024);
    w.set_uint32("llama.attention.key_length", 1024);
    w.set_uint32("llama.attention.head_count", 4194305);
    w.set_uint32("llama.attention.head_count_kv", 4194305);
    w.remove("llama.rope.dimension_count");  // (else its mismatch with the head size hides the wrap)
  }, false));
  EXPECT_NE(wrapped.find("head size 1024 does not fit embedding_length 1024 and head_count 4194305"), std::string::npos)
      << wrapped;
}

// Found beside the above: rope.dimension_count was narrowed to int before the comparison, so
// 2^32 + head size passed as the head size.
TEST(FuzzRegression, RopeDimensionCountIsNotNarrowed) {
  const std::string e = config_error(write_model("fuzz_rot", [](GGUFWriter& w) {
    w.set_uint64("llama.rope.dimension_count", (uint64_t{1} << 32) + 4);
  }, false));
  EXPECT_NE(e.find("partial rotary embeddings (rope.dimension_count 4294967300 != head size 4)"), std::string::npos)
      << e;
}

// config_fuzz: "set @.rope.freq_base f32 10001e39". The f32 value is +inf; it passed the
// "> 1" check and every RoPE angle would have been 0 or NaN. A rope base must be finite.
TEST(FuzzRegression, InfiniteRopeBaseIsRefused) {
  const std::string e = config_error(write_model("fuzz_rope_inf", [](GGUFWriter& w) {
    w.set_float32("llama.rope.freq_base", std::numeric_limits<float>::infinity());
  }, false));
  EXPECT_NE(e.find("rope.freq_base is out of range"), std::string::npos) << e;
}

}  // namespace
}  // namespace lazyllm
