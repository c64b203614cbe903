#include "model/gen_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <queue>
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

const std::string kSpace = "\xE2\x96\x81";  // SentencePiece's word-start marker

// Uniform values with the given standard deviation; seeded per (tensor, row) so the output
// does not depend on the thread count or on how the writer chunks a tensor.
void random_row(uint64_t seed, float sd, float mean, float* out, int64_t n) {
  const float a = sd * std::sqrt(3.0f);
  for (int64_t i = 0; i < n; ++i) {
    const double u = static_cast<double>(splitmix64(seed) >> 11) * 0x1.0p-53;
    out[i] = mean + static_cast<float>((2 * u - 1) * a);
  }
}

// Synthetic word pieces, most likely first, under a toy model of English spelling: letters
// by their English frequency, with a bonus for alternating vowels and consonants. A piece is a
// word start ("▁" + letters, the first one possibly upper case) or a continuation (letters).
// A piece's probability is below its prefix's, so the set is prefix-closed: SentencePiece's
// pair merges can build every piece, and ordinary text comes out as word-sized tokens.
struct Pieces {
  std::vector<std::string> text;
  std::vector<float> score;  // log-probability (the SentencePiece score)
};

Pieces synthetic_pieces(size_t n) {
  static const char kLetters[] = "etaoinshrdlcumwfgypbvkjxqz";
  static const double kFreq[] = {12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8,
                                 2.4,  2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1};
  auto is_vowel = [](char c) { return std::strchr("aeiouAEIOU", c) != nullptr; };
  // Extension letters for each context, best first: 0 after a vowel, 1 after a consonant,
  // 2 after the word-start marker (lower and upper case).
  struct Ext { char c; double logp; };
  std::vector<Ext> ext[3];
  for (int i = 0; i < 26; ++i) {
    const char c = kLetters[i];
    const double p = kFreq[i] / 100.0;
    ext[0].push_back({c, std::log(p * (is_vowel(c) ? 0.5 : 1.6))});
    ext[1].push_back({c, std::log(p * (is_vowel(c) ? 1.6 : 0.6))});
    ext[2].push_back({c, std::log(p)});
    ext[2].push_back({static_cast<char>(c - 'a' + 'A'), std::log(p * 0.15)});
  }
  for (auto& e : ext) std::stable_sort(e.begin(), e.end(), [](const Ext& a, const Ext& b) { return a.logp > b.logp; });

  // Best-first enumeration. The queue holds, for each expanded node, its next unvisited child
  // (children are sorted), so it stays as small as the output.
  struct Node { std::string s; double logp; int ctx; };
  std::vector<Node> nodes;
  struct Cand {
    double logp;
    size_t parent;
    size_t rank;
    bool operator<(const Cand& o) const { return logp < o.logp || (logp == o.logp && parent > o.parent); }
  };
  std::priority_queue<Cand> q;
  auto push_child = [&](size_t parent, size_t rank) {
    const auto& e = ext[nodes[parent].ctx];
    if (rank < e.size() && nodes[parent].s.size() < 16) q.push({nodes[parent].logp + e[rank].logp, parent, rank});
  };
  // Roots (already in the vocabulary as single characters): "▁" and each lower-case letter
  // as the start of a continuation piece (less likely than a word start).
  nodes.push_back({kSpace, 0.0, 2});
  for (int i = 0; i < 26; ++i) nodes.push_back({std::string(1, kLetters[i]), std::log(kFreq[i] / 100.0 * 0.4), is_vowel(kLetters[i]) ? 0 : 1});
  for (size_t i = 0; i < nodes.size(); ++i) push_child(i, 0);

  Pieces out;
  while (out.text.size() < n && !q.empty()) {
    const Cand c = q.top();
    q.pop();
    push_child(c.parent, c.rank + 1);
    const Ext& e = ext[nodes[c.parent].ctx][c.rank];
    nodes.push_back({nodes[c.parent].s + e.c, c.logp, is_vowel(e.c) ? 0 : 1});
    push_child(nodes.size() - 1, 0);
    out.text.push_back(nodes.back().s);
    out.score.push_back(static_cast<float>(c.logp));
  }
  return out;
}

// A SentencePiece-style vocabulary (tokenizer.ggml.model = llama): <unk>, <s>, </s>, the 256
// byte tokens, printable ASCII and "▁", then synthetic word pieces, so that any text tokenizes.
void synthetic_vocab(GGUFWriter& w, int n_vocab) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};  // unknown, control, control
  std::vector<float> scores = {0, 0, 0};
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf), types.push_back(6), scores.push_back(0);  // byte
  }
  tokens.push_back(kSpace), types.push_back(1), scores.push_back(-1);
  for (char c = 33; c < 127; ++c) {
    const bool lower = c >= 'a' && c <= 'z';
    tokens.push_back(std::string(1, c)), types.push_back(1), scores.push_back(lower ? -4.0f : -8.0f);
  }
  const size_t fixed = tokens.size();
  if (static_cast<size_t>(n_vocab) > fixed) {
    Pieces p = synthetic_pieces(static_cast<size_t>(n_vocab) - fixed);
    for (size_t i = 0; i < p.text.size(); ++i) tokens.push_back(p.text[i]), types.push_back(1), scores.push_back(p.score[i]);
  }
  // The enumeration only stops early for absurd sizes; pad with distinct numbered pieces.
  for (int i = 0; static_cast<int>(tokens.size()) < n_vocab; ++i)
    tokens.push_back(kSpace + "<extra_" + std::to_string(i) + ">"), types.push_back(1), scores.push_back(-1e4f);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_float32_array("tokenizer.ggml.scores", scores);
  w.set_int32_array("tokenizer.ggml.token_type", types);
  w.set_uint32("tokenizer.ggml.bos_token_id", 1);
  w.set_uint32("tokenizer.ggml.eos_token_id", 2);
  w.set_uint32("tokenizer.ggml.unknown_token_id", 0);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
}

void check_spec(const GenModelSpec& s, DType dtype) {
  auto fail = [](const std::string& m) { throw Error("gen-model: " + m); };
  if (s.arch != "llama" && s.arch != "qwen2") fail("unknown architecture '" + s.arch + "' (supported: llama, qwen2)");
  const std::pair<const char*, int> dims[] = {{"embd", s.embd}, {"layers", s.layers}, {"heads", s.heads},
                                              {"kv_heads", s.kv_heads}, {"ff", s.ff}, {"vocab", s.vocab}, {"ctx", s.ctx}};
  for (const auto& [k, v] : dims)
    if (v <= 0 || v > (1 << 24)) fail(std::string(k) + " = " + std::to_string(v) + " is out of range");
  if (s.embd % s.heads != 0 || (s.embd / s.heads) % 2 != 0)
    fail("embd " + std::to_string(s.embd) + " must be a multiple of 2 * heads (" + std::to_string(2 * s.heads) + ")");
  if (s.heads % s.kv_heads != 0)
    fail("heads " + std::to_string(s.heads) + " must be a multiple of kv_heads " + std::to_string(s.kv_heads));
  if (!(s.rope_base > 1.0f && std::isfinite(s.rope_base))) fail("rope_base must be above 1");
  const int64_t block = dtype_info(dtype).block_elems;
  if (s.embd % block != 0 || s.ff % block != 0)
    fail("embd (" + std::to_string(s.embd) + ") and ff (" + std::to_string(s.ff) + ") must be multiples of " +
         std::to_string(block) + " for " + std::string(dtype_name(dtype)));
}

}  // namespace

std::vector<std::string> named_shapes() {
  return {"smollm-135m", "tinyllama-1.1b", "llama2-7b", "llama3-8b", "qwen2-0.5b", "llama2-70b", "llama3-70b"};
}

GenModelSpec named_shape(const std::string& n) {
  if (n == "smollm-135m") return {n, "llama", 576, 30, 9, 3, 1536, 49152, 2048, true, 10000.0f, false};
  if (n == "tinyllama-1.1b") return {n, "llama", 2048, 22, 32, 4, 5632, 32000, 2048, false, 10000.0f, false};
  if (n == "llama2-7b") return {n, "llama", 4096, 32, 32, 32, 11008, 32000, 4096, false, 10000.0f, false};
  if (n == "llama3-8b") return {n, "llama", 4096, 32, 32, 8, 14336, 128256, 8192, false, 500000.0f, true};
  if (n == "llama2-70b") return {n, "llama", 8192, 80, 64, 8, 28672, 32000, 4096, false, 10000.0f, false};
  if (n == "llama3-70b") return {n, "llama", 8192, 80, 64, 8, 28672, 128256, 8192, false, 500000.0f, true};
  if (n == "qwen2-0.5b") return {n, "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, true, 1000000.0f, false};
  std::string all;
  for (const auto& s : named_shapes()) all += (all.empty() ? "" : ", ") + s;
  throw Error("unknown shape '" + n + "' (known: " + all + ")");
}

GenModelSpec parse_dims(const std::string& spec) {
  GenModelSpec s;
  s.name = "custom";
  bool kv_given = false;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string::npos) throw Error("--dims: expected KEY=VALUE, got '" + item + "'");
    const std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    auto num = [&]() {
      size_t used = 0;
      long x = 0;
      try {
        x = std::stol(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != v.size() || x <= 0 || x > (1 << 24))
        throw Error("--dims: '" + k + "' needs a positive integer, got '" + v + "'");
      return static_cast<int>(x);
    };
    auto flag = [&]() {
      if (v == "1" || v == "true") return true;
      if (v == "0" || v == "false") return false;
      throw Error("--dims: '" + k + "' needs 0 or 1, got '" + v + "'");
    };
    if (k == "embd") s.embd = num();
    else if (k == "layers") s.layers = num();
    else if (k == "heads") s.heads = num();
    else if (k == "kv_heads") s.kv_heads = num(), kv_given = true;
    else if (k == "ff") s.ff = num();
    else if (k == "vocab") s.vocab = num();
    else if (k == "ctx") s.ctx = num();
    else if (k == "arch") s.arch = v;
    else if (k == "name") s.name = v;
    else if (k == "tied") s.tied = flag();
    else if (k == "llama3_rope") s.llama3_rope = flag();
    else if (k == "rope_base") {
      size_t used = 0;
      double x = 0;
      try {
        x = std::stod(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != v.size() || !(x > 1 && x < 1e12)) throw Error("--dims: 'rope_base' needs a number above 1, got '" + v + "'");
      s.rope_base = static_cast<float>(x);
    } else {
      throw Error("--dims: unknown key '" + k +
                  "' (known: embd, layers, heads, kv_heads, ff, vocab, ctx, arch, tied, rope_base, llama3_rope, name)");
    }
  }
  if (!kv_given) s.kv_heads = s.heads;
  return s;
}

uint64_t generate_model(const GenModelOptions& o, const std::string& path) {
  GenModelSpec s = o.spec;
  check_spec(s, o.dtype);
  if (o.q4_k_m && o.dtype != DType::Q4_K) throw Error("gen-model: the Q4_K_M mix needs dtype q4_K");

  GGUFWriter w;
  const std::string& a = s.arch;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "random " + s.name);
  if (!o.vocab_from.empty()) {
    auto vf = GGUFFile::open(o.vocab_from);
    if (!vf->has("tokenizer.ggml.tokens")) throw Error("gen-model: '" + o.vocab_from + "' has no vocabulary (tokenizer.ggml.tokens)");
    for (const auto& [k, v] : vf->metadata())
      if (k.rfind("tokenizer.", 0) == 0) w.copy_value(k, v);
    const size_t n = vf->get_string_array("tokenizer.ggml.tokens").size();
    if (n == 0 || n > (1u << 24)) throw Error("gen-model: '" + o.vocab_from + "' has " + std::to_string(n) + " tokens");
    s.vocab = static_cast<int>(n);
  } else {
    s.vocab = std::max(s.vocab, kMinSyntheticVocab);
    synthetic_vocab(w, s.vocab);
  }
  w.set_uint32(a + ".vocab_size", s.vocab);
  w.set_uint32(a + ".context_length", s.ctx);
  w.set_uint32(a + ".embedding_length", s.embd);
  w.set_uint32(a + ".block_count", s.layers);
  w.set_uint32(a + ".feed_forward_length", s.ff);
  w.set_uint32(a + ".attention.head_count", s.heads);
  w.set_uint32(a + ".attention.head_count_kv", s.kv_heads);
  w.set_uint32(a + ".rope.dimension_count", s.embd / s.heads);
  w.set_float32(a + ".attention.layer_norm_rms_epsilon", a == "qwen2" ? 1e-6f : 1e-5f);
  w.set_float32(a + ".rope.freq_base", s.rope_base);

  ThreadPool pool(o.threads > 0 ? o.threads : ThreadPool::default_threads());
  const uint64_t seed = o.seed;
  uint64_t tensor_index = 0;
  // A matrix of `rows` rows of `cols`, values with std gain/sqrt(cols).
  auto matrix = [&](const std::string& name, int64_t cols, int64_t rows, DType t, float gain) {
    const uint64_t id = ++tensor_index;
    const float sd = gain / std::sqrt(static_cast<float>(cols));
    w.add_tensor(name, t, {cols, rows}, [=, &pool](int64_t first, int64_t n, uint8_t* out) {
      const int64_t stride = row_bytes(t, cols);
      constexpr int64_t kRowsPerTask = 16;
      pool.parallel_for((n + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
        std::vector<float> row(cols);
        for (int64_t i = task * kRowsPerTask; i < std::min(n, (task + 1) * kRowsPerTask); ++i) {
          const uint64_t r = static_cast<uint64_t>(first + i);
          random_row(seed * 0x100000001B3ull + id * 0x9E3779B1ull + r, sd, 0.0f, row.data(), cols);
          quantize_row(t, row.data(), out + i * stride, cols);
        }
      });
    });
  };
  auto vector = [&](const std::string& name, int64_t n, float mean, float sd) {
    const uint64_t id = ++tensor_index;
    w.add_tensor(name, DType::F32, {n}, [=](int64_t, int64_t, uint8_t* out) {
      std::vector<float> v(n);
      random_row(seed * 31 + id, sd, mean, v.data(), n);
      std::memcpy(out, v.data(), n * sizeof(float));
    });
  };
  const int hd = s.embd / s.heads, kv_dim = s.kv_heads * hd;
  // Q4_K_M: more bits where quantization error costs most (the output, V and down of the first
  // and last layers and of every third layer between).
  const int n = s.layers;
  auto more_bits = [&](int l) { return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2; };
  const DType wide = o.q4_k_m ? DType::Q6_K : o.dtype;
  matrix("token_embd.weight", s.embd, s.vocab, o.dtype, std::sqrt(static_cast<float>(s.embd)));
  vector("output_norm.weight", s.embd, 1.0f, 0.05f);
  if (!s.tied) matrix("output.weight", s.embd, s.vocab, wide, 1.0f);
  if (s.llama3_rope) {
    const auto f = llama3_rope_factors(hd, s.rope_base, 8.0f, 1.0f, 4.0f, s.ctx);
    std::vector<uint8_t> bytes(f.size() * sizeof(float));
    std::memcpy(bytes.data(), f.data(), bytes.size());
    w.add_tensor("rope_freqs.weight", DType::F32, {hd / 2}, std::move(bytes));
  }
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vector(p + "attn_norm.weight", s.embd, 1.0f, 0.05f);
    matrix(p + "attn_q.weight", s.embd, s.embd, o.dtype, 1.0f);
    matrix(p + "attn_k.weight", s.embd, kv_dim, o.dtype, 1.0f);
    matrix(p + "attn_v.weight", s.embd, kv_dim, more_bits(l) ? wide : o.dtype, 1.0f);
    matrix(p + "attn_output.weight", s.embd, s.embd, o.dtype, 1.0f);
    if (a == "qwen2") {
      vector(p + "attn_q.bias", s.embd, 0.0f, 0.02f);
      vector(p + "attn_k.bias", kv_dim, 0.0f, 0.02f);
      vector(p + "attn_v.bias", kv_dim, 0.0f, 0.02f);
    }
    vector(p + "ffn_norm.weight", s.embd, 1.0f, 0.05f);
    matrix(p + "ffn_gate.weight", s.embd, s.ff, o.dtype, 1.0f);
    matrix(p + "ffn_up.weight", s.embd, s.ff, o.dtype, 1.0f);
    matrix(p + "ffn_down.weight", s.ff, s.embd, more_bits(l) ? wide : o.dtype, 1.0f);
  }
  w.write(path, o.tensor_data);
  return w.file_size();
}

}  // namespace lazyllm
