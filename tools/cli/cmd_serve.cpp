// lazyllm serve: the OpenAI-compatible HTTP server (src/server). Binds to loopback unless told
// otherwise; SIGINT/SIGTERM shut it down gracefully, a second signal exits at once.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "cache/kv_pool.h"
#include "commands.h"
#include "common.h"
#include "runtime/memory_plan.h"
#include "server/api_key.h"
#include "server/server.h"
#include "util/byte_size.h"

namespace lazyllm::cli {
namespace {

struct ServeArgs {
  std::string model, chat_template, alias;
  std::string api_key_flag, api_key_file, kv_memory;
  CLI::Option* api_key_opt = nullptr;
  CLI::Option* api_key_file_opt = nullptr;
  server::ServerOptions opt;
  PruneFlags prune;
  DeviceFlag device{.gpu_weight_copies = false};  // one session a slot: copies each would crowd the others
};

// SIGINT/SIGTERM set a flag (any thread may take the signal: OpenBLAS starts its threads before
// main); a watcher thread turns the first into a graceful stop. A second signal exits at once.
std::atomic<int> g_signals{0};

extern "C" void on_signal(int) {
  if (g_signals.fetch_add(1) >= 1) {
    const char msg[] = "second signal: exiting now\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(130);
  }
}

class SignalWatcher {
 public:
  explicit SignalWatcher(server::Server& s) : thread_([this, &s] { watch(s); }) {}
  ~SignalWatcher() {
    done_ = true;
    thread_.join();
  }

 private:
  void watch(server::Server& s) {
    while (!done_) {
      if (g_signals.load() > 0) {
        std::fprintf(stderr, "shutting down: finishing in-flight requests (signal again to exit at once)\n");
        s.stop();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  std::atomic<bool> done_{false};
  std::thread thread_;
};

bool is_loopback(const std::string& host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

int serve(ServeArgs& a) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that went away is a failed write, not a kill

  // The key before the model: a bad key source fails at once. Only its source is ever printed.
  server::ApiKeySources sources;
  if (a.api_key_opt->count() > 0) sources.flag = a.api_key_flag;
  if (a.api_key_file_opt->count() > 0) sources.file = a.api_key_file;
  if (const char* env = std::getenv(server::kApiKeyEnv)) sources.env = std::string(env);
  const server::ResolvedApiKey key = server::resolve_api_key(sources);
  a.opt.api_key = key.key;

  auto model = Model::load(a.model, a.device.host_weights());
  const std::optional<std::string> tmpl = model->chat_template();
  std::string warning;
  a.opt.chat_family = server::resolve_chat_family(tmpl, a.chat_template, warning);
  if (!warning.empty()) std::fprintf(stderr, "warning: %s\n", warning.c_str());
  std::string prune_source;
  a.opt.default_prune = a.prune.resolve(model->config().n_layers, a.model, &prune_source);
  a.opt.prune_policy = a.prune.policy();
  a.opt.device = a.device.resolve();
  if (!a.kv_memory.empty()) a.opt.kv_memory = parse_byte_size(a.kv_memory, "--kv-memory");
  a.opt.gpu_weights = a.device.weights();
  a.opt.gpu_warmup = a.device.gpu_warmup;
  a.opt.gpu_weight_copies = a.device.gpu_weight_copies;
  a.opt.model_name = a.alias.empty() ? std::filesystem::path(a.model).stem().string() : a.alias;
  if (!is_loopback(a.opt.host) && a.opt.api_key.empty())
    std::fprintf(stderr, "warning: listening on %s without an API key (--api-key-file, %s or --api-key)\n",
                 a.opt.host.c_str(), server::kApiKeyEnv);
  if (!key.source.empty()) std::fprintf(stderr, "API key: from %s\n", key.source.c_str());

  server::Server srv(model, a.opt);
  const int port = srv.bind();
  const std::string pruning =
      a.opt.default_prune.empty() ? "off" : a.opt.default_prune.to_string() + " (" + prune_source + ")";
  const std::string device = a.opt.device == Device::Cuda ? "cuda (" + device_description(Device::Cuda) + ")"
                                                          : "cpu (weights: " + model->host_weights() + ")";
  std::fprintf(stderr, "device: %s; chat template: %s; batch: %d requests, prefill chunk %d; pruning: %s\n",
               device.c_str(), std::string(server::chat_family_name(a.opt.chat_family)).c_str(), a.opt.parallel,
               a.opt.prefill_chunk, pruning.c_str());
  const KvPool& pool = srv.kv_pool();
  std::fprintf(stderr, "KV pool: %s in %lld pages, %d tokens for one request at most\n",
               format_size(pool.bytes()).c_str(), static_cast<long long>(pool.pages()), pool.max_tokens());
  std::fprintf(stderr, "listening on http://%s:%d\n", a.opt.host.c_str(), port);
  std::fflush(stderr);
  {
    SignalWatcher watcher(srv);
    srv.serve();
  }
  srv.stop();
  std::fprintf(stderr, "stopped\n");
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<ServeArgs>();
  server::ServerOptions& o = a->opt;
  CLI::App* cmd = app.add_subcommand("serve", "Serve the model over an OpenAI-compatible HTTP API");
  cmd->add_option("-m,--model", a->model, "GGUF model file")->required();
  cmd->add_option("--host", o.host, "Address to bind")->capture_default_str();
  cmd->add_option("--port", o.port, "Port (0 = any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
  cmd->add_option("--parallel", o.parallel, "Requests generated at once, batched into one forward pass per step")->check(CLI::Range(1, server::ServerOptions::kMaxParallel))->capture_default_str();
  cmd->add_option("--queue", o.queue, "Requests that may wait to join the batch; more get 429")->check(CLI::Range(0, server::ServerOptions::kMaxQueue))->capture_default_str();
  cmd->add_option("-c,--ctx", o.n_ctx, "Context size per request (default: the model's trained context)")->check(CLI::Range(1, 1 << 22));
  cmd->add_option("--prefill-chunk", o.prefill_chunk,
                  "Prompt tokens per step for prompts without pruning, interleaved with other requests' decoding "
                  "(0 = whole prompts, each prefilled as a step of its own)")
      ->check(CLI::Range(0, 1 << 22))
      ->capture_default_str();
  cmd->add_option("--step-prompt-tokens", o.step_prompt_tokens,
                  "Prompt tokens of all prefilling requests together in one step, each at most --prefill-chunk, "
                  "shortest rest first (default: 4 x --prefill-chunk)")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("-t,--threads", o.threads, "Compute threads of the one batch that every request's step runs on (default: all cores)")->check(CLI::Range(1, 1024));
  a->api_key_opt = cmd->add_option("--api-key", a->api_key_flag,
                                   "Require 'Authorization: Bearer KEY' on /v1/* (other users can see it in the "
                                   "process list: prefer --api-key-file or $LAZYLLM_API_KEY)");
  a->api_key_file_opt = cmd->add_option("--api-key-file", a->api_key_file,
                                        "Read the API key from the first line of this file (trailing whitespace "
                                        "dropped). --api-key and --api-key-file exclude each other; either wins over "
                                        "$LAZYLLM_API_KEY, which is used when neither is given");
  a->api_key_opt->excludes(a->api_key_file_opt);
  cmd->add_option("--chat-template", a->chat_template, "Force a chat template: " + server::chat_family_names());
  cmd->add_option("--alias", a->alias, "Model id reported by the API (default: the file name)");
  cmd->add_option("--max-body", o.max_body_bytes, "Largest request body in bytes, Content-Length or chunked (413 above)")->check(CLI::Range(64, 1 << 30))->capture_default_str();
  cmd->add_option("--max-prompt-tokens", o.max_prompt_tokens, "Longest prompt accepted (default: the context minus one)")->check(CLI::Range(1, 1 << 22));
  cmd->add_option("--max-tokens", o.default_max_tokens, "Tokens generated when a request gives no max_tokens")->check(CLI::Range(1, 1 << 22))->capture_default_str();
  cmd->add_option("--timeout", o.request_timeout_s, "Time limit per request in seconds, queueing and prompt processing included")->check(CLI::Range(0.001, 86400.0))->capture_default_str();
  cmd->add_option("--read-timeout", o.read_timeout_s, "Seconds a request's line, headers and body may take to arrive (408 after)")->check(CLI::Range(0.001, 3600.0))->capture_default_str();
  cmd->add_flag("--chat-special-in-content", o.chat_special_in_content,
                "Parse special tokens (<|im_start|>, [INST], ...) in chat messages' content too; by default only the "
                "chat template makes control tokens");
  cmd->add_option("--shutdown-grace", o.shutdown_grace_s, "Seconds in-flight requests may run on after SIGINT/SIGTERM")->check(CLI::Range(0.0, 3600.0))->capture_default_str();
  a->prune.add_to(cmd);
  a->device.add_to(cmd);
  cmd->add_option("--kv-memory", a->kv_memory,
                  "Memory for every request's K/V together, e.g. 40G: one pool of pages that requests take as they "
                  "run and idle slots keep for the prefix cache; a request waits in the queue until the pool holds "
                  "its prompt and max_tokens (default: --parallel full contexts)");
  cmd->add_flag("!--no-prefix-cache", o.prefix_cache,
                "Compute every prompt whole (by default a request reuses the K/V of the longest prompt prefix an "
                "idle request slot holds)");
  cmd->callback([a, &exit_code] { exit_code = serve(*a); });
}

}  // namespace lazyllm::cli
