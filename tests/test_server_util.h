// Helpers of the server tests: a server in-process on a free loopback port, and a raw TCP client
// for requests an HTTP client library would refuse to send (oversized, malformed, slow).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <httplib.h>

#include "lazyllm/lazyllm.h"
#include "lazyllm/tokenizer.h"
#include "server/server.h"

namespace lazyllm::server::srvtest {

// The greedy text of a plain Session (no server, no scheduler), its pieces joined (the test
// prompts answer in ASCII): what a request must answer.
inline std::string greedy_text(const std::shared_ptr<const Model>& m, const std::string& prompt, int n,
                               int threads = 2) {
  SessionOptions o;
  o.n_threads = threads;
  Session session(m, o);
  const Tokenizer& tok = m->tokenizer();
  session.prefill(tok.encode(prompt, tok.add_bos(), false));
  SamplingParams p;
  p.temperature = 0;
  Sampler sampler(p);
  std::string out;
  for (int32_t id : session.generate(n, sampler)) out += tok.token_to_piece(id);
  return out;
}

class RunningServer {
 public:
  RunningServer(std::shared_ptr<const Model> model, const ServerOptions& o) : server_(std::move(model), o) {
    port_ = server_.bind();
    thread_ = std::thread([this] { server_.serve(); });
  }
  ~RunningServer() { stop(); }
  void stop() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60);
    return c;
  }

 private:
  Server server_;
  int port_ = 0;
  std::thread thread_;
};

// A blocking TCP connection to the server; everything it sends or reads is bounded in time.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~RawClient() { close(); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Sends all of `s` unless the server closes first (false then). Waits at most 10 s per write.
  bool send(const std::string& s) {
    for (size_t at = 0; at < s.size();) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, 10000) <= 0 || (p.revents & (POLLERR | POLLHUP))) return false;
      const ssize_t n = ::send(fd_, s.data() + at, s.size() - at, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) return false;
      at += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads until the server closes the connection or `timeout` passes; returns what came.
  std::string read_all(std::chrono::milliseconds timeout = std::chrono::seconds(20)) { return read(nullptr, timeout); }

  // Reads until `marker` has arrived (or the connection closes, or `timeout`).
  std::string read_until(const std::string& marker, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    return read(&marker, timeout);
  }

 private:
  // Reads until `marker` (when given) has arrived, the connection closes, or `timeout` passes.
  std::string read(const std::string* marker, std::chrono::milliseconds timeout) {
    std::string out;
    const auto until = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    while (!marker || out.find(*marker) == std::string::npos) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
      if (left <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  int fd_ = -1;
  bool connected_ = false;
};

// The status code of the first response in `raw` ("HTTP/1.1 413 ..."), or -1.
inline int status_of(const std::string& raw) {
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || raw.size() < 12) return -1;
  return std::atoi(raw.substr(9, 3).c_str());
}

// The number of responses in `raw` (status lines; bodies end with no newline).
inline int responses_in(const std::string& raw) {
  int n = 0;
  for (size_t at = 0; (at = raw.find("HTTP/1.1 ", at)) != std::string::npos; ++at) ++n;
  return n;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace lazyllm::server::srvtest
