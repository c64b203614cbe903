// Continuous batching in the server's scheduler: requests stepped together give the texts each
// gives alone (greedy), with chunked prefill, per-request LazyLLM schedules beside baseline
// requests, and one request cancelled while others run; /metrics reports the steps.
#include <gtest/gtest.h>
#include <httplib.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "lazyllm/error.h"
#include "lazyllm/tokenizer.h"
#include "server/job.h"
#include "server/scheduler.h"
#include "test_models.h"
#include "test_server_util.h"
#include "test_util.h"

namespace lazyllm::server {
namespace {

using nlohmann::json;

constexpr const char* kModel = "models/stories260K.gguf";

std::shared_ptr<Model> stories() {
  static std::shared_ptr<Model> m = Model::load((test::shared_dir() / kModel).string());
  return m;
}

const char* const kPrompts[] = {
    "Once upon a time, there was a little girl named Lily.",
    "The dog ran to the park",
    "One day, Tom found a big red ball in the garden. He was very happy and wanted to show it to his mom. "
    "His mom said",
};

std::shared_ptr<Job> greedy_job(const std::string& prompt, int max_tokens, const PruneSchedule& prune = {}) {
  const Tokenizer& tok = stories()->tokenizer();
  auto job = std::make_shared<Job>();
  job->prompt = tok.encode(prompt, tok.add_bos(), false);
  job->max_tokens = max_tokens;
  job->sampling.temperature = 0;
  job->prune = prune;
  return job;
}

std::shared_ptr<Job> copy_inputs(const Job& j) {
  auto c = std::make_shared<Job>();
  c->prompt = j.prompt;
  c->max_tokens = j.max_tokens;
  c->sampling = j.sampling;
  c->prune = j.prune;
  return c;
}

std::string wait_text(const std::shared_ptr<Job>& job) {
  std::string text;
  while (!job->wait(text, std::chrono::milliseconds(20))) {}
  return text;
}

SchedulerOptions batch_options(int parallel, int chunk, Device device = Device::Cpu) {
  SchedulerOptions so;
  so.device = device;
  so.parallel = parallel;
  so.threads = 2;
  so.prefill_chunk = chunk;
  so.n_ctx = 2048;  // past the model's 128, so that one long generation can hold the batch
  so.prune_policy = PrunePolicy::kAlways;  // prune even the short test prompts
  return so;
}

// What a job gives run alone: a scheduler of one, the only request.
struct Alone {
  std::string text;
  GenerationResult result;
};
Alone run_alone(const Job& inputs, int chunk, Device device = Device::Cpu) {
  Metrics metrics;
  Scheduler sched(stories(), batch_options(1, chunk, device), metrics);
  auto job = copy_inputs(inputs);
  EXPECT_EQ(sched.submit(job), Scheduler::Admission::Accepted);
  Alone a;
  a.text = wait_text(job);
  a.result = job->result();
  return a;
}


// Sum of a Prometheus counter or histogram line `name` (no labels) in `metrics`.
double metric(const std::string& metrics, const std::string& name) {
  std::smatch m;
  const std::regex re("(^|\n)" + std::regex_replace(name, std::regex(R"([{}\"+.])"), R"(\$&)") + " ([0-9.e+-]+)\n");
  if (!std::regex_search(metrics, m, re)) ADD_FAILURE() << name << " not in:\n" << metrics;
  return m.empty() ? -1 : std::stod(m[2]);
}

// Steps that ran more than one sequence, from the batch-size histogram.
double multi_sequence_steps(const std::string& metrics) {
  return metric(metrics, "lazyllm_batch_size_count") - metric(metrics, "lazyllm_batch_size_bucket{le=\"1\"}");
}

// A long greedy generation that keeps the batch busy while the others join and leave; it is
// cancelled by the tests once they are done.
std::shared_ptr<Job> keeper() { return greedy_job("Once upon a time", 2000); }

TEST(ServerBatch, ConcurrentGreedyRequestsMatchAloneOverHttp) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  std::vector<std::string> alone;
  for (const char* p : kPrompts) {
    alone.push_back(run_alone(*greedy_job(p, 24), 512).text);
    EXPECT_EQ(alone.back(), srvtest::greedy_text(stories(), p, 24));
  }

  ServerOptions o;
  o.port = 0;
  o.threads = 2;
  o.parallel = 4;
  srvtest::RunningServer s(stories(), o);
  // Each client sends its request twice in a row, so the requests overlap however the threads
  // are scheduled.
  std::vector<std::vector<std::string>> got(std::size(kPrompts));
  std::vector<std::thread> clients;
  for (size_t i = 0; i < std::size(kPrompts); ++i)
    clients.emplace_back([&, i] {
      auto c = s.client();
      for (int round = 0; round < 2; ++round) {
        auto res = c.Post("/v1/completions",
                          json({{"prompt", kPrompts[i]}, {"max_tokens", 24}, {"temperature", 0}}).dump(),
                          "application/json");
        if (!res || res->status != 200) {
          got[i].push_back(res ? "HTTP " + std::to_string(res->status) + ": " + res->body : "no answer");
          continue;
        }
        got[i].push_back(json::parse(res->body)["choices"][0]["text"]);
      }
    });
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < std::size(kPrompts); ++i) {
    ASSERT_EQ(got[i].size(), 2u);
    EXPECT_FALSE(alone[i].empty());
    for (const std::string& text : got[i]) EXPECT_EQ(text, alone[i]) << "prompt " << i;
  }
  auto c = s.client();
  auto res = c.Get("/metrics");
  ASSERT_TRUE(res);
  const std::string m = res->body;
  EXPECT_GE(metric(m, "lazyllm_steps_total"), 24) << m;
  EXPECT_EQ(metric(m, "lazyllm_batch_size_count"), metric(m, "lazyllm_steps_total")) << m;
  EXPECT_EQ(metric(m, "lazyllm_queue_wait_seconds_count"), 2 * std::size(kPrompts)) << m;
  EXPECT_GE(metric(m, "lazyllm_queue_wait_seconds_sum"), 0) << m;
  if (multi_sequence_steps(m) < 1) {
    std::cerr << "the HTTP requests did not overlap; batching them beside a long one\n";
    // The six requests happened not to overlap: make them (a long one holds the batch).
    Metrics metrics;
    Scheduler sched(stories(), batch_options(2, 512), metrics);
    auto k = keeper(), j = greedy_job(kPrompts[0], 24);
    ASSERT_EQ(sched.submit(k), Scheduler::Admission::Accepted);
    ASSERT_EQ(sched.submit(j), Scheduler::Admission::Accepted);
    EXPECT_EQ(wait_text(j), alone[0]);
    k->cancel();
    wait_text(k);
    EXPECT_GE(multi_sequence_steps(metrics.render({.slots_total = 2})), 1);
  }
}

// Several greedy jobs beside a long one, prefilled in chunks of 7 tokens: each text is what the
// job gives alone, whole-prompt or chunked; at least one step carried several sequences.
TEST(ServerBatch, ChunkedPrefillMatchesWholePrompt) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  for (int chunk : {0, 7}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    Metrics metrics;
    SchedulerOptions so = batch_options(4, chunk);
    so.step_prompt_tokens = 10;
    Scheduler sched(stories(), so, metrics);
    auto k = keeper();
    ASSERT_EQ(sched.submit(k), Scheduler::Admission::Accepted);
    std::vector<std::shared_ptr<Job>> jobs;
    for (const char* p : kPrompts) {
      jobs.push_back(greedy_job(p, 20));
      ASSERT_EQ(sched.submit(jobs.back()), Scheduler::Admission::Accepted);
    }
    for (auto& j : jobs) {
      const std::string text = wait_text(j);
      EXPECT_EQ(j->result().error, "");
      EXPECT_EQ(j->result().completion_tokens, 20);
      EXPECT_EQ(text, run_alone(*j, 0).text) << "vs. unchunked alone";
      EXPECT_EQ(text, run_alone(*j, 5).text) << "vs. chunks of 5 alone";
    }
    k->cancel();
    wait_text(k);
    const std::string m = metrics.render({.slots_total = 4});
    EXPECT_GE(multi_sequence_steps(m), 1) << m;
    // The longest prompt (about 50 tokens) takes several steps in chunks of 7.
    if (chunk == 7) {
      EXPECT_GE(metric(m, "lazyllm_steps_total"), 20 + 50 / 7) << m;
      // The three prompts share 10 tokens a step (three chunks of 7 would make 21).
      EXPECT_GT(metric(m, "lazyllm_step_prompt_tokens_count"), 0);
      EXPECT_EQ(metric(m, "lazyllm_step_prompt_tokens_bucket{le=\"16\"}"),
                metric(m, "lazyllm_step_prompt_tokens_count"));
    }
  }
}

// A request that arrives while a step runs its prompt chunks one after another, and whose prompt
// fits one chunk, is admitted and answered before the step's next chunk (not after the whole
// step), and answers as it does alone.
TEST(ServerBatch, ARequestArrivingBetweenChunksIsAnsweredBeforeTheNextChunk) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  Metrics metrics;
  SchedulerOptions so = batch_options(6, 12);  // the arriving prompt is 12 tokens at most
  so.step_prompt_tokens = 48;                  // four chunks a step
  so.prune_policy = PrunePolicy::kAuto;
  std::shared_ptr<Job> arriving = greedy_job(kPrompts[1], 3);
  int calls = 0;
  bool answered_by_next_chunk = false;
  std::string seen;
  std::shared_ptr<Scheduler> sched;
  so.between_forwards = [&] {
    if (++calls == 1) {
      EXPECT_EQ(sched->submit(arriving), Scheduler::Admission::Accepted);
    }
    if (calls == 2) {
      arriving->wait(seen, std::chrono::milliseconds(0));  // its first token's text, if it came
      answered_by_next_chunk = !seen.empty();
    }
  };
  sched = std::make_shared<Scheduler>(stories(), so, metrics);
  std::vector<std::shared_ptr<Job>> jobs;
  for (int i = 0; i < 4; ++i) {
    jobs.push_back(greedy_job(std::string(i + 1, '!') + kPrompts[2], 3));  // no prefix in common
    ASSERT_EQ(sched->submit(jobs.back()), Scheduler::Admission::Accepted);
  }
  for (auto& j : jobs) {
    const std::string text = wait_text(j);
    EXPECT_EQ(j->result().error, "");
    EXPECT_EQ(text, run_alone(*j, 12).text);
  }
  ASSERT_GE(calls, 2);
  EXPECT_TRUE(answered_by_next_chunk);
  EXPECT_LE(arriving->prompt.size(), 12u);
  seen += wait_text(arriving);
  EXPECT_EQ(arriving->result().error, "");
  EXPECT_EQ(arriving->result().completion_tokens, 3);
  EXPECT_EQ(seen, run_alone(*arriving, 12).text);
  sched->shutdown(std::chrono::milliseconds(0));
}

// Where a step's prompts run one after another anyway (a batch that does not share prompts'
// products; here a serial batch), fresh prompts that a forward would finish run as one forward
// each, so the first one's first token is sent before the second one's forward, not after both;
// each answers as alone. Two requests arrive together between two other prompts' chunks.
TEST(ServerBatch, PromptsThatRunAloneAnywayAreAnsweredOneByOne) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  Metrics metrics;
  SchedulerOptions so = batch_options(4, 16);
  so.step_prompt_tokens = 32;  // the two long prompts take a chunk each a step
  so.serial_batch = true;
  std::vector<std::shared_ptr<Job>> arriving = {greedy_job(kPrompts[0], 3), greedy_job(kPrompts[1], 3)};
  int calls = 0;
  std::string first_seen, second_seen;
  std::shared_ptr<Scheduler> sched;
  so.between_forwards = [&] {
    ++calls;
    if (calls == 1) {
      for (auto& j : arriving) EXPECT_EQ(sched->submit(j), Scheduler::Admission::Accepted);
    } else if (calls == 2) {  // after the first arrival's forward
      arriving[0]->wait(first_seen, std::chrono::milliseconds(0));
      arriving[1]->wait(second_seen, std::chrono::milliseconds(0));
    }
  };
  sched = std::make_shared<Scheduler>(stories(), so, metrics);
  std::vector<std::shared_ptr<Job>> long_jobs;
  for (int i = 0; i < 2; ++i) {
    long_jobs.push_back(greedy_job(std::string(i + 1, '!') + kPrompts[2], 2));
    ASSERT_GT(long_jobs.back()->prompt.size(), 32u);
    ASSERT_EQ(sched->submit(long_jobs.back()), Scheduler::Admission::Accepted);
  }
  for (auto& j : arriving) ASSERT_LE(j->prompt.size(), 16u);
  // The long jobs first: they outlast the hook's checks, which must be the first to read the
  // arrivals' text.
  for (auto& j : long_jobs) EXPECT_EQ(wait_text(j), run_alone(*j, 16).text);
  const std::string first_rest = wait_text(arriving[0]), second_text = wait_text(arriving[1]);
  ASSERT_GE(calls, 2);
  EXPECT_FALSE(first_seen.empty()) << "the first arrival's token waited for the second one's forward";
  EXPECT_TRUE(second_seen.empty());
  EXPECT_EQ(arriving[0]->result().error, "");
  EXPECT_EQ(arriving[1]->result().error, "");
  EXPECT_EQ(first_seen + first_rest, run_alone(*arriving[0], 16).text);
  EXPECT_EQ(second_text, run_alone(*arriving[1], 16).text);
  sched->shutdown(std::chrono::milliseconds(0));
}

// LazyLLM requests (one short enough to join a step whole, one prefilled alone because it is
// longer than a chunk) beside baseline requests: each gets what it gets alone, pruned for real.
// Two LazyLLM requests (one whole in a batch step, one prefilled alone) and two baseline ones
// (one chunked) beside a long generation: each answers as alone on the same device.
void lazy_and_baseline_together(Device device) {
  const int n_layers = stories()->config().n_layers;
  const PruneSchedule lazy = PruneSchedule::parse("1:0.5", n_layers);
  const int chunk = 16;
  std::vector<std::shared_ptr<Job>> jobs = {
      greedy_job(kPrompts[0], 16, lazy),  // about 15 tokens: whole, in a batch step
      greedy_job(kPrompts[2], 16, lazy),  // about 50 tokens: prefilled alone
      greedy_job(kPrompts[1], 16),
      greedy_job(kPrompts[2], 16),        // chunked
  };
  ASSERT_LE(jobs[0]->prompt.size(), static_cast<size_t>(chunk));
  ASSERT_GT(jobs[1]->prompt.size(), static_cast<size_t>(chunk));
  Metrics metrics;
  Scheduler sched(stories(), batch_options(5, chunk, device), metrics);
  auto k = keeper();
  ASSERT_EQ(sched.submit(k), Scheduler::Admission::Accepted);
  for (auto& j : jobs) ASSERT_EQ(sched.submit(j), Scheduler::Admission::Accepted);
  for (size_t i = 0; i < jobs.size(); ++i) {
    SCOPED_TRACE("job " + std::to_string(i));
    const std::string text = wait_text(jobs[i]);
    const Alone alone = run_alone(*jobs[i], chunk, device);
    EXPECT_EQ(jobs[i]->result().error, "");
    EXPECT_EQ(text, alone.text);
    EXPECT_EQ(jobs[i]->result().completion_tokens, alone.result.completion_tokens);
    EXPECT_EQ(jobs[i]->result().prompt_computed_fraction, alone.result.prompt_computed_fraction);
    if (i < 2) {
      EXPECT_LT(jobs[i]->result().prompt_computed_fraction, 1.0) << "not pruned";
    } else {
      EXPECT_EQ(jobs[i]->result().prompt_computed_fraction, 1.0);
    }
  }
  k->cancel();
  wait_text(k);
  EXPECT_GE(multi_sequence_steps(metrics.render({.slots_total = 5})), 1);
}

TEST(ServerBatch, LazyAndBaselineRequestsTogether) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  lazy_and_baseline_together(Device::Cpu);
}

// Serving on the GPU: the requests share the model's one copy of the weights there.
TEST(ServerBatch, LazyAndBaselineRequestsTogetherOnTheGpu) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device (or a build without CUDA)";
  lazy_and_baseline_together(Device::Cuda);
}

// A stream cancelled part way ends as cancelled; the requests batched with it answer as alone.
TEST(ServerBatch, CancellingOneRequestLeavesTheOthers) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  Metrics metrics;
  Scheduler sched(stories(), batch_options(3, 8), metrics);
  auto victim = keeper();
  auto a = greedy_job(kPrompts[0], 40), b = greedy_job(kPrompts[2], 40);
  ASSERT_EQ(sched.submit(victim), Scheduler::Admission::Accepted);
  ASSERT_EQ(sched.submit(a), Scheduler::Admission::Accepted);
  ASSERT_EQ(sched.submit(b), Scheduler::Admission::Accepted);
  std::string partial;
  while (partial.empty() && !victim->wait(partial, std::chrono::milliseconds(5))) {}
  victim->cancel();
  partial += wait_text(victim);
  EXPECT_EQ(victim->result().finish_reason, "cancelled");
  EXPECT_LT(victim->result().completion_tokens, 2000);
  EXPECT_FALSE(partial.empty());
  for (auto& j : {a, b}) {
    const std::string text = wait_text(j);
    EXPECT_EQ(j->result().finish_reason, "length");
    EXPECT_EQ(text, run_alone(*j, 8).text);
  }
  const std::string m = metrics.render({.slots_total = 3});
  EXPECT_EQ(metric(m, "lazyllm_requests_cancelled_total"), 1) << m;
  EXPECT_GE(multi_sequence_steps(m), 1) << m;
  // The batch serves the next request as a fresh one.
  auto next = greedy_job(kPrompts[1], 12);
  ASSERT_EQ(sched.submit(next), Scheduler::Admission::Accepted);
  EXPECT_EQ(wait_text(next), run_alone(*next, 8).text);
}

}  // namespace
}  // namespace lazyllm::server

namespace lazyllm::server {
namespace {

// The prefix cache: a request whose prompt starts with what an idle request slot holds (an
// earlier prompt, or an earlier prompt and its answer) computes only the rest, answers as it does
// with nothing cached, and says how many tokens it reused.
TEST(ServerPrefix, ReusesThePromptPrefixAnIdleSlotHolds) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  Metrics metrics;
  Scheduler sched(stories(), batch_options(2, 8), metrics);
  auto first = greedy_job(kPrompts[2], 12);
  ASSERT_EQ(sched.submit(first), Scheduler::Admission::Accepted);
  const std::string first_text = wait_text(first);
  EXPECT_EQ(first->result().cached_tokens, 0);
  // The same document, then a follow-up: its prompt holds the first prompt and answer.
  auto follow = greedy_job(std::string(kPrompts[2]) + first_text + " The end. Then", 12);
  ASSERT_GT(follow->prompt.size(), first->prompt.size());
  ASSERT_TRUE(std::equal(first->prompt.begin(), first->prompt.end(), follow->prompt.begin()));
  ASSERT_EQ(sched.submit(follow), Scheduler::Admission::Accepted);
  const std::string text = wait_text(follow);
  const GenerationResult& r = follow->result();
  EXPECT_EQ(r.error, "");
  EXPECT_GE(r.cached_tokens, static_cast<int>(first->prompt.size()));
  EXPECT_LT(r.cached_tokens, static_cast<int>(follow->prompt.size()));
  EXPECT_EQ(r.prompt_tokens, static_cast<int>(follow->prompt.size()));
  Alone alone = run_alone(*follow, 8);  // a scheduler of its own: nothing cached
  EXPECT_EQ(alone.result.cached_tokens, 0);
  EXPECT_EQ(text, alone.text);
  const std::string m = metrics.render({.slots_total = 2});
  EXPECT_EQ(metric(m, "lazyllm_prefix_cache_lookups_total"), 2);
  EXPECT_EQ(metric(m, "lazyllm_prefix_cache_hits_total"), 1);
  EXPECT_EQ(metric(m, "lazyllm_prefix_cache_tokens_total"), r.cached_tokens);
}

// A request whose prompt starts with what a running request has computed copies that prefix
// from the running request's context (requests arriving together with one document compute it
// once), answers as it does alone, and the running request goes on undisturbed.
TEST(ServerPrefix, CopiesThePrefixARunningRequestHolds) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  Metrics metrics;
  Scheduler sched(stories(), batch_options(2, 8), metrics);
  auto running = greedy_job(kPrompts[2], 2000);
  ASSERT_GT(running->prompt.size(), Scheduler::kMinCopiedPrefix + 1);
  ASSERT_EQ(sched.submit(running), Scheduler::Admission::Accepted);
  std::string streamed;
  for (const auto t0 = std::chrono::steady_clock::now(); streamed.empty();) {  // its prompt is computed
    ASSERT_FALSE(running->wait(streamed, std::chrono::milliseconds(2))) << "finished early: " << streamed;
    ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  }
  auto asked = greedy_job(std::string(kPrompts[2]) + " The end. Then", 10);
  ASSERT_EQ(sched.submit(asked), Scheduler::Admission::Accepted);
  const std::string text = wait_text(asked);
  const GenerationResult& r = asked->result();
  EXPECT_EQ(r.error, "");
  EXPECT_GE(r.cached_tokens, static_cast<int>(Scheduler::kMinCopiedPrefix));
  EXPECT_LT(r.cached_tokens, static_cast<int>(asked->prompt.size()));
  EXPECT_EQ(text, run_alone(*asked, 8).text);
  EXPECT_FALSE(running->done());
  running->cancel();
  const std::string running_text = streamed + wait_text(running);
  EXPECT_EQ(running->result().finish_reason, "cancelled");
  // What the running request said up to the cancellation starts its answer alone.
  ASSERT_GT(running->result().completion_tokens, 0);
  const std::string alone = run_alone(*greedy_job(kPrompts[2], running->result().completion_tokens), 8).text;
  EXPECT_EQ(alone.rfind(running_text, 0), 0u) << "'" << running_text << "' does not start '" << alone << "'";
  const std::string m = metrics.render({.slots_total = 2});
  EXPECT_EQ(metric(m, "lazyllm_prefix_cache_hits_total"), 1);
  EXPECT_EQ(metric(m, "lazyllm_prefix_cache_copies_total"), 1);
  EXPECT_EQ(metric(m, "lazyllm_prefix_cache_tokens_total"), r.cached_tokens);
}

// Requests that arrive together with one document compute it once: those after the first wait
// for it to be computed (a prefill in chunks of 8 tokens takes several steps) and copy it, and
// answer as each does alone.
TEST(ServerPrefix, RequestsArrivingTogetherComputeTheirPrefixOnce) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  Metrics metrics;
  Scheduler sched(stories(), batch_options(3, 8), metrics);
  auto first = greedy_job(kPrompts[2], 2000);
  std::vector<std::shared_ptr<Job>> asked = {greedy_job(std::string(kPrompts[2]) + " The end. Then", 6),
                                             greedy_job(std::string(kPrompts[2]) + " Then she said", 6)};
  ASSERT_EQ(sched.submit(first), Scheduler::Admission::Accepted);
  for (const auto& j : asked) ASSERT_EQ(sched.submit(j), Scheduler::Admission::Accepted);
  for (const auto& j : asked) {
    const std::string text = wait_text(j);
    EXPECT_EQ(j->result().error, "");
    EXPECT_GE(j->result().cached_tokens, static_cast<int>(Scheduler::kMinCopiedPrefix));
    EXPECT_EQ(text, run_alone(*j, 8).text);
  }
  EXPECT_FALSE(first->done());
  first->cancel();
  wait_text(first);
  EXPECT_EQ(first->result().cached_tokens, 0);
  const std::string m = metrics.render({.slots_total = 3});
  EXPECT_EQ(metric(m, "lazyllm_prefix_cache_hits_total"), 2);
  EXPECT_EQ(metric(m, "lazyllm_prefix_cache_copies_total"), 2);
  const double waited = metric(m, "lazyllm_prefix_cache_waits_total");
  std::cout << "[ prefix   ] requests that waited for the shared prefix: " << waited << "\n";
  EXPECT_LE(waited, 2);
}

// Every prompt starts with the same first token, so a slot holding another prompt gives a
// one-token reuse: the tokens total counts it, the hit counter does not.
TEST(ServerPrefix, AFirstTokenInCommonIsNoHit) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  Metrics metrics;
  Scheduler sched(stories(), batch_options(1, 8), metrics);
  int cached = 0;
  for (const char* prompt : {kPrompts[0], kPrompts[1]}) {
    auto job = greedy_job(prompt, 4);
    ASSERT_EQ(sched.submit(job), Scheduler::Admission::Accepted);
    wait_text(job);
    EXPECT_EQ(job->result().error, "");
    cached += job->result().cached_tokens;
  }
  ASSERT_GT(cached, 0) << "the second prompt reused nothing: this test no longer checks a short reuse";
  ASSERT_LT(cached, Metrics::kMinPrefixHit);
  const std::string m = metrics.render({.slots_total = 1});
  EXPECT_EQ(metric(m, "lazyllm_prefix_cache_lookups_total"), 2);
  EXPECT_EQ(metric(m, "lazyllm_prefix_cache_hits_total"), 0);
  EXPECT_EQ(metric(m, "lazyllm_prefix_cache_tokens_total"), cached);
}

// A request with a pruning schedule reuses a prefix computed without pruning: the prefix stays
// computed at every layer and the schedule prunes among the tokens after it, so it answers as a
// session that keeps that prefix and prefills the rest under the schedule. Its slot still holds
// that prefix unpruned (the pruned rest is cut away when it is reused), so a second pruned
// question and a baseline request reuse it again. With the cache off nothing is reused.
TEST(ServerPrefix, PrunedRequestsReuseOnlyUnprunedPrefixes) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  const PruneSchedule lazy = PruneSchedule::parse("1:0.5", stories()->config().n_layers);
  const std::string document = kPrompts[2];
  // The reference: the same prefix kept by a session of its own, the rest pruned.
  auto kept_then_pruned = [&](const Job& job, int kept, double* computed_fraction) {
    SessionOptions o;
    o.n_ctx = 512;
    o.n_threads = 2;
    o.prune_policy = batch_options(1, 8).prune_policy;
    Session s(stories(), o);
    const std::span<const int32_t> prompt(job.prompt);
    s.prefill(prompt.first(kept));
    EXPECT_TRUE(s.keep_prefix(kept, lazy));
    s.prefill(prompt.subspan(kept));
    *computed_fraction = s.stats().prefill_computed_fraction;
    std::vector<int32_t> tokens;
    for (int k = 0; k < job.max_tokens; ++k) {
      tokens.push_back(test::argmax(s.logits()));
      if (k + 1 < job.max_tokens) s.decode(tokens.back());
    }
    return stories()->tokenizer().decode(tokens);
  };
  for (bool cache_on : {true, false}) {
    SCOPED_TRACE(cache_on ? "cache on" : "cache off");
    Metrics metrics;
    SchedulerOptions so = batch_options(1, 8);
    so.prefix_cache = cache_on;
    Scheduler sched(stories(), so, metrics);
    auto base = greedy_job(document, 4);
    ASSERT_EQ(sched.submit(base), Scheduler::Admission::Accepted);
    wait_text(base);
    // The document again with a question after it, pruned; then another question.
    int kept = 0;
    for (const char* question : {" Then Tom asked his dad where the ball came from, and his dad",
                                 " Then Tom ran to the park with the ball and a dog"}) {
      auto pruned = greedy_job(document + question, 6, lazy);
      ASSERT_EQ(sched.submit(pruned), Scheduler::Admission::Accepted);
      const std::string pruned_text = wait_text(pruned);
      const GenerationResult& r = pruned->result();
      EXPECT_EQ(r.error, "");
      EXPECT_LT(r.prompt_computed_fraction, 1.0);  // the rest was pruned
      if (!cache_on) {
        EXPECT_EQ(r.cached_tokens, 0);
        EXPECT_EQ(pruned_text, run_alone(*pruned, 8).text);
        continue;
      }
      EXPECT_GE(r.cached_tokens, static_cast<int>(base->prompt.size()) - 1);
      if (kept > 0) {
        EXPECT_EQ(r.cached_tokens, kept);  // the first question's pruned tokens never serve
      }
      kept = r.cached_tokens;
      double reference_fraction = 0;
      EXPECT_EQ(pruned_text, kept_then_pruned(*pruned, kept, &reference_fraction));
      // Of the rest's (token, layer) pairs, as the reference's; the whole prompt pruned differs.
      EXPECT_DOUBLE_EQ(r.prompt_computed_fraction, reference_fraction);
      EXPECT_NE(r.prompt_computed_fraction, run_alone(*pruned, 8).result.prompt_computed_fraction);
    }
    auto again = greedy_job(document, 4);  // the only slot holds the document, then a pruned rest
    ASSERT_EQ(sched.submit(again), Scheduler::Admission::Accepted);
    const std::string again_text = wait_text(again);
    EXPECT_EQ(again->result().cached_tokens, cache_on ? static_cast<int>(again->prompt.size()) - 1 : 0);
    EXPECT_EQ(again_text, run_alone(*again, 8).text);
    const std::string m = metrics.render({.slots_total = 1});
    EXPECT_EQ(metric(m, "lazyllm_prefix_cache_hits_total"), cache_on ? 3 : 0);
    EXPECT_EQ(metric(m, "lazyllm_prefix_cache_lookups_total"), cache_on ? 4 : 0);
  }
}

}  // namespace
}  // namespace lazyllm::server

namespace lazyllm::server {
namespace {

// A KV pool that holds one request at a time (stories260K: a page per layer's K and V holds any
// context here): of two requests submitted together the second waits in the queue until the
// first is done, then takes the pages the first one's idle slot held (the prefix cache off, so
// it takes the other slot); both give the texts they give alone, and no step ran both.
TEST(ServerKvPool, RequestsWaitForPagesAndMatchAlone) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  std::vector<std::shared_ptr<Job>> jobs = {greedy_job(kPrompts[0], 24), greedy_job(kPrompts[1], 24)};
  std::vector<std::string> alone;
  for (const auto& j : jobs) alone.push_back(run_alone(*j, 512).text);
  SchedulerOptions so = batch_options(2, 512);
  so.prefix_cache = false;
  so.kv_memory = KvPool::session_bytes(*stories(), Device::Cpu, so.n_ctx);
  Metrics metrics;
  {
    Scheduler sched(stories(), so, metrics);
    EXPECT_EQ(sched.kv_pool().pages(), sched.kv_pool().pages_for(so.n_ctx));
    for (const auto& j : jobs) ASSERT_EQ(sched.submit(j), Scheduler::Admission::Accepted);
    for (size_t i = 0; i < jobs.size(); ++i) {
      EXPECT_EQ(wait_text(jobs[i]), alone[i]) << "request " << i;
      EXPECT_TRUE(jobs[i]->result().error.empty()) << jobs[i]->result().error;
    }
    for (const auto t0 = std::chrono::steady_clock::now(); sched.busy() > 0;) {  // finished before it left the batch
      ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    const Metrics::Gauges g = sched.gauges();
    EXPECT_EQ(g.kv_pages_total, sched.kv_pool().pages());
    EXPECT_EQ(g.kv_pages_running, 0);
    EXPECT_EQ(g.kv_pages_idle + g.kv_pages_free, g.kv_pages_total);
  }
  const std::string m = metrics.render({});
  EXPECT_EQ(metric(m, "lazyllm_kv_pool_waits_total"), 1);
  EXPECT_EQ(metric(m, "lazyllm_kv_pool_evictions_total"), 1);
  EXPECT_EQ(multi_sequence_steps(m), 0);
}

// A request its context refuses (here a token past the vocabulary) is refused at once, also
// while a running request holds every page of the pool, instead of waiting for pages it would
// be refused after.
TEST(ServerKvPool, RefusedPromptDoesNotWaitForPages) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  SchedulerOptions so = batch_options(2, 512);
  so.kv_memory = KvPool::session_bytes(*stories(), Device::Cpu, so.n_ctx);
  Metrics metrics;
  {
    Scheduler sched(stories(), so, metrics);
    auto k = keeper();
    ASSERT_EQ(sched.submit(k), Scheduler::Admission::Accepted);
    for (const auto t0 = std::chrono::steady_clock::now(); sched.gauges().kv_pages_running == 0;) {
      ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    auto bad = greedy_job(kPrompts[0], 8);
    bad->prompt.back() = stories()->config().n_vocab + 5;
    ASSERT_EQ(sched.submit(bad), Scheduler::Admission::Accepted);
    wait_text(bad);
    EXPECT_NE(bad->result().error.find("vocabulary"), std::string::npos) << bad->result().error;
    k->cancel();
    wait_text(k);
  }
  EXPECT_EQ(metric(metrics.render({}), "lazyllm_kv_pool_waits_total"), 0);
}

// Two requests that fit the pool together run together; a pool smaller than one context is
// refused when the server starts.
TEST(ServerKvPool, PoolSizedForTwoRunsTwoAndTooSmallIsRefused) {
  LAZYLLM_REQUIRE_SHARED(kModel);
  SchedulerOptions so = batch_options(2, 512);
  so.kv_memory = 2 * KvPool::session_bytes(*stories(), Device::Cpu, so.n_ctx);
  Metrics metrics;
  {
    Scheduler sched(stories(), so, metrics);
    auto a = keeper(), b = greedy_job(kPrompts[2], 16);
    ASSERT_EQ(sched.submit(a), Scheduler::Admission::Accepted);
    ASSERT_EQ(sched.submit(b), Scheduler::Admission::Accepted);
    wait_text(b);
    a->cancel();
    wait_text(a);
  }
  const std::string m = metrics.render({});
  EXPECT_EQ(metric(m, "lazyllm_kv_pool_waits_total"), 0);
  EXPECT_GE(multi_sequence_steps(m), 1);
  so.kv_memory = KvPool::session_bytes(*stories(), Device::Cpu, so.n_ctx) - 1;
  try {
    Scheduler sched(stories(), so, metrics);
    FAIL() << "a pool smaller than one context was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-memory"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lazyllm::server
