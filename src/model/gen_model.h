// Random-weight models of named shapes, written as valid GGUF files, so speed can be
// measured without downloading weights.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/dtype.h"

namespace lazyllm {

struct GenModelSpec {
  std::string name;
  std::string arch = "llama";  // llama or qwen2 (QKV bias, NeoX rope)
  int embd = 64, layers = 2, heads = 4, kv_heads = 4, ff = 128, vocab = 512, ctx = 256;
  bool tied = false;
  float rope_base = 10000.0f;
  bool llama3_rope = false;  // writes rope_freqs.weight (factor 8, low 1, high 4)
};

// Named shapes: smollm-135m, tinyllama-1.1b, llama2-7b, llama3-8b, qwen2-0.5b.
GenModelSpec named_shape(const std::string& name);
std::vector<std::string> named_shapes();
// Parses "embd=64,layers=2,heads=4,kv_heads=2,ff=128,vocab=512,ctx=256[,arch=qwen2][,tied=1]
// [,rope_base=..][,llama3_rope=1]" on top of the defaults.
GenModelSpec parse_dims(const std::string& spec);

struct GenModelOptions {
  GenModelSpec spec;
  DType dtype = DType::F32;     // type of the 2-D weight matrices
  std::string vocab_from;       // copy tokenizer.* metadata from this GGUF (vocab = its size)
  uint64_t seed = 1;
  int threads = 0;
};

// Writes the model; throws Error on bad settings or I/O failure.
void generate_model(const GenModelOptions& options, const std::string& path);

}  // namespace lazyllm
