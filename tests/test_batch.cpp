// Continuous batching in the library (runtime/batch.h): several sessions stepped by one forward
// give each sequence what it computes alone, tokens and LazyLLM counters, as they join and leave,
// mixing prefills, prefill chunks, decodes and schedules.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <string>
#include <utility>

#include "cache/kv_pool.h"
#include "lazyllm/lazyllm.h"
#include "lazyllm/tokenizer.h"
#include "runtime/batch.h"
#include "test_models.h"
#include "test_util.h"

namespace lazyllm {
namespace {

using test::argmax;
using test::random_tokens;

// One sequence of a test: its prompt and schedule, the step it joins at, the greedy tokens it
// generates, and the prefill chunk (0: the whole prompt in one step).
struct Plan {
  std::vector<int32_t> prompt;
  PruneSchedule prune;
  int join = 0;
  int n_gen = 6;
  int chunk = 0;
};

// What a sequence produced: its greedy tokens, the logits each was taken from, its final stats.
struct Trace {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;
  SessionStats stats;
};

void take(Trace& t, std::span<const float> logits) {
  t.logits.emplace_back(logits.begin(), logits.end());
  t.tokens.push_back(argmax(logits));
}

Trace run_alone(std::shared_ptr<const Model> model, SessionOptions o, const Plan& p) {
  o.prune = p.prune;
  Session s(model, o);
  Trace t;
  s.prefill(p.prompt);
  for (;;) {
    take(t, s.logits());
    if (static_cast<int>(t.tokens.size()) == p.n_gen) break;
    s.decode(t.tokens.back());
  }
  t.stats = s.stats();
  return t;
}

// Steps every plan through one SessionBatch: a sequence joins at its step (prefilling its prompt
// whole or chunk by chunk), then decodes one token a step until it has its tokens, and leaves.
std::vector<Trace> run_batched(std::shared_ptr<const Model> model, const SessionOptions& base,
                               const std::vector<Plan>& plans, std::vector<int>* batch_sizes = nullptr,
                               SessionBatchOptions batch_options = {.n_threads = 2},
                               const std::vector<Trace>* forced = nullptr) {
  batch_options.device = base.device;
  SessionBatch batch(model, batch_options);
  const size_t n = plans.size();
  std::vector<std::unique_ptr<Session>> sessions;
  for (const Plan& p : plans) {
    SessionOptions o = base;
    o.prune = p.prune;
    sessions.push_back(batch.new_session(o));
  }
  std::vector<Trace> traces(n);
  std::vector<size_t> fed(n, 0);
  for (int step = 0;; ++step) {
    std::vector<SequenceStep> work;
    std::vector<size_t> who, chunk(n, 0);
    bool waiting = false;
    for (size_t i = 0; i < n; ++i) {
      const Plan& p = plans[i];
      if (static_cast<int>(traces[i].tokens.size()) == p.n_gen) continue;  // left
      if (step < p.join) {
        waiting = true;
        continue;
      }
      if (fed[i] < p.prompt.size()) {
        const size_t rest = p.prompt.size() - fed[i];
        chunk[i] = p.chunk > 0 ? std::min<size_t>(p.chunk, rest) : rest;
        work.push_back({sessions[i].get(), std::span(p.prompt).subspan(fed[i], chunk[i]), true});
      } else {
        // The sequence's own last token, or (forced) the one its reference run decoded there.
        const int32_t* next = forced ? &(*forced)[i].tokens[traces[i].tokens.size() - 1] : &traces[i].tokens.back();
        work.push_back({sessions[i].get(), std::span(next, 1), false});
      }
      who.push_back(i);
    }
    if (work.empty() && !waiting) break;
    if (batch_sizes) batch_sizes->push_back(static_cast<int>(work.size()));
    batch.step(work);
    for (size_t i : who) {
      if (chunk[i] > 0) {
        fed[i] += chunk[i];
        if (fed[i] < plans[i].prompt.size()) continue;  // more of the prompt to come
      }
      take(traces[i], sessions[i]->logits());
    }
  }
  for (size_t i = 0; i < n; ++i) traces[i].stats = sessions[i]->stats();
  return traces;
}

// Largest |a - b| over the logits of every step, relative to the largest |logit| (at least 1).
double max_rel_diff(const Trace& a, const Trace& b) {
  double worst = 0;
  for (size_t s = 0; s < std::min(a.logits.size(), b.logits.size()); ++s) {
    double scale = 1, diff = 0;
    for (size_t j = 0; j < a.logits[s].size(); ++j) {
      scale = std::max(scale, std::fabs(double(a.logits[s][j])));
      diff = std::max(diff, std::fabs(double(a.logits[s][j]) - b.logits[s][j]));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

bool bitwise_equal(const Trace& a, const Trace& b) {
  if (a.logits.size() != b.logits.size()) return false;
  for (size_t s = 0; s < a.logits.size(); ++s)
    if (a.logits[s].size() != b.logits[s].size() ||
        std::memcmp(a.logits[s].data(), b.logits[s].data(), a.logits[s].size() * sizeof(float)) != 0)
      return false;
  return true;
}

// Batched logits differ from a sequence's own only through the weight products' dependence on
// the batch's row count (fused decode kernels up to a few rows, tiled GEMM beyond; half-precision
// K/V then rounds some values the other way). The largest difference measured in these tests is
// 4.5e-4 of the largest logit (the eval model's f16 weights, mixed LazyLLM batch); the bound
// leaves room for other CPUs' kernels, while mixing up sequences would differ on the logits' own
// scale. Equal greedy tokens and LazyLLM counters are required on top.
constexpr double kBatchTolerance = 5e-3;

void expect_matches_alone(const std::vector<Trace>& batched, const std::vector<Trace>& alone,
                          bool compare_counters = true, double tolerance = kBatchTolerance) {
  ASSERT_EQ(batched.size(), alone.size());
  for (size_t i = 0; i < alone.size(); ++i) {
    SCOPED_TRACE("sequence " + std::to_string(i));
    EXPECT_EQ(batched[i].tokens, alone[i].tokens);
    const double diff = max_rel_diff(batched[i], alone[i]);
    std::cout << "[ batch    ] sequence " << i << ": max relative logit difference " << diff
              << (bitwise_equal(batched[i], alone[i]) ? " (bitwise equal)" : "") << "\n";
    EXPECT_LE(diff, tolerance);
    if (!compare_counters) continue;
    const SessionStats &b = batched[i].stats, &a = alone[i].stats;
    EXPECT_EQ(b.prompt_tokens, a.prompt_tokens);
    EXPECT_EQ(b.generated_tokens, a.generated_tokens);
    EXPECT_EQ(b.token_layers_computed, a.token_layers_computed);
    EXPECT_EQ(b.prompt_token_layers_computed, a.prompt_token_layers_computed);
    EXPECT_EQ(b.revived, a.revived);
    EXPECT_EQ(b.selections, a.selections);
    EXPECT_EQ(b.aux_cache_entries, a.aux_cache_entries);
    EXPECT_EQ(b.lazy_decode, a.lazy_decode);
    EXPECT_EQ(b.pruning, a.pruning);
  }
}

std::vector<Trace> run_each_alone(std::shared_ptr<const Model> model, const SessionOptions& o,
                                  const std::vector<Plan>& plans) {
  std::vector<Trace> out;
  for (const Plan& p : plans) out.push_back(run_alone(model, o, p));
  return out;
}

std::shared_ptr<Model> eval_model() {
  return Model::load(std::string(LAZYLLM_SOURCE_DIR) + "/eval/models/synth-llama-6l-256d.gguf");
}

// The CPU, and the GPU where there is one (saying so where there is none).
std::vector<Device> test_devices() {
  if (cuda_available()) return {Device::Cpu, Device::Cuda};
  std::cout << "[ skipped  ] the GPU half: no CUDA device (or a build without CUDA)\n";
  return {Device::Cpu};
}

SessionOptions options() {
  SessionOptions o;
  o.n_threads = 2;
  return o;
}

// The plans of the mixed test: LazyLLM (reselect and complete) and baseline sequences joining at
// different steps, one prefilled in chunks.
std::vector<Plan> mixed_plans(const Model& model) {
  const int v = model.config().n_vocab, L = model.config().n_layers;
  const PruneSchedule lazy = PruneSchedule::parse("0.3:0.5,0.6:0.5", L);
  const PruneSchedule complete = PruneSchedule::parse("complete:0.3:0.4", L);
  return {{random_tokens(64, v, 5), lazy, 0, 8},
          {random_tokens(40, v, 6), {}, 0, 8},
          {random_tokens(90, v, 7), lazy, 1, 6},
          {random_tokens(33, v, 8), complete, 2, 5},
          {random_tokens(20, v, 9), {}, 3, 5, 6}};
}

// A batch of one runs the same products as the session alone: bitwise the same.
TEST(SessionBatch, BatchOfOneIsBitwiseTheSessionAlone) {
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  const std::vector<Plan> plans = {{random_tokens(23, model->config().n_vocab, 3), {}, 0, 8}};
  const auto batched = run_batched(model, options(), plans);
  const auto alone = run_each_alone(model, options(), plans);
  EXPECT_TRUE(bitwise_equal(batched[0], alone[0]));
  expect_matches_alone(batched, alone);
}

// Real prompts of different lengths on a real trained model: prefilled together, decoded together.
TEST(SessionBatch, SequencesOfDifferentLengthsMatchEachAlone) {
  LAZYLLM_REQUIRE_SHARED("models/stories260K.gguf");
  auto model = Model::load((test::shared_dir() / "models/stories260K.gguf").string());
  const Tokenizer& tok = model->tokenizer();
  std::vector<Plan> plans;
  for (const char* text : {"Once upon a time", "The little dog ran to the park and saw a big red ball.",
                           "Lily", "Tom and his mom went to the store. They wanted to buy some food for dinner. "
                                   "Tom saw a toy car and asked"})
    plans.push_back({tok.encode(text, true, false), {}, 0, 12});
  SessionOptions o = options();
  o.n_ctx = 256;
  expect_matches_alone(run_batched(model, o, plans), run_each_alone(model, o, plans));
}

// Sequences join (prefilling while others decode) and leave at different steps.
TEST(SessionBatch, SequencesJoinAndLeaveBetweenSteps) {
  auto model = eval_model();
  const int v = model->config().n_vocab;
  const std::vector<Plan> plans = {{random_tokens(9, v, 1), {}, 0, 10},
                                   {random_tokens(31, v, 2), {}, 2, 4},
                                   {random_tokens(4, v, 3), {}, 3, 9},
                                   {random_tokens(50, v, 4), {}, 12, 3}};
  SessionOptions o = options();
  o.n_ctx = 128;
  std::vector<int> sizes;
  const auto batched = run_batched(model, o, plans, &sizes);
  // The steps really mixed: at most all four, and some step ran one sequence alone.
  EXPECT_EQ(*std::max_element(sizes.begin(), sizes.end()), 3);
  EXPECT_EQ(*std::min_element(sizes.begin(), sizes.end()), 1);
  expect_matches_alone(batched, run_each_alone(model, o, plans));
}

// LazyLLM and baseline sequences in one batch: each prunes, selects and revives as it does
// alone (same tokens, same counters).
TEST(SessionBatch, MixedLazyAndBaselineSequencesMatchEachAlone) {
  auto model = eval_model();
  const std::vector<Plan> plans = mixed_plans(*model);
  SessionOptions o = options();
  o.n_ctx = 160;
  const auto batched = run_batched(model, o, plans);
  const auto alone = run_each_alone(model, o, plans);
  expect_matches_alone(batched, alone);
  // The schedules did prune and revive (else this compares baselines).
  EXPECT_LT(alone[0].stats.computed_fraction, 1.0);
  EXPECT_GT(alone[0].stats.revived + alone[2].stats.revived, 0);
  EXPECT_EQ(alone[3].stats.lazy_decode, "complete");
}

// A prompt prefilled in chunks (several steps, interleaved with another sequence's decode) gives
// what the whole prompt gives.
TEST(SessionBatch, ChunkedPrefillEqualsWholePrefill) {
  auto model = eval_model();
  const int v = model->config().n_vocab;
  SessionOptions o = options();
  o.n_ctx = 128;
  for (int chunk : {1, 7, 16}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    const std::vector<Plan> plans = {{random_tokens(45, v, 11), {}, 0, 5, chunk}, {random_tokens(12, v, 12), {}, 0, 12}};
    expect_matches_alone(run_batched(model, o, plans), run_each_alone(model, o, plans), /*compare_counters=*/false);
  }
}

// A serial batch (how CUDA sessions step together) runs each sequence's step exactly as the
// sequence alone: bitwise the same logits and counters, whatever the mix. The exception is the
// prompt prefilled in chunks, whose products run at other row counts than the whole prompt's
// (alone it is prefilled whole): bitwise only where every product is row-count invariant, which
// OpenBLAS's attention products are not with every core type (OPENBLAS_CORETYPE=Haswell on a
// Zen 4: 6.2e-5 of the largest logit), so it is held to the batch tolerance.
TEST(SessionBatch, SerialStepsAreBitwiseEachSequenceAlone) {
  auto model = eval_model();
  SessionOptions o = options();
  o.n_ctx = 160;
  const auto plans = mixed_plans(*model);
  std::vector<int> sizes;
  const auto serial = run_batched(model, o, plans, &sizes, {.n_threads = 2, .serial = true});
  const auto alone = run_each_alone(model, o, plans);
  EXPECT_GE(*std::max_element(sizes.begin(), sizes.end()), 3);
  ASSERT_GT(plans.back().chunk, 0);
  for (size_t i = 0; i < plans.size(); ++i) {
    if (plans[i].chunk == 0) {
      EXPECT_TRUE(bitwise_equal(serial[i], alone[i])) << "sequence " << i;
    }
  }
  expect_matches_alone(serial, alone);
  EXPECT_LT(alone[0].stats.computed_fraction, 1.0);
}

// On a GPU the batch's sessions share the model's one copy of the weights. Stepped serially, each
// sequence gets what it gets alone on the GPU, bitwise, except a prompt prefilled in chunks, whose
// products run at other shapes than the whole prompt's (bf16 on the GPU; measured on an H200:
// 4.6e-3 of the largest logit), held to the GPU's tolerance against the CPU. Stepped as a batch,
// the baseline sequences' decodes share their products, held to the same tolerance.
constexpr double kGpuBatchTolerance = 4e-2;

TEST(SessionBatch, CudaSequencesMatchEachAloneOnTheGpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device (or a build without CUDA)";
  auto model = eval_model();
  SessionOptions o = options();
  o.n_ctx = 160;
  o.device = Device::Cuda;
  const auto plans = mixed_plans(*model);
  const auto serial = run_batched(model, o, plans, nullptr, {.serial = true});
  const auto alone = run_each_alone(model, o, plans);
  for (size_t i = 0; i < plans.size(); ++i)
    if (plans[i].chunk == 0) {
      EXPECT_TRUE(bitwise_equal(serial[i], alone[i])) << "sequence " << i;
    }
  expect_matches_alone(serial, alone, /*compare_counters=*/true, kGpuBatchTolerance);
  expect_matches_alone(run_batched(model, o, plans), alone, /*compare_counters=*/true, kGpuBatchTolerance);
}

// Baseline sequences of different lengths joining at different steps share one forward on the GPU,
// their prompts with one another and with the decode tokens of those that joined before:
// 2 to 6 decode rows a step, so every product path runs (bf16: the fused matrix-vector kernels up to 3
// rows, cuBLAS beyond; quantized: matrix-vector up to 2 rows, the tensor-core kernel beyond; the
// Q/K/V bias of qwen2), and each sequence's attention reads only its own cache. The batch decodes
// the tokens each sequence chose alone: the quantized paths differ by design (8-bit activations in
// the matrix-vector kernels, bf16 in the tensor-core one; measured on an H200: up to 2.5e-2 of the
// largest logit on these random models, whose near-ties then flip a greedy token), while a
// sequence attending to another's keys would differ on the logits' own scale.
TEST(SessionBatch, CudaBaselineStepsShareTheirProducts) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device (or a build without CUDA)";
  const std::vector<std::pair<std::string, std::shared_ptr<Model>>> models = {
      {"eval model (f16)", eval_model()},
      {"qwen2 q8_0", test::make_model(test::arch_variants()[2], DType::Q8_0)},
      {"llama q4_0", test::make_model(test::arch_variants()[0], DType::Q4_0)}};
  for (const auto& [name, model] : models) {
    SCOPED_TRACE(name);
    const int v = model->config().n_vocab;
    std::vector<Plan> plans;
    for (int i = 0; i < 6; ++i) plans.push_back({random_tokens(9 + 17 * i, v, 40 + i), {}, i % 3, 10});
    SessionOptions o = options();
    o.n_ctx = 160;
    o.device = Device::Cuda;
    std::vector<int> sizes;
    const auto alone = run_each_alone(model, o, plans);
    const auto batched = run_batched(model, o, plans, &sizes, {.n_threads = 2}, &alone);
    EXPECT_EQ(*std::max_element(sizes.begin(), sizes.end()), 6);
    for (size_t i = 0; i < plans.size(); ++i) {
      const double diff = max_rel_diff(batched[i], alone[i]);
      std::cout << "[ batch    ] " << name << ", sequence " << i << ": max relative logit difference " << diff << "\n";
      EXPECT_LE(diff, kGpuBatchTolerance) << "sequence " << i;
      EXPECT_EQ(batched[i].stats.shared_decode_steps, 9) << "sequence " << i;  // every decode step had a partner
      EXPECT_EQ(batched[i].stats.shared_prefill_steps, 1) << "sequence " << i;  // so did every prompt
      EXPECT_EQ(alone[i].stats.shared_prefill_steps, 0) << "sequence " << i;
      EXPECT_EQ(batched[i].stats.token_layers_computed, alone[i].stats.token_layers_computed);
    }
  }
}

// LazyLLM decode steps share the step's forward on the GPU too: each sequence's DecodeStep plans
// its rows layer by layer (the new token, revived tokens resuming from the Aux Cache, tokens that
// stop) and its keys and slots, the rows of every sequence stack into one forward, and each
// attends over its own listed keys. Re-selecting sequences (the paper's rule) and one completing
// its deferred tokens (more than kGatherRows rows at once, so the gathered-key attention runs)
// beside baseline sequences: every decode step shares, and each sequence gets its own LazyLLM
// counters and, within the GPU's batch tolerance, its own logits.
TEST(SessionBatch, CudaLazyDecodeStepsShareTheForward) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device (or a build without CUDA)";
  auto model = eval_model();
  const int v = model->config().n_vocab, L = model->config().n_layers;
  const PruneSchedule reselect = PruneSchedule::parse("reselect:0.3:0.5,0.6:0.5", L);
  const PruneSchedule complete = PruneSchedule::parse("complete:0.3:0.4", L);
  const std::vector<Plan> plans = {{random_tokens(96, v, 21), reselect, 0, 8},
                                   {random_tokens(40, v, 22), {}, 0, 8},
                                   {random_tokens(330, v, 23), complete, 0, 6},
                                   {random_tokens(70, v, 24), reselect, 1, 7}};
  SessionOptions o = options();
  o.n_ctx = 400;
  o.device = Device::Cuda;
  const auto alone = run_each_alone(model, o, plans);
  const auto batched = run_batched(model, o, plans, nullptr, {.n_threads = 2}, &alone);
  expect_matches_alone(batched, alone, /*compare_counters=*/true, kGpuBatchTolerance);
  for (size_t i = 0; i < plans.size(); ++i) {
    SCOPED_TRACE("sequence " + std::to_string(i));
    EXPECT_EQ(batched[i].stats.shared_decode_steps, plans[i].n_gen - 1);  // every step had a partner
    EXPECT_EQ(alone[i].stats.shared_decode_steps, 0);
    if (!plans[i].prune.points.empty()) {
      EXPECT_EQ(batched[i].stats.pruning, "on");
    }
  }
  EXPECT_GT(alone[0].stats.revived + alone[3].stats.revived, 0);  // re-selection revived tokens
  EXPECT_GT(alone[2].stats.revived, 128);                         // the completion's batch of rows
}

// Sessions taking their K/V from a KV pool compute bitwise what sessions with their own caches
// compute, on the CPU (the pool only counts pages) and on a GPU (pool pages mapped into each
// session's address range as it grows: rows of 2 KiB, so a 2 MiB page holds 1024 of them and
// these sequences cross page boundaries in prefill, in prefill chunks and in decode), LazyLLM
// and baseline sequences batched together; every page is back in the pool afterwards.
TEST(SessionBatch, PooledKvIsBitwiseTheSessionsOwnCache) {
  auto model = test::make_model(
      {.name = "kv_pages", .embd = 1024, .layers = 2, .heads = 8, .kv_heads = 8, .ff = 256, .ctx = 2048}, DType::F16,
      13);
  const int v = model->config().n_vocab;
  const PruneSchedule lazy = PruneSchedule::parse("0.5:0.5", 2);
  const PruneSchedule complete = PruneSchedule::parse("complete:0.5:0.4", 2);
  const std::vector<Plan> plans = {{random_tokens(880, v, 21), {}, 0, 40},
                                   {random_tokens(1000, v, 22), lazy, 0, 12},
                                   {random_tokens(300, v, 23), complete, 1, 10},
                                   {random_tokens(950, v, 24), {}, 2, 12, 256}};
  for (const Device device : test_devices()) {
    SCOPED_TRACE(std::string(device_name(device)));
    SessionOptions plain = options();
    plain.n_ctx = 1100;
    plain.device = device;
    plain.prune_policy = PrunePolicy::kAlways;
    SessionOptions pooled = plain;
    pooled.kv_pool = KvPool::create(*model, device, 4 * KvPool::session_bytes(*model, device, plain.n_ctx));
    for (const bool serial : {true, false}) {
      const auto a = run_batched(model, plain, plans, nullptr, {.n_threads = 2, .serial = serial});
      const auto b = run_batched(model, pooled, plans, nullptr, {.n_threads = 2, .serial = serial});
      for (size_t i = 0; i < plans.size(); ++i) {
        EXPECT_TRUE(bitwise_equal(a[i], b[i])) << "sequence " << i << (serial ? ", serial" : ", batched");
        EXPECT_EQ(a[i].stats.revived, b[i].stats.revived);
      }
      EXPECT_EQ(pooled.kv_pool->free_pages(), pooled.kv_pool->pages());
    }
  }
}

// A batch makes sessions of its own device only.
TEST(SessionBatch, SessionsOfAnotherDeviceAreRefused) {
  auto model = eval_model();
  SessionBatch batch(model, 1);
  SessionOptions o = options();
  o.device = Device::Cuda;
  try {
    batch.new_session(o);
    ADD_FAILURE() << "a CUDA session from a CPU batch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("computes on cpu, not cuda"), std::string::npos) << e.what();
  }
  EXPECT_EQ(batch.device(), Device::Cpu);
}

// A Session that keeps the first tokens of its context and prefills new ones continues as if it
// had prefilled the new prompt in two chunks (the prefix's K/V came from a longer prefill).
TEST(SessionPrefix, KeptPrefixThenPrefillFollowsAChunkedPrefill) {
  auto model = eval_model();
  const int v = model->config().n_vocab;
  const auto a = random_tokens(40, v, 21), b = random_tokens(15, v, 22), c = random_tokens(9, v, 23);
  SessionOptions o = options();
  o.n_ctx = 128;
  Session reused(model, o), fresh(model, o);
  std::vector<int32_t> ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  reused.prefill(ab);
  reused.decode(argmax(reused.logits()));
  ASSERT_TRUE(reused.keep_prefix(static_cast<int>(a.size())));
  EXPECT_EQ(reused.n_past(), static_cast<int>(a.size()));
  EXPECT_EQ(reused.history(), a);
  EXPECT_EQ(reused.stats().prompt_tokens, 0);  // statistics restart
  reused.prefill(c);
  fresh.prefill(a);
  fresh.prefill(c);
  EXPECT_EQ(reused.stats().prompt_tokens, static_cast<int>(c.size()));
  Trace t_reused, t_fresh;
  for (int i = 0; i < 6; ++i) {
    take(t_reused, reused.logits());
    take(t_fresh, fresh.logits());
    reused.decode(t_reused.tokens.back());
    fresh.decode(t_fresh.tokens.back());
  }
  EXPECT_EQ(t_reused.tokens, t_fresh.tokens);
  EXPECT_LE(max_rel_diff(t_reused, t_fresh), kBatchTolerance);
}

// Only an unpruned context of a Session without a schedule keeps a prefix; a refusal changes nothing.
TEST(SessionPrefix, RefusedWherePruningChoseTheContext) {
  auto model = eval_model();
  const int v = model->config().n_vocab;
  const auto prompt = random_tokens(60, v, 24);
  SessionOptions o = options();
  o.n_ctx = 128;
  o.prune = PruneSchedule::parse("0.3:0.5", model->config().n_layers);
  o.prune_policy = PrunePolicy::kAlways;
  Session lazy(model, o);
  lazy.prefill(prompt);
  EXPECT_FALSE(lazy.keep_prefix(10));
  EXPECT_EQ(lazy.n_past(), 60);
  lazy.reset(PruneSchedule{});  // no schedule now, but nothing computed yet
  lazy.prefill(prompt);
  EXPECT_FALSE(lazy.keep_prefix(61));  // more than it holds
  EXPECT_TRUE(lazy.keep_prefix(10));
  EXPECT_EQ(lazy.n_past(), 10);
}

// After a pruned rest and decode steps that re-select, the unpruned prefix still serves: kept
// (the pruned tokens, their K/V and Aux Cache entries forgotten) or copied, it continues as a
// session that computed only that prefix. The pruned steps never extend it. On the CPU and,
// where there is one, on a GPU.
TEST(SessionPrefix, UnprunedPrefixServesAfterAPrunedRest) {
  auto model = eval_model();
  const int v = model->config().n_vocab;
  const auto a = random_tokens(40, v, 41), b = random_tokens(50, v, 42), c = random_tokens(9, v, 43);
  // Re-selecting on both devices, so tokens stay in the Aux Cache through decode.
  const PruneSchedule lazy = PruneSchedule::parse("reselect:0.3:0.5", model->config().n_layers);
  for (const Device device : test_devices()) {
    SCOPED_TRACE(std::string(device_name(device)));
    SessionOptions o = options();
    o.n_ctx = 128;
    o.device = device;
    o.prune_policy = PrunePolicy::kAlways;
    Session s(model, o), fresh(model, o), copy(model, o);
    s.prefill(a);
    s.decode(argmax(s.logits()));
    EXPECT_EQ(s.unpruned_prefix(), static_cast<int>(a.size()) + 1);
    ASSERT_TRUE(s.keep_prefix(static_cast<int>(a.size()), lazy));
    s.prefill(b);
    ASSERT_LT(s.stats().prefill_computed_fraction, 1.0);
    s.decode(argmax(s.logits()));
    s.decode(argmax(s.logits()));
    ASSERT_GT(s.stats().aux_cache_entries, 0);
    EXPECT_EQ(s.unpruned_prefix(), static_cast<int>(a.size()));
    EXPECT_FALSE(s.keep_prefix(static_cast<int>(a.size()) + 1));  // a pruned token's
    EXPECT_FALSE(copy.copy_prefix(s, static_cast<int>(a.size()) + 1));
    ASSERT_TRUE(copy.copy_prefix(s, static_cast<int>(a.size())));
    ASSERT_TRUE(s.keep_prefix(static_cast<int>(a.size()), PruneSchedule{}));
    EXPECT_EQ(s.stats().aux_cache_entries, 0);
    EXPECT_EQ(s.history(), a);
    for (Session* x : {&s, &copy}) x->prefill(c);
    fresh.prefill(a);
    fresh.prefill(c);
    EXPECT_EQ(s.unpruned_prefix(), static_cast<int>(a.size() + c.size()));
    Trace t_kept, t_copy, t_fresh;
    for (int i = 0; i < 6; ++i) {
      take(t_kept, s.logits());
      take(t_copy, copy.logits());
      take(t_fresh, fresh.logits());
      s.decode(t_kept.tokens.back());
      copy.decode(t_copy.tokens.back());
      fresh.decode(t_fresh.tokens.back());
    }
    EXPECT_TRUE(bitwise_equal(t_kept, t_copy)) << "max relative difference " << max_rel_diff(t_kept, t_copy);
    EXPECT_EQ(t_kept.tokens, t_fresh.tokens);
    EXPECT_LE(max_rel_diff(t_kept, t_fresh), device == Device::Cuda ? kGpuBatchTolerance : kBatchTolerance);
    EXPECT_EQ(s.stats().revived, 0);
  }
}

// A Session that copies the first tokens of another's context continues bitwise as that other
// Session would after keeping them (the same K/V rows), and the other goes on unchanged; with a
// KV pool the copy takes its own pages. On the CPU and, where there is one, on a GPU.
TEST(SessionPrefix, CopiedPrefixIsBitwiseTheDonorsKeptPrefix) {
  auto model = test::make_model(
      {.name = "copy_prefix", .embd = 256, .layers = 3, .heads = 4, .kv_heads = 2, .ff = 512, .ctx = 512}, DType::F16,
      17);
  const int v = model->config().n_vocab;
  const auto a = random_tokens(300, v, 31), b = random_tokens(20, v, 32), c = random_tokens(12, v, 33);
  std::vector<int32_t> ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  for (const Device device : test_devices()) {
    SCOPED_TRACE(std::string(device_name(device)));
    SessionOptions o = options();
    o.n_ctx = 400;
    o.device = device;
    o.kv_pool = KvPool::create(*model, device, 3 * KvPool::session_bytes(*model, device, o.n_ctx));
    Session donor(model, o), twin(model, o), copy(model, o);
    for (Session* s : {&donor, &twin}) {
      ASSERT_TRUE(s->reserve_kv(static_cast<int>(ab.size()) + 1));
      s->prefill(ab);
      s->decode(argmax(s->logits()));
    }
    const std::vector<int32_t> donor_history = donor.history();
    const int64_t free_before = o.kv_pool->free_pages();
    ASSERT_TRUE(copy.copy_prefix(donor, static_cast<int>(a.size())));
    EXPECT_EQ(copy.n_past(), static_cast<int>(a.size()));
    EXPECT_EQ(copy.history(), a);
    EXPECT_EQ(free_before - o.kv_pool->free_pages(), copy.kv_pages());
    EXPECT_GT(copy.kv_pages(), 0);
    EXPECT_EQ(donor.history(), donor_history);
    ASSERT_TRUE(twin.keep_prefix(static_cast<int>(a.size())));
    ASSERT_TRUE(copy.reserve_kv(static_cast<int>(a.size() + c.size()) + 6));
    ASSERT_TRUE(twin.reserve_kv(static_cast<int>(a.size() + c.size()) + 6));
    ASSERT_TRUE(donor.reserve_kv(static_cast<int>(ab.size()) + 6));
    copy.prefill(c);
    twin.prefill(c);
    Trace t_copy, t_twin;
    for (int i = 0; i < 5; ++i) {
      take(t_copy, copy.logits());
      take(t_twin, twin.logits());
      copy.decode(t_copy.tokens.back());
      twin.decode(t_twin.tokens.back());
      donor.decode(t_copy.tokens.back());  // the donor goes on with its own context meanwhile
    }
    EXPECT_TRUE(bitwise_equal(t_copy, t_twin)) << "max relative difference " << max_rel_diff(t_copy, t_twin);
    EXPECT_EQ(t_copy.tokens, t_twin.tokens);
    EXPECT_EQ(donor.n_past(), static_cast<int>(ab.size()) + 6);
  }
}

// Only a context computed without pruning is copied, into a Session without a schedule, of the
// same model and device, and no more tokens than it holds; a refusal leaves the copy empty.
TEST(SessionPrefix, CopyRefusedWherePruningChoseTheContext) {
  auto model = eval_model();
  const int v = model->config().n_vocab;
  const auto prompt = random_tokens(60, v, 34);
  SessionOptions o = options();
  o.n_ctx = 128;
  SessionOptions lazy_o = o;
  lazy_o.prune = PruneSchedule::parse("0.3:0.5", model->config().n_layers);
  lazy_o.prune_policy = PrunePolicy::kAlways;
  Session lazy(model, lazy_o), plain(model, o), copy(model, o), lazy_copy(model, lazy_o);
  lazy.prefill(prompt);
  plain.prefill(prompt);
  copy.prefill(random_tokens(5, v, 35));
  EXPECT_FALSE(copy.copy_prefix(lazy, 10));  // pruned: its own last token chose what it holds
  EXPECT_EQ(copy.n_past(), 0);
  EXPECT_TRUE(copy.history().empty());
  EXPECT_FALSE(lazy_copy.copy_prefix(plain, 10));  // a schedule would choose from its own prompt
  EXPECT_FALSE(copy.copy_prefix(plain, 61));       // more than it holds
  EXPECT_FALSE(copy.copy_prefix(copy, 0));
  auto other = test::make_model(test::arch_variants()[0], DType::F32);
  Session stranger(other, o);
  EXPECT_FALSE(stranger.copy_prefix(plain, 10));  // another model
  EXPECT_TRUE(copy.copy_prefix(plain, 60));
  EXPECT_EQ(copy.history(), prompt);
  EXPECT_EQ(plain.n_past(), 60);
}

// A bad step is refused before anything changes; sessions of another batch cannot join.
TEST(SessionBatch, RefusesBadStepsAndChangesNothing) {
  auto model = test::make_model(test::arch_variants()[0], DType::F32);
  const int v = model->config().n_vocab;
  SessionBatch batch(model, 1), other(model, 1);
  SessionOptions o = options();
  o.n_ctx = 32;
  auto a = batch.new_session(o), b = batch.new_session(o), c = other.new_session(o);
  const auto prompt = random_tokens(10, v, 1);
  const std::vector<SequenceStep> start = {{a.get(), prompt, true}, {b.get(), prompt, true}};
  batch.step(start);
  const std::vector<float> before(a->logits().begin(), a->logits().end());
  const int32_t good = 5, bad = v;
  const std::vector<int32_t> two = {5, 6}, long_prompt = random_tokens(30, v, 2);
  const std::vector<std::vector<SequenceStep>> refused = {
      {{a.get(), std::span(&good, 1), false}, {b.get(), std::span(&bad, 1), false}},
      {{a.get(), std::span(&good, 1), false}, {a.get(), std::span(&good, 1), false}},
      {{a.get(), std::span(&good, 1), false}, {c.get(), std::span(&good, 1), false}},
      {{a.get(), two, false}},
      {{b.get(), std::span(&good, 1), false}, {a.get(), long_prompt, true}},
      {{a.get(), {}, true}},
      {{nullptr, std::span(&good, 1), false}}};
  for (const auto& step : refused) EXPECT_THROW(batch.step(step), Error);
  EXPECT_EQ(a->n_past(), 10);
  EXPECT_EQ(b->n_past(), 10);
  EXPECT_EQ(0, std::memcmp(before.data(), a->logits().data(), before.size() * sizeof(float)));
  EXPECT_THROW(batch.new_session([] {
    SessionOptions x;
    x.device = Device::Cuda;
    return x;
  }()),
               Error);
  // The sessions still step.
  const std::vector<SequenceStep> next = {{a.get(), std::span(&good, 1), false}, {b.get(), std::span(&good, 1), false}};
  batch.step(next);
  EXPECT_EQ(a->n_past(), 11);
  EXPECT_EQ(0, std::memcmp(a->logits().data(), b->logits().data(), before.size() * sizeof(float)));
}

// reset(schedule) runs the new schedule without a new session: the same as a fresh session.
TEST(SessionBatch, ResetWithAScheduleEqualsAFreshSession) {
  auto model = eval_model();
  const int v = model->config().n_vocab, L = model->config().n_layers;
  const PruneSchedule lazy = PruneSchedule::parse("0.3:0.5,0.6:0.5", L);
  SessionOptions o = options();
  o.n_ctx = 128;
  Session reused(model, o);
  reused.prefill(random_tokens(30, v, 1));
  reused.reset(lazy);
  const Plan p{random_tokens(70, v, 2), lazy, 0, 6};
  Trace t;
  reused.prefill(p.prompt);
  for (;;) {
    take(t, reused.logits());
    if (static_cast<int>(t.tokens.size()) == p.n_gen) break;
    reused.decode(t.tokens.back());
  }
  const Trace fresh = run_alone(model, o, p);
  EXPECT_TRUE(bitwise_equal(t, fresh));
  EXPECT_EQ(reused.stats().revived, fresh.stats.revived);
  EXPECT_EQ(reused.stats().token_layers_computed, fresh.stats.token_layers_computed);
  EXPECT_THROW(reused.reset(PruneSchedule{{{L, 0.5}}}), Error);
  EXPECT_EQ(reused.n_past(), 75);  // a refused schedule changes nothing
}

}  // namespace
}  // namespace lazyllm
