// Parsing and validation of /v1/completions and /v1/chat/completions request bodies. Anything
// malformed (bad JSON or UTF-8, wrong types, out-of-range numbers, unknown fields) throws an
// ApiError with status 400 naming the offending parameter.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lazyllm/lazyllm.h"

namespace lazyllm::server {

enum class Endpoint { Completions, Chat };

struct ChatMessage {
  std::string role;  // system, user or assistant
  std::string content;
};

// The `lazy` extension field: overrides the server's default pruning for one request.
struct LazyOverride {
  bool enabled = true;
  std::string prune;  // empty: the default schedule
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::string model;
  std::string prompt;                 // completions
  std::vector<ChatMessage> messages;  // chat
  std::optional<int> max_tokens;      // absent: the server's default
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::optional<LazyOverride> lazy;
};

struct RequestLimits {
  int max_tokens = 1 << 20;     // largest max_tokens accepted
  int max_messages = 1024;
  int max_stop = 4;             // as OpenAI
  size_t max_stop_bytes = 256;
};

CompletionRequest parse_request(std::string_view body, Endpoint endpoint, const RequestLimits& limits);

}  // namespace lazyllm::server
