#include "server/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <thread>

#include "server/api_error.h"
#include "server/api_key.h"
#include "server/metrics.h"
#include "server/request.h"
#include "server/responses.h"
#include "server/scheduler.h"
#include "lazyllm/tokenizer.h"

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

// cpp-httplib 0.11 listens with a backlog of 5, so a burst of new connections waits for SYN
// retries (a second or more); listening again on the bound socket widens it.
class HttpServer : public httplib::Server {
 public:
  void widen_backlog() { ::listen(svr_sock_, SOMAXCONN); }
};

std::string metric_path(const std::string& path) {
  for (const char* p : {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"})
    if (path == p) return path;
  return "other";
}

}  // namespace

struct Server::Impl {
  std::shared_ptr<const Model> model;
  ServerOptions opt;
  Metrics metrics;
  std::unique_ptr<Scheduler> scheduler;
  HttpServer http;
  RequestLimits limits;
  int max_prompt_tokens = 0;
  std::once_flag stop_once;
  std::atomic<bool> stopping{false};

  Impl(std::shared_ptr<const Model> m, ServerOptions o) : model(std::move(m)), opt(std::move(o)) {
    const int cores = opt.threads > 0 ? opt.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    SchedulerOptions so;
    so.parallel = opt.parallel;
    so.queue = opt.queue;
    so.n_ctx = opt.n_ctx;
    so.threads_per_slot = std::max(1, cores / std::max(1, opt.parallel));  // slots share the cores
    so.default_prune = opt.default_prune;
    so.prune_policy = opt.prune_policy;
    scheduler = std::make_unique<Scheduler>(model, so, metrics);
    const int n_ctx = scheduler->n_ctx();
    limits.max_tokens = n_ctx;
    max_prompt_tokens = opt.max_prompt_tokens > 0 ? std::min(opt.max_prompt_tokens, n_ctx - 1) : n_ctx - 1;
    routes();
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
    const std::string text = chat ? render_chat(opt.chat_family, r.messages) : r.prompt;
    job->prompt = tok.encode(text, tok.add_bos(), /*parse_special=*/chat);
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

  static ApiError result_error(const GenerationResult& r) {
    if (r.finish_reason == "cancelled")
      return ApiError(503, "the server is shutting down; the request was cancelled", "", "shutting_down", "server_error");
    return ApiError(500, "generation failed: " + r.error, "", "internal_error", "server_error");
  }
  static bool failed(const GenerationResult& r) { return !r.error.empty() || r.finish_reason == "cancelled"; }

  void submit(const std::shared_ptr<Job>& job) {
    switch (scheduler->submit(job)) {
      case Scheduler::Admission::Accepted: return;
      case Scheduler::Admission::QueueFull:
        throw ApiError(429, "all slots are busy and the queue is full; retry later", "", "queue_full", "server_error");
      case Scheduler::Admission::ShuttingDown:
        throw ApiError(503, "the server is shutting down", "", "shutting_down", "server_error");
    }
  }

  void handle_completion(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
    const CompletionRequest r = parse_request(req.body, endpoint, limits);
    auto job = make_job(r);
    submit(job);
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
        [job, head, text](size_t, httplib::DataSink& sink) {
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
        [job, head, include_usage](size_t, httplib::DataSink& sink) {
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

  void routes() {
    // A thread per connection (idle keep-alive ones included): enough that clients reach the
    // scheduler, which answers 429 when its queue is full, rather than wait unseen in httplib's.
    http.new_task_queue = [n = opt.parallel + opt.queue + 64] { return new httplib::ThreadPool(n); };
    http.set_payload_max_length(opt.max_body_bytes);
    http.set_keep_alive_timeout(2);
    http.set_tcp_nodelay(true);  // streamed tokens go out at once
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
      send_json(res, 401, error_json("missing or wrong API key (send 'Authorization: Bearer KEY')",
                                     "invalid_request_error", "", "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    });
    http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
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
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { handle_completion(req, res, Endpoint::Completions); });
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { handle_completion(req, res, Endpoint::Chat); });
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
                {{"status", up ? "ok" : "shutting_down"}, {"slots_total", scheduler->slots()},
                 {"slots_busy", scheduler->busy()}, {"queued", scheduler->queued()}});
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(scheduler->busy(), scheduler->slots(), scheduler->queued()),
                      "text/plain; version=0.0.4");
    });
  }
};

Server::Server(std::shared_ptr<const Model> model, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(options))) {}

Server::~Server() { stop(); }

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
