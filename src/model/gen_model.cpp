#include "model/gen_model.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>

#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/rope.h"
#include "lazyllm/error.h"
#include "util/splitmix.h"
#include "util/thread_pool.h"

namespace lazyllm {
namespace {

// Uniform values with the given standard deviation; seeded per (tensor, row) so the output
// does not depend on the thread count.
void random_row(uint64_t seed, float std, float mean, float* out, int64_t n) {
  const float a = std * std::sqrt(3.0f);
  for (int64_t i = 0; i < n; ++i) {
    const double u = static_cast<double>(splitmix64(seed) >> 11) * 0x1.0p-53;
    out[i] = mean + static_cast<float>((2 * u - 1) * a);
  }
}

// A SentencePiece-style vocabulary: specials, the 256 byte tokens, single characters, then
// synthetic syllable words, so that any text tokenizes.
void synthetic_vocab(GGUFWriter& w, int n_vocab) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
    types.push_back(6);
  }
  const std::string sp = "\xE2\x96\x81";
  for (char c = 33; c < 127; ++c) tokens.push_back(std::string(1, c)), types.push_back(1);
  tokens.push_back(sp), types.push_back(1);
  static const char* kOnsets[] = {"", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "w", "th", "sh", "st"};
  static const char* kVowels[] = {"a", "e", "i", "o", "u", "ay", "ee", "oo"};
  static const char* kCodas[] = {"", "n", "t", "d", "s", "l", "r", "ng", "ck"};
  for (int round = 0; static_cast<int>(tokens.size()) < n_vocab; ++round) {
    for (const char* o : kOnsets)
      for (const char* v : kVowels)
        for (const char* c : kCodas) {
          if (static_cast<int>(tokens.size()) >= n_vocab) break;
          std::string word = std::string(o) + v + c;
          if (round > 0) word += std::to_string(round);
          tokens.push_back((round % 2 ? "" : sp) + word);
          types.push_back(1);
        }
  }
  tokens.resize(n_vocab);
  types.resize(n_vocab);
  std::vector<float> scores(n_vocab);
  for (int i = 0; i < n_vocab; ++i) scores[i] = -static_cast<float>(i);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_float32_array("tokenizer.ggml.scores", scores);
  w.set_int32_array("tokenizer.ggml.token_type", types);
  w.set_uint32("tokenizer.ggml.bos_token_id", 1);
  w.set_uint32("tokenizer.ggml.eos_token_id", 2);
  w.set_uint32("tokenizer.ggml.unknown_token_id", 0);
}

}  // namespace

std::vector<std::string> named_shapes() { return {"smollm-135m", "tinyllama-1.1b", "llama2-7b", "llama3-8b", "qwen2-0.5b"}; }

GenModelSpec named_shape(const std::string& n) {
  if (n == "smollm-135m") return {n, "llama", 576, 30, 9, 3, 1536, 49152, 2048, true, 10000.0f, false};
  if (n == "tinyllama-1.1b") return {n, "llama", 2048, 22, 32, 4, 5632, 32000, 2048, false, 10000.0f, false};
  if (n == "llama2-7b") return {n, "llama", 4096, 32, 32, 32, 11008, 32000, 4096, false, 10000.0f, false};
  if (n == "llama3-8b") return {n, "llama", 4096, 32, 32, 8, 14336, 128256, 8192, false, 500000.0f, true};
  if (n == "qwen2-0.5b") return {n, "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, true, 1000000.0f, false};
  std::string all;
  for (const auto& s : named_shapes()) all += (all.empty() ? "" : ", ") + s;
  throw Error("unknown shape '" + n + "' (known: " + all + ")");
}

GenModelSpec parse_dims(const std::string& spec) {
  GenModelSpec s;
  s.name = "custom";
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto eq = item.find('=');
    if (eq == std::string::npos) throw Error("--dims: expected KEY=VALUE, got '" + item + "'");
    const std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    auto num = [&]() {
      try {
        size_t used = 0;
        long x = std::stol(v, &used);
        if (used != v.size() || x <= 0 || x > (1 << 24)) throw std::invalid_argument("range");
        return static_cast<int>(x);
      } catch (const std::exception&) {
        throw Error("--dims: '" + k + "' needs a positive integer, got '" + v + "'");
      }
    };
    if (k == "embd") s.embd = num();
    else if (k == "layers") s.layers = num();
    else if (k == "heads") s.heads = num();
    else if (k == "kv_heads") s.kv_heads = num();
    else if (k == "ff") s.ff = num();
    else if (k == "vocab") s.vocab = num();
    else if (k == "ctx") s.ctx = num();
    else if (k == "arch") s.arch = v;
    else if (k == "tied") s.tied = v == "1" || v == "true";
    else if (k == "llama3_rope") s.llama3_rope = v == "1" || v == "true";
    else if (k == "rope_base") s.rope_base = static_cast<float>(std::stod(v));
    else throw Error("--dims: unknown key '" + k + "'");
  }
  return s;
}

void generate_model(const GenModelOptions& o, const std::string& path) {
  GenModelSpec s = o.spec;
  if (s.arch != "llama" && s.arch != "qwen2") throw Error("gen-model: unknown architecture '" + s.arch + "'");
  if (s.embd % s.heads != 0 || (s.embd / s.heads) % 2 != 0) throw Error("gen-model: embd must be a multiple of 2 * heads");
  if (s.heads % s.kv_heads != 0) throw Error("gen-model: heads must be a multiple of kv_heads");
  const int64_t block = dtype_info(o.dtype).block_elems;
  if (s.embd % block != 0 || s.ff % block != 0)
    throw Error("gen-model: embd and ff must be multiples of " + std::to_string(block) + " for " + std::string(dtype_name(o.dtype)));

  GGUFWriter w;
  const std::string& a = s.arch;
  if (!o.vocab_from.empty()) {
    auto vf = GGUFFile::open(o.vocab_from);
    for (const auto& [k, v] : vf->metadata())
      if (k.rfind("tokenizer.", 0) == 0) w.copy_value(k, v);
    s.vocab = static_cast<int>(vf->get_string_array("tokenizer.ggml.tokens").size());
  } else {
    synthetic_vocab(w, std::max(s.vocab, 400));
    s.vocab = std::max(s.vocab, 400);
  }
  w.set_string("general.architecture", a);
  w.set_string("general.name", "random " + s.name);
  w.set_uint32(a + ".context_length", s.ctx);
  w.set_uint32(a + ".embedding_length", s.embd);
  w.set_uint32(a + ".block_count", s.layers);
  w.set_uint32(a + ".feed_forward_length", s.ff);
  w.set_uint32(a + ".attention.head_count", s.heads);
  w.set_uint32(a + ".attention.head_count_kv", s.kv_heads);
  w.set_float32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_float32(a + ".rope.freq_base", s.rope_base);

  ThreadPool pool(o.threads > 0 ? o.threads : ThreadPool::default_threads());
  uint64_t tensor_index = 0;
  // A matrix of `rows` rows of `cols`, values with std 1/sqrt(cols) (activations stay O(1)).
  auto matrix = [&](const std::string& name, int64_t cols, int64_t rows, DType t, float gain) {
    const uint64_t id = ++tensor_index;
    w.add_tensor(name, t, {cols, rows}, [=, &pool](uint8_t* out) {
      const int64_t stride = row_bytes(t, cols);
      pool.parallel_for((rows + 63) / 64, [&](int64_t task, int) {
        std::vector<float> row(cols);
        for (int64_t r = task * 64; r < std::min(rows, task * 64 + 64); ++r) {
          random_row(o.seed * 0x100000001B3ull + id * 0x9E3779B1ull + static_cast<uint64_t>(r), gain / std::sqrt(float(cols)),
                     0.0f, row.data(), cols);
          quantize_row(t, row.data(), out + r * stride, cols);
        }
      });
    });
  };
  auto vector = [&](const std::string& name, int64_t n, float mean, float std) {
    const uint64_t id = ++tensor_index;
    w.add_tensor(name, DType::F32, {n}, [=](uint8_t* out) {
      std::vector<float> v(n);
      random_row(o.seed * 31 + id, std, mean, v.data(), n);
      std::memcpy(out, v.data(), n * sizeof(float));
    });
  };
  const int hd = s.embd / s.heads, kv_dim = s.kv_heads * hd;
  matrix("token_embd.weight", s.embd, s.vocab, o.dtype, std::sqrt(float(s.embd)));
  vector("output_norm.weight", s.embd, 1.0f, 0.05f);
  if (!s.tied) matrix("output.weight", s.embd, s.vocab, o.dtype, 1.0f);
  if (s.llama3_rope) {
    auto f = llama3_rope_factors(hd, s.rope_base, 8.0f, 1.0f, 4.0f, s.ctx);
    w.add_tensor("rope_freqs.weight", DType::F32, {hd / 2}, [f](uint8_t* out) { std::memcpy(out, f.data(), f.size() * 4); });
  }
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vector(p + "attn_norm.weight", s.embd, 1.0f, 0.05f);
    matrix(p + "attn_q.weight", s.embd, s.embd, o.dtype, 1.0f);
    matrix(p + "attn_k.weight", s.embd, kv_dim, o.dtype, 1.0f);
    matrix(p + "attn_v.weight", s.embd, kv_dim, o.dtype, 1.0f);
    matrix(p + "attn_output.weight", s.embd, s.embd, o.dtype, 1.0f);
    if (a == "qwen2") {
      vector(p + "attn_q.bias", s.embd, 0.0f, 0.02f);
      vector(p + "attn_k.bias", kv_dim, 0.0f, 0.02f);
      vector(p + "attn_v.bias", kv_dim, 0.0f, 0.02f);
    }
    vector(p + "ffn_norm.weight", s.embd, 1.0f, 0.05f);
    matrix(p + "ffn_gate.weight", s.embd, s.ff, o.dtype, 1.0f);
    matrix(p + "ffn_up.weight", s.embd, s.ff, o.dtype, 1.0f);
    matrix(p + "ffn_down.weight", s.ff, s.embd, o.dtype, 1.0f);
  }
  w.write(path);
}

}  // namespace lazyllm
