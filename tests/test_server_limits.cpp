// Request size and time limits, sent over a raw socket as no HTTP client library would: bodies
// over --max-body by Content-Length and chunked, over-long request and header lines, too many
// headers, bodies without a length, slow and stalled clients, pipelining, and a stop while a
// client is half-way through a request.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_models.h"
#include "test_server_util.h"

namespace lazyllm::server {
namespace {

using nlohmann::json;
using srvtest::RawClient;
using srvtest::RunningServer;
using srvtest::seconds_since;
using srvtest::status_of;
using Clock = std::chrono::steady_clock;

std::shared_ptr<Model> model() {
  static std::shared_ptr<Model> m = test::make_model({.name = "server_limits", .layers = 2, .ctx = 256}, DType::F32, 7);
  return m;
}

ServerOptions limit_options() {
  ServerOptions o;
  o.port = 0;
  o.threads = 2;
  o.max_body_bytes = 4096;
  o.read_timeout_s = 1;
  o.shutdown_grace_s = 1;
  return o;
}

std::string chunked(const std::string& body, size_t chunk) {
  std::string out;
  char size[32];
  for (size_t at = 0; at < body.size(); at += chunk) {
    const std::string part = body.substr(at, chunk);
    std::snprintf(size, sizeof size, "%zx\r\n", part.size());
    out += size + part + "\r\n";
  }
  return out + "0\r\n\r\n";
}

std::string post_head(const std::string& path, const std::string& extra) {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra + "\r\n";
}

std::string body_of(const std::string& raw) {
  const size_t at = raw.find("\r\n\r\n");
  return at == std::string::npos ? "" : raw.substr(at + 4);
}

// The JSON error code of a whole response (Content-Length body).
std::string error_code(const std::string& raw) {
  const json j = json::parse(body_of(raw), nullptr, false);
  if (!j.is_object() || !j.contains("error")) return "(not an error object: " + raw.substr(0, 200) + ")";
  return j["error"]["code"].is_string() ? j["error"]["code"].get<std::string>() : "";
}

const std::string kSmall = R"({"prompt":"Once upon a time","max_tokens":2,"temperature":0})";

TEST(ServerLimits, ChunkedBodyWithinLimitIsServed) {
  RunningServer s(model(), limit_options());
  RawClient c(s.port());
  ASSERT_TRUE(c.send(post_head("/v1/completions", "Transfer-Encoding: chunked\r\nConnection: close\r\n") +
                     chunked(kSmall, 3)));  // many tiny chunks: the framing is not the body
  const std::string raw = c.read_all();
  EXPECT_EQ(status_of(raw), 200) << raw;
  EXPECT_NE(raw.find("text_completion"), std::string::npos) << raw;
}

TEST(ServerLimits, ChunkedBodyOverLimitIs413) {
  RunningServer s(model(), limit_options());
  const std::string big = R"({"prompt":")" + std::string(6000, 'a') + R"("})";
  for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
    RawClient c(s.port());
    ASSERT_TRUE(c.connected());
    c.send(post_head(path, "Transfer-Encoding: chunked\r\n") + chunked(big, 1000));
    const std::string raw = c.read_all();
    EXPECT_EQ(status_of(raw), 413) << path << ": " << raw;
    EXPECT_EQ(error_code(raw), "body_too_large");
    EXPECT_EQ(srvtest::responses_in(raw), 1) << raw;  // and the connection is closed: read_all returned
  }
}

// A chunked body that never ends, to a route that does not exist (cpp-httplib reads such bodies
// itself): the server stops reading at its bound and answers, instead of taking it all in.
TEST(ServerLimits, EndlessChunkedBodyIsCutOff) {
  RunningServer s(model(), limit_options());
  RawClient c(s.port());
  ASSERT_TRUE(c.send(post_head("/v1/nothing", "Transfer-Encoding: chunked\r\n")));
  const std::string chunk = chunked(std::string(64 * 1024, 'x'), 64 * 1024);
  const std::string one = chunk.substr(0, chunk.size() - 5);  // without the last-chunk terminator
  size_t sent = 0;
  while (sent < (256u << 20) && c.send(one)) sent += one.size();
  EXPECT_LT(sent, 256u << 20) << "the server read 256 MiB of body";
  const std::string raw = c.read_all();
  EXPECT_EQ(status_of(raw), 413) << raw.substr(0, 300);
}

TEST(ServerLimits, ContentLengthOverLimitIs413WithoutReadingIt) {
  RunningServer s(model(), limit_options());
  RawClient c(s.port());
  const auto t0 = Clock::now();
  ASSERT_TRUE(c.send(post_head("/v1/completions", "Content-Length: 1000000000\r\n")));
  const std::string raw = c.read_all();
  EXPECT_EQ(status_of(raw), 413) << raw;
  EXPECT_EQ(error_code(raw), "body_too_large");
  EXPECT_LT(seconds_since(t0), 0.9);  // answered at once, not after the read timeout
}

TEST(ServerLimits, BadFramingIsRefused) {
  RunningServer s(model(), limit_options());
  struct Case {
    std::string head;
    int status;
    std::string code;
  };
  const std::vector<Case> cases = {
      {post_head("/v1/completions", ""), 411, "length_required"},  // no length: would be read to EOF
      {post_head("/v1/completions", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400, "invalid_framing"},
      {post_head("/v1/completions", "Content-Length: 5\r\nContent-Length: 6\r\n"), 400, "invalid_framing"},
      {post_head("/v1/completions", "Content-Length: 5x\r\n"), 400, "invalid_framing"},
      {post_head("/v1/completions", "Content-Length: -1\r\n"), 400, "invalid_framing"},
      {post_head("/v1/completions", "Transfer-Encoding: gzip, chunked\r\n"), 501, "unsupported_transfer_encoding"},
      {post_head("/v1/completions", "Content-Length: 20\r\nContent-Encoding: gzip\r\n"), 415, "unsupported_encoding"},
      {"POST /v1/completions HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 9\r\n\r\n", 415,
       "unsupported_media_type"},
  };
  for (const auto& k : cases) {
    RawClient c(s.port());
    const auto t0 = Clock::now();
    ASSERT_TRUE(c.send(k.head));
    const std::string raw = c.read_all();
    EXPECT_EQ(status_of(raw), k.status) << k.head << raw;
    EXPECT_EQ(error_code(raw), k.code) << k.head;
    EXPECT_LT(seconds_since(t0), 0.9) << k.head;  // at once, and the connection closed
  }
  // Still serving.
  auto c = s.client();
  auto res = c.Post("/v1/completions", kSmall, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

// A header line that never ends: answered (431) once it passes the line limit, not buffered.
TEST(ServerLimits, EndlessHeaderLineIs431) {
  RunningServer s(model(), limit_options());
  RawClient c(s.port());
  ASSERT_TRUE(c.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Long: "));
  const std::string piece(64 * 1024, 'b');
  size_t sent = 0;
  while (sent < (256u << 20) && c.send(piece)) sent += piece.size();
  EXPECT_LT(sent, 256u << 20) << "the server read a 256 MiB header line";
  const std::string raw = c.read_all();
  EXPECT_EQ(status_of(raw), 431) << raw.substr(0, 300);
  EXPECT_EQ(error_code(raw), "headers_too_large");
}

TEST(ServerLimits, HugeHeadersAndRequestLines) {
  RunningServer s(model(), limit_options());
  auto send = [&](const std::string& request) {
    RawClient c(s.port());
    c.send(request);
    return c.read_all();
  };
  // One 20 KB header line.
  std::string raw = send("GET /health HTTP/1.1\r\nX-Big: " + std::string(20000, 'b') + "\r\n\r\n");
  EXPECT_EQ(status_of(raw), 431) << raw.substr(0, 300);
  // Too many headers, each short.
  std::string many = "GET /health HTTP/1.1\r\n";
  for (int i = 0; i < 500; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  raw = send(many + "\r\n");
  EXPECT_EQ(status_of(raw), 431) << raw.substr(0, 300);
  // Headers within each limit but too much in all (30 lines of 2 KB).
  std::string wide = "GET /health HTTP/1.1\r\n";
  for (int i = 0; i < 30; ++i) wide += "X-W" + std::to_string(i) + ": " + std::string(2000, 'w') + "\r\n";
  raw = send(wide + "\r\n");
  EXPECT_EQ(status_of(raw), 431) << raw.substr(0, 300);
  // A request line (URI) of 20 KB.
  raw = send("GET /health?" + std::string(20000, 'q') + " HTTP/1.1\r\n\r\n");
  EXPECT_EQ(status_of(raw), 414) << raw.substr(0, 300);
  EXPECT_EQ(error_code(raw), "uri_too_long");
  // Ordinary headers still work.
  raw = send("GET /health HTTP/1.1\r\nX-Ok: " + std::string(4000, 'o') + "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(raw), 200) << raw.substr(0, 300);
}

// A client that stops part way, or sends a byte now and then, gets 408 once the read timeout
// (1 s here) has passed since its request began, however it trickles.
TEST(ServerLimits, SlowAndStalledClientsGet408) {
  RunningServer s(model(), limit_options());
  {  // A body that stops half way.
    RawClient c(s.port());
    const auto t0 = Clock::now();
    ASSERT_TRUE(c.send(post_head("/v1/completions", "Content-Length: 100\r\n") + R"({"prompt":)"));
    const std::string raw = c.read_all();
    EXPECT_EQ(status_of(raw), 408) << raw;
    EXPECT_EQ(error_code(raw), "request_timeout");
    EXPECT_LT(seconds_since(t0), 2.5);
  }
  {  // A chunked body that stops half way.
    RawClient c(s.port());
    const auto t0 = Clock::now();
    ASSERT_TRUE(c.send(post_head("/v1/chat/completions", "Transfer-Encoding: chunked\r\n") + "5\r\n{\"mes"));
    const std::string raw = c.read_all();
    EXPECT_EQ(status_of(raw), 408) << raw;
    EXPECT_LT(seconds_since(t0), 2.5);
  }
  {  // Headers a byte every 200 ms: each read is quick, the request as a whole is not.
    RawClient c(s.port());
    const auto t0 = Clock::now();
    const std::string head = "GET /health HTTP/1.1\r\nX-Slow: " + std::string(100, 's');
    for (char ch : head) {
      if (!c.send(std::string(1, ch))) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (seconds_since(t0) > 6) break;
    }
    const std::string raw = c.read_all(std::chrono::seconds(5));
    EXPECT_EQ(status_of(raw), 408) << raw;
    EXPECT_LT(seconds_since(t0), 3.0);
  }
  {  // A request line that stops part way (cpp-httplib itself answers nothing then).
    RawClient c(s.port());
    const auto t0 = Clock::now();
    ASSERT_TRUE(c.send("GET /hea"));
    const std::string raw = c.read_all();
    EXPECT_EQ(status_of(raw), 408) << raw;
    EXPECT_LT(seconds_since(t0), 2.5);
  }
  auto res = s.client().Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = s.client().Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("status=\"408\""), std::string::npos) << res->body;
}

TEST(ServerLimits, PipelinedRequestsOnOneConnection) {
  RunningServer s(model(), limit_options());
  RawClient c(s.port());
  const std::string body = kSmall;
  const std::string post = post_head("/v1/completions", "Content-Length: " + std::to_string(body.size()) + "\r\n") + body;
  ASSERT_TRUE(c.send(post + "GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + post +
                     "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  const std::string raw = c.read_all();
  EXPECT_EQ(srvtest::responses_in(raw), 4) << raw;
  EXPECT_EQ(status_of(raw), 200);
  EXPECT_EQ(raw.find("HTTP/1.1 4"), std::string::npos) << raw;
}

// A GET with a body (cpp-httplib does not read it): answered, and the connection closed, since
// the body's bytes are not a next request.
TEST(ServerLimits, BodyOfGetClosesConnection) {
  RunningServer s(model(), limit_options());
  RawClient c(s.port());
  ASSERT_TRUE(c.send("GET /health HTTP/1.1\r\nContent-Length: 18\r\n\r\nGET /v1/models HTT"));
  const std::string raw = c.read_all();
  EXPECT_EQ(status_of(raw), 200) << raw;
  EXPECT_EQ(srvtest::responses_in(raw), 1) << raw;
}

// stop() does not wait for a client that is half-way through sending its request.
TEST(ServerLimits, StopDoesNotWaitForSlowClients) {
  ServerOptions o = limit_options();
  o.read_timeout_s = 60;
  auto s = std::make_unique<RunningServer>(model(), o);
  RawClient a(s->port()), b(s->port());
  ASSERT_TRUE(a.send("GET /health HTTP/1.1\r\nX-Half: "));
  ASSERT_TRUE(b.send(post_head("/v1/completions", "Content-Length: 100\r\n") + "{"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto t0 = Clock::now();
  s->stop();
  EXPECT_LT(seconds_since(t0), 2.0);
  EXPECT_EQ(status_of(b.read_all(std::chrono::seconds(2))), 503);
}

}  // namespace
}  // namespace lazyllm::server
