#include <cmath>
#include <string>

#include "format/gguf.h"
#include "model/weights.h"

namespace lazyllm {
namespace {

int positive_int(const GGUFFile& f, const std::string& key) {
  uint64_t v = f.get_uint(key);
  if (v == 0 || v > (1u << 24)) throw Error(f.name() + ": metadata '" + key + "' = " + std::to_string(v) + " is out of range");
  return static_cast<int>(v);
}

}  // namespace

ModelConfig read_model_config(const GGUFFile& f, int n_vocab) {
  ModelConfig c;
  c.architecture = std::string(f.get_string("general.architecture"));
  const std::string& a = c.architecture;
  if (a != "llama" && a != "qwen2")
    throw Error(f.name() + ": unsupported architecture '" + a + "' (supported: llama, qwen2)");
  c.name = f.get_string_or("general.name", "");
  c.n_vocab = n_vocab;
  c.n_embd = positive_int(f, a + ".embedding_length");
  c.n_layers = positive_int(f, a + ".block_count");
  c.n_heads = positive_int(f, a + ".attention.head_count");
  c.n_kv_heads = f.has(a + ".attention.head_count_kv") ? positive_int(f, a + ".attention.head_count_kv") : c.n_heads;
  c.n_ff = positive_int(f, a + ".feed_forward_length");
  c.n_ctx_train = positive_int(f, a + ".context_length");
  c.rms_eps = static_cast<float>(f.get_float_or(a + ".attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_base = static_cast<float>(f.get_float_or(a + ".rope.freq_base", 10000.0));
  c.head_dim = f.has(a + ".attention.key_length") ? positive_int(f, a + ".attention.key_length") : c.n_embd / c.n_heads;

  if (c.n_heads % c.n_kv_heads != 0)
    throw Error(f.name() + ": head_count " + std::to_string(c.n_heads) + " is not a multiple of head_count_kv " +
                std::to_string(c.n_kv_heads));
  // In 64 bits: head size and head count are each up to 2^24, and a product that wrapped around
  // in int could match embedding_length by accident.
  if (c.head_dim % 2 != 0 || int64_t{c.head_dim} * c.n_heads != c.n_embd)
    throw Error(f.name() + ": head size " + std::to_string(c.head_dim) + " does not fit embedding_length " +
                std::to_string(c.n_embd) + " and head_count " + std::to_string(c.n_heads));
  const uint64_t n_rot = f.get_uint_or(a + ".rope.dimension_count", c.head_dim);  // compared unnarrowed
  if (n_rot != static_cast<uint64_t>(c.head_dim))
    throw Error(f.name() + ": partial rotary embeddings (rope.dimension_count " + std::to_string(n_rot) +
                " != head size " + std::to_string(c.head_dim) + ") are not supported");
  if (c.head_dim > 1024) throw Error(f.name() + ": head size above 1024 is not supported");
  if (!(c.rms_eps > 0 && c.rms_eps < 1)) throw Error(f.name() + ": layer_norm_rms_epsilon is out of range");
  if (!(c.rope_base > 1) || !std::isfinite(c.rope_base)) throw Error(f.name() + ": rope.freq_base is out of range");

  // llama.cpp's converters permute Q/K for the interleaved rotation in `llama`; qwen2 uses NeoX.
  c.rope_neox = (a == "qwen2");
  c.qkv_bias = (a == "qwen2");

  std::string scaling = f.get_string_or(a + ".rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope_scaling = "linear";
    c.rope_scale_factor = static_cast<float>(f.get_float(a + ".rope.scaling.factor"));
    if (!(c.rope_scale_factor >= 1.0f && c.rope_scale_factor < 1024.0f))
      throw Error(f.name() + ": rope.scaling.factor is out of range");
  } else if (scaling != "none") {
    throw Error(f.name() + ": unsupported rope scaling type '" + scaling + "' (supported: none, linear, llama3)");
  }
  if (f.find_tensor("rope_freqs.weight")) c.rope_scaling = "llama3";  // per-pair factors from the converter
  c.rope_orig_ctx = static_cast<int>(f.get_uint_or(a + ".rope.scaling.original_context_length", c.n_ctx_train));
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  return c;
}

}  // namespace lazyllm
