// cpp-httplib 0.11's Server, with the reading of requests bounded. The library (Debian's 0.11.4)
// reads a request line or header line to its end however long it is (the 8 KiB limits are
// checked only afterwards), takes any number of header lines, reads chunked bodies and bodies
// without a length with no size limit, and waits CPPHTTPLIB_READ_TIMEOUT_SECOND per read, so a
// client sending a byte every few seconds holds a thread forever. Here every connection is read
// through a stream that enforces, per request: a line of at most kMaxHeaderLine bytes, at most
// kMaxHeaderLines lines and kMaxHeaderBytes bytes before the body, a body of at most
// raw_body_limit bytes as sent (chunk framing included), and one deadline for the whole request
// (line, headers and body). A request that breaks one gets 414, 431, 413 or 408 and its
// connection is closed.
#pragma once

#include <httplib.h>

#include <atomic>
#include <functional>
#include <string>

namespace lazyllm::server {

enum class ReadFailure { None, UriTooLong, HeadersTooLarge, BodyTooLarge, Timeout, Stopping };

struct ReadFailureInfo {
  int status;
  std::string message, code;
};
ReadFailureInfo describe(ReadFailure f, double read_timeout_s);

class HttpServer : public httplib::Server {
 public:
  static constexpr size_t kMaxHeaderLine = 8192;  // as CPPHTTPLIB_HEADER_MAX_LENGTH and _URI_MAX_LENGTH
  static constexpr size_t kMaxHeaderBytes = 32 * 1024;
  static constexpr int kMaxHeaderLines = 100;

  HttpServer(size_t raw_body_limit, double read_timeout_s);

  // cpp-httplib 0.11 listens with a backlog of 5, so a burst of new connections waits for SYN
  // retries (a second or more); listening again on the bound socket widens it.
  void widen_backlog();

  // For handlers, on the thread serving the request: what stopped the reading of the current
  // request (None when nothing did), and a way to close the connection after this response
  // (when a body is left unread, the next bytes are not a request).
  static ReadFailure current_failure();
  static void close_after_response();

  // Called with the status of a response written without cpp-httplib (a request line that
  // broke a limit), for the metrics.
  std::function<void(int status)> on_raw_response;

 private:
  bool process_and_close_socket(socket_t sock) override;

  size_t raw_body_limit_;
  double read_timeout_s_;
};

}  // namespace lazyllm::server
