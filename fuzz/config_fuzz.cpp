// libFuzzer target: what Model::load does after the GGUF parse — the tokenizer from the
// vocabulary metadata, the model configuration from the hyperparameters, and the binding of the
// tensors — on arbitrary metadata. Each input is a small edit script applied to a valid tiny
// model (llama, 1 layer, a 300-token SentencePiece vocabulary); the result is written as GGUF in
// memory and parsed with GGUFFile::parse, so nearly every input reaches the code after the parse.
// Each step must give a result or a lazyllm::Error — never another exception, a crash, a
// sanitizer report or a huge allocation — and what loads must be consistent: a configuration
// that keeps its documented bounds, weights that lie inside the file, a tokenizer whose ids are
// tokens of the vocabulary.
//
// Input: text, one command a line (seeds: fuzz/corpus/config_fuzz/*.txt). '@' at the start of a
// key stands for the current general.architecture ("@.block_count").
//   set KEY TYPE VALUE...   TYPE: u8 i8 u16 i16 u32 i32 u64 i64 f32 f64 bool str, or TYPE[] for an
//                           array of the values (str: \s space, \n, \t, \xNN, \\; "\e" alone: "")
//   del KEY
//   tensor NAME TYPE D0 [D1 [D2 [D3]]]   add or replace a tensor (TYPE: f32, q8_0, ... or a
//                                        ggml type number); its bytes are 1.0s (or zeros)
//   untensor NAME
//   vocab spm|bpe N          a synthetic vocabulary of about N tokens (bpe: with merges)
//   fit [TYPE] [tied]        regenerate the model's tensors to fit the current metadata
// With LAZYLLM_FUZZ_VERBOSE set, each input's outcome is printed (to check what a seed reaches).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "format/dtype.h"
#include "format/gguf.h"
#include "fuzz_util.h"
#include "lazyllm/error.h"
#include "lazyllm/tokenizer.h"
#include "model/weights.h"

using namespace lazyllm;

namespace {

// ---- the model being edited -----------------------------------------------------------------

struct Entry {
  std::string key;
  GGUFType type;
  std::vector<uint8_t> value;  // encoded as in the file, after the type tag
};

struct Tensor {
  std::string name;
  uint32_t type;
  std::vector<int64_t> dims;
};

// The model as metadata entries (in file order) and tensor infos; write_gguf() makes the file.
struct Draft {
  std::vector<Entry> kv;
  std::vector<Tensor> tensors;
};

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof v);
  std::memcpy(out.data() + at, &v, sizeof v);
}

void put_string(std::vector<uint8_t>& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

Entry* find(Draft& m, std::string_view key) {
  for (auto& e : m.kv)
    if (e.key == key) return &e;
  return nullptr;
}

void set(Draft& m, const std::string& key, GGUFType type, std::vector<uint8_t> value) {
  if (Entry* e = find(m, key)) {
    e->type = type;
    e->value = std::move(value);
  } else {
    m.kv.push_back({key, type, std::move(value)});
  }
}

void set_u32(Draft& m, const std::string& key, uint32_t v) {
  std::vector<uint8_t> b;
  put(b, v);
  set(m, key, GGUFType::UINT32, std::move(b));
}

void set_str(Draft& m, const std::string& key, std::string_view v) {
  std::vector<uint8_t> b;
  put_string(b, v);
  set(m, key, GGUFType::STRING, std::move(b));
}

void set_strs(Draft& m, const std::string& key, const std::vector<std::string>& v) {
  std::vector<uint8_t> b;
  put(b, static_cast<uint32_t>(GGUFType::STRING));
  put<uint64_t>(b, v.size());
  for (const auto& s : v) put_string(b, s);
  set(m, key, GGUFType::ARRAY, std::move(b));
}

template <typename T>
void set_array(Draft& m, const std::string& key, GGUFType elem, const std::vector<T>& v) {
  std::vector<uint8_t> b;
  put(b, static_cast<uint32_t>(elem));
  put<uint64_t>(b, v.size());
  for (T x : v) put(b, x);
  set(m, key, GGUFType::ARRAY, std::move(b));
}

// The value of an unsigned/signed scalar key, if it is one.
std::optional<int64_t> int_value(Draft& m, std::string_view key) {
  const Entry* e = find(m, key);
  if (!e) return std::nullopt;
  auto get = [&](auto v) -> std::optional<int64_t> {
    if (e->value.size() < sizeof v) return std::nullopt;
    std::memcpy(&v, e->value.data(), sizeof v);
    return static_cast<int64_t>(v);
  };
  switch (e->type) {
    case GGUFType::UINT8: return get(uint8_t{});
    case GGUFType::INT8: return get(int8_t{});
    case GGUFType::UINT16: return get(uint16_t{});
    case GGUFType::INT16: return get(int16_t{});
    case GGUFType::UINT32: return get(uint32_t{});
    case GGUFType::INT32: return get(int32_t{});
    case GGUFType::UINT64: return get(uint64_t{});
    case GGUFType::INT64: return get(int64_t{});
    default: return std::nullopt;
  }
}

std::string string_value(Draft& m, std::string_view key) {
  const Entry* e = find(m, key);
  if (!e || e->type != GGUFType::STRING || e->value.size() < 8) return "";
  uint64_t n;
  std::memcpy(&n, e->value.data(), 8);
  if (n > e->value.size() - 8) return "";
  return std::string(reinterpret_cast<const char*>(e->value.data() + 8), n);
}

// The number of elements of an array key (a vocabulary's size).
int64_t array_count(Draft& m, std::string_view key) {
  const Entry* e = find(m, key);
  if (!e || e->type != GGUFType::ARRAY || e->value.size() < 12) return 0;
  uint64_t n;
  std::memcpy(&n, e->value.data() + 4, 8);
  return static_cast<int64_t>(std::min<uint64_t>(n, 1 << 20));
}

std::string byte_token(int b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b);
  return buf;
}

// A SentencePiece vocabulary: <unk> <s> </s>, the byte tokens (when n allows), then pieces.
// A byte-level BPE one: <|endoftext|>, the 256 byte-level characters (when n allows), then merges.
void synthetic_vocab(Draft& m, bool bpe, int64_t n) {
  n = std::clamp<int64_t>(n, 1, 600);
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<float> scores;
  std::vector<std::string> merges;
  auto add = [&](std::string t, int32_t type) {
    if (static_cast<int64_t>(tokens.size()) >= n) return;
    tokens.push_back(std::move(t));
    types.push_back(type);
    scores.push_back(-static_cast<float>(tokens.size()));
  };
  if (!bpe) {
    add("<unk>", 2);
    add("<s>", 3);
    add("</s>", 3);
    for (int b = 0; b < 256 && n >= 259; ++b) add(byte_token(b), 6);
    const char* pieces[] = {"\xE2\x96\x81", "a", "b", "c", ("\xE2\x96\x81" "a"), "ab", "abc", "<|user|>", "\xC3\xA9"};
    for (const char* p : pieces) add(p, std::string_view(p) == "<|user|>" ? 4 : 1);
    for (int i = 0; static_cast<int64_t>(tokens.size()) < n; ++i) add("p" + std::to_string(i), 1);
  } else {
    add("<|endoftext|>", 3);
    // The byte-level alphabet: printable bytes stand for themselves, the others are shifted
    // to U+0100 and up (GPT-2's bytes_to_unicode).
    for (int b = 0, shifted = 256; b < 256 && n >= 257; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const uint32_t cp = printable ? b : shifted++;
      std::string s;
      if (cp < 0x80) s += static_cast<char>(cp);
      else s += static_cast<char>(0xC0 | cp >> 6), s += static_cast<char>(0x80 | (cp & 0x3F));
      add(s, 1);
    }
    const char* pairs[][2] = {{"a", "b"}, {"ab", "c"}, {"\xC4\xA0", "a"}, {"\xC4\xA0" "a", "b"}};
    for (auto& p : pairs) {
      merges.push_back(std::string(p[0]) + " " + p[1]);
      add(std::string(p[0]) + p[1], 1);
    }
    for (int i = 0; static_cast<int64_t>(tokens.size()) < n; ++i) add("q" + std::to_string(i), 1);
  }
  set_str(m, "tokenizer.ggml.model", bpe ? "gpt2" : "llama");
  set_strs(m, "tokenizer.ggml.tokens", tokens);
  set_array(m, "tokenizer.ggml.token_type", GGUFType::INT32, types);
  if (bpe) {
    set_strs(m, "tokenizer.ggml.merges", merges);
    set_str(m, "tokenizer.ggml.pre", "gpt-2");
    m.kv.erase(std::remove_if(m.kv.begin(), m.kv.end(), [](const Entry& e) { return e.key == "tokenizer.ggml.scores"; }),
               m.kv.end());
    set_u32(m, "tokenizer.ggml.bos_token_id", 0);
    set_u32(m, "tokenizer.ggml.eos_token_id", 0);
  } else {
    set_array(m, "tokenizer.ggml.scores", GGUFType::FLOAT32, scores);
    set_u32(m, "tokenizer.ggml.bos_token_id", 1);
    set_u32(m, "tokenizer.ggml.eos_token_id", 2);
  }
}

void add_tensor(Draft& m, const std::string& name, uint32_t type, std::vector<int64_t> dims) {
  for (auto& t : m.tensors)
    if (t.name == name) {
      t.type = type;
      t.dims = std::move(dims);
      return;
    }
  m.tensors.push_back({name, type, std::move(dims)});
}

// The tensors a model of the current metadata needs (missing or bad values: the base's).
void fit(Draft& m, DType type, bool tied) {
  const std::string a = string_value(m, "general.architecture");
  auto dim = [&](const std::string& key, int64_t def) {
    const auto v = int_value(m, a + "." + key);
    return v && *v > 0 && *v <= 4096 ? *v : def;
  };
  const int64_t embd = dim("embedding_length", 8), heads = dim("attention.head_count", 2);
  const int64_t kv_heads = dim("attention.head_count_kv", heads), ff = dim("feed_forward_length", 16);
  const int64_t head_dim = dim("attention.key_length", embd / heads), layers = std::min<int64_t>(dim("block_count", 1), 4);
  const int64_t vocab = std::max<int64_t>(array_count(m, "tokenizer.ggml.tokens"), 1);
  const uint32_t t = static_cast<uint32_t>(type), f32 = static_cast<uint32_t>(DType::F32);
  m.tensors.clear();
  add_tensor(m, "token_embd.weight", t, {embd, vocab});
  add_tensor(m, "output_norm.weight", f32, {embd});
  if (!tied) add_tensor(m, "output.weight", t, {embd, vocab});
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add_tensor(m, p + "attn_norm.weight", f32, {embd});
    add_tensor(m, p + "attn_q.weight", t, {embd, heads * head_dim});
    add_tensor(m, p + "attn_k.weight", t, {embd, kv_heads * head_dim});
    add_tensor(m, p + "attn_v.weight", t, {embd, kv_heads * head_dim});
    add_tensor(m, p + "attn_output.weight", t, {heads * head_dim, embd});
    if (a == "qwen2") {
      add_tensor(m, p + "attn_q.bias", f32, {heads * head_dim});
      add_tensor(m, p + "attn_k.bias", f32, {kv_heads * head_dim});
      add_tensor(m, p + "attn_v.bias", f32, {kv_heads * head_dim});
    }
    add_tensor(m, p + "ffn_norm.weight", f32, {embd});
    add_tensor(m, p + "ffn_gate.weight", t, {embd, ff});
    add_tensor(m, p + "ffn_up.weight", t, {embd, ff});
    add_tensor(m, p + "ffn_down.weight", t, {ff, embd});
  }
}

Draft base_model() {
  Draft m;
  set_str(m, "general.architecture", "llama");
  set_str(m, "general.name", "fuzz");
  set_u32(m, "llama.embedding_length", 8);
  set_u32(m, "llama.block_count", 1);
  set_u32(m, "llama.attention.head_count", 2);
  set_u32(m, "llama.attention.head_count_kv", 1);
  set_u32(m, "llama.feed_forward_length", 16);
  set_u32(m, "llama.context_length", 64);
  std::vector<uint8_t> eps;
  put(eps, 1e-5f);
  set(m, "llama.attention.layer_norm_rms_epsilon", GGUFType::FLOAT32, eps);
  synthetic_vocab(m, false, 300);
  fit(m, DType::F32, false);
  return m;
}

// The GGUF v3 file of the model. Tensor bytes: 1.0 in F32/F16/BF16, zeros otherwise; a tensor
// whose size is unknown or too large gets none (the parse then fails on it).
std::vector<uint8_t> write_gguf(Draft& m) {
  std::vector<uint8_t> out;
  out.insert(out.end(), {'G', 'G', 'U', 'F'});
  put<uint32_t>(out, 3);
  put<uint64_t>(out, m.tensors.size());
  put<uint64_t>(out, m.kv.size());
  for (const auto& e : m.kv) {
    put_string(out, e.key);
    put(out, static_cast<uint32_t>(e.type));
    out.insert(out.end(), e.value.begin(), e.value.end());
  }
  uint64_t alignment = 32;
  if (const Entry* e = find(m, "general.alignment"); e && e->type == GGUFType::UINT32 && e->value.size() == 4) {
    uint32_t a;
    std::memcpy(&a, e->value.data(), 4);
    if (a != 0 && (a & (a - 1)) == 0 && a <= 4096) alignment = a;
  }
  std::vector<int64_t> sizes;
  uint64_t offset = 0;
  for (const auto& t : m.tensors) {
    int64_t n = 1;
    bool ok = !t.dims.empty();
    for (int64_t d : t.dims) {
      if (d <= 0 || d > (1 << 20) || n > (1 << 20)) ok = false;
      else n *= d;
    }
    const auto info = dtype_info(t.type);
    ok = ok && info && n <= (1 << 20) && t.dims[0] % info->block_elems == 0;
    sizes.push_back(ok ? row_bytes(info->type, n) : 0);
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) put(out, d);
    put(out, t.type);
    put(out, offset);
    offset += (sizes.back() + alignment - 1) / alignment * alignment;
  }
  out.resize((out.size() + alignment - 1) / alignment * alignment);
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const size_t at = out.size();
    out.resize(at + (sizes[i] + alignment - 1) / alignment * alignment);
    const uint32_t type = m.tensors[i].type;
    const uint16_t one16 = type == static_cast<uint32_t>(DType::F16) ? 0x3C00 : 0x3F80;
    for (int64_t j = 0; j + 3 < sizes[i] && type == static_cast<uint32_t>(DType::F32); j += 4) {
      const float one = 1.0f;
      std::memcpy(&out[at + j], &one, 4);
    }
    for (int64_t j = 0; j + 1 < sizes[i] && (type == static_cast<uint32_t>(DType::F16) || type == static_cast<uint32_t>(DType::BF16)); j += 2)
      std::memcpy(&out[at + j], &one16, 2);
  }
  return out;
}

// ---- the edit script ------------------------------------------------------------------------

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string unescape(std::string_view s) {
  if (s == "\\e") return "";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    if (c == 's') out += ' ';
    else if (c == 'n') out += '\n';
    else if (c == 't') out += '\t';
    else if (c == 'x' && i + 2 < s.size()) {
      out += static_cast<char>(std::strtoul(std::string(s.substr(i + 1, 2)).c_str(), nullptr, 16));
      i += 2;
    } else out += c;
  }
  return out;
}

std::optional<GGUFType> scalar_type(std::string_view name) {
  static const std::pair<std::string_view, GGUFType> kTypes[] = {
      {"u8", GGUFType::UINT8},   {"i8", GGUFType::INT8},   {"u16", GGUFType::UINT16}, {"i16", GGUFType::INT16},
      {"u32", GGUFType::UINT32}, {"i32", GGUFType::INT32}, {"u64", GGUFType::UINT64}, {"i64", GGUFType::INT64},
      {"f32", GGUFType::FLOAT32}, {"f64", GGUFType::FLOAT64}, {"bool", GGUFType::BOOL}, {"str", GGUFType::STRING}};
  for (auto [n, t] : kTypes)
    if (n == name) return t;
  return std::nullopt;
}

void put_value(std::vector<uint8_t>& out, GGUFType t, std::string_view word) {
  const std::string w(word);
  const uint64_t u = std::strtoull(w.c_str(), nullptr, 0);
  const int64_t i = std::strtoll(w.c_str(), nullptr, 0);
  switch (t) {
    case GGUFType::UINT8: return put(out, static_cast<uint8_t>(u));
    case GGUFType::INT8: return put(out, static_cast<int8_t>(i));
    case GGUFType::UINT16: return put(out, static_cast<uint16_t>(u));
    case GGUFType::INT16: return put(out, static_cast<int16_t>(i));
    case GGUFType::UINT32: return put(out, static_cast<uint32_t>(u));
    case GGUFType::INT32: return put(out, static_cast<int32_t>(i));
    case GGUFType::UINT64: return put(out, u);
    case GGUFType::INT64: return put(out, i);
    case GGUFType::FLOAT32: {
      const double d = std::strtod(w.c_str(), nullptr);
      return put(out, std::isfinite(d) && std::fabs(d) > 3.4e38 ? static_cast<float>(d > 0 ? INFINITY : -INFINITY)
                                                                 : static_cast<float>(d));
    }
    case GGUFType::FLOAT64: return put(out, std::strtod(w.c_str(), nullptr));
    case GGUFType::BOOL: return put(out, static_cast<uint8_t>(u));
    case GGUFType::STRING: return put_string(out, unescape(word));
    default: return;
  }
}

std::string resolve_key(Draft& m, std::string_view key) {
  if (!key.empty() && key[0] == '@') return string_value(m, "general.architecture") + std::string(key.substr(1));
  return unescape(key);
}

std::optional<uint32_t> tensor_type(std::string_view name) {
  if (auto t = parse_dtype(name)) return static_cast<uint32_t>(*t);
  if (!name.empty() && name[0] >= '0' && name[0] <= '9') return static_cast<uint32_t>(std::strtoul(std::string(name).c_str(), nullptr, 10));
  return std::nullopt;
}

void apply(Draft& m, std::string_view line) {
  const auto w = words(line);
  if (w.empty()) return;
  const std::string_view cmd = w[0];
  if (cmd == "set" && w.size() >= 3) {
    const std::string key = resolve_key(m, w[1]);
    std::string_view type = w[2];
    const bool array = type.ends_with("[]");
    if (array) type.remove_suffix(2);
    const auto t = scalar_type(type);
    if (!t) return;
    std::vector<uint8_t> value;
    if (array) {
      put(value, static_cast<uint32_t>(*t));
      put<uint64_t>(value, w.size() - 3);
      for (size_t i = 3; i < w.size(); ++i) put_value(value, *t, w[i]);
      set(m, key, GGUFType::ARRAY, std::move(value));
    } else if (*t == GGUFType::STRING) {
      // The rest of the line after "set KEY str ", escapes and all.
      const size_t at = line.find(w[2]) + w[2].size();
      put_value(value, *t, at < line.size() ? line.substr(at + 1) : std::string_view());
      set(m, key, *t, std::move(value));
    } else {
      put_value(value, *t, w.size() > 3 ? w[3] : "0");
      set(m, key, *t, std::move(value));
    }
  } else if (cmd == "del" && w.size() >= 2) {
    const std::string key = resolve_key(m, w[1]);
    m.kv.erase(std::remove_if(m.kv.begin(), m.kv.end(), [&](const Entry& e) { return e.key == key; }), m.kv.end());
  } else if (cmd == "tensor" && w.size() >= 4) {
    const auto t = tensor_type(w[2]);
    if (!t) return;
    std::vector<int64_t> dims;
    for (size_t i = 3; i < w.size() && dims.size() < 4; ++i) dims.push_back(std::strtoll(std::string(w[i]).c_str(), nullptr, 0));
    add_tensor(m, unescape(w[1]), *t, std::move(dims));
  } else if (cmd == "untensor" && w.size() >= 2) {
    const std::string name = unescape(w[1]);
    m.tensors.erase(std::remove_if(m.tensors.begin(), m.tensors.end(), [&](const Tensor& t) { return t.name == name; }),
                    m.tensors.end());
  } else if (cmd == "vocab" && w.size() >= 3) {
    synthetic_vocab(m, w[1] == "bpe", std::strtoll(std::string(w[2]).c_str(), nullptr, 0));
  } else if (cmd == "fit") {
    DType type = DType::F32;
    bool tied = false;
    for (size_t i = 1; i < w.size(); ++i) {
      if (w[i] == "tied") tied = true;
      else if (auto t = parse_dtype(w[i])) type = *t;
    }
    fit(m, type, tied);
  }
}

// ---- the checks -------------------------------------------------------------------------------

void check_tokenizer(const Tokenizer& t, size_t n_tokens) {
  LAZYLLM_FUZZ_CHECK(t.n_vocab() > 0 && static_cast<size_t>(t.n_vocab()) == n_tokens);
  for (int32_t id : {t.bos(), t.eos(), t.eot(), t.eom()}) LAZYLLM_FUZZ_CHECK(id >= -1 && id < t.n_vocab());
  LAZYLLM_FUZZ_CHECK(!t.add_bos() || t.bos() >= 0);
  static const char* kTexts[] = {"", "abc a b", " \xC3\xA9\xFF <s><|user|></s>", "<|endoftext|>\n\t 12"};
  for (const char* text : kTexts) {
    for (bool special : {false, true}) {
      std::vector<int32_t> ids;
      try {
        ids = t.encode(text, t.add_bos(), special);
      } catch (const Error&) {  // a byte-level BPE vocabulary without a token for a byte and no <unk>
        continue;
      }
      for (int32_t id : ids) LAZYLLM_FUZZ_CHECK(id >= 0 && id < t.n_vocab());
      StreamDecoder d(t);
      for (int32_t id : ids) LAZYLLM_FUZZ_CHECK(fuzz::valid_utf8(d.feed(id)));
      (void)d.flush();
      (void)t.decode(ids);
    }
  }
}

void check_config(const ModelConfig& c) {
  LAZYLLM_FUZZ_CHECK(c.architecture == "llama" || c.architecture == "qwen2");
  LAZYLLM_FUZZ_CHECK(c.n_embd > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.n_ff > 0);
  LAZYLLM_FUZZ_CHECK(c.n_ctx_train > 0 && c.head_dim > 0 && c.head_dim <= 1024 && c.head_dim % 2 == 0);
  LAZYLLM_FUZZ_CHECK(c.n_heads % c.n_kv_heads == 0);
  LAZYLLM_FUZZ_CHECK(int64_t{c.head_dim} * c.n_heads == c.n_embd);
  LAZYLLM_FUZZ_CHECK(c.rms_eps > 0 && c.rms_eps < 1 && c.rope_base > 1 && std::isfinite(c.rope_base));
  LAZYLLM_FUZZ_CHECK(c.rope_scaling == "none" || c.rope_scaling == "linear" || c.rope_scaling == "llama3");
  if (c.rope_scaling == "linear") LAZYLLM_FUZZ_CHECK(c.rope_scale_factor >= 1 && c.rope_scale_factor < 1024);
}

struct Range {
  const uint8_t* begin;
  const uint8_t* end;
};

void check_view(const WeightView& v, int64_t rows, int64_t cols, Range file) {
  LAZYLLM_FUZZ_CHECK(v.rows == rows && v.cols == cols);
  const int64_t bytes = rows * row_bytes(v.type, cols);
  const uint8_t* p = v.data;
  LAZYLLM_FUZZ_CHECK(p >= file.begin && bytes >= 0 && bytes <= file.end - p);
}

void check_vec(const float* v, int64_t n, const ModelWeights& w, Range file, bool required = true) {
  if (!v) {
    LAZYLLM_FUZZ_CHECK(!required);
    return;
  }
  const auto* p = reinterpret_cast<const uint8_t*>(v);
  if (p >= file.begin && p < file.end) {
    LAZYLLM_FUZZ_CHECK(n * 4 <= file.end - p);
    return;
  }
  for (const auto& o : w.owned) {
    if (o.data() != v) continue;
    LAZYLLM_FUZZ_CHECK(static_cast<int64_t>(o.size()) == n);
    return;
  }
  fuzz::fail("a weight vector points neither into the file nor into the converted copies");
}

void check_weights(const ModelWeights& w, const ModelConfig& c, Range file) {
  const int64_t d = c.n_embd, q = int64_t{c.n_heads} * c.head_dim, kv = int64_t{c.n_kv_heads} * c.head_dim;
  check_view(w.token_embd, c.n_vocab, d, file);
  check_view(w.output, c.n_vocab, d, file);
  check_vec(w.output_norm, d, w, file);
  LAZYLLM_FUZZ_CHECK(w.rope_freq_factors.empty() || static_cast<int64_t>(w.rope_freq_factors.size()) == c.head_dim / 2);
  LAZYLLM_FUZZ_CHECK(w.layers.size() == static_cast<size_t>(c.n_layers));
  for (const auto& L : w.layers) {
    check_vec(L.attn_norm, d, w, file);
    check_view(L.wq, q, d, file);
    check_view(L.wk, kv, d, file);
    check_view(L.wv, kv, d, file);
    check_view(L.wo, d, q, file);
    check_vec(L.bq, q, w, file, c.qkv_bias);
    check_vec(L.bk, kv, w, file, c.qkv_bias);
    check_vec(L.bv, kv, w, file, c.qkv_bias);
    check_vec(L.ffn_norm, d, w, file);
    check_view(L.w_gate, c.n_ff, d, file);
    check_view(L.w_up, c.n_ff, d, file);
    check_view(L.w_down, d, c.n_ff, file);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Draft kBase = base_model();
  Draft m = kBase;
  std::string_view script(reinterpret_cast<const char*>(data), size);
  for (int n = 0; !script.empty() && n < 64; ++n) {
    const size_t nl = script.find('\n');
    apply(m, script.substr(0, nl));
    script = nl == std::string_view::npos ? std::string_view() : script.substr(nl + 1);
  }
  const std::vector<uint8_t> bytes = write_gguf(m);
  if (bytes.size() > (8u << 20)) return 0;
  static const bool verbose = std::getenv("LAZYLLM_FUZZ_VERBOSE") != nullptr;
  auto outcome = [&](const char* step, const char* what) {
    if (verbose) std::fprintf(stderr, "config_fuzz: %s: %s\n", step, what);
  };
  std::unique_ptr<GGUFFile> f;
  try {
    f = GGUFFile::parse(bytes.data(), bytes.size(), "fuzz");
  } catch (const Error& e) {
    outcome("parse", e.what());
    return 0;
  }
  // Model::load's steps. The configuration and the weights are tried even when the tokenizer
  // fails (with the vocabulary's size as the tokenizer would count it), to reach them more often.
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = Tokenizer::from_gguf(*f);
  } catch (const Error& e) {
    outcome("tokenizer", e.what());
  }
  const int64_t n_tokens = array_count(m, "tokenizer.ggml.tokens");
  if (tok) check_tokenizer(*tok, static_cast<size_t>(n_tokens));
  ModelConfig config;
  try {
    config = read_model_config(*f, tok ? tok->n_vocab() : static_cast<int>(std::max<int64_t>(n_tokens, 1)));
  } catch (const Error& e) {
    outcome("config", e.what());
    return 0;
  }
  check_config(config);
  std::unique_ptr<ModelWeights> weights;
  try {
    weights = bind_weights(*f, config);
  } catch (const Error& e) {
    outcome("weights", e.what());
    return 0;
  }
  check_weights(*weights, config, {bytes.data(), bytes.data() + bytes.size()});
  outcome("loaded", tok ? "tokenizer, config and weights" : "config and weights (no tokenizer)");
  return 0;
}
