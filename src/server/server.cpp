#include "server/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>

#include "lazyllm/tokenizer.h"
#include "server/api_error.h"
#include "server/api_key.h"
#include "server/chat_encoder.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/request.h"
#include "server/responses.h"
#include "server/scheduler.h"

namespace lazyllm::server {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kHeartbeat = 1000ms;  // how often a waiting response probes the client

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  send_json(res, e.status(), error_json(e));
  if (e.status() == 429) res.set_header("Retry-After", "1");
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

// Bytes a body may take on the wire: the decoded limit is exact (read_body), this bounds what
// chunk framing adds, and the bodies of requests no route reads.
size_t raw_body_limit(size_t max_body) {
  constexpr size_t kFraming = 64 * 1024;
  return max_body > (SIZE_MAX - kFraming) / 2 ? SIZE_MAX : 2 * max_body + kFraming;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trimmed(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// Methods whose body cpp-httplib reads (detail::expect_content).
bool reads_body(const httplib::Request& req) {
  return req.method == "POST" || req.method == "PUT" || req.method == "PATCH" || req.method == "DELETE" ||
         req.method == "PRI";
}

void check_options(const ServerOptions& o) {
  auto range = [](const std::string& flag, double v, double lo, double hi) {
    if (!(v >= lo && v <= hi))
      throw Error(flag + " " + seconds_text(v) + " is out of range [" + seconds_text(lo) + ", " + seconds_text(hi) + "]");
  };
  range("--parallel", o.parallel, 1, ServerOptions::kMaxParallel);
  range("--queue", o.queue, 0, ServerOptions::kMaxQueue);
  range("--prefill-chunk", o.prefill_chunk, 0, 1 << 22);
  range("--step-prompt-tokens", o.step_prompt_tokens, 0, 1 << 24);
  range("--timeout", o.request_timeout_s, 0.001, 86400);
  range("--read-timeout", o.read_timeout_s, 0.001, 3600);
  range("--shutdown-grace", o.shutdown_grace_s, 0, 3600);
  if (o.max_body_bytes < 64) throw Error("--max-body must be at least 64 bytes");
}

std::string metric_path(const std::string& path) {
  for (const char* p : {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"})
    if (path == p) return path;
  return "other";
}

}  // namespace

int connection_threads(const ServerOptions& o) {
  return std::min(std::max(o.parallel, 1) + std::max(o.queue, 0) + 64, 1024);
}

struct Server::Impl {
  std::shared_ptr<const Model> model;
  ServerOptions opt;
  Metrics metrics;
  std::unique_ptr<Scheduler> scheduler;
  HttpServer http{raw_body_limit(opt.max_body_bytes), opt.read_timeout_s};
  ChatEncoder chat_encoder{model->tokenizer()};
  RequestLimits limits;
  int max_prompt_tokens = 0;
  std::once_flag stop_once;
  std::atomic<bool> stopping{false};

  Impl(std::shared_ptr<const Model> m, ServerOptions o) : model(std::move(m)), opt(checked(std::move(o))) {
    const int cores = opt.threads > 0 ? opt.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    SchedulerOptions so;
    so.parallel = opt.parallel;
    so.queue = opt.queue;
    so.n_ctx = opt.n_ctx;
    so.threads = cores;  // all of them to the one batch
    so.prefill_chunk = opt.prefill_chunk;
    so.step_prompt_tokens = opt.step_prompt_tokens;
    so.default_prune = opt.default_prune;
    so.prune_policy = opt.prune_policy;
    so.device = opt.device;
    so.prefix_cache = opt.prefix_cache;
    so.gpu_weights = opt.gpu_weights;
    so.gpu_warmup = opt.gpu_warmup;
    so.gpu_weight_copies = opt.gpu_weight_copies;
    so.kv_memory = opt.kv_memory;
    scheduler = std::make_unique<Scheduler>(model, so, metrics);
    const int n_ctx = scheduler->n_ctx();
    limits.max_tokens = n_ctx;
    max_prompt_tokens = opt.max_prompt_tokens > 0 ? std::min(opt.max_prompt_tokens, n_ctx - 1) : n_ctx - 1;
    routes();
  }

  static ServerOptions checked(ServerOptions o) {
    check_options(o);
    return o;
  }

  // ---------------------------------------------------------------- requests to jobs

  PruneSchedule prune_for(const CompletionRequest& r) const {
    if (!r.lazy) return opt.default_prune;
    if (!r.lazy->enabled) return {};
    const int n_layers = model->config().n_layers;
    try {
      return r.lazy->prune.empty() ? PruneSchedule::default_for(n_layers) : PruneSchedule::parse(r.lazy->prune, n_layers);
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "lazy.prune", "invalid_value");
    }
  }

  std::shared_ptr<Job> make_job(const CompletionRequest& r) const {
    auto job = std::make_shared<Job>();
    const Tokenizer& tok = model->tokenizer();
    const bool chat = r.endpoint == Endpoint::Chat;
    const char* input = chat ? "messages" : "prompt";
    // Chat: control tokens from the template only (unless --chat-special-in-content). A raw
    // prompt is the client's own template, tokenized as text, as `lazyllm run` without --special.
    if (chat)
      job->prompt = chat_encoder.encode(render_chat_segments(opt.chat_family, r.messages), tok.add_bos(),
                                        opt.chat_special_in_content);
    else
      job->prompt = tok.encode(r.prompt, tok.add_bos(), /*parse_special=*/false);
    if (job->prompt.empty()) throw ApiError(400, std::string("'") + input + "' is empty", input, "invalid_value");
    if (static_cast<int>(job->prompt.size()) > max_prompt_tokens)
      throw ApiError(400,
                     "the prompt is " + std::to_string(job->prompt.size()) + " tokens; this server accepts at most " +
                         std::to_string(max_prompt_tokens),
                     input, "context_length_exceeded");
    // Generation also stops when the context is full (finish_reason "length").
    job->max_tokens = std::min(r.max_tokens.value_or(opt.default_max_tokens),
                               scheduler->n_ctx() - static_cast<int>(job->prompt.size()));
    job->sampling = r.sampling;
    job->prune = prune_for(r);
    job->stop = r.stop;
    if (chat && !end_of_turn(opt.chat_family).empty()) {
      job->end_of_turn = std::string(end_of_turn(opt.chat_family));
      job->stop.push_back(job->end_of_turn);  // when the vocabulary spells it in pieces
    }
    job->deadline = job->arrival + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(opt.request_timeout_s));
    return job;
  }

  // Timed out before its first token (in the queue or in the prefill): nothing to answer with.
  static bool timed_out_empty(const GenerationResult& r) {
    return r.error.empty() && r.timed_out && r.completion_tokens == 0 && r.finish_reason == "length";
  }
  ApiError result_error(const GenerationResult& r) const {
    if (r.finish_reason == "cancelled")
      return ApiError(503, "the server is shutting down; the request was cancelled", "", "shutting_down", "server_error");
    if (timed_out_empty(r))
      return ApiError(408,
                      "the request's time limit (--timeout " + seconds_text(opt.request_timeout_s) +
                          " s, queueing included) ran out before the first token; the prompt has " +
                          std::to_string(r.prompt_tokens) + " tokens",
                      "", "timeout", "server_error");
    return ApiError(500, "generation failed: " + r.error, "", "internal_error", "server_error");
  }
  static bool failed(const GenerationResult& r) {
    return !r.error.empty() || r.finish_reason == "cancelled" || timed_out_empty(r);
  }

  static void admit(Scheduler::Admission a) {
    switch (a) {
      case Scheduler::Admission::Accepted: return;
      case Scheduler::Admission::QueueFull:
        throw ApiError(429, "all slots are busy and the queue is full; retry later", "", "queue_full", "server_error");
      case Scheduler::Admission::ShuttingDown:
        throw ApiError(503, "the server is shutting down", "", "shutting_down", "server_error");
    }
  }

  // The body through cpp-httplib's content reader, so that its decoded size is bounded whatever
  // the encoding (Content-Length bodies over the limit were refused before, by framing_error).
  std::string read_body(const httplib::Request& req, const httplib::ContentReader& reader) const {
    std::string body;
    if (req.has_header("Content-Length"))  // checked to be digits, at most max_body_bytes (framing_error)
      body.reserve(std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10));
    bool too_large = false;
    const bool ok = reader([&](const char* data, size_t n) {
      if (n > opt.max_body_bytes - body.size()) {
        too_large = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
    if (ok) return body;
    HttpServer::close_after_response();  // the rest of the body is still on the connection
    const ReadFailure f = HttpServer::current_failure();
    if (too_large || f == ReadFailure::BodyTooLarge)
      throw ApiError(413, "the request body is larger than " + std::to_string(opt.max_body_bytes) + " bytes", "",
                     "body_too_large");
    if (f != ReadFailure::None) {
      const ReadFailureInfo d = describe(f, opt.read_timeout_s);
      throw ApiError(d.status, d.message, "", d.code);
    }
    throw ApiError(400, "the request body could not be read (malformed chunked encoding, or the client stopped sending)",
                   "", "invalid_body");
  }

  void handle_completion(const std::string& body, httplib::Response& res, Endpoint endpoint) {
    const CompletionRequest r = parse_request(body, endpoint, limits);
    // A place in the queue before any work on the prompt: a full server answers 429 at once.
    Scheduler::Reservation place = scheduler->reserve();
    admit(place.admission());
    auto job = make_job(r);
    admit(scheduler->submit(job, place));
    const ResponseHead head = make_head(endpoint, opt.model_name);
    if (r.stream) stream(res, job, head, r.include_usage);
    else respond_whole(res, job, head);
  }

  // Non-streaming: answer normally when the result is ready within a heartbeat; otherwise start
  // a chunked JSON body and write a space (JSON allows leading whitespace) every heartbeat,
  // which is how a client that went away is noticed and its generation cancelled.
  void respond_whole(httplib::Response& res, const std::shared_ptr<Job>& job, const ResponseHead& head) {
    auto text = std::make_shared<std::string>();
    const auto until = Clock::now() + kHeartbeat;
    bool done = false;
    while (!done && Clock::now() < until) done = job->wait(*text, 50ms);
    if (done) {
      const GenerationResult& g = job->result();
      if (failed(g)) send_error(res, result_error(g));
      else send_json(res, 200, completion_json(head, *text, g));
      return;
    }
    res.status = 200;
    res.set_chunked_content_provider(
        "application/json",
        [this, job, head, text](size_t, httplib::DataSink& sink) {
          while (!job->wait(*text, kHeartbeat))
            if (!sink.write(" ", 1)) {
              job->cancel();
              return false;
            }
          const GenerationResult& g = job->result();
          const std::string body = dump(failed(g) ? error_json(result_error(g)) : completion_json(head, *text, g));
          sink.write(body.data(), body.size());
          sink.done();
          return true;
        },
        [job](bool) { job->cancel(); });
  }

  // Streaming: one SSE chunk per batch of new text; comments as heartbeats while waiting.
  void stream(httplib::Response& res, const std::shared_ptr<Job>& job, const ResponseHead& head, bool include_usage) {
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, job, head, include_usage](size_t, httplib::DataSink& sink) {
          auto write = [&](const std::string& s) {
            if (sink.write(s.data(), s.size())) return true;
            job->cancel();  // the client went away
            return false;
          };
          if (head.endpoint == Endpoint::Chat && !write(sse_event(chunk_json(head, "", true)))) return false;
          for (bool done = false; !done;) {
            std::string text;
            done = job->wait(text, kHeartbeat);
            if (!text.empty() && !write(sse_event(chunk_json(head, text, false)))) return false;
            if (text.empty() && !done && !write(": keep-alive\n\n")) return false;
          }
          const GenerationResult& g = job->result();
          if (failed(g)) {
            if (!write(sse_event(error_json(result_error(g))))) return false;
          } else {
            if (!write(sse_event(final_chunk_json(head, g)))) return false;
            if (include_usage && !write(sse_event(usage_chunk_json(head, g)))) return false;
          }
          if (!write(std::string(kSseDone))) return false;
          sink.done();
          return true;
        },
        [job](bool) { job->cancel(); });
  }

  // ---------------------------------------------------------------- routes

  // Runs a handler, turning exceptions into OpenAI error objects.
  template <class F>
  void guarded(httplib::Response& res, F&& f) {
    try {
      f();
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const Error& e) {
      send_error(res, ApiError(400, e.what()));
    } catch (const std::bad_alloc&) {
      send_error(res, ApiError(503, "out of memory", "", "out_of_memory", "server_error"));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, e.what(), "", "internal_error", "server_error"));
    }
  }

  bool authorized(const httplib::Request& req) const {
    if (opt.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return true;  // /health, /metrics stay open
    return bearer_matches(req.get_header_value("Authorization"), opt.api_key);
  }

  // How the body is framed, checked before any of it is read: cpp-httplib would read a body
  // with neither Content-Length nor chunked encoding until the client closes, decompress gzip
  // and brotli bodies without a limit, and take the first of several Content-Lengths.
  std::optional<ApiError> framing_error(const httplib::Request& req) const {
    const size_t n_length = req.get_header_value_count("Content-Length");
    const size_t n_encoding = req.get_header_value_count("Transfer-Encoding");
    if (n_length > 1) return ApiError(400, "more than one Content-Length header", "", "invalid_framing");
    if (n_encoding > 0) {
      if (n_length > 0)
        return ApiError(400, "both Content-Length and Transfer-Encoding are given", "", "invalid_framing");
      if (n_encoding > 1 || lower(trimmed(req.get_header_value("Transfer-Encoding"))) != "chunked")
        return ApiError(501, "only 'Transfer-Encoding: chunked' is supported", "", "unsupported_transfer_encoding");
    }
    if (n_length == 1) {
      const std::string v = trimmed(req.get_header_value("Content-Length"));
      if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos)
        return ApiError(400, "invalid Content-Length", "", "invalid_framing");
      if (std::stoull(v) > opt.max_body_bytes)
        return ApiError(413, "the request body is larger than " + std::to_string(opt.max_body_bytes) + " bytes", "",
                        "body_too_large");
    }
    if (!reads_body(req)) return std::nullopt;
    if (n_length == 0 && n_encoding == 0)
      return ApiError(411, "a request body needs Content-Length (or Transfer-Encoding: chunked)", "", "length_required");
    const std::string encoding = lower(trimmed(req.get_header_value("Content-Encoding")));
    if (!encoding.empty() && encoding != "identity")
      return ApiError(415, "compressed request bodies (Content-Encoding) are not supported", "", "unsupported_encoding");
    if (lower(req.get_header_value("Content-Type")).rfind("multipart/", 0) == 0)
      return ApiError(415, "multipart bodies are not supported; send JSON", "", "unsupported_media_type");
    return std::nullopt;
  }

  // Before routing and before the body is read. A request refused here has its connection
  // closed after the answer when it came with a body (its bytes are not the next request).
  bool refuse(const httplib::Request& req, httplib::Response& res) {
    const bool has_body = req.has_header("Transfer-Encoding") ||
                          (req.has_header("Content-Length") && trimmed(req.get_header_value("Content-Length")) != "0");
    std::optional<ApiError> error;
    if (!authorized(req))
      error = ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')", "", "invalid_api_key");
    else
      error = framing_error(req);
    if (!error) {
      if (has_body && !reads_body(req)) HttpServer::close_after_response();  // cpp-httplib ignores a GET's body
      return false;
    }
    if (has_body || error->status() != 401) HttpServer::close_after_response();
    send_error(res, *error);
    return true;
  }

  void routes() {
    // A thread per connection (idle keep-alive ones included): enough that clients reach the
    // scheduler, which answers 429 when its queue is full, rather than wait unseen in httplib's.
    http.new_task_queue = [n = connection_threads(opt)] { return new httplib::ThreadPool(n); };
    http.set_payload_max_length(opt.max_body_bytes);
    http.set_keep_alive_timeout(2);
    http.set_tcp_nodelay(true);  // streamed tokens go out at once
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      return refuse(req, res) ? httplib::Server::HandlerResponse::Handled : httplib::Server::HandlerResponse::Unhandled;
    });
    // "Expect: 100-continue": refuse before the client sends the body.
    http.set_expect_100_continue_handler([this](const httplib::Request& req, httplib::Response& res) {
      return refuse(req, res) ? res.status : 100;
    });
    http.on_raw_response = [this](int status) { metrics.count_request("other", status); };
    http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (const ReadFailure f = HttpServer::current_failure(); f != ReadFailure::None) {
        const ReadFailureInfo d = describe(f, opt.read_timeout_s);  // cpp-httplib says 400 for these
        send_json(res, d.status, error_json(d.message, "invalid_request_error", "", d.code));
        return;
      }
      std::string message = "HTTP error " + std::to_string(res.status);
      if (res.status == 404) message = "no route for " + req.method + " " + req.path;
      if (res.status == 413) message = "the request body is larger than " + std::to_string(opt.max_body_bytes) + " bytes";
      if (res.status == 400) message = "malformed HTTP request";
      const int status = res.status;
      send_json(res, status, error_json(message, "invalid_request_error", "", status == 413 ? "body_too_large" : ""));
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      metrics.count_request(metric_path(req.path), res.status);
    });
    http.Post("/v1/completions",
              [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
                guarded(res, [&] { handle_completion(read_body(req, reader), res, Endpoint::Completions); });
              });
    http.Post("/v1/chat/completions",
              [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
                guarded(res, [&] { handle_completion(read_body(req, reader), res, Endpoint::Chat); });
              });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200,
                {{"object", "list"},
                 {"data", json::array({{{"id", opt.model_name}, {"object", "model"}, {"created", 0},
                                        {"owned_by", "lazyllm"}}})}});
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      const bool up = !stopping;
      send_json(res, up ? 200 : 503,
                {{"status", up ? "ok" : "shutting_down"},
                 {"slots_total", scheduler->slots()},
                 {"slots_busy", scheduler->busy()},
                 {"queued", scheduler->queued()},
                 {"kv_pool_pages", scheduler->kv_pool().pages()},
                 {"kv_pool_pages_free", scheduler->kv_pool().free_pages()}});
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(scheduler->gauges()), "text/plain; version=0.0.4");
    });
  }
};

Server::Server(std::shared_ptr<const Model> model, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(options))) {}

Server::~Server() { stop(); }

const KvPool& Server::kv_pool() const { return impl_->scheduler->kv_pool(); }

int Server::bind() {
  auto& o = impl_->opt;
  int port = o.port;
  if (o.port == 0) port = impl_->http.bind_to_any_port(o.host);
  else if (!impl_->http.bind_to_port(o.host, o.port)) port = -1;
  if (port <= 0) throw Error("cannot listen on " + o.host + ":" + std::to_string(o.port));
  impl_->http.widen_backlog();
  return port;
}

void Server::serve() { impl_->http.listen_after_bind(); }

void Server::stop() {
  std::call_once(impl_->stop_once, [this] {
    impl_->stopping = true;
    impl_->scheduler->shutdown(std::chrono::milliseconds(static_cast<int64_t>(impl_->opt.shutdown_grace_s * 1000)));
    impl_->http.stop();
  });
}

}  // namespace lazyllm::server
