// gen-model: random-weight models of named and custom shapes are valid GGUF files that load,
// with the right tensor shapes and types, a usable vocabulary, deterministic contents and
// sane activations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "kernels/cpu/quant.h"
#include "lazyllm/lazyllm.h"
#include "lazyllm/tokenizer.h"
#include "model/gen_model.h"
#include "test_util.h"

namespace lazyllm {
namespace {

// Q5KModelFollowsF32's bound on the relative RMS logit error of a q5_K model against f32.
constexpr double kQ5KLogitError = 0.1;

std::string gen(const std::string& dims, DType t = DType::F32, uint64_t seed = 1, int threads = 2,
                const std::string& vocab_from = "") {
  GenModelOptions o;
  o.spec = parse_dims(dims);
  o.dtype = t;
  o.seed = seed;
  o.threads = threads;
  o.vocab_from = vocab_from;
  const auto path = test::temp_path("gen-" + std::to_string(std::hash<std::string>()(dims + vocab_from)) + "-" +
                                    std::string(dtype_name(t)) + "-" + std::to_string(seed) + "-" +
                                    std::to_string(threads) + ".gguf").string();
  const uint64_t size = generate_model(o, path);
  EXPECT_EQ(size, std::filesystem::file_size(path));
  return path;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

template <typename F>
void expect_gen_error(F&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

// Every tensor the loader expects, with the shape it expects, and nothing else.
void expect_layout(const GGUFFile& f, const GenModelSpec& s, int vocab, DType t) {
  const int hd = s.embd / s.heads, kv = s.kv_heads * hd;
  std::map<std::string, std::pair<std::vector<int64_t>, DType>> want;
  want["token_embd.weight"] = {{s.embd, vocab}, t};
  want["output_norm.weight"] = {{s.embd}, DType::F32};
  if (!s.tied) want["output.weight"] = {{s.embd, vocab}, t};
  if (s.llama3_rope) want["rope_freqs.weight"] = {{hd / 2}, DType::F32};
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    want[p + "attn_norm.weight"] = {{s.embd}, DType::F32};
    want[p + "attn_q.weight"] = {{s.embd, s.embd}, t};
    want[p + "attn_k.weight"] = {{s.embd, kv}, t};
    want[p + "attn_v.weight"] = {{s.embd, kv}, t};
    want[p + "attn_output.weight"] = {{s.embd, s.embd}, t};
    if (s.arch == "qwen2") {
      want[p + "attn_q.bias"] = {{s.embd}, DType::F32};
      want[p + "attn_k.bias"] = {{kv}, DType::F32};
      want[p + "attn_v.bias"] = {{kv}, DType::F32};
    }
    want[p + "ffn_norm.weight"] = {{s.embd}, DType::F32};
    want[p + "ffn_gate.weight"] = {{s.embd, s.ff}, t};
    want[p + "ffn_up.weight"] = {{s.embd, s.ff}, t};
    want[p + "ffn_down.weight"] = {{s.ff, s.embd}, t};
  }
  EXPECT_EQ(f.tensors().size(), want.size());
  for (const auto& [name, dt] : want) {
    const GGUFTensor* x = f.find_tensor(name);
    ASSERT_NE(x, nullptr) << "missing " << name;
    EXPECT_EQ(x->dims, dt.first) << name;
    EXPECT_EQ(x->type, dt.second) << name;
  }
  const std::string& a = s.arch;
  EXPECT_EQ(f.get_string("general.architecture"), a);
  EXPECT_EQ(f.get_uint(a + ".embedding_length"), static_cast<uint64_t>(s.embd));
  EXPECT_EQ(f.get_uint(a + ".block_count"), static_cast<uint64_t>(s.layers));
  EXPECT_EQ(f.get_uint(a + ".attention.head_count"), static_cast<uint64_t>(s.heads));
  EXPECT_EQ(f.get_uint(a + ".attention.head_count_kv"), static_cast<uint64_t>(s.kv_heads));
  EXPECT_EQ(f.get_uint(a + ".feed_forward_length"), static_cast<uint64_t>(s.ff));
  EXPECT_EQ(f.get_uint(a + ".context_length"), static_cast<uint64_t>(s.ctx));
  EXPECT_FLOAT_EQ(static_cast<float>(f.get_float(a + ".rope.freq_base")), s.rope_base);
  EXPECT_GT(f.get_float(a + ".attention.layer_norm_rms_epsilon"), 0.0);
}

struct Case {
  const char* dims;
  DType type;
};

class GenModelShapes : public ::testing::TestWithParam<Case> {};

TEST_P(GenModelShapes, LoadsWithTheExpectedTensors) {
  const Case c = GetParam();
  const GenModelSpec s = parse_dims(c.dims);
  const auto path = gen(c.dims, c.type);
  auto f = GGUFFile::open(path);
  const int vocab = std::max(s.vocab, kMinSyntheticVocab);
  expect_layout(*f, s, vocab, c.type);

  auto m = Model::load(path);
  const ModelConfig& cfg = m->config();
  EXPECT_EQ(cfg.architecture, s.arch);
  EXPECT_EQ(cfg.n_vocab, vocab);
  EXPECT_EQ(cfg.n_embd, s.embd);
  EXPECT_EQ(cfg.n_layers, s.layers);
  EXPECT_EQ(cfg.n_heads, s.heads);
  EXPECT_EQ(cfg.n_kv_heads, s.kv_heads);
  EXPECT_EQ(cfg.n_ff, s.ff);
  EXPECT_EQ(cfg.n_ctx_train, s.ctx);
  EXPECT_EQ(cfg.tied_embeddings, s.tied);
  EXPECT_EQ(cfg.qkv_bias, s.arch == "qwen2");
  EXPECT_EQ(cfg.rope_scaling, s.llama3_rope ? "llama3" : "none");

  // Activations stay sane: finite logits of moderate spread after a short prompt.
  SessionOptions so;
  so.n_ctx = 64;
  so.n_threads = 2;
  Session sess(m, so);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 12; ++i) prompt.push_back((i * 37 + 5) % vocab);
  sess.prefill(prompt);
  const auto logits = sess.logits();
  ASSERT_EQ(static_cast<int>(logits.size()), vocab);
  double sum = 0, sq = 0;
  for (float x : logits) {
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    sq += double(x) * x;
  }
  const double mean = sum / vocab, sd = std::sqrt(sq / vocab - mean * mean);
  EXPECT_GT(sd, 0.05) << "logits are (nearly) constant";
  EXPECT_LT(sd, 20.0) << "logits blow up";
}

INSTANTIATE_TEST_SUITE_P(
    GenModel, GenModelShapes,
    ::testing::Values(Case{"embd=64,layers=2,heads=4,kv_heads=2,ff=128,vocab=512,ctx=256", DType::F32},
                      Case{"embd=64,layers=2,heads=4,kv_heads=4,ff=96,vocab=450,ctx=128,tied=1", DType::F16},
                      Case{"embd=64,layers=1,heads=4,kv_heads=1,ff=128,vocab=500,ctx=128,arch=qwen2,tied=1,rope_base=1000000", DType::BF16},
                      Case{"embd=128,layers=2,heads=4,kv_heads=2,ff=256,vocab=512,ctx=512,llama3_rope=1,rope_base=500000", DType::Q8_0},
                      Case{"embd=96,layers=2,heads=3,kv_heads=1,ff=160,vocab=600,ctx=128", DType::Q4_0},
                      Case{"embd=256,layers=1,heads=4,kv_heads=2,ff=512,vocab=400,ctx=128", DType::Q4_K},
                      Case{"embd=256,layers=2,heads=4,kv_heads=4,ff=256,vocab=420,ctx=128", DType::Q5_K},
                      Case{"embd=256,layers=1,heads=2,kv_heads=1,ff=256,vocab=400,ctx=128,arch=qwen2", DType::Q6_K}),
    [](const ::testing::TestParamInfo<Case>& i) {
      return "case" + std::to_string(i.index) + "_" + std::string(dtype_name(i.param.type));
    });

TEST(GenModel, NamedShapes) {
  EXPECT_EQ(named_shapes().size(), 7u);
  const GenModelSpec sm = named_shape("smollm-135m");
  EXPECT_EQ(sm.arch, "llama");
  EXPECT_EQ(std::make_tuple(sm.embd, sm.layers, sm.heads, sm.kv_heads, sm.ff, sm.vocab, sm.ctx, sm.tied),
            std::make_tuple(576, 30, 9, 3, 1536, 49152, 2048, true));
  const GenModelSpec tl = named_shape("tinyllama-1.1b");
  EXPECT_EQ(std::make_tuple(tl.embd, tl.layers, tl.heads, tl.kv_heads, tl.ff, tl.vocab, tl.ctx, tl.tied),
            std::make_tuple(2048, 22, 32, 4, 5632, 32000, 2048, false));
  const GenModelSpec l2 = named_shape("llama2-7b");
  EXPECT_EQ(std::make_tuple(l2.embd, l2.layers, l2.heads, l2.kv_heads, l2.ff, l2.vocab, l2.ctx),
            std::make_tuple(4096, 32, 32, 32, 11008, 32000, 4096));
  const GenModelSpec l3 = named_shape("llama3-8b");
  EXPECT_EQ(std::make_tuple(l3.embd, l3.layers, l3.heads, l3.kv_heads, l3.ff, l3.vocab, l3.ctx, l3.llama3_rope),
            std::make_tuple(4096, 32, 32, 8, 14336, 128256, 8192, true));
  EXPECT_EQ(l3.rope_base, 500000.0f);
  const GenModelSpec qw = named_shape("qwen2-0.5b");
  EXPECT_EQ(qw.arch, "qwen2");
  EXPECT_EQ(std::make_tuple(qw.embd, qw.layers, qw.heads, qw.kv_heads, qw.ff, qw.vocab, qw.ctx, qw.tied),
            std::make_tuple(896, 24, 14, 2, 4864, 151936, 32768, true));
  EXPECT_EQ(qw.rope_base, 1e6f);
  const GenModelSpec l70 = named_shape("llama2-70b");
  EXPECT_EQ(std::make_tuple(l70.embd, l70.layers, l70.heads, l70.kv_heads, l70.ff, l70.vocab, l70.ctx, l70.tied),
            std::make_tuple(8192, 80, 64, 8, 28672, 32000, 4096, false));
  const GenModelSpec l370 = named_shape("llama3-70b");
  EXPECT_EQ(std::make_tuple(l370.embd, l370.layers, l370.heads, l370.kv_heads, l370.ff, l370.vocab, l370.ctx,
                            l370.llama3_rope),
            std::make_tuple(8192, 80, 64, 8, 28672, 128256, 8192, true));
  EXPECT_EQ(l370.rope_base, 500000.0f);
  expect_gen_error([] { named_shape("gpt-5"); }, "unknown shape 'gpt-5' (known: smollm-135m");
}

// One real named shape end to end (the smallest; q4_0 keeps the file at ~80 MB).
TEST(GenModel, SmolLMShapeLoads) {
  GenModelOptions o;
  o.spec = named_shape("smollm-135m");
  o.dtype = DType::Q4_0;
  o.threads = 2;
  const auto path = test::temp_path("gen-smollm-q4_0.gguf").string();
  generate_model(o, path);
  auto f = GGUFFile::open(path);
  expect_layout(*f, o.spec, 49152, DType::Q4_0);
  auto m = Model::load(path);
  EXPECT_EQ(m->config().n_vocab, 49152);
  EXPECT_TRUE(m->config().tied_embeddings);
  EXPECT_EQ(m->config().head_dim, 64);
  m.reset();
  f.reset();
  std::filesystem::remove(path);
}

// The llama2-70b width with two of its 80 layers, written without tensor data: the file has its
// full size (the data a hole of zeros, no disk), every tensor the shape needs at its bytes, and
// it loads; the memory estimates follow from its tensors. (Writing the data takes ~1.2 GB.)
TEST(GenModel, Llama2_70bWidthWithoutTensorData) {
  GenModelOptions o;
  o.spec = named_shape("llama2-70b");
  o.spec.layers = 2;
  o.dtype = DType::Q4_K;
  o.threads = 2;
  o.tensor_data = false;
  const auto path = test::temp_path("gen-llama2-70b-2l-q4_k-nodata.gguf").string();
  const uint64_t size = generate_model(o, path);
  ASSERT_EQ(size, std::filesystem::file_size(path));
  const int64_t d = 8192, kvd = 1024, ff = 28672, vocab = 32000, layers = 2;
  const int64_t matrix_elems = 2 * vocab * d + layers * (2 * d * d + 2 * d * kvd + 3 * d * ff);
  const int64_t floats = d + layers * 2 * d;  // output norm, per layer attention and FFN norms
  const int64_t tensor_bytes = matrix_elems / 256 * 144 + 4 * floats;
  {
    auto f = GGUFFile::open(path);
    expect_layout(*f, o.spec, vocab, DType::Q4_K);
    int64_t sum = 0;
    for (const GGUFTensor& t : f->tensors()) sum += t.n_bytes;
    EXPECT_EQ(sum, tensor_bytes);
  }
  EXPECT_GE(static_cast<int64_t>(size), tensor_bytes);
  EXPECT_LT(static_cast<int64_t>(size), tensor_bytes + (4 << 20));  // + metadata (the vocabulary), padding
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  std::printf("llama2-70b width, 2 layers, q4_K: %.1f MiB file, %.1f MiB on disk\n", size / 1048576.0,
              st.st_blocks * 512 / 1048576.0);
  EXPECT_LT(st.st_blocks * 512, static_cast<int64_t>(size) / 16) << "the tensor data should be a hole";

  auto m = Model::load(path);
  EXPECT_EQ(m->config().n_embd, 8192);
  EXPECT_EQ(m->config().n_kv_heads, 8);
  EXPECT_EQ(m->config().head_dim, 128);
  SessionOptions so;
  so.n_ctx = 4096;
  EXPECT_EQ(estimate_memory(*m, so).weights, tensor_bytes);
  EXPECT_EQ(estimate_memory(*m, so).kv_cache, layers * 4096 * (2 * kvd * 2 + 4));
  so.device = Device::Cuda;  // Q4_K stays in its blocks on the GPU by default, bf16 on request
  EXPECT_EQ(estimate_memory(*m, so).weights, tensor_bytes);
  so.gpu_weights = GpuWeights::kBf16;
  EXPECT_EQ(estimate_memory(*m, so).weights, 2 * matrix_elems + 4 * floats);
  m.reset();
  std::filesystem::remove(path);
}

// Without tensor data the weights read as zeros but the tensors given as bytes (llama3's rope
// factors, which the loader checks) are there: the same file otherwise, and it loads.
TEST(GenModel, WithoutTensorDataKeepsTheRopeFactors) {
  GenModelOptions o;
  o.spec = parse_dims("embd=64,layers=2,heads=4,kv_heads=2,ff=128,vocab=400,ctx=256,llama3_rope=1,rope_base=500000");
  o.threads = 2;
  const auto full = test::temp_path("gen-rope-full.gguf").string(), bare = test::temp_path("gen-rope-bare.gguf").string();
  generate_model(o, full);
  o.tensor_data = false;
  EXPECT_EQ(generate_model(o, bare), std::filesystem::file_size(full));
  auto a = GGUFFile::open(full), b = GGUFFile::open(bare);
  const GGUFTensor *ra = a->find_tensor("rope_freqs.weight"), *rb = b->find_tensor("rope_freqs.weight");
  ASSERT_TRUE(ra && rb);
  EXPECT_EQ(0, std::memcmp(ra->data, rb->data, static_cast<size_t>(ra->n_bytes)));
  const GGUFTensor* q = b->find_tensor("blk.1.attn_q.weight");
  EXPECT_TRUE(std::all_of(q->data, q->data + q->n_bytes, [](uint8_t x) { return x == 0; }));
  EXPECT_EQ(Model::load(bare)->config().rope_scaling, "llama3");
}

// A q5_K model against the f32 model of the same seed (the same weights before quantization):
// close logits, closer than q4_K's (the fifth bit halves the step), in f32 math and in fast math
// (8-bit decode activations).
TEST(GenModel, Q5KModelFollowsF32) {
  const std::string dims = "embd=256,layers=2,heads=4,kv_heads=2,ff=512,vocab=512,ctx=64";
  auto run = [&](DType t, bool fast) {
    auto m = Model::load(gen(dims, t));
    SessionOptions so;
    so.n_ctx = 64;
    so.n_threads = 2;
    so.fast_math = fast;
    Session s(m, so);
    std::vector<int32_t> prompt;
    for (int i = 0; i < 20; ++i) prompt.push_back((i * 53 + 7) % 512);
    s.prefill(prompt);
    std::vector<float> out(s.logits().begin(), s.logits().end());
    for (int32_t tok : {11, 97, 301}) {
      s.decode(tok);
      out.insert(out.end(), s.logits().begin(), s.logits().end());
    }
    return out;
  };
  auto rel = [](const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * double(a[i] - b[i]), den += b[i] * double(b[i]);
    return std::sqrt(num / den);
  };
  const auto f32 = run(DType::F32, false);
  for (bool fast : {false, true}) {
    const double e5 = rel(run(DType::Q5_K, fast), f32), e4 = rel(run(DType::Q4_K, fast), f32);
    std::printf("relative logit error against f32 (%s math): q5_K %.4f, q4_K %.4f\n", fast ? "fast" : "f32", e5, e4);
    EXPECT_GT(e5, 0.0);
    EXPECT_LT(e5, kQ5KLogitError) << (fast ? "fast math" : "f32 math");
    EXPECT_LT(e5, 0.75 * e4) << (fast ? "fast math" : "f32 math");
  }
}

TEST(GenModel, ParseDims) {
  GenModelSpec s = parse_dims("embd=128,layers=3,heads=8,kv_heads=2,ff=384,vocab=1000,ctx=512,arch=qwen2,tied=1,rope_base=1e6,name=x");
  EXPECT_EQ(std::make_tuple(s.embd, s.layers, s.heads, s.kv_heads, s.ff, s.vocab, s.ctx, s.tied, s.arch, s.name),
            std::make_tuple(128, 3, 8, 2, 384, 1000, 512, true, std::string("qwen2"), std::string("x")));
  EXPECT_EQ(s.rope_base, 1e6f);
  EXPECT_EQ(parse_dims("heads=8,embd=128").kv_heads, 8);  // kv_heads defaults to heads (MHA)
  EXPECT_TRUE(parse_dims("llama3_rope=1").llama3_rope);
  expect_gen_error([] { parse_dims("embd=64,depth=3"); }, "unknown key 'depth'");
  expect_gen_error([] { parse_dims("embd"); }, "expected KEY=VALUE, got 'embd'");
  expect_gen_error([] { parse_dims("embd=6x4"); }, "'embd' needs a positive integer, got '6x4'");
  expect_gen_error([] { parse_dims("layers=0"); }, "'layers' needs a positive integer");
  expect_gen_error([] { parse_dims("vocab=-5"); }, "'vocab' needs a positive integer");
  expect_gen_error([] { parse_dims("ff=99999999999999999999"); }, "'ff' needs a positive integer");
  expect_gen_error([] { parse_dims("tied=yes"); }, "'tied' needs 0 or 1");
  expect_gen_error([] { parse_dims("rope_base=abc"); }, "'rope_base' needs a number above 1");
  expect_gen_error([] { parse_dims("rope_base=0.5"); }, "'rope_base' needs a number above 1");
}

TEST(GenModel, RejectsShapesTheLoaderCannotUse) {
  auto bad = [](const std::string& dims, DType t, const std::string& needle) {
    expect_gen_error([&] { gen(dims, t); }, needle);
  };
  bad("embd=64,heads=5", DType::F32, "multiple of 2 * heads");
  bad("embd=64,heads=4,kv_heads=3", DType::F32, "multiple of kv_heads 3");
  bad("embd=64,heads=4,ff=100", DType::Q8_0, "multiples of 32 for q8_0");
  bad("embd=64,heads=4,ff=256", DType::Q4_K, "multiples of 256 for q4_K");
  bad("embd=64,heads=4,arch=mamba", DType::F32, "unknown architecture 'mamba'");
  expect_gen_error([] { gen("embd=64,heads=4", DType::F32, 1, 2, "/nonexistent/vocab.gguf"); },
                   "/nonexistent/vocab.gguf");
}

TEST(GenModel, DeterministicFromTheSeedWhateverTheThreads) {
  const std::string dims = "embd=64,layers=2,heads=4,kv_heads=2,ff=128,vocab=512,ctx=64";
  const auto a = read_bytes(gen(dims, DType::Q8_0, 5, 1));
  const auto b = read_bytes(gen(dims, DType::Q8_0, 5, 2));
  const auto c = read_bytes(gen(dims, DType::Q8_0, 6, 2));
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), c.size());
  EXPECT_NE(a, c);
}

TEST(GenModel, WeightStatistics) {
  auto f = GGUFFile::open(gen("embd=256,layers=1,heads=4,kv_heads=4,ff=512,vocab=400,ctx=64", DType::F32));
  auto stats = [&](const std::string& name) {
    const GGUFTensor* t = f->find_tensor(name);
    const float* p = reinterpret_cast<const float*>(t->data);
    const int64_t n = t->n_elements();
    double s = 0, q = 0;
    for (int64_t i = 0; i < n; ++i) s += p[i], q += double(p[i]) * p[i];
    const double mean = s / n;
    return std::make_pair(mean, std::sqrt(q / n - mean * mean));
  };
  auto [m1, s1] = stats("blk.0.attn_q.weight");
  EXPECT_NEAR(m1, 0.0, 0.005);
  EXPECT_NEAR(s1, 1.0 / 16, 0.003);  // 1/sqrt(256)
  auto [m2, s2] = stats("blk.0.ffn_down.weight");
  EXPECT_NEAR(s2, 1.0 / std::sqrt(512.0), 0.003);
  auto [m3, s3] = stats("token_embd.weight");
  EXPECT_NEAR(s3, 1.0, 0.05);
  auto [m4, s4] = stats("blk.0.attn_norm.weight");
  EXPECT_NEAR(m4, 1.0, 0.02);
  EXPECT_GT(s4, 0.0);
  EXPECT_LT(s4, 0.1);
  // Different tensors hold different values.
  EXPECT_NE(std::memcmp(f->find_tensor("blk.0.attn_q.weight")->data, f->find_tensor("blk.0.attn_k.weight")->data, 1024), 0);
}

TEST(GenModel, SyntheticVocabulary) {
  for (int requested : {100, 400, 5000}) {
    const auto path = gen("embd=32,layers=1,heads=2,ff=64,ctx=64,vocab=" + std::to_string(requested));
    auto f = GGUFFile::open(path);
    EXPECT_EQ(f->get_string("tokenizer.ggml.model"), "llama");
    const auto& tokens = f->get_string_array("tokenizer.ggml.tokens");
    const auto types = f->get_int_array("tokenizer.ggml.token_type");
    const auto scores = f->get_float_array("tokenizer.ggml.scores");
    const size_t n = static_cast<size_t>(std::max(requested, kMinSyntheticVocab));
    ASSERT_EQ(tokens.size(), n);
    ASSERT_EQ(types.size(), n);
    ASSERT_EQ(scores.size(), n);
    EXPECT_EQ(tokens[0], "<unk>");
    EXPECT_EQ(tokens[1], "<s>");
    EXPECT_EQ(tokens[2], "</s>");
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      EXPECT_EQ(tokens[3 + b], buf);
      EXPECT_EQ(types[3 + b], 6);
    }
    std::set<std::string_view> unique(tokens.begin(), tokens.end());
    EXPECT_EQ(unique.size(), n) << "duplicate tokens";
    // Every multi-character word piece can be built by merging two shorter pieces.
    for (size_t i = 3 + 256; i < n; ++i) {
      const std::string_view t = tokens[i];
      size_t chars = 0;
      for (unsigned char c : t) chars += (c & 0xC0) != 0x80;
      if (chars < 2) continue;
      const size_t last = t.size() - 1;  // pieces are ASCII after an optional leading "▁"
      EXPECT_TRUE(unique.count(t.substr(0, last))) << "piece '" << t << "' has no prefix piece";
    }
  }
}

TEST(GenModel, SyntheticVocabularyTokenizesAnyText) {
  auto m = Model::load(gen("embd=32,layers=1,heads=2,ff=64,ctx=64,vocab=8000"));
  const Tokenizer& tok = m->tokenizer();
  const std::string texts[] = {
      "The quick brown fox jumps over the lazy dog, then sits on the mat.",
      "Hello world! 12345 + 678 = ?",
      "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80 tabs\tand\nnewlines",
      std::string("\x01\x02\xFF\xFE bytes", 10),
  };
  for (const auto& text : texts) {
    const auto ids = tok.encode(text, false, false);
    ASSERT_FALSE(ids.empty());
    for (int32_t id : ids) EXPECT_NE(id, 0) << "<unk> in '" << text << "'";
    std::string back = tok.decode(ids);
    if (!back.empty() && back[0] == ' ') back.erase(0, 1);  // the SentencePiece space prefix
    EXPECT_EQ(back, text);
  }
  // English-like text comes out in word-sized pieces, not one token per character.
  const auto ids = tok.encode(texts[0], false, false);
  EXPECT_LT(ids.size() * 2, texts[0].size()) << ids.size() << " tokens";
}

TEST(GenModel, VocabularyFromAnotherFile) {
  // A generated model's vocabulary, copied into a model of another shape.
  const auto src = gen("embd=32,layers=1,heads=2,ff=64,ctx=64,vocab=777");
  const auto path = gen("embd=64,layers=1,heads=4,kv_heads=2,ff=128,ctx=64,vocab=5", DType::F32, 1, 2, src);
  auto a = GGUFFile::open(src), b = GGUFFile::open(path);
  EXPECT_EQ(b->find_tensor("token_embd.weight")->dims, (std::vector<int64_t>{64, 777}));
  size_t copied = 0;
  for (const auto& [k, v] : a->metadata()) {
    if (k.rfind("tokenizer.", 0) != 0) continue;
    ++copied;
    const GGUFValue* c = b->find(k);
    ASSERT_NE(c, nullptr) << k;
    EXPECT_EQ(c->type, v.type) << k;
    EXPECT_EQ(c->u, v.u) << k;
    EXPECT_EQ(c->str, v.str) << k;
    EXPECT_EQ(c->strings, v.strings) << k;
    ASSERT_EQ(c->count, v.count) << k;
    if (v.type == GGUFType::ARRAY && v.elem_type == GGUFType::FLOAT32) {
      EXPECT_EQ(a->get_float_array(k), b->get_float_array(k)) << k;
    } else if (v.type == GGUFType::ARRAY && v.elem_type != GGUFType::STRING) {
      EXPECT_EQ(a->get_int_array(k), b->get_int_array(k)) << k;
    }
  }
  EXPECT_GE(copied, 5u);
  EXPECT_EQ(Model::load(path)->config().n_vocab, 777);

  // The real Llama 2 vocabulary, when the shared data is present.
  const auto llama = test::shared_dir() / "vocab/ggml-vocab-llama-spm.gguf";
  if (!std::filesystem::exists(llama)) GTEST_SKIP() << "shared vocab not found: " << llama;
  const auto p2 = gen("embd=32,layers=1,heads=2,ff=64,ctx=64", DType::Q8_0, 1, 2, llama.string());
  auto m = Model::load(p2);
  EXPECT_EQ(m->config().n_vocab, 32000);
  EXPECT_EQ(m->tokenizer().encode("Hello world", true, false), (std::vector<int32_t>{1, 15043, 3186}));
  expect_gen_error([&] { gen("embd=32,layers=1,heads=2,ff=64,ctx=64", DType::F32, 1, 2, path + ".missing"); },
                   ".missing");
}

TEST(GenModel, VocabularyFromAFileWithoutOne) {
  GenModelOptions o;
  o.spec = parse_dims("embd=32,layers=1,heads=2,ff=64,ctx=64");
  o.threads = 1;
  const auto base = test::temp_path("gen-novocab-src.gguf").string();
  {
    // A file with metadata but no tokenizer.
    GGUFWriter w;
    w.set_string("general.architecture", "llama");
    w.write(base);
  }
  o.vocab_from = base;
  expect_gen_error([&] { generate_model(o, test::temp_path("gen-novocab.gguf").string()); }, "has no vocabulary");
}

}  // namespace
}  // namespace lazyllm
