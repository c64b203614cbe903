// The CUDA backend against the CPU one: baseline logits within bf16 tolerance and identical
// greedy tokens (random models of each architecture option, every flash-attention head size,
// the golden models in ../shared), LazyLLM's schedule and alive sets, keep 1.0 equal to the
// CUDA baseline bit for bit, and clean errors. Every GPU test skips with a message when no GPU
// (or no CUDA build) is available, as in CI.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <utility>

#include "kernels/cpu/quant.h"
#include "kernels/cpu/vec_ops.h"
#include "lazyllm/lazyllm.h"
#include "lazyllm/tokenizer.h"
#include "model/weights.h"
#include "prune/select.h"
#include "runtime/cuda/cuda_forward.h"
#include "runtime/forward_backend.h"
#include "runtime/gpu_weight_plan.h"
#include "runtime/session_internals.h"
#include "test_models.h"
#include "test_util.h"

namespace lazyllm {
namespace {

#define LAZYLLM_REQUIRE_GPU()                                                             \
  do {                                                                                    \
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device (or a build without CUDA)";    \
  } while (0)

// bf16 weights and activations against the CPU's float path: measured worst relative logit
// differences on the device machine are reported by the tests; this bound leaves headroom.
constexpr double kLogitTol = 4e-2;

using test::argmax;
using test::random_tokens;

// max |a - b| / max |b|.
double rel_diff(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - b[i]));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / std::max(den, 1e-30);
}

// Gap between the two largest logits, relative to the largest magnitude: argmax is only
// expected to match when this exceeds the tolerance.
double top2_margin(std::span<const float> v) {
  float a = -INFINITY, b = -INFINITY, scale = 0;
  for (float x : v) {
    scale = std::max(scale, std::fabs(x));
    if (x > a) b = a, a = x;
    else if (x > b) b = x;
  }
  return (a - b) / std::max(scale, 1e-30f);
}

SessionOptions options(Device d, int n_ctx) {
  SessionOptions o;
  o.device = d;
  o.n_ctx = n_ctx;
  o.n_threads = 2;
  return o;
}

// Prefill (in one or two pieces), then teacher-forced decode with the CPU's greedy tokens;
// returns the worst relative logit difference and checks argmax where the margin is clear.
double compare_backends(const std::shared_ptr<Model>& model, const std::vector<int32_t>& prompt, int split,
                        int steps, const PruneSchedule& prune = {}) {
  SessionOptions co = options(Device::Cpu, static_cast<int>(prompt.size()) + steps + 1);
  co.prune = prune;
  SessionOptions go = co;
  go.device = Device::Cuda;
  Session cpu(model, co), gpu(model, go);
  double worst = 0;
  auto check = [&](const std::string& where) {
    const double r = rel_diff(gpu.logits(), cpu.logits());
    worst = std::max(worst, r);
    EXPECT_LT(r, kLogitTol) << where;
    if (top2_margin(cpu.logits()) > 2 * kLogitTol) {
      EXPECT_EQ(argmax(gpu.logits()), argmax(cpu.logits())) << where;
    }
  };
  std::span<const int32_t> all(prompt);
  if (split > 0) {
    cpu.prefill(all.first(split));
    gpu.prefill(all.first(split));
    check("first prefill");
    cpu.prefill(all.subspan(split));
    gpu.prefill(all.subspan(split));
  } else {
    cpu.prefill(all);
    gpu.prefill(all);
  }
  check("prefill");
  for (int s = 0; s < steps; ++s) {
    const int32_t next = argmax(cpu.logits());
    cpu.decode(next);
    gpu.decode(next);
    check("decode step " + std::to_string(s));
  }
  return worst;
}

TEST(Device, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(parse_device("cpu"), Device::Cpu);
  EXPECT_EQ(parse_device("auto"), default_device());
  EXPECT_THROW(parse_device("gpu"), Error);
  EXPECT_THROW(parse_device(""), Error);
  if (cuda_available()) EXPECT_EQ(parse_device("cuda"), Device::Cuda);
  else EXPECT_THROW(parse_device("cuda"), Error);
}

TEST(Device, CpuSessionExposesStateOnlyOnCpu) {
  LAZYLLM_REQUIRE_GPU();
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  Session gpu(model, options(Device::Cuda, 64));
  EXPECT_THROW(SessionInternals::cpu(gpu), Error);
}

TEST(CudaVsCpu, RandomModelsOfEachArchitecture) {
  LAZYLLM_REQUIRE_GPU();
  for (const auto& spec : test::arch_variants()) {
    for (DType dt : {DType::F32, DType::BF16, DType::Q8_0}) {
      SCOPED_TRACE(spec.name + " " + std::string(dtype_name(dt)));
      auto model = test::make_model(spec, dt);
      auto prompt = random_tokens(90, model->config().n_vocab, 11);
      const double worst = compare_backends(model, prompt, 0, 6);
      const double worst_split = compare_backends(model, prompt, 41, 3);
      std::cout << "[ cuda ] " << spec.name << " " << dtype_name(dt) << ": worst relative logit difference "
                << std::max(worst, worst_split) << "\n";
    }
  }
}

// Head sizes of the tensor-core attention kernels (the two wgmma ones, which take head size 128 on
// compute capability 9.0 and hand the others to fwd2; the mma.sync one), prompts longer than a
// row block and a key tile (at head size 128, nine key tiles: the warp-specialized kernel's ring
// of three buffers goes round three times), and a second prefill on top of cached keys (tiles
// masked or not by where they start).
TEST(CudaVsCpu, FlashAttentionHeadSizes) {
  LAZYLLM_REQUIRE_GPU();
  const test::ScopedEnv attention("LAZYLLM_CUDA_ATTENTION");
  for (const char* kernel : {"ws", "wg", "fwd2"}) {
    attention.set(kernel);
    for (int hd : {16, 32, 64, 128}) {
      test::ArchSpec s{.name = "hd" + std::to_string(hd), .embd = 4 * hd, .layers = 2, .heads = 4, .kv_heads = 2,
                       .ff = 192, .ctx = 1280};
      SCOPED_TRACE(s.name + " " + kernel);
      auto model = test::make_model(s, DType::BF16);
      auto prompt = random_tokens(hd == 128 ? 1100 : 300, model->config().n_vocab, 5);
      const double worst = std::max(compare_backends(model, prompt, 0, 4), compare_backends(model, prompt, 130, 2));
      std::cout << "[ cuda ] " << kernel << " kernel, head size " << hd << ": worst relative logit difference "
                << worst << "\n";
    }
  }
}

// The golden models: CPU and CUDA greedy continuations identical, logits within tolerance. Once
// the CPU's top two logits come within the tolerance of each other (a near-tie that bf16 rounding
// may order either way), the continuations may part, so the comparison of that case ends there.
TEST(CudaVsCpu, GoldenModelsGreedy) {
  LAZYLLM_REQUIRE_GPU();
  for (const std::string name : {"stories260K", "llama-2-tiny-random"}) {
    LAZYLLM_REQUIRE_SHARED("models/" + name + ".gguf");
    LAZYLLM_REQUIRE_SHARED("golden/" + name + ".golden.json");
    SCOPED_TRACE(name);
    auto model = Model::load((test::shared_dir() / "models" / (name + ".gguf")).string());
    std::ifstream in(test::shared_dir() / "golden" / (name + ".golden.json"));
    const auto cases = nlohmann::json::parse(in);
    double worst = 0;
    int compared = 0, ties = 0;
    for (const auto& c : cases) {
      std::vector<int32_t> tokens = model->tokenizer().encode(c["prompt"].get<std::string>(), true, false);
      const int n_gen = static_cast<int>(c["greedy"].size());
      Session cpu(model, options(Device::Cpu, 512)), gpu(model, options(Device::Cuda, 512));
      cpu.prefill(tokens);
      gpu.prefill(tokens);
      for (int i = 0; i < n_gen; ++i) {
        worst = std::max(worst, rel_diff(gpu.logits(), cpu.logits()));
        EXPECT_LT(rel_diff(gpu.logits(), cpu.logits()), kLogitTol);
        const int32_t a = argmax(cpu.logits()), b = argmax(gpu.logits());
        if (top2_margin(cpu.logits()) <= kLogitTol) {
          ++ties;
          break;
        }
        ASSERT_EQ(a, b) << "greedy token " << i;
        ++compared;
        cpu.decode(a);
        gpu.decode(b);
      }
    }
    EXPECT_GT(compared, 0);
    std::cout << "[ cuda ] " << name << ": " << compared << " greedy tokens identical, " << ties
              << " continuations stopped at a near-tie; worst relative logit difference " << worst << "\n";
  }
}

TEST(CudaLazy, KeepOneIsBitwiseCudaBaseline) {
  LAZYLLM_REQUIRE_GPU();
  for (const auto& spec : test::arch_variants()) {
    SCOPED_TRACE(spec.name);
    auto model = test::make_model(spec, DType::BF16);
    auto prompt = random_tokens(70, model->config().n_vocab, 3);
    SessionOptions bo = options(Device::Cuda, 128), lo = bo;
    lo.prune = test::keep_all_schedule(model->config().n_layers);
    Session base(model, bo), lazy(model, lo);
    base.prefill(prompt);
    lazy.prefill(prompt);
    for (int step = 0; step < 5; ++step) {
      ASSERT_EQ(0, std::memcmp(base.logits().data(), lazy.logits().data(), base.logits().size() * sizeof(float)))
          << "step " << step;
      const int32_t next = argmax(base.logits());
      base.decode(next);
      lazy.decode(next);
    }
    EXPECT_DOUBLE_EQ(lazy.stats().computed_fraction, 1.0);
  }
}

// SessionOptions::gpu_warmup: the first session of a product shape loads its kernels, once a
// process (a second session of the shape loads none), and no result changes with it.
TEST(CudaWarmup, LoadsEachShapeOnceAndChangesNoResult) {
  LAZYLLM_REQUIRE_GPU();
  const test::ArchSpec spec{.name = "warmup_shape", .ff = 120};  // gate|up and down new to the process
  auto model = test::make_model(spec, DType::BF16);
  auto prompt = random_tokens(200, model->config().n_vocab, 5);
  SessionOptions off = options(Device::Cuda, 256), on = off;
  off.gpu_warmup = false;
  Session plain(model, off);
  const GpuWarmupTotals before = cuda_warmup_totals();
  Session warmed(model, on);
  const GpuWarmupTotals after = cuda_warmup_totals();
  EXPECT_GE(after.shapes - before.shapes, 2);
  EXPECT_GT(after.launches, before.launches);
  Session again(model, on);
  EXPECT_EQ(cuda_warmup_totals().shapes, after.shapes);
  EXPECT_EQ(cuda_warmup_totals().launches, after.launches);
  plain.prefill(prompt);
  warmed.prefill(prompt);
  for (int step = 0; step < 4; ++step) {
    ASSERT_EQ(0, std::memcmp(plain.logits().data(), warmed.logits().data(), plain.logits().size() * sizeof(float)))
        << "step " << step;
    const int32_t next = argmax(plain.logits());
    plain.decode(next);
    warmed.decode(next);
  }
}

// The whole LazyLLM machinery on the GPU (selection and compaction in prefill, the decode plan
// with listed keys) while keeping every token, against the GPU baseline: the same logits within
// float rounding (the listed-key attention sums in another order than the baseline's kernel).
TEST(CudaLazy, ForcedPathKeepingEveryTokenMatchesCudaBaseline) {
  LAZYLLM_REQUIRE_GPU();
  for (const auto& spec : test::arch_variants()) {
    SCOPED_TRACE(spec.name);
    auto model = test::make_model(spec, DType::BF16);
    auto prompt = random_tokens(70, model->config().n_vocab, 3);
    SessionOptions bo = options(Device::Cuda, 128), lo = bo;
    lo.prune = test::keep_all_schedule(model->config().n_layers);
    lo.prune.decode = LazyDecode::kReselect;  // every step through the plan (complete would finish at once)
    lo.force_selection = true;
    Session base(model, bo), lazy(model, lo);
    base.prefill(prompt);
    lazy.prefill(prompt);
    EXPECT_EQ(lazy.stats().selections, model->config().n_layers - 1);
    double worst = 0;
    for (int step = 0; step < 5; ++step) {
      worst = std::max(worst, rel_diff(lazy.logits(), base.logits()));
      if (top2_margin(base.logits()) > 1e-2) {
        EXPECT_EQ(argmax(lazy.logits()), argmax(base.logits())) << "step " << step;
      }
      const int32_t next = argmax(base.logits());
      base.decode(next);
      lazy.decode(next);
    }
    std::cout << "[ cuda ] " << spec.name << ": forced LazyLLM path vs baseline, worst relative logit diff " << worst
              << "\n";
    EXPECT_LT(worst, 1e-2);
    EXPECT_EQ(lazy.stats().revived, 0);
    EXPECT_DOUBLE_EQ(lazy.stats().computed_fraction, 1.0);
  }
}

// The static and random ablations run on the GPU through the same plan as on the CPU: random
// keeps exactly the CPU's tokens, static the CPU's up to near-ties; neither revives.
TEST(CudaLazy, AblationsFollowTheCpu) {
  LAZYLLM_REQUIRE_GPU();
  auto model = test::make_model(test::arch_variants()[0], DType::BF16);
  const int n_layers = model->config().n_layers;
  auto prompt = random_tokens(150, model->config().n_vocab, 13);
  for (const char* spec : {"random@3:1:0.6,2:0.5", "static:1:0.6,2:0.5"}) {
    SCOPED_TRACE(spec);
    SessionOptions co = options(Device::Cpu, 256);
    co.prune = PruneSchedule::parse(spec, n_layers);
    SessionOptions go = co;
    go.device = Device::Cuda;
    Session cpu(model, co), gpu(model, go);
    cpu.prefill(prompt);
    gpu.prefill(prompt);
    EXPECT_EQ(gpu.stats().alive_per_layer, cpu.stats().alive_per_layer);
    int same = 0;
    for (int t = 0; t < static_cast<int>(prompt.size()); ++t)
      same += SessionInternals::backend(gpu).kv_depth(t) == SessionInternals::backend(cpu).kv_depth(t);
    if (spec[0] == 'r') EXPECT_EQ(same, static_cast<int>(prompt.size()));
    else EXPECT_GE(same, 0.9 * prompt.size());
    for (int step = 0; step < 4; ++step) {
      const int32_t next = argmax(cpu.logits());
      EXPECT_LT(rel_diff(gpu.logits(), cpu.logits()), 0.1) << "step " << step;
      cpu.decode(next);
      gpu.decode(next);
    }
    EXPECT_EQ(gpu.stats().revived, 0);
    EXPECT_EQ(cpu.stats().revived, 0);
    EXPECT_EQ(gpu.stats().selections, cpu.stats().selections);
  }
}

// LazyDecode::kComplete on the GPU: the first decode step computes every deferred pair (the same
// count as the CPU: the prefill's alive counts are exact), then decode runs as the baseline's
// graph over the full cache; logits follow the CPU's.
TEST(CudaLazy, CompleteFollowsTheCpu) {
  LAZYLLM_REQUIRE_GPU();
  auto model = test::make_model(test::arch_variants()[0], DType::BF16);
  const int L = model->config().n_layers;
  // 400 tokens: the completing step computes 240 rows at layer 1, enough to gather their keys.
  auto prompt = random_tokens(400, model->config().n_vocab, 17);
  SessionOptions co = options(Device::Cpu, 512);
  co.prune = PruneSchedule::parse("complete:1:0.4,2:0.5", L);
  SessionOptions go = co;
  go.device = Device::Cuda;
  Session cpu(model, co), gpu(model, go);
  cpu.prefill(prompt);
  gpu.prefill(prompt);
  const int64_t selections = gpu.stats().selections;
  for (int step = 0; step < 5; ++step) {
    const int32_t next = argmax(cpu.logits());
    EXPECT_LT(rel_diff(gpu.logits(), cpu.logits()), 0.1) << "step " << step;
    cpu.decode(next);
    gpu.decode(next);
    if (step == 0) {
      EXPECT_EQ(gpu.stats().aux_cache_entries, 0);
      EXPECT_EQ(gpu.stats().revived, cpu.stats().revived);
      EXPECT_EQ(gpu.stats().token_layers_computed, int64_t(prompt.size() + 1) * L);
      for (int t = 0; t <= static_cast<int>(prompt.size()); ++t)
        ASSERT_EQ(SessionInternals::backend(gpu).kv_depth(t), L) << t;
    }
  }
  EXPECT_EQ(gpu.stats().lazy_decode, "complete");
  EXPECT_EQ(gpu.stats().selections, selections);
  EXPECT_EQ(gpu.stats().token_layers_computed, int64_t(prompt.size() + 5) * L);
}

// The completing step's attention reads its keys as two runs of slots in place (the prefill's
// kept keys, then its own rows) with each prefill kernel, as close to gathering them into one run
// first as two orders of summing allow; same work counted.
TEST(CudaLazy, KeyRunsInPlaceMatchGatheredKeys) {
  LAZYLLM_REQUIRE_GPU();
  const test::ScopedEnv attention("LAZYLLM_CUDA_ATTENTION");
  for (const char* kernel : {"ws", "wg", "fwd2"}) {
    attention.set(kernel);
    for (int hd : {64, 128}) {
      test::ArchSpec spec{.name = "runs" + std::to_string(hd),
                          .embd = 4 * hd,
                          .layers = 4,
                          .heads = 4,
                          .kv_heads = 2,
                          .ff = 192,
                          .ctx = 1024};
      SCOPED_TRACE(spec.name + " " + kernel);
      auto model = test::make_model(spec, DType::BF16);
      const int L = model->config().n_layers;
      auto prompt = random_tokens(700, model->config().n_vocab, 23);
      SessionOptions o = options(Device::Cuda, 1024);
      o.prune = PruneSchedule::parse("complete:1:0.5,2:0.6", L);
      Session runs(model, o);
      ::setenv("LAZYLLM_CUDA_KEY_RUNS", "0", 1);
      Session gathered(model, o);
      ::unsetenv("LAZYLLM_CUDA_KEY_RUNS");
      runs.prefill(prompt);
      gathered.prefill(prompt);
      ASSERT_LT(runs.stats().prefill_computed_fraction, 1.0) << "the prefill must defer rows";
      double worst = 0;
      for (int step = 0; step < 3; ++step) {
        const double d = rel_diff(runs.logits(), gathered.logits());
        EXPECT_LT(d, 0.01) << "step " << step;
        if (step > 0) worst = std::max(worst, d);  // the prefill's logits are the same computation
        const int32_t next = argmax(gathered.logits());
        runs.decode(next);
        gathered.decode(next);
      }
      std::cout << "[ cuda ] key runs, " << kernel << " kernel, head size " << hd
                << ": worst relative logit difference " << worst << " against gathered keys\n";
      EXPECT_EQ(runs.stats().token_layers_computed, gathered.stats().token_layers_computed);
      EXPECT_EQ(SessionInternals::backend(runs).decode_path_stats().key_run_batches, L - 1);
      EXPECT_EQ(SessionInternals::backend(gathered).decode_path_stats().key_run_batches, 0);
    }
  }
}

// Attention over rows with their own key counts (as a completing or reviving batch lists them),
// keys in two runs of slots or gathered into one, against the softmax computed here. Where a
// whole key tile lies within what a block's first row sees, the kernels skip the mask; a tile
// wrongly taken as whole would let a later key in. So each score grows steeply with the key's
// position (heads of one sign) or falls with it (the other), and each key's values differ from
// its neighbours': a row's output is then nearly the values of the latest (or earliest) key it
// sees, and one key more or less moves it by more than the tolerance (checked here too).
std::vector<float> reference_attention(const CudaAttentionCase& c, const std::vector<std::vector<int>>& seen) {
  const int qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
  // The inputs as the kernels read them (half precision), rounded once.
  auto rounded = [](std::span<const float> x) {
    std::vector<float> y(x.begin(), x.end());
    round_to_f16(y.data(), static_cast<int64_t>(y.size()));
    return y;
  };
  const std::vector<float> q = rounded(c.q), k = rounded(c.k), v = rounded(c.v);
  std::vector<float> out(static_cast<size_t>(c.m) * qd);
  for (int r = 0; r < c.m; ++r)
    for (int h = 0; h < c.n_heads; ++h) {
      const int g = h / (c.n_heads / c.n_kv_heads);
      std::vector<double> s;
      double mx = -INFINITY;
      for (int slot : seen[r]) {
        double dot = 0;
        for (int e = 0; e < c.head_dim; ++e)
          dot += double(q[size_t(r) * qd + h * c.head_dim + e]) * k[size_t(slot) * kvd + g * c.head_dim + e];
        s.push_back(dot / std::sqrt(double(c.head_dim)));
        mx = std::max(mx, s.back());
      }
      double l = 0;
      for (double& x : s) l += (x = std::exp(x - mx));
      for (int e = 0; e < c.head_dim; ++e) {
        double o = 0;
        for (size_t j = 0; j < seen[r].size(); ++j) o += s[j] * v[size_t(seen[r][j]) * kvd + g * c.head_dim + e];
        out[size_t(r) * qd + h * c.head_dim + e] = static_cast<float>(o / l);
      }
    }
  return out;
}

double max_abs_diff(std::span<const float> a, std::span<const float> b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i]));
  return d;
}

TEST(CudaAttention, RowKeyCountsMaskOnlyPastEachRowsKeys) {
  constexpr double kTol = 0.05;  // bf16 output of values up to 2; neighbouring keys differ by >= 0.25
  const test::ScopedEnv attention("LAZYLLM_CUDA_ATTENTION");
  for (int hd : {64, 128})
    for (int m : {77, 200}) {
      // Run A: keys the prefill kept, positions 0, 2, 4, ...; the rows at 4r + 1, each also a key
      // of run B (its own slot) or merged with run A by position (one gathered run).
      const int n_heads = 4, n_kv = 2, n_a = 2 * m;
      std::vector<int32_t> qpos(m), pos_a(n_a);
      for (int r = 0; r < m; ++r) qpos[r] = 4 * r + 1;
      for (int i = 0; i < n_a; ++i) pos_a[i] = 2 * i;
      std::mt19937 rng(hd + m);
      std::uniform_real_distribution<float> small(-0.05f, 0.05f);
      auto key_row = [&](int pos) {  // K: the position in dimension 0 of each K/V head; V: by position
        std::vector<float> k(n_kv * hd), v(n_kv * hd);
        for (int i = 0; i < n_kv * hd; ++i) {
          k[i] = i % hd == 0 ? pos / 64.0f : small(rng);
          v[i] = static_cast<float>((pos * 7 + i * 3) % 17 - 8) / 4.0f;
        }
        return std::pair{k, v};
      };
      std::vector<float> q(static_cast<size_t>(m) * n_heads * hd);
      const float steep = 12.0f * 64.0f * std::sqrt(float(hd));  // 12 in the score per position
      for (int r = 0; r < m; ++r)
        for (int h = 0; h < n_heads; ++h)
          for (int e = 0; e < hd; ++e)
            q[(size_t(r) * n_heads + h) * hd + e] = e == 0 ? (h % 2 ? -steep : steep) : small(rng);
      for (bool two_runs : {true, false}) {
        CudaAttentionCase c;
        c.n_heads = n_heads, c.n_kv_heads = n_kv, c.head_dim = hd, c.m = m;
        std::vector<int32_t> kpos, ends(m), ends_b;
        std::vector<float> k, v;
        auto add_key = [&](int pos) {
          auto [kr, vr] = key_row(pos);
          k.insert(k.end(), kr.begin(), kr.end()), v.insert(v.end(), vr.begin(), vr.end());
          kpos.push_back(pos);
        };
        std::vector<std::vector<int>> seen(m);
        if (two_runs) {
          for (int p : pos_a) add_key(p);
          c.run_b = n_a + 5;  // slots between the runs are never read
          for (int i = 0; i < 5; ++i) add_key(1 << 20);
          for (int r = 0; r < m; ++r) add_key(qpos[r]);
          ends_b.resize(m);
          for (int r = 0; r < m; ++r) {
            ends[r] = static_cast<int>(std::lower_bound(pos_a.begin(), pos_a.end(), qpos[r]) - pos_a.begin());
            ends_b[r] = r + 1;
            for (int i = 0; i < ends[r]; ++i) seen[r].push_back(i);
            for (int i = 0; i < ends_b[r]; ++i) seen[r].push_back(c.run_b + i);
          }
        } else {
          std::vector<int32_t> all(pos_a);
          all.insert(all.end(), qpos.begin(), qpos.end());
          std::sort(all.begin(), all.end());
          for (int p : all) add_key(p);
          for (int r = 0; r < m; ++r) {
            ends[r] = static_cast<int>(std::upper_bound(all.begin(), all.end(), qpos[r]) - all.begin());
            for (int i = 0; i < ends[r]; ++i) seen[r].push_back(i);
          }
        }
        c.n_slots = static_cast<int>(kpos.size());
        c.q = q, c.k = k, c.v = v, c.qpos = qpos, c.kpos = kpos, c.row_key_end = ends, c.row_key_end_b = ends_b;
        const std::vector<float> ref = reference_attention(c, seen);
        // The design's margin: every row's output moves by more than kTol with the next key in.
        std::vector<std::vector<int>> one_more = seen;
        for (int r = 0; r + 1 < m; ++r) one_more[r] = seen[r + 1];
        const std::vector<float> wrong = reference_attention(c, one_more);
        for (int r = 0; r + 1 < m; ++r)
          ASSERT_GT(max_abs_diff(std::span(wrong).subspan(size_t(r) * n_heads * hd, n_heads * hd),
                                 std::span(ref).subspan(size_t(r) * n_heads * hd, n_heads * hd)),
                    4 * kTol)
              << "row " << r;
        if (!cuda_available()) continue;
        for (const char* kernel : {"ws", "wg", "fwd2"}) {
          SCOPED_TRACE(std::string(kernel) + " head size " + std::to_string(hd) + " rows " + std::to_string(m) +
                       (two_runs ? " two runs" : " one run"));
          attention.set(kernel);
          const std::vector<float> gpu = cuda_attention_rows(c);
          EXPECT_LT(max_abs_diff(gpu, ref), kTol);
        }
      }
    }
  if (!cuda_available())
    GTEST_SKIP() << "no CUDA device (or a build without CUDA): the reference's margin checked only";
}

// Same schedule (alive counts per layer are exact) and the same alive sets: each prompt token's
// KV depth says at which layers it was alive. Sets may differ only where bf16 rounding reorders
// near-tied importances, so almost every token must agree.
TEST(CudaLazy, SameScheduleAndAliveSetsAsCpu) {
  LAZYLLM_REQUIRE_GPU();
  for (const auto& spec : test::arch_variants()) {
   for (int split : {0, 120}) {  // one prefill, or two (the second prunes on top of cached keys)
    SCOPED_TRACE(spec.name + " split " + std::to_string(split));
    auto model = test::make_model(spec, DType::BF16);
    const int n_layers = model->config().n_layers;
    auto prompt = random_tokens(200, model->config().n_vocab, 9);
    SessionOptions co = options(Device::Cpu, 256);
    co.prune = PruneSchedule::parse("reselect:1:0.6,2:0.5,3:0.5", n_layers);
    SessionOptions go = co;
    go.device = Device::Cuda;
    Session cpu(model, co), gpu(model, go);
    std::span<const int32_t> all(prompt);
    if (split > 0) {
      cpu.prefill(all.first(split));
      gpu.prefill(all.first(split));
      EXPECT_EQ(gpu.stats().aux_cache_entries, cpu.stats().aux_cache_entries);
    }
    cpu.prefill(all.subspan(split));
    gpu.prefill(all.subspan(split));
    EXPECT_EQ(gpu.stats().alive_per_layer, cpu.stats().alive_per_layer);
    EXPECT_EQ(gpu.stats().prompt_token_layers_computed, cpu.stats().prompt_token_layers_computed);
    EXPECT_EQ(gpu.stats().aux_cache_entries, cpu.stats().aux_cache_entries);
    int same = 0;
    for (int t = 0; t < static_cast<int>(prompt.size()); ++t)
      same += SessionInternals::backend(gpu).kv_depth(t) == SessionInternals::backend(cpu).kv_depth(t);
    const double agree = double(same) / prompt.size();
    std::cout << "[ cuda ] " << spec.name << (split ? " (two prefills)" : "") << ": alive sets agree for "
              << 100 * agree << "% of prompt tokens\n";
    EXPECT_GE(agree, 0.9);
    EXPECT_LT(rel_diff(gpu.logits(), cpu.logits()), 0.1);

    // Decode with re-selection and revival: selections per layer mostly agree, bookkeeping holds.
    SessionInternals::backend(cpu).set_record_selection(true);
    SessionInternals::backend(gpu).set_record_selection(true);
    for (int step = 0; step < 4; ++step) {
      const int32_t next = argmax(cpu.logits());
      cpu.decode(next);
      gpu.decode(next);
      const auto& sc = SessionInternals::backend(cpu).last_selection();
      const auto& sg = SessionInternals::backend(gpu).last_selection();
      ASSERT_EQ(sc.size(), sg.size());
      for (size_t l = 0; l < sc.size(); ++l) {
        ASSERT_EQ(sc[l].size(), sg[l].size()) << "layer " << l;
        std::vector<int> common;
        std::set_intersection(sc[l].begin(), sc[l].end(), sg[l].begin(), sg[l].end(), std::back_inserter(common));
        EXPECT_GE(common.size(), 0.85 * sc[l].size()) << "layer " << l;
      }
      for (int t = 0; t < cpu.n_past(); ++t) {
        // Every token either has K/V at all layers or is waiting in the Aux Cache.
        const int depth = SessionInternals::backend(gpu).kv_depth(t);
        EXPECT_TRUE(depth >= 1 && depth <= n_layers);
      }
    }
    if (cpu.stats().revived > 0) {
      EXPECT_GT(gpu.stats().revived, 0);
    }
   }
  }
}

// A revival budget is the shared plan's (DecodeStep), which the GPU executes: no revivals at 0,
// at most N tokens a step (each computed from where it stopped through the last layer at most),
// and revivals on both devices where the budget allows them.
TEST(CudaLazy, ReviveBudgetBoundsRevivalsAsOnTheCpu) {
  LAZYLLM_REQUIRE_GPU();
  auto model = test::make_model(test::arch_variants()[0], DType::BF16);
  const int n_layers = model->config().n_layers;
  auto prompt = random_tokens(200, model->config().n_vocab, 31);
  for (const int budget : {0, 2}) {
    SCOPED_TRACE("budget " + std::to_string(budget));
    SessionOptions co = options(Device::Cpu, 256);
    co.prune = PruneSchedule::parse("reselect@" + std::to_string(budget) + ":1:0.6,2:0.5,3:0.5", n_layers);
    SessionOptions go = co;
    go.device = Device::Cuda;
    Session cpu(model, co), gpu(model, go);
    cpu.prefill(prompt);
    gpu.prefill(prompt);
    for (int step = 0; step < 6; ++step) {
      const int32_t next = argmax(cpu.logits());
      const int64_t before = gpu.stats().revived;
      cpu.decode(next);
      gpu.decode(next);
      EXPECT_LE(gpu.stats().revived - before, budget * (n_layers - 1)) << "step " << step;
    }
    if (budget == 0) {
      EXPECT_EQ(gpu.stats().revived, 0);
      EXPECT_EQ(cpu.stats().revived, 0);
    } else {
      EXPECT_GT(cpu.stats().revived, 0);
      EXPECT_GT(gpu.stats().revived, 0);
    }
  }
}

// The GPU's selection against the shared select_top on the same scores: the same tokens, ties to
// the lower index, kept rows numbered in order and the last row after them. Scores drawn from a
// few distinct values make long runs of ties; -0 and +0 are equal, as on the CPU.
TEST(CudaSelect, SameChoiceAsCpuIncludingTies) {
  LAZYLLM_REQUIRE_GPU();
  std::mt19937 rng(7);
  int cases = 0;
  for (int n : {0, 1, 2, 7, 100, 1023, 1024, 1025, 4096, 32767, 40000}) {
    for (int distinct : {1, 3, 50, 0}) {  // 0: continuous values
      std::vector<float> scores(n);
      std::uniform_int_distribution<int> pick(0, std::max(distinct - 1, 0));
      std::uniform_real_distribution<float> cont(-1.0f, 1.0f);
      for (float& x : scores) {
        x = distinct ? 0.125f * pick(rng) : cont(rng) * 1e-3f;
        if (distinct && x == 0.0f && (rng() & 1)) x = -0.0f;
      }
      if (distinct == 0 && n > 4) scores[n / 3] = scores[n / 2] = scores[n - 1];  // a few exact ties too
      for (int k : {0, 1, n / 3, n / 2, n - 1, n}) {
        if (k < 0) continue;
        SCOPED_TRACE("n " + std::to_string(n) + " distinct " + std::to_string(distinct) + " k " + std::to_string(k));
        const std::vector<int> want = select_top(scores, k);
        const std::vector<int32_t> dest = cuda_select_top_dest(scores, k);
        ASSERT_EQ(dest.size(), static_cast<size_t>(n + 1));
        std::vector<int> got;
        for (int i = 0; i < n; ++i) {
          if (dest[i] < 0) continue;
          ASSERT_EQ(dest[i], static_cast<int>(got.size())) << "row " << i;
          got.push_back(i);
        }
        ASSERT_EQ(got, want);
        EXPECT_EQ(dest[n], static_cast<int>(want.size()));
        ++cases;
      }
    }
  }
  std::cout << "[ cuda ] GPU selection identical to select_top in " << cases << " cases (ties included)\n";
}

// Baseline decode replayed from CUDA graphs gives the same logits, bit for bit, as the same
// kernels launched one by one (LAZYLLM_CUDA_GRAPHS=0), across a graph bucket boundary (1024
// keys), after a reset (graphs reused) and after a second prefill on top of the decoded tokens.
TEST(CudaDecode, GraphsMatchDirectLaunches) {
  LAZYLLM_REQUIRE_GPU();
  // Q4_0: decode graphs over the quantized matrix-vector kernels (prefill dequantizes).
  for (const auto& [base, dtype] :
       {std::pair{test::arch_variants()[0], DType::BF16}, std::pair{test::arch_variants()[2], DType::BF16},
        std::pair{test::arch_variants()[0], DType::Q4_0}}) {
    test::ArchSpec spec = base;
    spec.ctx = 2048;
    SCOPED_TRACE(spec.name + " " + std::string(dtype_name(dtype)));
    auto model = test::make_model(spec, dtype);
    auto prompt = random_tokens(1000, model->config().n_vocab, 21);
    ::setenv("LAZYLLM_CUDA_GRAPHS", "0", 1);
    Session direct(model, options(Device::Cuda, 1200));
    ::unsetenv("LAZYLLM_CUDA_GRAPHS");
    Session graphs(model, options(Device::Cuda, 1200));
    int steps = 0;
    for (int round = 0; round < 2; ++round) {
      direct.reset();
      graphs.reset();
      direct.prefill(prompt);
      graphs.prefill(prompt);
      for (int s = 0; s < 40; ++s) {
        ASSERT_EQ(0, std::memcmp(direct.logits().data(), graphs.logits().data(), direct.logits().size() * sizeof(float)))
            << "round " << round << " step " << s;
        const int32_t a = argmax(direct.logits()), b = argmax(graphs.logits());
        ASSERT_EQ(a, b);
        direct.decode(a);
        graphs.decode(b);
        ++steps;
      }
    }
    auto more = random_tokens(30, model->config().n_vocab, 22);
    direct.prefill(more);
    graphs.prefill(more);
    for (int s = 0; s < 5; ++s) {
      ASSERT_EQ(0, std::memcmp(direct.logits().data(), graphs.logits().data(), direct.logits().size() * sizeof(float)));
      const int32_t a = argmax(direct.logits());
      direct.decode(a);
      graphs.decode(a);
      ++steps;
    }
    std::cout << "[ cuda ] " << spec.name << " " << dtype_name(dtype)
              << ": graph decode identical to direct launches for " << steps << " tokens\n";
  }
}

// A re-selecting decode step run as one CUDA graph that selects on the GPU (a steady step) gives
// the same logits, bit for bit, the same selections and the same counters as the host's plan
// (LAZYLLM_CUDA_STEADY_DECODE=0), also where the graph finds a kept token that must revive and
// hands the step back. Keeping every token at every layer (forced) makes every step steady;
// keeping half makes revivals, so both outcomes are exercised; a graph bucket (1024 keys) is
// crossed.
TEST(CudaLazy, SteadyGraphStepsMatchTheHostPlan) {
  LAZYLLM_REQUIRE_GPU();
  for (const auto& base : {test::arch_variants()[0], test::arch_variants()[2]}) {
    test::ArchSpec spec = base;
    spec.ctx = 2048;
    auto model = test::make_model(spec, DType::BF16);
    const int n_layers = model->config().n_layers;
    auto prompt = random_tokens(1000, model->config().n_vocab, 41);
    for (bool forced : {true, false}) {
      SCOPED_TRACE(spec.name + (forced ? " forced keep-all" : " keep half"));
      SessionOptions o = options(Device::Cuda, 1200);
      o.prune = forced ? test::keep_all_schedule(n_layers) : PruneSchedule::parse("reselect:1:0.5,2:0.5", n_layers);
      o.force_selection = forced;
      o.prune.decode = LazyDecode::kReselect;
      ::setenv("LAZYLLM_CUDA_STEADY_DECODE", "0", 1);
      Session host(model, o);
      ::unsetenv("LAZYLLM_CUDA_STEADY_DECODE");
      Session dev(model, o);
      host.prefill(prompt);
      dev.prefill(prompt);
      SessionInternals::backend(host).set_record_selection(true);
      SessionInternals::backend(dev).set_record_selection(true);
      for (int step = 0; step < 100; ++step) {
        ASSERT_EQ(0, std::memcmp(host.logits().data(), dev.logits().data(), host.logits().size() * sizeof(float)))
            << "step " << step;
        const int32_t next = argmax(host.logits());
        host.decode(next);
        dev.decode(next);
        ASSERT_EQ(SessionInternals::backend(host).last_selection(), SessionInternals::backend(dev).last_selection())
            << "step " << step;
        ASSERT_EQ(host.stats().revived, dev.stats().revived) << "step " << step;
        ASSERT_EQ(host.stats().selections, dev.stats().selections) << "step " << step;
        ASSERT_EQ(host.stats().token_layers_computed, dev.stats().token_layers_computed) << "step " << step;
      }
      for (int t = 0; t < host.n_past(); ++t)
        ASSERT_EQ(SessionInternals::backend(host).kv_depth(t), SessionInternals::backend(dev).kv_depth(t));
      EXPECT_EQ(host.stats().device_decode_steps, 0);
      EXPECT_GT(dev.stats().device_decode_steps, 0);
      if (forced) {
        EXPECT_EQ(dev.stats().device_decode_misses, 0);
      }
      std::cout << "[ cuda ] " << spec.name << (forced ? " keep-all" : " keep half") << ": "
                << dev.stats().device_decode_steps << " of 100 steps as steady graphs, "
                << dev.stats().device_decode_misses << " handed back, " << dev.stats().revived
                << " revivals; identical to the host plan\n";
    }
  }
}

// Programmatic dependent launch changes when kernels start, never what they compute: a session
// made with LAZYLLM_CUDA_PDL=0 gives the same logits, bit for bit, in prefill and in graph
// decode, for the baseline and for LazyLLM (revivals: multi-row decode steps).
TEST(CudaDecode, PdlMatchesSerialLaunches) {
  LAZYLLM_REQUIRE_GPU();
  test::ArchSpec spec = test::arch_variants()[0];
  spec.ctx = 2048;
  auto model = test::make_model(spec, DType::BF16);
  auto prompt = random_tokens(1000, model->config().n_vocab, 31);
  for (bool lazy : {false, true}) {
    SCOPED_TRACE(lazy ? "lazy" : "baseline");
    SessionOptions o = options(Device::Cuda, 1200);
    if (lazy) o.prune = PruneSchedule::parse("1:0.5,2:0.5", model->config().n_layers);
    ::setenv("LAZYLLM_CUDA_PDL", "0", 1);
    Session serial(model, o);
    ::unsetenv("LAZYLLM_CUDA_PDL");
    Session pdl(model, o);
    serial.prefill(prompt);
    pdl.prefill(prompt);
    for (int s = 0; s < 40; ++s) {
      ASSERT_EQ(0, std::memcmp(serial.logits().data(), pdl.logits().data(), serial.logits().size() * sizeof(float)))
          << "step " << s;
      const int32_t next = argmax(serial.logits());
      serial.decode(next);
      pdl.decode(next);
    }
  }
  std::cout << "[ cuda ] decode with programmatic dependent launch identical to serial launches\n";
}

TEST(CudaErrors, BadTokensAndOverflowAreErrors) {
  LAZYLLM_REQUIRE_GPU();
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  Session gpu(model, options(Device::Cuda, 16));
  std::vector<int32_t> bad{1, model->config().n_vocab};
  EXPECT_THROW(gpu.prefill(bad), Error);
  EXPECT_THROW(gpu.prefill(std::vector<int32_t>(17, 5)), Error);
  gpu.prefill(std::vector<int32_t>(16, 5));
  EXPECT_THROW(gpu.decode(5), Error);
  EXPECT_THROW(gpu.prefill(std::vector<int32_t>{}), Error);
}

// ---------------------------------------------------------------- quantized weights on the GPU

// Rows of `type` as a GGUF file stores them, quantized from uniform values whose size changes
// from row to row and from block to block (so a scale read from the wrong row or block shows),
// and the CPU's dequantization of them.
struct QuantRows {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};
QuantRows random_quant_rows(DType type, int rows, int k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t rb = row_bytes(type, k);
  QuantRows q;
  q.bytes.resize(static_cast<size_t>(rows * rb));
  q.values.resize(static_cast<size_t>(rows) * k);
  std::vector<float> f(k);
  for (int r = 0; r < rows; ++r) {
    const float row_scale = 0.05f + 0.3f * (r % 7);
    for (int j = 0; j < k; ++j) f[j] = u(rng) * row_scale * (1.0f + (j / 32 + r) % 5);
    quantize_row(type, f.data(), q.bytes.data() + r * rb, k);
    dequantize_row(type, q.bytes.data() + r * rb, q.values.data() + static_cast<size_t>(r) * k, k);
  }
  return q;
}

std::vector<float> random_floats(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// The product of c in double from the CPU's dequantized weights: X as the GPU receives it
// (bf16-rounded, or normalized from the float rows), Y = X W^T, then SwiGLU or the accumulation.
std::vector<float> reference_product(const CudaProductCase& c, const std::vector<float>& w) {
  const int m = c.m, k = c.k, n = c.n_out, w_rows = c.swiglu ? 2 * n : n;
  std::vector<double> x(static_cast<size_t>(m) * k);
  for (int i = 0; i < m; ++i) {
    double ss = 0;
    for (int j = 0; j < k; ++j) ss += double(c.x[i * k + j]) * c.x[i * k + j];
    const double scale = 1.0 / std::sqrt(ss / k + c.eps);
    for (int j = 0; j < k; ++j)
      x[i * k + j] =
          c.norm_w.empty() ? bf16_to_fp32(fp32_to_bf16(c.x[i * k + j])) : c.x[i * k + j] * scale * c.norm_w[j];
  }
  std::vector<double> y(static_cast<size_t>(m) * w_rows);
  for (int i = 0; i < m; ++i)
    for (int r = 0; r < w_rows; ++r) {
      double s = 0;
      for (int j = 0; j < k; ++j) s += double(w[static_cast<size_t>(r) * k + j]) * x[i * k + j];
      y[static_cast<size_t>(i) * w_rows + r] = s;
    }
  std::vector<float> out(static_cast<size_t>(m) * n);
  for (int i = 0; i < m; ++i)
    for (int o = 0; o < n; ++o) {
      const size_t at = static_cast<size_t>(i) * n + o;
      if (c.swiglu) {
        const double g = y[static_cast<size_t>(i) * w_rows + o], up = y[static_cast<size_t>(i) * w_rows + n + o];
        out[at] = static_cast<float>(g / (1.0 + std::exp(-g)) * up);
      } else {
        out[at] = static_cast<float>(y[static_cast<size_t>(i) * w_rows + o] + (c.y0.empty() ? 0.0 : c.y0[at]));
      }
    }
  return out;
}

// The GPU's products over Q8_0, Q4_0 and K-quant blocks against the CPU's dequantized weights, on the
// paths the forward pass takes: the matrix-vector kernels (batches 1-2; plain, with the RMSNorm
// fused, accumulating into Y, SwiGLU over gate|up), the tensor-core kernel (batches 3 to 64,
// kernels/cuda/qgemm.h: 3, 4, 5, 9, 16, 40 and 64 take each of its activation-row tiles, partial
// ones too) and the dequantize-then-cuBLAS path (batches 100 and 300, the latter on the smaller
// shapes; 64 rows of scratch so the larger matrices go in several chunks). Shapes: rows
// not a multiple of a block's rows, rows of 3 to 344 blocks (chunks past the pipeline's step, k
// not a multiple of the tensor-core kernel's 128-element slices), enough rows that the
// kernels take four rows a warp, and rows of 32768 (two quantized activation rows of that length
// still fit the matrix-vector kernels' shared memory); at 1-2 rows also an activation row that is
// not 16-byte aligned. Activations go to 8 bits per block in the matrix-vector
// kernels and weights to bf16 elsewhere, hence the bound (a misread block or scale costs far more).
TEST(CudaQuant, ProductsMatchTheCpuDequantized) {
  LAZYLLM_REQUIRE_GPU();
  constexpr double kProductTol = 2e-2;
  constexpr int kPastTensorCores = 100;  // the first batch size past kQgemmMaxRows tested
  struct Shape {
    int n_out, k;
    bool swiglu;
  };
  const std::vector<Shape> shapes = {{300, 96, false},   {77, 2080, false},  {1000, 1024, false},
                                     {64, 11008, false}, {8500, 256, false}, {16, 32768, false},
                                     {300, 96, true},    {77, 2080, true},   {4300, 128, true}};
  // K-quant rows are whole 256-element super-blocks: 1 to 43 of them (more than the eight (Q4_K) or
  // four super-blocks a warp takes a step, and not a multiple of them).
  const std::vector<Shape> k_shapes = {{300, 256, false},  {77, 2304, false},  {1000, 1024, false},
                                       {64, 11008, false}, {8500, 256, false}, {16, 32768, false},
                                       {301, 256, true},   {77, 2304, true},   {4300, 512, true}};
  for (DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    double worst_gemv = 0, worst_qgemm = 0, worst_prefill = 0;
    uint64_t seed = 1;
    const bool k_quant = type == DType::Q4_K || type == DType::Q5_K || type == DType::Q6_K;
    for (const Shape& sh : k_quant ? k_shapes : shapes) {
      const QuantRows w = random_quant_rows(type, sh.swiglu ? 2 * sh.n_out : sh.n_out, sh.k, seed++);
      const std::vector<float> norm_w = random_floats(sh.k, seed++, 0.5f, 1.5f);
      for (int m : {1, 2, 3, 4, 5, 9, 16, 40, 64, kPastTensorCores, 300}) {
        if (m == 300 && static_cast<int64_t>(sh.n_out) * sh.k > 300000) continue;
        const std::vector<float> x = random_floats(static_cast<size_t>(m) * sh.k, seed++, -2.0f, 2.0f);
        const std::vector<float> y0 = random_floats(static_cast<size_t>(m) * sh.n_out, seed++, -1.0f, 1.0f);
        enum Variant { kPlain, kNorm, kAccumulate, kSwiglu, kUnaligned };
        std::vector<Variant> variants =
            sh.swiglu ? std::vector<Variant>{kSwiglu} : std::vector<Variant>{kPlain, kNorm, kAccumulate};
        if (!sh.swiglu && m <= 2) variants.push_back(kUnaligned);
        // The matrix-vector kernels also with each block making the activation rows itself (1)
        // and with clusters of 8 sharing them, beside the default.
        std::vector<int> clusters = {0};
        if (m <= 2 && cuda_gemv_cluster() > 1) clusters = {0, 1, 8};
        for (Variant v : variants)
          for (int cluster : clusters) {
            CudaProductCase c;
            c.gemv_cluster = cluster;
            c.type = type, c.w = w.bytes.data(), c.n_out = sh.n_out, c.k = sh.k, c.m = m, c.x = x;
            if (v == kNorm || v == kSwiglu) c.norm_w = norm_w;
            if (v == kAccumulate) c.y0 = y0;
            c.swiglu = v == kSwiglu;
            if (v == kUnaligned) c.x_offset = 4;  // 8 bytes past a 16-byte boundary
            SCOPED_TRACE(std::string(dtype_name(type)) + " " + std::to_string(sh.n_out) + "x" + std::to_string(sh.k) +
                         " m=" + std::to_string(m) + " variant " + std::to_string(v) + " cluster " +
                         std::to_string(cluster));
            const std::vector<float> gpu = cuda_weight_product(c);
            const std::vector<float> ref = reference_product(c, w.values);
            const double r = rel_diff(gpu, ref);
            EXPECT_LT(r, kProductTol);
            double& worst = m <= 2 ? worst_gemv : m < kPastTensorCores ? worst_qgemm : worst_prefill;
            worst = std::max(worst, r);
          }
      }
    }
    std::cout << "[ cuda ] " << dtype_name(type) << " products: worst relative difference " << worst_gemv
              << " (matrix-vector), " << worst_qgemm << " (tensor cores), " << worst_prefill
              << " (dequantized, cuBLAS)\n";
  }
}

// What `info` reports for a GPU, computed on the host: the quantized matrices at the file's
// bytes (Q8_0 34 per 32 values, Q4_0 18) in native form, two bytes a value as bf16, norms as
// floats; the K-quants at their blocks' bytes too. No GPU needed.
TEST(CudaQuant, WeightBytesPlannedForEachForm) {
  for (const auto& spec : {test::arch_variants()[0], test::arch_variants()[1]}) {
    for (DType dt : {DType::Q8_0, DType::Q4_0}) {
      SCOPED_TRACE(spec.name + " " + std::string(dtype_name(dt)));
      auto model = test::make_model(spec, dt);
      const ModelConfig& c = model->config();
      const int64_t qd = int64_t{c.n_heads} * c.head_dim, kvd = int64_t{c.n_kv_heads} * c.head_dim;
      const int64_t elems = (spec.tied ? 1 : 2) * int64_t{c.n_vocab} * c.n_embd +
                            c.n_layers * (c.n_embd * (qd + 2 * kvd) + qd * c.n_embd + 3 * int64_t{c.n_ff} * c.n_embd);
      const int64_t floats = 4 * (c.n_embd + 2 * int64_t{c.n_layers} * c.n_embd);
      const int64_t block = dt == DType::Q8_0 ? 34 : 18;
      EXPECT_EQ(model->gpu_weight_bytes(GpuWeights::kNative).weights, elems / 32 * block + floats);
      EXPECT_EQ(model->gpu_weight_bytes(GpuWeights::kBf16).weights, 2 * elems + floats);
      // The largest layer matrix prefill dequantizes at once: Q|K|V, Wo, gate or up, down.
      const int64_t largest = std::max({(qd + 2 * kvd) * c.n_embd, qd * c.n_embd, int64_t{c.n_ff} * c.n_embd});
      EXPECT_EQ(model->gpu_weight_bytes(GpuWeights::kNative).dequant_scratch, 2 * largest);
      EXPECT_EQ(model->gpu_weight_bytes(GpuWeights::kBf16).dequant_scratch, 0);
    }
  }
  // The K-quants at the file's bytes too (144, 176 and 210 per 256 values), nothing converted.
  test::ArchSpec k_spec{.name = "q4k", .embd = 256, .layers = 2, .heads = 4, .kv_heads = 2, .ff = 512};
  for (DType dt : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    SCOPED_TRACE(dtype_name(dt));
    auto model = test::make_model(k_spec, dt);
    const ModelConfig& c = model->config();
    const int64_t qd = int64_t{c.n_heads} * c.head_dim, kvd = int64_t{c.n_kv_heads} * c.head_dim;
    const int64_t elems = 2 * int64_t{c.n_vocab} * c.n_embd +
                          c.n_layers * (c.n_embd * (qd + 2 * kvd) + qd * c.n_embd + 3 * int64_t{c.n_ff} * c.n_embd);
    const int64_t floats = 4 * (c.n_embd + 2 * int64_t{c.n_layers} * c.n_embd);
    const int64_t block = dt == DType::Q4_K ? 144 : dt == DType::Q5_K ? 176 : 210;
    EXPECT_EQ(model->gpu_weight_bytes(GpuWeights::kNative).weights, elems / 256 * block + floats);
    EXPECT_EQ(model->gpu_weight_bytes(GpuWeights::kBf16).weights, 2 * elems + floats);
    const GpuWeightPlan plan = plan_gpu_weights(c, model->weights(), GpuWeights::kNative);
    EXPECT_TRUE(plan.converted.empty());
  }
}

// A matrix whose parts differ in type goes to bf16 as one matrix (a native type beside an
// unquantized one, or quantized types the matrix may not split), or, for Q|K|V of different
// quantized types (V in Q6_K and Q, K in Q4_K, as Q4_K_M files have), as parts in their own
// blocks, neighbours of one type together (Q|K, then V): a Q4_K_M model's planned bytes are then
// its file's matrices' bytes. No GPU needed.
TEST(CudaQuant, MixedPartsSplitOrGoToBf16) {
  auto view = [](DType t) {
    WeightView v;
    v.type = t, v.rows = 4, v.cols = 256;
    return v;
  };
  const WeightView q4k = view(DType::Q4_K), q6k = view(DType::Q6_K), f16 = view(DType::F16);
  EXPECT_EQ(gpu_matrix_type({&q4k, &q4k, &q4k}, GpuWeights::kNative), DType::Q4_K);
  EXPECT_EQ(gpu_matrix_type({&q6k}, GpuWeights::kNative), DType::Q6_K);
  EXPECT_EQ(gpu_matrix_type({&q4k, &q4k, &q6k}, GpuWeights::kNative), DType::BF16);
  EXPECT_EQ(gpu_matrix_type({&q4k, &f16}, GpuWeights::kNative), DType::BF16);
  EXPECT_EQ(gpu_matrix_type({&q4k}, GpuWeights::kBf16), DType::BF16);
  EXPECT_TRUE(gpu_split_parts({&q4k, &q4k, &q6k}, GpuWeights::kNative));
  EXPECT_FALSE(gpu_split_parts({&q4k, &q4k, &q6k}, GpuWeights::kBf16));
  EXPECT_FALSE(gpu_split_parts({&q4k, &q4k, &q4k}, GpuWeights::kNative));
  EXPECT_FALSE(gpu_split_parts({&q4k, &f16}, GpuWeights::kNative));
  // Q|K stay one matrix beside V; parts that all differ go one by one.
  EXPECT_EQ(gpu_split_groups({&q4k, &q4k, &q6k}, GpuWeights::kNative), (std::vector<int>{2, 1}));
  EXPECT_EQ(gpu_split_groups({&q6k, &q4k, &q4k}, GpuWeights::kNative), (std::vector<int>{1, 2}));
  EXPECT_EQ(gpu_split_groups({&q4k, &q6k, &q4k}, GpuWeights::kNative), (std::vector<int>{1, 1, 1}));
  EXPECT_TRUE(gpu_split_groups({&q4k, &q4k, &q4k}, GpuWeights::kNative).empty());
  EXPECT_TRUE(gpu_split_groups({&q4k, &q4k, &q6k}, GpuWeights::kBf16).empty());

  // 8 layers: Q6_K V and down in layers 0, 3, 6 and 7 (the first and last eighth, every third between).
  test::ArchSpec spec{.name = "q4km", .embd = 256, .layers = 8, .heads = 4, .kv_heads = 2, .ff = 512};
  auto model = test::make_model(spec, DType::Q4_K, 42, /*q4_k_m=*/true);
  const ModelWeights& w = model->weights();
  int q6_layers = 0;
  for (int l = 0; l < 8; ++l) {
    const bool q6 = w.layers[l].wv.type == DType::Q6_K;
    EXPECT_EQ(q6, l == 0 || l == 3 || l == 6 || l == 7) << "layer " << l;
    EXPECT_EQ(w.layers[l].w_down.type, w.layers[l].wv.type) << "layer " << l;
    EXPECT_EQ(w.layers[l].wq.type, DType::Q4_K);
    q6_layers += q6;
  }
  EXPECT_EQ(q6_layers, 4);
  EXPECT_EQ(w.output.type, DType::Q6_K);
  int64_t matrix_bytes = 0, floats = 0;
  auto add = [&](const WeightView& v) { matrix_bytes += v.rows * v.row_stride(); };
  add(w.token_embd), add(w.output);
  for (const LayerWeights& L : w.layers)
    for (const WeightView* v : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) add(*v);
  floats = 4 * (model->config().n_embd + 2 * int64_t{8} * model->config().n_embd);
  const GpuWeightPlan plan = plan_gpu_weights(model->config(), w, GpuWeights::kNative);
  EXPECT_EQ(plan.weight_bytes, matrix_bytes + floats);
  EXPECT_TRUE(plan.converted.empty());
}

// Q8_0, Q4_0, K-quant and Q4_K_M models with their weights kept in their blocks on the GPU (the
// default) against the CPU backend on the same file, as RandomModelsOfEachArchitecture (a 90-token
// prefill dequantizes for cuBLAS, prefills of 41 and 49 tokens read the blocks on the tensor
// cores, decode reads them in the matrix-vector kernels); the session's GPU weights take the
// planned bytes.
TEST(CudaQuant, NativeModelsFollowTheCpu) {
  LAZYLLM_REQUIRE_GPU();
  // The K-quants need rows of 256 values: the same architectures at that width.
  std::vector<std::pair<test::ArchSpec, DType>> cases;
  for (const auto& spec : test::arch_variants())
    for (DType dt : {DType::Q8_0, DType::Q4_0}) cases.emplace_back(spec, dt);
  for (test::ArchSpec spec : test::arch_variants()) {
    spec.embd = 256, spec.ff = 512, spec.layers = 2, spec.name += "_256";
    for (DType dt : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) cases.emplace_back(spec, dt);
  }
  // And the Q4_K_M mix (Q|K and V in their own types, two products, in 4 of 8 layers).
  test::ArchSpec mix = test::arch_variants()[0];
  mix.embd = 256, mix.ff = 512, mix.layers = 8, mix.name = "llama_gqa_q4_K_M";
  cases.emplace_back(mix, DType::Q4_K);
  for (const auto& [spec, dt] : cases) {
    SCOPED_TRACE(spec.name + " " + std::string(dtype_name(dt)));
    auto model = test::make_model(spec, dt, 42, spec.name == mix.name);
    auto prompt = random_tokens(90, model->config().n_vocab, 11);
    const double worst = std::max(compare_backends(model, prompt, 0, 6), compare_backends(model, prompt, 41, 3));
    Session gpu(model, options(Device::Cuda, 128));
    gpu.prefill(prompt);
    const Session::DeviceMemory mem = gpu.device_memory();
    EXPECT_EQ(mem.weights, model->gpu_weight_bytes(GpuWeights::kNative).weights);
    EXPECT_LT(mem.weights, model->gpu_weight_bytes(GpuWeights::kBf16).weights);
    EXPECT_EQ(mem.dequant_scratch, model->gpu_weight_bytes(GpuWeights::kNative).dequant_scratch);
    EXPECT_GT(mem.kv_cache, 0);
    std::cout << "[ cuda ] " << spec.name << " " << dtype_name(dt) << " native: worst relative logit difference "
              << worst << "\n";
  }
}

// The server's prefix cache on the GPU: a session that keeps the first 50 tokens of its context
// (a prompt and an answer's token) and computes only the rest of a new prompt gives what a fresh
// session computing the whole prompt gives, after the prompt and while decoding, and follows the
// CPU. bf16 weights: within 1e-2 (the rest's 30 rows run other product shapes than the whole
// prompt's 80; on an H200 the logits came out identical). Q4_0: the 30 rows go through the
// tensor-core kernel and the 80 through dequantized weights, whose bf16 roundings differ (0.019
// on an H200), so within the CPU bound; a prefix read from the wrong K/V moves logits by far more.
TEST(CudaPrefix, KeptPrefixThenTheRestFollowsTheWholePrompt) {
  LAZYLLM_REQUIRE_GPU();
  constexpr int kKept = 50;
  for (DType dt : {DType::BF16, DType::Q4_0}) {
    SCOPED_TRACE(dtype_name(dt));
    auto model = test::make_model(test::arch_variants()[0], dt);
    const int n_vocab = model->config().n_vocab;
    const std::vector<int32_t> prompt = random_tokens(80, n_vocab, 5);
    std::vector<int32_t> before(prompt.begin(), prompt.begin() + kKept);
    const std::vector<int32_t> other = random_tokens(30, n_vocab, 6);
    before.insert(before.end(), other.begin(), other.end());
    Session reused(model, options(Device::Cuda, 128)), fresh(model, options(Device::Cuda, 128)),
        cpu(model, options(Device::Cpu, 128));
    reused.prefill(before);
    reused.decode(argmax(reused.logits()));
    ASSERT_TRUE(reused.keep_prefix(kKept));
    EXPECT_EQ(reused.n_past(), kKept);
    reused.prefill(std::span<const int32_t>(prompt).subspan(kKept));
    fresh.prefill(prompt);
    cpu.prefill(prompt);
    double worst_gpu = rel_diff(reused.logits(), fresh.logits()), worst_cpu = rel_diff(reused.logits(), cpu.logits());
    for (int i = 0; i < 4; ++i) {
      const int32_t token = argmax(cpu.logits());
      reused.decode(token);
      fresh.decode(token);
      cpu.decode(token);
      worst_gpu = std::max(worst_gpu, rel_diff(reused.logits(), fresh.logits()));
      worst_cpu = std::max(worst_cpu, rel_diff(reused.logits(), cpu.logits()));
    }
    EXPECT_LT(worst_gpu, dt == DType::BF16 ? 1e-2 : kLogitTol);
    EXPECT_LT(worst_cpu, kLogitTol);
    std::cout << "[ cuda ] " << dtype_name(dt) << " kept prefix: worst relative logit difference " << worst_gpu
              << " against the whole prompt on the GPU, " << worst_cpu << " against the CPU\n";
  }
}

// The same files with every matrix converted to bf16 at load (--gpu-weights bf16): the two forms
// agree within the tolerance, and the bf16 one takes the bf16 bytes and no scratch.
TEST(CudaQuant, NativeFollowsBf16Form) {
  LAZYLLM_REQUIRE_GPU();
  test::ArchSpec k_spec{.name = "kq", .embd = 256, .layers = 2, .heads = 4, .kv_heads = 2, .ff = 512};
  for (DType dt : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    SCOPED_TRACE(dtype_name(dt));
    const bool k_quant = dt == DType::Q4_K || dt == DType::Q5_K || dt == DType::Q6_K;
    auto model = test::make_model(k_quant ? k_spec : test::arch_variants()[0], dt);
    auto prompt = random_tokens(90, model->config().n_vocab, 13);
    SessionOptions no = options(Device::Cuda, 128), bo = no;
    bo.gpu_weights = GpuWeights::kBf16;
    Session native(model, no), bf16(model, bo);
    native.prefill(prompt);
    bf16.prefill(prompt);
    double worst = rel_diff(native.logits(), bf16.logits());
    EXPECT_LT(worst, kLogitTol) << "prefill";
    for (int s = 0; s < 8; ++s) {
      const int32_t next = argmax(bf16.logits());
      native.decode(next);
      bf16.decode(next);
      const double r = rel_diff(native.logits(), bf16.logits());
      EXPECT_LT(r, kLogitTol) << "decode step " << s;
      worst = std::max(worst, r);
    }
    EXPECT_EQ(bf16.device_memory().weights, model->gpu_weight_bytes(GpuWeights::kBf16).weights);
    EXPECT_EQ(bf16.device_memory().dequant_scratch, 0);
    EXPECT_LT(native.device_memory().weights, bf16.device_memory().weights);
    std::cout << "[ cuda ] " << dtype_name(dt) << ": native against bf16 weights, worst relative logit difference "
              << worst << "\n";
  }
}

// SessionOptions::gpu_weight_copies: a pruned prefill over quantized weights keeps bf16 copies of
// the matrices of the layers where it deferred rows, and the completing step (more than 64 rows at
// those layers) multiplies the copies instead of dequantizing again. The copies hold the values
// the scratch would and are multiplied in the same chunks, so every logit is bit for bit the same
// as without them; the step must have read them (copy_products), and off must hold none.
TEST(CudaQuant, WeightCopiesServeTheCompletingStepBitwise) {
  LAZYLLM_REQUIRE_GPU();
  test::ArchSpec k_spec{.name = "kq", .embd = 256, .layers = 4, .heads = 4, .kv_heads = 2, .ff = 512};
  for (DType dt : {DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    SCOPED_TRACE(dtype_name(dt));
    auto model = test::make_model(dt == DType::Q4_0 ? test::arch_variants()[0] : k_spec, dt);
    const int L = model->config().n_layers;
    auto prompt = random_tokens(400, model->config().n_vocab, 21);
    SessionOptions on = options(Device::Cuda, 512), off = on;
    on.prune = off.prune = PruneSchedule::parse("complete:1:0.5,2:0.5", L);
    off.gpu_weight_copies = false;
    Session with(model, on), without(model, off);
    with.prefill(prompt);
    without.prefill(prompt);
    ASSERT_LT(with.stats().prefill_computed_fraction, 1.0) << "the prefill must defer rows";
    for (int step = 0; step < 4; ++step) {
      ASSERT_EQ(0, std::memcmp(with.logits().data(), without.logits().data(), with.logits().size() * sizeof(float)))
          << "step " << step;
      const int32_t next = argmax(with.logits());
      with.decode(next);
      without.decode(next);
    }
    EXPECT_GT(with.device_memory().weight_copies, 0);
    EXPECT_EQ(without.device_memory().weight_copies, 0);
    EXPECT_GT(SessionInternals::backend(with).decode_path_stats().copy_products, 0);
    EXPECT_EQ(SessionInternals::backend(without).decode_path_stats().copy_products, 0);
  }
}

// The host's estimate (estimate_memory) against what a session holds on the GPU after a prefill
// of its whole context: the weights and the K/V cache to the byte, the Aux Cache at its bound once
// pruning runs, everything else within the estimate's scratch.
TEST(CudaMemory, EstimateBoundsWhatASessionHolds) {
  LAZYLLM_REQUIRE_GPU();
  for (DType dt : {DType::Q8_0, DType::F16}) {
    SCOPED_TRACE(dtype_name(dt));
    auto model = test::make_model(test::arch_variants()[0], dt);
    const int n_ctx = 256;
    SessionOptions o = options(Device::Cuda, n_ctx);
    const MemoryEstimate e = estimate_memory(*model, o);
    Session base(model, o);
    base.prefill(random_tokens(n_ctx, model->config().n_vocab, 19));
    Session::DeviceMemory held = base.device_memory();
    EXPECT_EQ(held.weights, e.weights);
    EXPECT_EQ(held.kv_cache, e.kv_cache);
    EXPECT_EQ(held.aux_cache, 0);
    EXPECT_LE(held.dequant_scratch + held.scratch, e.scratch);
    std::cout << "[ cuda ] " << dtype_name(dt) << " scratch held " << held.dequant_scratch + held.scratch << " of "
              << e.scratch << " estimated\n";
    o.prune = PruneSchedule::parse("1:0.5,2:0.5", model->config().n_layers);
    const MemoryEstimate el = estimate_memory(*model, o);
    Session lazy(model, o);
    lazy.prefill(random_tokens(n_ctx - 16, model->config().n_vocab, 19));
    for (int i = 0; i < 16; ++i) lazy.decode(argmax(lazy.logits()));
    held = lazy.device_memory();
    EXPECT_EQ(held.kv_cache, el.kv_cache);
    EXPECT_EQ(held.aux_cache, el.aux_cache);
  }
}

// A session that cannot fit fails before it allocates: the message names what it needs and what
// is free, and the free memory is what it was.
TEST(CudaMemory, TooLargeASessionFailsBeforeAllocating) {
  LAZYLLM_REQUIRE_GPU();
  // 8 layers: at 4M tokens the KV cache alone (128 GiB) and the scratch exceed a 141 GB H200.
  test::ArchSpec wide{.name = "wide_ctx", .embd = 1024, .layers = 8, .heads = 8, .kv_heads = 8, .ff = 1024};
  auto model = test::make_model(wide, DType::Q8_0);
  const int64_t before = cuda_free_memory();
  SessionOptions o = options(Device::Cuda, 1 << 22);
  ASSERT_GT(estimate_memory(*model, o).total(), before) << "the device has more memory than this test expects";
  try {
    Session s(model, o);
    ADD_FAILURE() << "a session of " << (1 << 22) << " tokens was made";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const char* part : {"needs ", "KV cache ", " free", "try --ctx "})
      EXPECT_NE(m.find(part), std::string::npos) << part << " in: " << m;
  }
  EXPECT_GE(cuda_free_memory(), before - (int64_t{64} << 20));
}

}  // namespace
}  // namespace lazyllm
