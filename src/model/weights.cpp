#include "model/weights.h"

#include <string>

#include "format/gguf.h"
#include "kernels/cpu/quant.h"

namespace lazyllm {
namespace {

std::string shape_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

class Binder {
 public:
  Binder(const GGUFFile& f, ModelWeights& w) : f_(f), w_(w) {}

  const GGUFTensor* find(const std::string& name, std::vector<int64_t> dims, bool required) {
    const GGUFTensor* t = f_.find_tensor(name);
    if (!t) {
      if (required) throw Error(f_.name() + ": missing tensor '" + name + "' (expected shape " + shape_str(dims) + ")");
      return nullptr;
    }
    if (t->dims != dims)
      throw Error(f_.name() + ": tensor '" + name + "' has shape " + shape_str(t->dims) + ", expected " + shape_str(dims));
    return t;
  }

  // A matrix of `rows` rows of `cols` values (ggml dims {cols, rows}).
  WeightView matrix(const std::string& name, int64_t cols, int64_t rows, bool required = true) {
    const GGUFTensor* t = find(name, {cols, rows}, required);
    if (!t) return {};
    return WeightView{t->type, t->data, rows, cols};
  }

  // A float vector; non-f32 storage is converted once and kept in the weights.
  const float* vec(const std::string& name, int64_t n, bool required = true) {
    const GGUFTensor* t = find(name, {n}, required);
    if (!t) return nullptr;
    if (t->type == DType::F32 && reinterpret_cast<uintptr_t>(t->data) % alignof(float) == 0)
      return reinterpret_cast<const float*>(t->data);
    auto& v = w_.owned.emplace_back(static_cast<size_t>(n));
    dequantize_row(t->type, t->data, v.data(), n);
    return v.data();
  }

 private:
  const GGUFFile& f_;
  ModelWeights& w_;
};

}  // namespace

std::unique_ptr<ModelWeights> bind_weights(const GGUFFile& f, const ModelConfig& c) {
  // block_count may be up to 2^24: one beyond the file's tensor count is an error before anything
  // is allocated per layer (a missing layer's tensors are named below).
  if (static_cast<size_t>(c.n_layers) > f.tensors().size())
    throw Error(f.name() + ": block_count " + std::to_string(c.n_layers) + " is more than the file's " +
                std::to_string(f.tensors().size()) + " tensors");
  auto w = std::make_unique<ModelWeights>();
  w->owned.reserve(4 + 8 * static_cast<size_t>(c.n_layers));  // keep pointers into `owned` stable
  Binder b(f, *w);
  const int64_t d = c.n_embd, q_dim = int64_t{c.n_heads} * c.head_dim, kv_dim = int64_t{c.n_kv_heads} * c.head_dim;
  w->token_embd = b.matrix("token_embd.weight", d, c.n_vocab);
  w->output_norm = b.vec("output_norm.weight", d);
  w->output = c.tied_embeddings ? w->token_embd : b.matrix("output.weight", d, c.n_vocab);
  if (const GGUFTensor* rf = f.find_tensor("rope_freqs.weight")) {
    b.find("rope_freqs.weight", {c.head_dim / 2}, true);
    w->rope_freq_factors.resize(c.head_dim / 2);
    dequantize_row(rf->type, rf->data, w->rope_freq_factors.data(), c.head_dim / 2);
    for (float x : w->rope_freq_factors)
      if (!(x > 0)) throw Error(f.name() + ": tensor 'rope_freqs.weight' holds a non-positive factor");
  }
  w->layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& L = w->layers[l];
    L.attn_norm = b.vec(p + "attn_norm.weight", d);
    L.wq = b.matrix(p + "attn_q.weight", d, q_dim);
    L.wk = b.matrix(p + "attn_k.weight", d, kv_dim);
    L.wv = b.matrix(p + "attn_v.weight", d, kv_dim);
    L.wo = b.matrix(p + "attn_output.weight", q_dim, d);
    if (c.qkv_bias) {
      L.bq = b.vec(p + "attn_q.bias", q_dim);
      L.bk = b.vec(p + "attn_k.bias", kv_dim);
      L.bv = b.vec(p + "attn_v.bias", kv_dim);
    }
    L.ffn_norm = b.vec(p + "ffn_norm.weight", d);
    L.w_gate = b.matrix(p + "ffn_gate.weight", d, c.n_ff);
    L.w_up = b.matrix(p + "ffn_up.weight", d, c.n_ff);
    L.w_down = b.matrix(p + "ffn_down.weight", c.n_ff, d);
  }
  return w;
}

}  // namespace lazyllm
