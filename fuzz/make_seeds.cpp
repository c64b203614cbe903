// Writes a few small valid GGUF files (the fuzzer's seed corpus) into the given directory.
// Generated on the spot by scripts/fuzz.sh: no binary seeds are kept in the repository.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "format/gguf_writer.h"
#include "lazyllm/error.h"
#include "model/gen_model.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: gguf_fuzz_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  try {
    // Tiny models in every weight type, each under the fuzzer's 64 KiB input limit (the
    // synthetic vocabulary alone is ~10 KiB).
    lazyllm::GenModelOptions o;
    o.threads = 1;
    auto model = [&](const char* dims, lazyllm::DType t, const std::string& name) {
      o.spec = lazyllm::parse_dims(dims);
      o.dtype = t;
      lazyllm::generate_model(o, dir + "/" + name + ".gguf");
    };
    const char* small = "embd=8,layers=1,heads=2,kv_heads=1,ff=16,vocab=400,ctx=64";
    const char* blocks = "embd=32,layers=1,heads=2,kv_heads=1,ff=32,vocab=400,ctx=64";
    model(small, lazyllm::DType::F32, "tiny-f32");
    model(small, lazyllm::DType::F16, "tiny-f16");
    model(small, lazyllm::DType::BF16, "tiny-bf16");
    model(blocks, lazyllm::DType::Q8_0, "tiny-q8_0");
    model(blocks, lazyllm::DType::Q4_0, "tiny-q4_0");
    model("embd=8,layers=1,heads=2,kv_heads=1,ff=16,vocab=400,ctx=64,arch=qwen2,tied=1", lazyllm::DType::F32, "tiny-qwen2");
    model("embd=8,layers=1,heads=2,kv_heads=1,ff=16,vocab=400,ctx=64,llama3_rope=1,rope_base=500000",
          lazyllm::DType::F16, "tiny-llama3");

    // Metadata of every kind, no tensors.
    lazyllm::GGUFWriter w;
    w.set_uint8("a.u8", 200);
    w.set_int8("a.i8", -100);
    w.set_uint16("a.u16", 60000);
    w.set_int16("a.i16", -30000);
    w.set_uint32("a.u32", 7);
    w.set_int32("a.i32", -5);
    w.set_uint64("a.u64", 1ull << 40);
    w.set_int64("a.i64", -(1ll << 40));
    w.set_float32("a.f32", 0.5f);
    w.set_float64("a.f64", 0.25);
    w.set_bool("a.bool", true);
    w.set_string("a.str", "hello");
    w.set_string_array("a.strs", {"x", "yz", ""});
    w.set_float32_array("a.floats", {1, 2, 3});
    w.set_int32_array("a.ints", {4, 5});
    const double f64s[] = {1.5, -2.5};
    w.set_array("a.f64s", lazyllm::GGUFType::FLOAT64, f64s, 2);
    const uint8_t bools[] = {1, 0};
    w.set_array("a.bools", lazyllm::GGUFType::BOOL, bools, 2);
    w.write(dir + "/metadata-only.gguf");

    // Tensors of several ranks and types, no other metadata.
    lazyllm::GGUFWriter t;
    t.add_tensor("v", lazyllm::DType::F32, {3}, std::vector<uint8_t>(12, 1));
    t.add_tensor("m", lazyllm::DType::F16, {2, 3}, std::vector<uint8_t>(12, 2));
    t.add_tensor("c", lazyllm::DType::Q8_0, {32, 1, 2}, std::vector<uint8_t>(68, 3));
    t.add_tensor("h", lazyllm::DType::Q4_K, {256, 1, 1, 1}, std::vector<uint8_t>(144, 4));
    t.add_tensor("k", lazyllm::DType::Q6_K, {256}, std::vector<uint8_t>(210, 5));
    t.add_tensor("q", lazyllm::DType::Q4_0, {32, 2}, std::vector<uint8_t>(36, 6));
    t.add_tensor("b", lazyllm::DType::BF16, {1, 1, 5}, std::vector<uint8_t>(10, 7));
    t.write(dir + "/tensors-only.gguf");
  } catch (const lazyllm::Error& e) {
    std::fprintf(stderr, "gguf_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
