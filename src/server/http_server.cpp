#include "server/http_server.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "server/api_error.h"

namespace lazyllm::server {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kPollSliceMs = 100;  // how often a waiting connection looks whether the server stops

// Reads a connection for cpp-httplib, counting what each request sends (see http_server.h).
// One per connection: bytes read ahead (a pipelined next request) stay in its buffer.
class GuardedStream final : public httplib::Stream {
 public:
  GuardedStream(socket_t sock, const std::atomic<socket_t>& listener, size_t raw_body_limit, double read_timeout_s,
                time_t write_sec, time_t write_usec)
      : sock_(sock), listener_(listener), raw_body_limit_(raw_body_limit),
        read_timeout_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(read_timeout_s))),
        write_timeout_ms_(static_cast<int>(std::max<time_t>(1, write_sec * 1000 + write_usec / 1000))) {}

  void start_request() {
    failure_ = ReadFailure::None;
    wrote_ = false;
    phase_ = Phase::Line;
    head_bytes_ = line_len_ = body_bytes_ = 0;
    header_lines_ = 0;
    prev_ = 0;
    deadline_ = Clock::now() + read_timeout_;
  }
  bool buffered() const { return pos_ < len_; }
  ReadFailure failure() const { return failure_; }
  bool wrote() const { return wrote_; }

  // Waits up to `seconds` for the first byte of a next request (false: none came, or stopping).
  bool wait_for_request(time_t seconds) const {
    const auto until = Clock::now() + std::chrono::seconds(seconds);
    return wait_readable(until) == 1;
  }

  bool is_readable() const override { return buffered() || wait_readable(deadline_) == 1; }
  bool is_writable() const override { return wait_writable() && alive(); }

  ssize_t read(char* ptr, size_t size) override {
    if (failure_ != ReadFailure::None) return -1;
    if (size == 0) return 0;
    if (!buffered()) {
      const ssize_t r = fill();
      if (r <= 0) return r;
    }
    size_t n = std::min(size, len_ - pos_);
    if (phase_ != Phase::Body) {
      // cpp-httplib reads the head a byte at a time; stop at its end so the body is counted apart.
      for (size_t i = 0; i < n; ++i) {
        const char c = buf_[pos_ + i];
        ++head_bytes_;
        ++line_len_;
        if (line_len_ > HttpServer::kMaxHeaderLine || head_bytes_ > HttpServer::kMaxHeaderBytes)
          return fail(phase_ == Phase::Line ? ReadFailure::UriTooLong : ReadFailure::HeadersTooLarge);
        if (c == '\n') {
          const bool blank = line_len_ == 2 && prev_ == '\r';
          line_len_ = 0;
          if (phase_ == Phase::Line) {
            phase_ = Phase::Headers;
          } else if (blank) {
            phase_ = Phase::Body;
            n = i + 1;
            break;
          } else if (++header_lines_ > HttpServer::kMaxHeaderLines) {
            return fail(ReadFailure::HeadersTooLarge);
          }
        }
        prev_ = c;
      }
    } else {
      if (body_bytes_ >= raw_body_limit_) return fail(ReadFailure::BodyTooLarge);
      n = std::min(n, raw_body_limit_ - body_bytes_);
      body_bytes_ += n;
    }
    std::memcpy(ptr, buf_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;  // as cpp-httplib: a client gone is noticed at this write, not the next
    ssize_t r;
    do r = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r > 0) wrote_ = true;
    return r;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address(true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address(false, ip, port); }
  socket_t socket() const override { return sock_; }

 private:
  enum class Phase { Line, Headers, Body };

  ssize_t fail(ReadFailure f) {
    failure_ = f;
    return -1;
  }

  // 1: readable (or closed: recv says which); 0: `until` passed; -1: the server stops, or an error.
  int wait_readable(Clock::time_point until) const {
    for (;;) {
      if (listener_ == INVALID_SOCKET) return -1;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      if (left <= 0) return 0;
      pollfd p{sock_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, kPollSliceMs)));
      if (r > 0) return 1;
      if (r < 0 && errno != EINTR) return -1;
    }
  }

  bool wait_writable() const {
    pollfd p{sock_, POLLOUT, 0};
    int r;
    do r = ::poll(&p, 1, write_timeout_ms_);
    while (r < 0 && errno == EINTR);
    return r > 0 && (p.revents & POLLOUT) && !(p.revents & (POLLERR | POLLHUP));
  }

  // Whether the client is still there: a socket that reads as closed is not (how a streamed
  // answer notices a client that went away).
  bool alive() const {
    if (buffered()) return true;
    pollfd p{sock_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return true;
    char c;
    return ::recv(sock_, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
  }

  ssize_t fill() {
    const int w = wait_readable(deadline_);
    if (w == 0) return fail(ReadFailure::Timeout);
    if (w < 0) return listener_ == INVALID_SOCKET ? fail(ReadFailure::Stopping) : -1;
    ssize_t r;
    do r = ::recv(sock_, buf_, sizeof buf_, 0);
    while (r < 0 && errno == EINTR);
    if (r <= 0) return r;  // 0: the client closed its side
    pos_ = 0;
    len_ = static_cast<size_t>(r);
    return r;
  }

  void address(bool peer, std::string& ip, int& port) const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    auto* sa = reinterpret_cast<sockaddr*>(&a);
    if ((peer ? ::getpeername(sock_, sa, &len) : ::getsockname(sock_, sa, &len)) != 0) return;
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (::getnameinfo(sa, len, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0) return;
    ip = host;
    port = std::atoi(serv);
  }

  socket_t sock_;
  const std::atomic<socket_t>& listener_;
  size_t raw_body_limit_;
  Clock::duration read_timeout_;
  int write_timeout_ms_;
  char buf_[4096];
  size_t pos_ = 0, len_ = 0;
  // The request being read.
  ReadFailure failure_ = ReadFailure::None;
  bool wrote_ = false;
  Phase phase_ = Phase::Line;
  size_t head_bytes_ = 0, line_len_ = 0, body_bytes_ = 0;
  int header_lines_ = 0;
  char prev_ = 0;
  Clock::time_point deadline_;
};

struct Connection {
  GuardedStream* stream;
  bool close = false;
};
thread_local Connection* tl_connection = nullptr;

void write_all(httplib::Stream& strm, const std::string& s) {
  for (size_t at = 0; at < s.size();) {
    const ssize_t n = strm.write(s.data() + at, s.size() - at);
    if (n <= 0) return;
    at += static_cast<size_t>(n);
  }
}

const char* reason(int status) {
  switch (status) {
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Bad Request";
  }
}

}  // namespace

ReadFailureInfo describe(ReadFailure f, double read_timeout_s) {
  char timeout[32];
  std::snprintf(timeout, sizeof timeout, "%g", read_timeout_s);
  switch (f) {
    case ReadFailure::UriTooLong:
      return {414, "the request line is longer than " + std::to_string(HttpServer::kMaxHeaderLine) + " bytes",
              "uri_too_long"};
    case ReadFailure::HeadersTooLarge:
      return {431,
              "the request headers are too large (at most " + std::to_string(HttpServer::kMaxHeaderLines) +
                  " lines of " + std::to_string(HttpServer::kMaxHeaderLine) + " bytes, " +
                  std::to_string(HttpServer::kMaxHeaderBytes) + " bytes in all)",
              "headers_too_large"};
    case ReadFailure::BodyTooLarge: return {413, "the request body is too large", "body_too_large"};
    case ReadFailure::Timeout:
      return {408, std::string("the request did not arrive within ") + timeout + " s (--read-timeout)",
              "request_timeout"};
    case ReadFailure::Stopping: return {503, "the server is shutting down", "shutting_down"};
    case ReadFailure::None: break;
  }
  return {400, "malformed HTTP request", ""};
}

HttpServer::HttpServer(size_t raw_body_limit, double read_timeout_s)
    : raw_body_limit_(raw_body_limit), read_timeout_s_(read_timeout_s) {}

void HttpServer::widen_backlog() { ::listen(svr_sock_, SOMAXCONN); }

ReadFailure HttpServer::current_failure() {
  return tl_connection ? tl_connection->stream->failure() : ReadFailure::None;
}

void HttpServer::close_after_response() {
  if (tl_connection) tl_connection->close = true;
}

// As cpp-httplib's own loop (keep-alive up to keep_alive_max_count_ requests, each awaited for
// keep_alive_timeout_sec_), over a GuardedStream that lives as long as the connection.
bool HttpServer::process_and_close_socket(socket_t sock) {
  GuardedStream strm(sock, svr_sock_, raw_body_limit_, read_timeout_s_, write_timeout_sec_, write_timeout_usec_);
  Connection conn{&strm};
  tl_connection = &conn;
  bool ret = false;
  for (size_t left = keep_alive_max_count_; left > 0 && svr_sock_ != INVALID_SOCKET; --left) {
    if (!strm.buffered() && !strm.wait_for_request(keep_alive_timeout_sec_)) break;
    strm.start_request();
    conn.close = false;
    bool closed = false;
    ret = process_request(strm, left == 1, closed, nullptr);
    const ReadFailure f = strm.failure();
    if (f != ReadFailure::None && !strm.wrote()) {
      // The request line broke a limit: cpp-httplib answers nothing then.
      const ReadFailureInfo d = describe(f, read_timeout_s_);
      const std::string body = error_json(d.message, "invalid_request_error", "", d.code).dump();
      const std::string head = "HTTP/1.1 " + std::to_string(d.status) + " " + reason(d.status) +
                               "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                               "\r\nConnection: close\r\n\r\n";
      write_all(strm, head + body);
      if (on_raw_response) on_raw_response(d.status);
    }
    if (!ret || closed || conn.close || f != ReadFailure::None) break;
  }
  tl_connection = nullptr;
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ret;
}

}  // namespace lazyllm::server
