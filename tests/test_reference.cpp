// The engine's baseline forward pass against the naive float64 reference, for every
// architecture option and every weight type (the reference runs on the dequantized weights).
#include <gtest/gtest.h>

#include <random>

#include "kernel_reference.h"
#include "kernels/cpu/gemm_bf16.h"
#include "lazyllm/lazyllm.h"
#include "reference_forward.h"
#include "test_models.h"

namespace lazyllm {
namespace {

double max_abs(const test::Vec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Runs a prompt and a few decode steps in the engine (f32 KV) and in the reference; returns the
// largest |difference| relative to the largest |logit|.
double max_relative_error(const std::shared_ptr<Model>& model, int n_threads, int prompt_len = 23,
                          bool fast_math = false) {
  const ModelConfig& c = model->config();
  test::ReferenceModel ref_model(*model);
  test::ReferenceLazy ref(ref_model, std::vector<double>(c.n_layers, 1.0));
  SessionOptions opt;
  opt.n_threads = n_threads;
  opt.kv_f16 = false;
  opt.fast_math = fast_math;
  Session s(model, opt);
  std::mt19937_64 rng(99);
  std::vector<int32_t> prompt(prompt_len);
  for (auto& t : prompt) t = 3 + static_cast<int32_t>(rng() % (c.n_vocab - 3));
  double worst = 0;
  auto compare = [&](const test::Vec& want) {
    const double scale = std::max(1.0, max_abs(want));
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(s.logits()[i] - want[i]) / scale);
  };
  s.prefill(prompt);
  compare(ref.prefill(std::vector<int>(prompt.begin(), prompt.end())));
  for (int step = 0; step < 4; ++step) {
    const int32_t next = 3 + static_cast<int32_t>(rng() % (c.n_vocab - 3));
    s.decode(next);
    compare(ref.decode(next));
  }
  return worst;
}

TEST(ReferenceForward, EveryArchitectureOptionInF32) {
  for (const auto& spec : test::arch_variants()) {
    auto model = test::make_model(spec, DType::F32);
    for (int threads : {1, 3}) EXPECT_LT(max_relative_error(model, threads), 1e-5) << spec.name << " threads " << threads;
  }
}

TEST(ReferenceForward, EveryWeightType) {
  // K-quants need rows of 256 values.
  test::ArchSpec spec{.name = "wide", .embd = 256, .layers = 2, .heads = 4, .kv_heads = 2, .ff = 512};
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    auto model = test::make_model(spec, t);
    const double tol = t == DType::F32 ? 1e-5 : 1e-4;
    EXPECT_LT(max_relative_error(model, 2), tol) << dtype_name(t);
  }
}

// Prompts longer than the small-batch limit take the prefill GEMM path: exact in f32, and within
// bf16 rounding when quantized weights multiply in bf16 (activations rounded to 8 mantissa bits).
TEST(ReferenceForward, PrefillGemmPathInF32AndBf16) {
  test::ArchSpec spec{.name = "wide", .embd = 256, .layers = 2, .heads = 4, .kv_heads = 2, .ff = 512};
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    auto model = test::make_model(spec, t);
    EXPECT_LT(max_relative_error(model, 2, 80, false), 1e-4) << dtype_name(t) << " f32";
    EXPECT_LT(max_relative_error(model, 2, 80, true), 2e-2) << dtype_name(t) << " fast math";
    if (kernels::bf16_gemm_supported()) {
      const test::Bf16GemmScope bf16(true);
      const double bf16_err = max_relative_error(model, 2, 80, true);
      EXPECT_LT(bf16_err, 2e-2) << dtype_name(t) << " bf16";
      EXPECT_GT(bf16_err, 1e-7) << "bf16 path not taken";
    }
  }
}

}  // namespace
}  // namespace lazyllm
