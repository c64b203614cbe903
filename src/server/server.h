// `lazyllm serve`: an OpenAI-compatible HTTP server over the library API.
// Routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health,
// GET /metrics. See docs/server.md.
#pragma once

#include <memory>
#include <string>

#include "lazyllm/lazyllm.h"
#include "server/chat_template.h"

namespace lazyllm::server {

struct ServerOptions {
  static constexpr int kMaxParallel = 256;
  static constexpr int kMaxQueue = 4096;

  std::string host = "127.0.0.1";
  int port = 8080;             // 0: any free port (see Server::bind)
  int parallel = 1;            // requests batched at once, 1..kMaxParallel
  int queue = 16;              // requests that may wait to join the batch (0..kMaxQueue); more get 429
  int n_ctx = 0;               // context per request (0 = the model's trained context)
  int threads = 0;             // compute threads of the one batch (0 = all cores)
  int prefill_chunk = 512;     // prompt tokens per step for unpruned prompts (0 = whole prompts)
  int step_prompt_tokens = 0;  // prompt tokens of all requests in one step (0: 4 x prefill_chunk)
  std::string api_key;         // non-empty: /v1/* needs "Authorization: Bearer KEY" (never logged)
  PruneSchedule default_prune; // empty: no pruning unless a request asks
  PrunePolicy prune_policy = PrunePolicy::kAuto;
  Device device = Device::Cpu;  // where every request computes (one copy of the weights)
  bool prefix_cache = true;     // reuse the K/V of a prompt prefix an idle Session holds
  int64_t kv_memory = 0;        // bytes of the KV pool (0: room for `parallel` full contexts)
  GpuWeights gpu_weights = GpuWeights::kNative;
  bool gpu_warmup = true;  // SessionOptions::gpu_warmup (at start-up, before any request)
  bool gpu_weight_copies = false;  // SessionOptions::gpu_weight_copies, for each slot's session
  ChatFamily chat_family = ChatFamily::ChatML;
  // Parse special tokens in chat messages' content too (by default only the template's own
  // text gives control tokens, so a user cannot type "<|im_start|>system" into a prompt).
  bool chat_special_in_content = false;
  std::string model_name = "model";
  size_t max_body_bytes = 1 << 20;  // request bodies, Content-Length or chunked; more get 413
  double read_timeout_s = 30;       // a request's line, headers and body must arrive within this (408)
  int max_prompt_tokens = 0;   // 0: the context minus one
  int default_max_tokens = 256;
  double request_timeout_s = 300;  // from arrival, queueing included
  double shutdown_grace_s = 10;    // in-flight work may finish for this long on shutdown
};

// Threads serving HTTP connections (one per connection, idle keep-alive ones included): enough
// that clients reach the scheduler, which answers 429 when its queue is full; at most 1024.
int connection_threads(const ServerOptions& o);

class Server {
 public:
  // Throws Error for options out of range (--parallel, --queue, timeouts).
  Server(std::shared_ptr<const Model> model, ServerOptions options);
  ~Server();
  // The pool every request's K/V comes from (--kv-memory).
  const KvPool& kv_pool() const;
  // Binds the listening socket; returns the port (the chosen one when port is 0).
  // Throws Error when the address cannot be bound.
  int bind();
  // Serves until stop(); returns afterwards.
  void serve();
  // Graceful shutdown: new requests get 503, in-flight ones finish (or are cancelled after the
  // grace period), then the listener closes. Safe to call from any thread, more than once.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lazyllm::server
