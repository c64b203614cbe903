// OpenAI response bodies: whole completions, streamed chunks (Server-Sent Events) and usage.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "server/job.h"
#include "server/request.h"

namespace lazyllm::server {

// What every response of one request shares.
struct ResponseHead {
  Endpoint endpoint = Endpoint::Completions;
  std::string id;     // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};

ResponseHead make_head(Endpoint endpoint, const std::string& model);
// usage, with the extensions ttft_ms, queue_ms and prompt_computed_fraction.
nlohmann::json usage_json(const GenerationResult& r);
nlohmann::json completion_json(const ResponseHead& h, const std::string& text, const GenerationResult& r);
// One streamed chunk carrying `text` (first_chat_chunk: the chat delta also carries the role).
nlohmann::json chunk_json(const ResponseHead& h, const std::string& text, bool first_chat_chunk);
// The last chunk: empty delta, finish_reason and usage.
nlohmann::json final_chunk_json(const ResponseHead& h, const GenerationResult& r);
// stream_options.include_usage: a chunk with no choices and the usage.
nlohmann::json usage_chunk_json(const ResponseHead& h, const GenerationResult& r);

// "data: {json}\n\n". Invalid UTF-8 in generated text becomes U+FFFD instead of an exception.
std::string sse_event(const nlohmann::json& j);
std::string dump(const nlohmann::json& j);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

}  // namespace lazyllm::server
