// Writes a few small valid GGUF files (the fuzzer's seed corpus) into the given directory.
#include <cstdio>
#include <string>

#include "format/gguf_writer.h"
#include "model/gen_model.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  lazyllm::GenModelOptions o;
  o.spec = lazyllm::parse_dims("embd=32,layers=1,heads=2,kv_heads=1,ff=64,vocab=400,ctx=64");
  o.threads = 1;
  for (auto [name, t] : {std::pair{"f32", lazyllm::DType::F32}, {"q8_0", lazyllm::DType::Q8_0}, {"q4_0", lazyllm::DType::Q4_0}}) {
    o.dtype = t;
    lazyllm::generate_model(o, dir + "/tiny-" + name + ".gguf");
  }
  lazyllm::GGUFWriter w;  // metadata of every kind, no tensors
  w.set_uint32("a.u32", 7);
  w.set_uint64("a.u64", 1ull << 40);
  w.set_int32("a.i32", -5);
  w.set_float32("a.f32", 0.5f);
  w.set_bool("a.bool", true);
  w.set_string("a.str", "hello");
  w.set_string_array("a.strs", {"x", "yz", ""});
  w.set_float32_array("a.floats", {1, 2, 3});
  w.set_int32_array("a.ints", {4, 5});
  w.write(dir + "/metadata-only.gguf");
  return 0;
}
