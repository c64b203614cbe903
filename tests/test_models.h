// Small random models of each architecture option, written as GGUF files for tests.
#pragma once
#include <cstdint>
#include <vector>
#include <span>
#include <random>
#include <algorithm>

#include <memory>
#include <string>

#include "lazyllm/lazyllm.h"
#include "model/gen_model.h"
#include "test_util.h"

namespace lazyllm::test {

struct ArchSpec {
  std::string name;
  std::string arch = "llama";
  int embd = 64, layers = 4, heads = 4, kv_heads = 2, ff = 96, vocab = 160, ctx = 256;
  bool tied = false;
  bool llama3_rope = false;
  float rope_base = 10000.0f;
};

inline std::vector<ArchSpec> arch_variants() {
  std::vector<ArchSpec> v;
  v.push_back({.name = "llama_gqa"});
  v.push_back({.name = "llama_mha_tied", .kv_heads = 4, .tied = true});
  v.push_back({.name = "qwen2_qkv_bias", .arch = "qwen2", .kv_heads = 1});
  v.push_back({.name = "llama3_rope_scaling", .ctx = 512, .llama3_rope = true, .rope_base = 500000.0f});
  return v;
}

// Writes a random model of this shape with gen-model's generator and loads it (q4_k_m: dtype
// Q4_K with Q4_K_M's Q6_K matrices).
inline std::shared_ptr<Model> make_model(const ArchSpec& s, DType dtype, uint64_t seed = 42, bool q4_k_m = false) {
  GenModelOptions o;
  o.spec = {s.name, s.arch, s.embd, s.layers, s.heads, s.kv_heads, s.ff, s.vocab, s.ctx, s.tied, s.rope_base, s.llama3_rope};
  o.dtype = dtype;
  o.q4_k_m = q4_k_m;
  o.seed = seed;
  o.threads = 2;
  const std::string type = q4_k_m ? "q4_K_M" : std::string(dtype_name(dtype));
  const auto path = temp_path(s.name + "-" + type + "-" + std::to_string(seed) + ".gguf");
  generate_model(o, path.string());
  return Model::load(path.string());
}

// n random token ids in [3, n_vocab), reproducible from the seed (ids 0-2 are special).
inline std::vector<int32_t> random_tokens(int n, int n_vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> d(3, n_vocab - 1);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = d(rng);
  return t;
}

// Every layer from 1 at keep 1.0: prunes nothing (with force_selection, selects at every layer).
inline PruneSchedule keep_all_schedule(int n_layers) {
  PruneSchedule s;
  for (int l = 1; l < n_layers; ++l) s.points.push_back({l, 1.0});
  return s;
}

inline int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace lazyllm::test
