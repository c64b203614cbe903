// Admission before work: a request takes its place in the queue before its prompt is tokenized,
// so a full server answers 429 at once; places are given back; --queue and the connection
// threads are capped.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "lazyllm/error.h"
#include "lazyllm/tokenizer.h"
#include "server/job.h"
#include "server/scheduler.h"
#include "test_models.h"
#include "test_server_util.h"

namespace lazyllm::server {
namespace {

using nlohmann::json;
using srvtest::RunningServer;
using srvtest::seconds_since;
using Clock = std::chrono::steady_clock;

std::shared_ptr<Model> long_context_model() {
  static std::shared_ptr<Model> m = test::make_model({.name = "server_admission", .layers = 4, .ctx = 4096}, DType::F32, 7);
  return m;
}

// With the only place taken, a request is refused (429) before its prompt is looked at: even
// one too long for the context gets 429, not context_length_exceeded.
TEST(ServerAdmission, FullQueueIs429BeforeTokenizing) {
  ServerOptions o;
  o.port = 0;
  o.threads = 1;
  o.parallel = 1;
  o.queue = 0;
  o.max_body_bytes = 256 * 1024;
  o.shutdown_grace_s = 0;
  RunningServer s(long_context_model(), o);
  std::thread busy([&] {
    auto c = s.client();
    c.Post("/v1/completions", R"({"prompt":"a long generation","max_tokens":4000,"temperature":0,"stream":true})",
           "application/json");
  });
  auto c = s.client();
  for (const auto t0 = Clock::now();;) {
    auto res = c.Get("/health");
    ASSERT_TRUE(res);
    if (json::parse(res->body)["slots_busy"] == 1) break;
    ASSERT_LT(seconds_since(t0), 20);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::string huge;
  for (int i = 0; i < 6000; ++i) huge += "a ";
  auto res = c.Post("/v1/completions", json({{"prompt", huge}}).dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 429) << res->body;
  EXPECT_EQ(res->get_header_value("Retry-After"), "1");
  res = c.Post("/v1/chat/completions", json({{"messages", {{{"role", "user"}, {"content", huge}}}}}).dump(),
               "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 429) << res->body;
  // Malformed requests are still told what is wrong.
  res = c.Post("/v1/completions", R"({"prompt":1})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  s.stop();  // cancels the long generation
  busy.join();
}

// A reservation is given back when the request fails before it is queued.
TEST(ServerAdmission, ReservationsAreGivenBack) {
  Metrics metrics;
  SchedulerOptions so;
  so.queue = 1;
  Scheduler sched(long_context_model(), so, metrics);
  {
    auto a = sched.reserve(), b = sched.reserve();
    EXPECT_EQ(a.admission(), Scheduler::Admission::Accepted);
    EXPECT_EQ(b.admission(), Scheduler::Admission::Accepted);
    EXPECT_EQ(sched.reserve().admission(), Scheduler::Admission::QueueFull);
  }
  auto c = sched.reserve();
  EXPECT_EQ(c.admission(), Scheduler::Admission::Accepted);
  auto job = std::make_shared<Job>();
  job->prompt = long_context_model()->tokenizer().encode("x", true, false);
  job->max_tokens = 2;
  EXPECT_EQ(sched.submit(job, c), Scheduler::Admission::Accepted);
  std::string text;
  while (!job->wait(text, std::chrono::milliseconds(20))) {}
  sched.shutdown(std::chrono::milliseconds(0));
  auto d = sched.reserve();
  EXPECT_EQ(d.admission(), Scheduler::Admission::ShuttingDown);
}

TEST(ServerAdmission, QueueAndThreadCaps) {
  ServerOptions o;
  o.port = 0;
  o.threads = 1;
  o.queue = ServerOptions::kMaxQueue + 1;
  try {
    Server s(long_context_model(), o);
    FAIL() << "--queue " << o.queue << " accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--queue 4097 is out of range [0, 4096]"), std::string::npos) << e.what();
  }
  o.queue = 4;
  o.parallel = 0;
  EXPECT_THROW(Server(long_context_model(), o), Error);
  o.parallel = ServerOptions::kMaxParallel + 1;
  EXPECT_THROW(Server(long_context_model(), o), Error);
  o.parallel = 2;
  EXPECT_EQ(connection_threads(o), 2 + 4 + 64);
  o.parallel = ServerOptions::kMaxParallel;
  o.queue = ServerOptions::kMaxQueue;
  EXPECT_EQ(connection_threads(o), 1024);
  const auto r = test::run_cli("serve -m /nonexistent.gguf --queue 5000");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--queue"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("4096"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lazyllm::server
