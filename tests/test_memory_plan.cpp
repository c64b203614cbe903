// The memory estimate (estimate_memory, runtime/memory_plan.h): on the CPU against what the
// forward pass holds after a prefill of the whole context (K/V exactly, the Aux Cache and the
// buffers within the estimate); the CUDA estimate's parts from the model's shapes and the GPU
// weight plan; and the fit check's verdict and message for given free-memory figures.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "format/gguf.h"
#include "lazyllm/lazyllm.h"
#include "runtime/cpu/cpu_forward.h"
#include "runtime/memory_plan.h"
#include "runtime/session_internals.h"
#include "test_models.h"
#include "util/byte_size.h"

namespace lazyllm {
namespace {

using test::ArchSpec;

const ArchSpec kSpec{.name = "memplan", .embd = 64, .layers = 4, .heads = 4, .kv_heads = 2, .ff = 96, .vocab = 200};

SessionOptions cpu_options(int n_ctx, bool kv_f16 = true) {
  SessionOptions o;
  o.n_ctx = n_ctx;
  o.n_threads = 2;
  o.kv_f16 = kv_f16;
  return o;
}

// K/V at f16 (or f32) plus a position per slot, every layer, the whole context.
int64_t expected_kv(const ModelConfig& c, int n_ctx, int elem) {
  return int64_t{c.n_layers} * n_ctx * (2 * int64_t{c.n_kv_heads} * c.head_dim * elem + 4);
}

// A prefill that fills the context: the K/V storage is the estimate's to the byte, the buffers
// within it, and not far below it (the estimate is a bound, not a guess).
TEST(MemoryPlan, CpuEstimateBoundsWhatAFullContextHolds) {
  auto model = test::make_model(kSpec, DType::Q8_0);
  const ModelConfig& c = model->config();
  for (bool kv_f16 : {true, false}) {
    const int n_ctx = 160;
    const SessionOptions o = cpu_options(n_ctx, kv_f16);
    const MemoryEstimate e = estimate_memory(*model, o);
    EXPECT_EQ(e.kv_cache, expected_kv(c, n_ctx, kv_f16 ? 2 : 4));
    EXPECT_EQ(e.aux_cache, 0);
    int64_t file_tensors = 0;
    for (const GGUFTensor& t : model->file().tensors()) file_tensors += t.n_bytes;
    EXPECT_EQ(e.weights, file_tensors);

    Session s(model, o);
    s.prefill(test::random_tokens(n_ctx, c.n_vocab, 3));
    const Session::DeviceMemory held = SessionInternals::cpu(s).held_memory();
    EXPECT_EQ(held.kv_cache, e.kv_cache) << "f16 " << kv_f16;
    EXPECT_EQ(held.aux_cache, 0);
    EXPECT_LE(held.scratch, e.scratch) << "f16 " << kv_f16;
    EXPECT_GE(4 * held.scratch, e.scratch) << "f16 " << kv_f16 << ": held " << held.scratch;
    std::printf("cpu scratch held %lld of %lld estimated (f16 KV %d)\n", static_cast<long long>(held.scratch),
                static_cast<long long>(e.scratch), kv_f16);
  }
}

// Under LazyLLM: the Aux Cache's storage stays within its bound (a row per position), and the
// K/V storage within the full context's, through prefill and decode steps that revive tokens.
TEST(MemoryPlan, CpuEstimateBoundsLazySessions) {
  auto model = test::make_model(kSpec, DType::F32);
  const ModelConfig& c = model->config();
  const int n_ctx = 128;
  SessionOptions o = cpu_options(n_ctx);
  o.prune = PruneSchedule::parse("1:0.5,2:0.5", c.n_layers);
  const MemoryEstimate e = estimate_memory(*model, o);
  EXPECT_EQ(e.aux_cache, int64_t{n_ctx} * c.n_embd * 4);
  EXPECT_GT(e.scratch, estimate_memory(*model, cpu_options(n_ctx)).scratch);  // importance, alive lists
  Session s(model, o);
  s.prefill(test::random_tokens(n_ctx - 24, c.n_vocab, 5));
  EXPECT_GT(s.stats().aux_cache_entries, 0);
  for (int i = 0; i < 24; ++i) s.decode(test::argmax(s.logits()));
  const Session::DeviceMemory held = SessionInternals::cpu(s).held_memory();
  EXPECT_GT(held.aux_cache, 0);
  EXPECT_LE(held.aux_cache, e.aux_cache);
  EXPECT_LE(held.kv_cache, e.kv_cache);
  EXPECT_LE(held.scratch, e.scratch);
}

// Decode grows each layer's K/V storage by half again (capped at the context), not a slot at a
// time: after many single-token steps the storage is at most 1.5x what the slots need, and
// never above the context's.
TEST(MemoryPlan, CpuKvStorageGrowsGeometricallyUpToTheContext) {
  auto model = test::make_model(kSpec, DType::F32);
  const ModelConfig& c = model->config();
  const int n_ctx = 200;
  Session s(model, cpu_options(n_ctx));
  s.prefill(test::random_tokens(10, c.n_vocab, 7));
  const int64_t per_slot = expected_kv(c, 1, 2);
  EXPECT_EQ(SessionInternals::cpu(s).held_memory().kv_cache, 10 * per_slot);
  for (int i = 0; i < 60; ++i) s.decode(test::argmax(s.logits()));
  const int64_t held = SessionInternals::cpu(s).held_memory().kv_cache;
  EXPECT_GT(held, 70 * per_slot);
  EXPECT_LE(held, 105 * per_slot);
  for (int i = 0; i < n_ctx - 70; ++i) s.decode(test::argmax(s.logits()));
  EXPECT_EQ(SessionInternals::cpu(s).held_memory().kv_cache, estimate_memory(*model, cpu_options(n_ctx)).kv_cache);
}

// The CUDA estimate from the shapes, on the host: weights as the GPU plan gives them (native
// blocks or bf16), K/V in half with positions, the Aux Cache only with a schedule, and scratch
// that grows with the context.
TEST(MemoryPlan, CudaEstimateFollowsTheWeightPlanAndShapes) {
  auto model = test::make_model(kSpec, DType::Q8_0);
  const ModelConfig& c = model->config();
  SessionOptions o;
  o.device = Device::Cuda;
  o.n_ctx = 256;
  const MemoryEstimate native = estimate_memory(*model, o);
  EXPECT_EQ(native.weights, model->gpu_weight_bytes(GpuWeights::kNative).weights);
  EXPECT_EQ(native.kv_cache, expected_kv(c, 256, 2));
  EXPECT_EQ(native.aux_cache, 0);
  EXPECT_GE(native.scratch, model->gpu_weight_bytes(GpuWeights::kNative).dequant_scratch);
  o.gpu_weights = GpuWeights::kBf16;
  const MemoryEstimate bf16 = estimate_memory(*model, o);
  EXPECT_EQ(bf16.weights, model->gpu_weight_bytes(GpuWeights::kBf16).weights);
  EXPECT_GT(bf16.weights, native.weights);
  o.prune = PruneSchedule::default_for(c.n_layers);
  EXPECT_EQ(estimate_memory(*model, o).aux_cache, 256 * int64_t{c.n_embd} * 4);
  o.n_ctx = 0;  // the model's trained context
  EXPECT_EQ(estimate_memory(*model, o).kv_cache, expected_kv(c, c.n_ctx_train, 2));
  o.n_ctx = 1024;
  EXPECT_GT(estimate_memory(*model, o).scratch, bf16.scratch);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The fit check with given free memory: silent when the estimate fits; otherwise the breakdown,
// the free memory, and the longest context that fits (which does fit, where 256 more would not).
TEST(MemoryPlan, FitCheckNamesWhatWouldFit) {
  auto model = test::make_model(kSpec, DType::Q8_0);
  SessionOptions o;
  o.device = Device::Cuda;
  o.n_ctx = 4096;
  const MemoryEstimate e = estimate_memory(*model, o);
  EXPECT_EQ(memory_shortfall(*model, o, e.total(), false), "");
  const std::string msg = memory_shortfall(*model, o, e.total() - 1, false);
  for (const char* part : {"needs ", "weights ", "KV cache ", "scratch ", "4096 tokens", " free", "try --ctx "})
    EXPECT_TRUE(contains(msg, part)) << part << " in: " << msg;
  EXPECT_FALSE(contains(msg, "--gpu-weights")) << msg;  // already native
  const int suggested = std::stoi(msg.substr(msg.find("--ctx ") + 6));
  EXPECT_GT(suggested, 0);
  EXPECT_LT(suggested, 4096);
  EXPECT_EQ(suggested % 256, 0);
  SessionOptions at = o;
  at.n_ctx = suggested;
  EXPECT_LE(estimate_memory(*model, at).total(), e.total() - 1);
  at.n_ctx = suggested + 256;
  EXPECT_GT(estimate_memory(*model, at).total(), e.total() - 1);

  // Weights already on the device are not needed again.
  EXPECT_EQ(memory_shortfall(*model, o, e.total() - e.weights, true), "");
  EXPECT_TRUE(contains(memory_shortfall(*model, o, e.total() - e.weights - 1, true), "weights already loaded"));
  // No context fits: the weights alone are too many.
  EXPECT_TRUE(contains(memory_shortfall(*model, o, e.weights / 2, false), "use a device with more memory"));
}

// bf16 weights that do not fit, where the native blocks would: the message offers both ways.
TEST(MemoryPlan, FitCheckOffersNativeWeights) {
  auto model = test::make_model(kSpec, DType::Q4_0);
  SessionOptions o;
  o.device = Device::Cuda;
  o.n_ctx = 512;
  o.gpu_weights = GpuWeights::kBf16;
  const MemoryEstimate e = estimate_memory(*model, o);
  const std::string msg = memory_shortfall(*model, o, e.total() - 1, false);
  EXPECT_TRUE(contains(msg, "try --ctx ")) << msg;
  EXPECT_TRUE(contains(msg, " or --gpu-weights native")) << msg;
  // Too little for any context of bf16 weights: native weights are the one way.
  const std::string only = memory_shortfall(*model, o, e.weights - 1, false);
  EXPECT_TRUE(contains(only, "try --gpu-weights native")) << only;
  EXPECT_FALSE(contains(only, "--ctx ")) << only;
}

TEST(MemoryPlan, FormatsGib) {
  EXPECT_EQ(format_gib(int64_t{3} << 29), "1.5 GiB");
  EXPECT_EQ(format_gib(0), "0.0 GiB");
  EXPECT_EQ(format_size(int64_t{3} << 29), "1.5 GiB");
  EXPECT_EQ(format_size(int64_t{20} << 20), "20.0 MiB");
}

}  // namespace
}  // namespace lazyllm
