// Small random models of each architecture option, written as GGUF files for tests.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "format/gguf_writer.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/rope.h"
#include "lazyllm/lazyllm.h"
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

inline std::vector<uint8_t> encode(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> out(row_bytes(t, static_cast<int64_t>(x.size())));
  quantize_row(t, x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}

// Writes a random model (weights ~ N(0, 0.15^2 / fan-in scale), norms near 1) and loads it.
inline std::shared_ptr<Model> make_model(const ArchSpec& s, DType dtype, uint64_t seed = 42) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  GGUFWriter w;
  const std::string a = s.arch;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "test-" + s.name);
  w.set_uint32(a + ".context_length", s.ctx);
  w.set_uint32(a + ".embedding_length", s.embd);
  w.set_uint32(a + ".block_count", s.layers);
  w.set_uint32(a + ".feed_forward_length", s.ff);
  w.set_uint32(a + ".attention.head_count", s.heads);
  w.set_uint32(a + ".attention.head_count_kv", s.kv_heads);
  w.set_float32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_float32(a + ".rope.freq_base", s.rope_base);
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  for (int i = 3; i < s.vocab; ++i) {
    tokens.push_back("\xE2\x96\x81t" + std::to_string(i));
    scores.push_back(-static_cast<float>(i));
    types.push_back(1);
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_float32_array("tokenizer.ggml.scores", scores);
  w.set_int32_array("tokenizer.ggml.token_type", types);
  w.set_uint32("tokenizer.ggml.bos_token_id", 1);
  w.set_uint32("tokenizer.ggml.eos_token_id", 2);

  auto matrix = [&](const std::string& name, int cols, int rows, float scale) {
    std::vector<float> x(static_cast<size_t>(cols) * rows);
    for (auto& v : x) v = nd(rng) * scale;
    w.add_tensor(name, dtype, {cols, rows}, encode(dtype, x));
  };
  auto vec = [&](const std::string& name, int n, float mean, float noise) {
    std::vector<float> x(n);
    for (auto& v : x) v = mean + noise * nd(rng);
    w.add_tensor(name, DType::F32, {n}, encode(DType::F32, x));
  };
  const int hd = s.embd / s.heads, q_dim = s.embd, kv_dim = s.kv_heads * hd;
  matrix("token_embd.weight", s.embd, s.vocab, 1.0f);
  vec("output_norm.weight", s.embd, 1.0f, 0.1f);
  if (!s.tied) matrix("output.weight", s.embd, s.vocab, 0.3f);
  if (s.llama3_rope) {
    auto f = llama3_rope_factors(hd, s.rope_base, 8.0f, 1.0f, 4.0f, 64);
    w.add_tensor("rope_freqs.weight", DType::F32, {hd / 2}, encode(DType::F32, f));
  }
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vec(p + "attn_norm.weight", s.embd, 1.0f, 0.1f);
    matrix(p + "attn_q.weight", s.embd, q_dim, 0.5f / std::sqrt(float(s.embd)) * 4);
    matrix(p + "attn_k.weight", s.embd, kv_dim, 0.5f / std::sqrt(float(s.embd)) * 4);
    matrix(p + "attn_v.weight", s.embd, kv_dim, 1.0f / std::sqrt(float(s.embd)));
    matrix(p + "attn_output.weight", q_dim, s.embd, 1.0f / std::sqrt(float(q_dim)));
    if (a == "qwen2") {
      vec(p + "attn_q.bias", q_dim, 0.0f, 0.1f);
      vec(p + "attn_k.bias", kv_dim, 0.0f, 0.1f);
      vec(p + "attn_v.bias", kv_dim, 0.0f, 0.1f);
    }
    vec(p + "ffn_norm.weight", s.embd, 1.0f, 0.1f);
    matrix(p + "ffn_gate.weight", s.embd, s.ff, 1.0f / std::sqrt(float(s.embd)));
    matrix(p + "ffn_up.weight", s.embd, s.ff, 1.0f / std::sqrt(float(s.embd)));
    matrix(p + "ffn_down.weight", s.ff, s.embd, 1.0f / std::sqrt(float(s.ff)));
  }
  const auto path = temp_path(s.name + "-" + std::string(dtype_name(dtype)) + "-" + std::to_string(seed) + ".gguf");
  w.write(path.string());
  return Model::load(path.string());
}

}  // namespace lazyllm::test
