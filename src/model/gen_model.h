// Random-weight models of named shapes, written as valid GGUF files, so speed can be
// measured without downloading weights.
//
// Weights are uniform with mean 0 and standard deviation 1/sqrt(row length) (token embeddings:
// 1), so activations stay O(1) through every layer; norms are 1 +- small noise; biases small.
// The values depend only on the seed (not on the thread count). 2-D matrices, token_embd
// included, are stored in the chosen dtype; norms, biases and rope factors stay f32.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/dtype.h"

namespace lazyllm {

// Keep the field order: tests build specs with positional aggregate initialization.
struct GenModelSpec {
  std::string name;
  std::string arch = "llama";  // llama or qwen2 (QKV bias, NeoX rope)
  int embd = 64, layers = 2, heads = 4, kv_heads = 4, ff = 128, vocab = 512, ctx = 256;
  bool tied = false;           // no output.weight: the output projection is token_embd
  float rope_base = 10000.0f;
  bool llama3_rope = false;    // writes rope_freqs.weight (factor 8, low 1, high 4, original context = ctx)
};

// Named shapes: smollm-135m, tinyllama-1.1b, llama2-7b, llama3-8b, qwen2-0.5b, llama2-70b,
// llama3-70b.
GenModelSpec named_shape(const std::string& name);
std::vector<std::string> named_shapes();
// Parses "embd=64,layers=2,heads=4,kv_heads=2,ff=128,vocab=512,ctx=256[,arch=qwen2][,tied=1]
// [,rope_base=..][,llama3_rope=1][,name=..]" on top of the defaults (kv_heads defaults to
// heads). Throws Error naming a bad key or value.
GenModelSpec parse_dims(const std::string& spec);

// The synthetic vocabulary has at least this many tokens (specials, the 256 byte tokens and
// printable ASCII come first); a smaller requested vocab is raised to it.
constexpr int kMinSyntheticVocab = 400;

struct GenModelOptions {
  GenModelSpec spec;
  DType dtype = DType::F32;     // type of the 2-D weight matrices
  // With dtype Q4_K: the mix of the Q4_K_M files people download, Q6_K for the output matrix and
  // for V and down in the first and last eighth of the layers and every third layer between.
  bool q4_k_m = false;
  std::string vocab_from;       // copy tokenizer.* metadata from this GGUF (vocab = its size)
  uint64_t seed = 1;
  int threads = 0;              // 0: all cores
  // false: the header, the tensor table and the rope factors only, the weights left as zeros (a
  // sparse file; see GGUFWriter::write), for tests of loading and memory planning at full size.
  bool tensor_data = true;
};

// Writes the model; throws Error on bad settings or I/O failure. Returns the file's size.
// Memory stays bounded whatever the model's size: tensors are produced and written a chunk of
// rows at a time (GGUFWriter), two chunks of at most 32 MiB in flight.
uint64_t generate_model(const GenModelOptions& options, const std::string& path);

}  // namespace lazyllm
