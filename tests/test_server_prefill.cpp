// A long prefill stops for the request's time limit, a shutdown or a client that went away,
// within about a layer, and leaves its slot ready for the next request.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "lazyllm/tokenizer.h"
#include "server/job.h"
#include "server/scheduler.h"
#include "test_models.h"
#include "test_server_util.h"

namespace lazyllm::server {
namespace {

using nlohmann::json;
using srvtest::RawClient;
using srvtest::RunningServer;
using srvtest::seconds_since;
using Clock = std::chrono::steady_clock;

constexpr int kThreads = 2;

// Many layers, long context: a prompt of thousands of tokens takes a while, each layer a
// sixteenth of it.
std::shared_ptr<Model> slow_model() {
  static std::shared_ptr<Model> m =
      test::make_model({.name = "server_prefill", .layers = 16, .ctx = 4096}, DType::F32, 11);
  return m;
}

// A prompt text of about 3500 tokens, and its ids.
const std::string& long_text() {
  static const std::string text = [] {
    std::string t;
    for (int i = 0; i < 3500; ++i) t += "a ";
    return t;
  }();
  return text;
}

std::vector<int32_t> long_prompt() {
  const Tokenizer& tok = slow_model()->tokenizer();
  return tok.encode(long_text(), tok.add_bos(), false);
}

// Seconds one uninterrupted prefill of the long prompt takes here (measured once).
// Under AddressSanitizer everything runs several times slower and unevenly, so the tests whose
// bounds are fractions of a measured prefill (time limits, heartbeats) cannot hold; they run in
// the Release build.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

double full_prefill_seconds() {
  static const double s = [] {
    SessionOptions o;
    o.n_threads = kThreads;
    Session session(slow_model(), o);
    const auto prompt = long_prompt();
    session.prefill(std::span(prompt).first(64));  // warm up
    session.reset();
    const auto t0 = Clock::now();
    session.prefill(prompt);
    return seconds_since(t0);
  }();
  return s;
}

std::shared_ptr<Job> job_for(const std::vector<int32_t>& prompt, int max_tokens) {
  auto job = std::make_shared<Job>();
  job->prompt = prompt;
  job->max_tokens = max_tokens;
  job->sampling.temperature = 0;
  return job;
}

void wait_done(const std::shared_ptr<Job>& job, std::string& text) {
  while (!job->wait(text, std::chrono::milliseconds(20))) {}
}

TEST(ServerPrefill, DeadlineStopsPrefillAndSlotServesNext) {
  ASSERT_LT(long_prompt().size(), 4000u);
  const double full = full_prefill_seconds();
  Metrics metrics;
  SchedulerOptions so;
  so.threads = kThreads;
  Scheduler sched(slow_model(), so, metrics);
  auto job = job_for(long_prompt(), 4);
  job->deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(full / 10));
  const auto t0 = Clock::now();
  ASSERT_EQ(sched.submit(job), Scheduler::Admission::Accepted);
  std::string text;
  wait_done(job, text);
  const double took = seconds_since(t0);
  EXPECT_LT(took, full / 2) << "uninterrupted prefill: " << full << " s";
  EXPECT_TRUE(job->result().timed_out);
  EXPECT_EQ(job->result().completion_tokens, 0);
  EXPECT_EQ(text, "");
  // The slot's session was reset: the next job answers as a fresh session does.
  auto next = job_for(slow_model()->tokenizer().encode("the cat", true, false), 6);
  ASSERT_EQ(sched.submit(next), Scheduler::Admission::Accepted);
  wait_done(next, text);
  EXPECT_EQ(next->result().error, "");
  EXPECT_EQ(text, srvtest::greedy_text(slow_model(), "the cat", 6, kThreads));
}

TEST(ServerPrefill, ShutdownStopsPrefill) {
  const double full = full_prefill_seconds();
  Metrics metrics;
  SchedulerOptions so;
  so.threads = kThreads;
  Scheduler sched(slow_model(), so, metrics);
  auto job = job_for(long_prompt(), 4);
  ASSERT_EQ(sched.submit(job), Scheduler::Admission::Accepted);
  while (sched.busy() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::duration<double>(full / 10));  // well inside the prefill
  const auto t0 = Clock::now();
  sched.shutdown(std::chrono::milliseconds(0));
  EXPECT_LT(seconds_since(t0), full / 2) << "uninterrupted prefill: " << full << " s";
  ASSERT_TRUE(job->done());
  EXPECT_EQ(job->result().finish_reason, "cancelled");
}

ServerOptions slow_options() {
  ServerOptions o;
  o.port = 0;
  o.threads = kThreads;
  o.max_body_bytes = 64 * 1024;
  return o;
}

// The request's time limit holds for a long prompt: 408 within about a layer of it, and the
// slot answers the next request as before.
TEST(ServerPrefill, HttpTimeLimitDuringPrefill) {
  if (kSanitized) GTEST_SKIP() << "timing bounds do not hold under AddressSanitizer";
  const double full = full_prefill_seconds();
  ServerOptions o = slow_options();
  o.request_timeout_s = std::min(0.3, full / 10);
  RunningServer s(slow_model(), o);
  auto c = s.client();
  const json small = {{"prompt", "the cat"}, {"max_tokens", 6}, {"temperature", 0}};
  // On a loaded machine the short time limit may cut the short answers too (`usage.timed_out`):
  // what they say must still be the start of the greedy continuation, and all of it otherwise.
  const std::string want = srvtest::greedy_text(slow_model(), "the cat", 6, kThreads);
  // A 408 before the first token is the time limit too: such an answer is retried a few times,
  // and one of the tries must answer.
  auto post_small = [&]() {
    for (int attempt = 1;; ++attempt) {
      auto r = c.Post("/v1/completions", small.dump(), "application/json");
      if (!r || r->status != 408 || attempt == 5) return r;
      EXPECT_EQ(json::parse(r->body)["error"]["code"], "timeout") << r->body;
    }
  };
  auto check_small = [&](const httplib::Result& r, const char* which) {
    ASSERT_TRUE(r) << which;
    ASSERT_EQ(r->status, 200) << which << ": " << r->body;
    const json body = json::parse(r->body);
    const std::string text = body["choices"][0]["text"];
    EXPECT_FALSE(text.empty()) << which;
    EXPECT_EQ(want.rfind(text, 0), 0u) << which << ": '" << text << "' does not start '" << want << "'";
    if (!body["usage"].value("timed_out", false)) {
      EXPECT_EQ(text, want) << which;
    }
  };
  auto res = post_small();
  check_small(res, "before");

  const auto t0 = Clock::now();
  res = c.Post("/v1/completions", json({{"prompt", long_text()}, {"max_tokens", 4}}).dump(), "application/json");
  const double took = seconds_since(t0);
  ASSERT_TRUE(res);
  EXPECT_LT(took, full / 2) << "uninterrupted prefill: " << full << " s";
  // A non-streamed answer still pending after a second has started (status 200, then the error).
  if (took < 0.9) {
    EXPECT_EQ(res->status, 408) << res->body;
  }
  const json err = json::parse(res->body);
  ASSERT_TRUE(err.contains("error")) << res->body;
  EXPECT_EQ(err["error"]["code"], "timeout");

  res = post_small();
  check_small(res, "after");
}

// A streaming client that goes away during a long prefill frees the slot at the next heartbeat
// (a second), not after the prefill.
TEST(ServerPrefill, DisconnectStopsPrefill) {
  if (kSanitized) GTEST_SKIP() << "timing bounds do not hold under AddressSanitizer";
  const double full = full_prefill_seconds();
  if (full < 1.6) GTEST_SKIP() << "the prefill (" << full << " s) is too short to tell a heartbeat from it";
  RunningServer s(slow_model(), slow_options());
  const std::string body = json({{"prompt", long_text()}, {"max_tokens", 4}, {"stream", true}}).dump();
  {
    RawClient c(s.port());
    ASSERT_TRUE(c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\n\r\n" + body));
    c.read_until("\r\n\r\n");  // the stream has started
  }
  // The stream's headers can go out before the job reaches a slot, so a free slot alone proves
  // nothing: wait for the slot to be free with the cancellation counted.
  const auto t0 = Clock::now();
  auto c = s.client();
  std::string last;
  for (;;) {
    auto res = c.Get("/metrics");
    ASSERT_TRUE(res);
    last = res->body;
    if (last.find("lazyllm_requests_cancelled_total 1\n") != std::string::npos &&
        last.find("lazyllm_slots_busy 0\n") != std::string::npos)
      break;
    ASSERT_LT(seconds_since(t0), full) << "the slot stayed busy for the whole prefill:\n" << last;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_LT(seconds_since(t0), 1.0 + full / 4) << last;
}

}  // namespace
}  // namespace lazyllm::server
