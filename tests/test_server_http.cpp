// The HTTP server in-process on a free loopback port, driven by cpp-httplib's client: answers,
// error objects for bad input (the server keeps serving), API keys, the queue limit, metrics.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "lazyllm/tokenizer.h"
#include "server/job.h"
#include "server/scheduler.h"
#include "server/server.h"
#include "test_models.h"
#include "test_server_util.h"

namespace lazyllm::server {
namespace {

using nlohmann::json;

std::shared_ptr<Model> tiny_model() {
  static std::shared_ptr<Model> m = test::make_model({.name = "server_tiny", .layers = 4, .ctx = 256}, DType::F32, 7);
  return m;
}

// Same size, long context: greedy generation of thousands of tokens takes a while.
std::shared_ptr<Model> http_long_context_model() {
  static std::shared_ptr<Model> m = test::make_model({.name = "server_long", .layers = 4, .ctx = 4096}, DType::F32, 7);
  return m;
}

// A server on the tiny model (the shared one of test_server_util.h).
struct HttpServer : srvtest::RunningServer {
  explicit HttpServer(const ServerOptions& o) : srvtest::RunningServer(tiny_model(), o) {}
};

ServerOptions http_options() {
  ServerOptions o;
  o.port = 0;
  o.threads = 2;
  o.max_body_bytes = 4096;
  o.shutdown_grace_s = 5;
  return o;
}

json post(httplib::Client& c, const std::string& path, const std::string& body, int expected_status) {
  auto res = c.Post(path.c_str(), body, "application/json");
  EXPECT_TRUE(res) << path << " " << body;
  if (!res) return {};
  EXPECT_EQ(res->status, expected_status) << body << " -> " << res->body;
  return json::parse(res->body, nullptr, false);
}

void expect_error_object(const json& j) {
  ASSERT_TRUE(j.is_object()) << j;
  ASSERT_TRUE(j.contains("error")) << j;
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_TRUE(j["error"]["type"].is_string());
  EXPECT_TRUE(j["error"].contains("param"));
  EXPECT_TRUE(j["error"].contains("code"));
}

TEST(ServerHttp, CompletionChatModelsHealth) {
  HttpServer s(http_options());
  auto c = s.client();
  json j = post(c, "/v1/completions", R"({"prompt":"Once upon a time","max_tokens":8,"temperature":0})", 200);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_TRUE(j["choices"][0]["text"].is_string());
  const std::string reason = j["choices"][0]["finish_reason"];
  EXPECT_TRUE(reason == "length" || reason == "stop") << reason;
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_LE(j["usage"]["completion_tokens"].get<int>(), 8);
  EXPECT_EQ(j["usage"]["total_tokens"].get<int>(),
            j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());
  EXPECT_GT(j["usage"]["ttft_ms"].get<double>(), 0.0);
  // Queueing ends when its first forward starts, before that forward gives the first token.
  EXPECT_GT(j["usage"]["queue_ms"].get<double>(), 0.0);
  EXPECT_LT(j["usage"]["queue_ms"].get<double>(), j["usage"]["ttft_ms"].get<double>());
  EXPECT_EQ(j["usage"]["prompt_computed_fraction"].get<double>(), 1.0);
  // Greedy decoding is deterministic.
  json again = post(c, "/v1/completions", R"({"prompt":"Once upon a time","max_tokens":8,"temperature":0})", 200);
  EXPECT_EQ(again["choices"][0]["text"], j["choices"][0]["text"]);
  // The repeat found its prompt in the prefix cache: all but the last token reused (as OpenAI
  // reports prompt caching).
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0);
  EXPECT_EQ(again["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(),
            again["usage"]["prompt_tokens"].get<int>() - 1);

  j = post(c, "/v1/chat/completions", R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":4})", 200);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");

  auto res = c.Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(json::parse(res->body)["data"][0]["object"], "model");
  res = c.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["status"], "ok");
}

TEST(ServerHttp, LazyPerRequestOverride) {
  // The tiny model's short prompt is below what pruning pays for: run the schedule as given.
  // Every request computes its whole prompt (a pruned one would reuse the baseline's prefix).
  ServerOptions o = http_options();
  o.prune_policy = PrunePolicy::kAlways;
  o.prefix_cache = false;
  HttpServer s(o);
  auto c = s.client();
  std::string prompt;
  for (int i = 0; i < 6; ++i) prompt += "the cat sat on the mat ";
  json base = post(c, "/v1/completions", json({{"prompt", prompt}, {"max_tokens", 2}}).dump(), 200);
  EXPECT_EQ(base["usage"]["prompt_computed_fraction"].get<double>(), 1.0);
  json lazy = post(c, "/v1/completions",
                   json({{"prompt", prompt}, {"max_tokens", 2}, {"lazy", {{"enabled", true}, {"prune", "1:0.5"}}}}).dump(), 200);
  const double f = lazy["usage"]["prompt_computed_fraction"].get<double>();
  EXPECT_LT(f, 0.8);  // layers 1..3 of 4 keep half the tokens: about 5/8
  EXPECT_GT(f, 0.5);
  json bad = post(c, "/v1/completions", json({{"prompt", prompt}, {"lazy", {{"prune", "9:0.5"}}}}).dump(), 400);
  expect_error_object(bad);
  EXPECT_EQ(bad["error"]["param"], "lazy.prune");
  // The slot switches schedules in place (Session::reset(schedule)): switching back and forth
  // gives each schedule's answer again.
  const json greedy = {{"prompt", prompt}, {"max_tokens", 4}, {"temperature", 0}};
  json lazy_greedy = greedy;
  lazy_greedy["lazy"] = {{"enabled", true}, {"prune", "1:0.5"}};
  const json b1 = post(c, "/v1/completions", greedy.dump(), 200);
  const json l1 = post(c, "/v1/completions", lazy_greedy.dump(), 200);
  const json b2 = post(c, "/v1/completions", greedy.dump(), 200);
  const json l2 = post(c, "/v1/completions", lazy_greedy.dump(), 200);
  EXPECT_EQ(b1["choices"][0]["text"], b2["choices"][0]["text"]);
  EXPECT_EQ(l1["choices"][0]["text"], l2["choices"][0]["text"]);
  EXPECT_EQ(b2["usage"]["prompt_computed_fraction"].get<double>(), 1.0);
  EXPECT_EQ(l2["usage"]["prompt_computed_fraction"], l1["usage"]["prompt_computed_fraction"]);
  EXPECT_LT(l2["usage"]["prompt_computed_fraction"].get<double>(), 0.8);
}

TEST(ServerHttp, MalformedInputGets4xxAndServerKeepsServing) {
  HttpServer s(http_options());
  auto c = s.client();
  const std::vector<std::string> bodies = {
      "", "{", "not json", "[]", "{\"prompt\":\"\xC3\x28\"}", R"({"prompt":"p","max_tokens":-5})",
      R"({"prompt":"p","max_tokens":1e999})", R"({"prompt":"p","temperature":"hot"})", R"({"prompt":"p","bogus":1})",
      R"({"prompt":"p","max_tokens":100000})", R"({"prompt":"p","n":3})", std::string(1000, '{')};
  for (const auto& b : bodies) expect_error_object(post(c, "/v1/completions", b, 400));
  expect_error_object(post(c, "/v1/chat/completions", R"({"messages":[]})", 400));
  expect_error_object(post(c, "/v1/chat/completions", R"({"messages":[{"role":"user","content":null}]})", 400));
  // Oversized body, prompt longer than the context, unknown route.
  expect_error_object(post(c, "/v1/completions", json({{"prompt", std::string(5000, 'a')}}).dump(), 413));
  std::string long_prompt;
  for (int i = 0; i < 300; ++i) long_prompt += "a ";
  json j = post(c, "/v1/completions", json({{"prompt", long_prompt}}).dump(), 400);
  expect_error_object(j);
  EXPECT_EQ(j["error"]["code"], "context_length_exceeded");
  expect_error_object(post(c, "/v1/nothing", "{}", 404));
  // Still serving.
  post(c, "/v1/completions", R"({"prompt":"still here","max_tokens":2})", 200);
  auto res = c.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("lazyllm_requests_total{path=\"/v1/completions\",status=\"400\"}"), std::string::npos);
  EXPECT_NE(res->body.find("lazyllm_time_to_first_token_seconds_count"), std::string::npos);
}

TEST(ServerHttp, StreamingIsServerSentEvents) {
  HttpServer s(http_options());
  auto c = s.client();
  auto res = c.Post("/v1/chat/completions",
                    R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":6,"stream":true,)"
                    R"("stream_options":{"include_usage":true}})",
                    "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  const std::string& body = res->body;
  ASSERT_GE(body.size(), 14u);
  EXPECT_EQ(body.substr(body.size() - 14), "data: [DONE]\n\n");
  std::vector<json> chunks;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    const std::string payload = body.substr(pos + 6, end - pos - 6);
    if (payload != "[DONE]") chunks.push_back(json::parse(payload));
    pos = end;
  }
  ASSERT_GE(chunks.size(), 3u);
  EXPECT_EQ(chunks.front()["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(chunks.front()["object"], "chat.completion.chunk");
  const json& last_choice = chunks[chunks.size() - 2];
  EXPECT_TRUE(last_choice["choices"][0]["finish_reason"].is_string());
  EXPECT_TRUE(chunks.back()["choices"].empty());
  EXPECT_GT(chunks.back()["usage"]["ttft_ms"].get<double>(), 0.0);
}

TEST(ServerHttp, ApiKey) {
  ServerOptions o = http_options();
  o.api_key = "sekrit";
  HttpServer s(o);
  auto c = s.client();
  expect_error_object(post(c, "/v1/completions", R"({"prompt":"p","max_tokens":1})", 401));
  c.set_bearer_token_auth("wrong");
  expect_error_object(post(c, "/v1/completions", R"({"prompt":"p","max_tokens":1})", 401));
  c.set_bearer_token_auth("sekrit");
  post(c, "/v1/completions", R"({"prompt":"p","max_tokens":1})", 200);
  auto res = s.client().Get("/health");  // stays open
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

std::shared_ptr<Job> long_job(const Model& m, int max_tokens = 4000) {
  auto job = std::make_shared<Job>();
  job->prompt = m.tokenizer().encode("a long generation", true, false);
  job->max_tokens = max_tokens;
  job->sampling.temperature = 0;
  return job;
}

TEST(ServerScheduler, QueueLimitAndCancellation) {
  Metrics metrics;
  SchedulerOptions so;
  so.parallel = 1;
  so.queue = 1;
  Scheduler sched(http_long_context_model(), so, metrics);
  const Model& m = *http_long_context_model();
  auto a = long_job(m), b = long_job(m), c = long_job(m, 200);
  a->cancel();  // a cancelled job still occupies its place until a slot takes it
  b->cancel();
  ASSERT_EQ(sched.submit(a), Scheduler::Admission::Accepted);
  ASSERT_EQ(sched.submit(b), Scheduler::Admission::Accepted);
  std::string text;
  while (!a->done() || !b->done()) a->wait(text, std::chrono::milliseconds(10));
  EXPECT_EQ(a->result().finish_reason, "cancelled");
  EXPECT_EQ(b->result().completion_tokens, 0);
  ASSERT_EQ(sched.submit(c), Scheduler::Admission::Accepted);
  while (!c->wait(text, std::chrono::milliseconds(100))) {}
  EXPECT_EQ(c->result().finish_reason, "length");
  EXPECT_EQ(c->result().completion_tokens, 200);
  sched.shutdown(std::chrono::milliseconds(0));
  EXPECT_EQ(sched.submit(long_job(m)), Scheduler::Admission::ShuttingDown);
}

TEST(ServerScheduler, FullQueueRejects) {
  Metrics metrics;
  SchedulerOptions so;
  so.parallel = 1;
  so.queue = 0;
  Scheduler sched(http_long_context_model(), so, metrics);
  const Model& m = *http_long_context_model();
  auto a = long_job(m);
  ASSERT_EQ(sched.submit(a), Scheduler::Admission::Accepted);
  // `a` holds the only place (queued or running) until it finishes 4000 tokens.
  EXPECT_EQ(sched.submit(long_job(m)), Scheduler::Admission::QueueFull);
  a->cancel();
  std::string text;
  while (!a->wait(text, std::chrono::milliseconds(100))) {}
  EXPECT_EQ(a->result().finish_reason, "cancelled");
  EXPECT_LT(a->result().completion_tokens, 4000);
}

TEST(ServerScheduler, TimeLimitEndsGeneration) {
  Metrics metrics;
  Scheduler sched(tiny_model(), {}, metrics);
  auto a = long_job(*tiny_model());
  a->deadline = Clock::now();  // already past: ends in the queue, before the prefill
  ASSERT_EQ(sched.submit(a), Scheduler::Admission::Accepted);
  std::string text;
  while (!a->wait(text, std::chrono::milliseconds(100))) {}
  EXPECT_TRUE(a->result().timed_out);
  EXPECT_EQ(a->result().completion_tokens, 0);
  EXPECT_EQ(text, "");
  EXPECT_EQ(a->result().finish_reason, "length");
}

TEST(ServerScheduler, TimeLimitDuringGeneration) {
  Metrics metrics;
  Scheduler sched(http_long_context_model(), {}, metrics);
  auto a = long_job(*http_long_context_model());
  // Greedy decoding on this random model ends by its end-of-text token after 896 tokens, 88-96 ms
  // on 2 Zen 4 cores: the limit must fall well before that, not race it.
  a->deadline = Clock::now() + std::chrono::milliseconds(10);
  ASSERT_EQ(sched.submit(a), Scheduler::Admission::Accepted);
  std::string text;
  while (!a->wait(text, std::chrono::milliseconds(100))) {}
  EXPECT_TRUE(a->result().timed_out);
  EXPECT_EQ(a->result().finish_reason, "length");
  EXPECT_LT(a->result().completion_tokens, 4000);
}

}  // namespace
}  // namespace lazyllm::server
