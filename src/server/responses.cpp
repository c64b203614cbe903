#include "server/responses.h"

#include <atomic>
#include <cstdio>
#include <ctime>
#include <random>

namespace lazyllm::server {
namespace {

using nlohmann::json;

std::string new_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s-%016llx%06llx", prefix, static_cast<unsigned long long>(salt),
                static_cast<unsigned long long>(++counter & 0xFFFFFF));
  return buf;
}

json base(const ResponseHead& h, bool chunk) {
  const bool chat = h.endpoint == Endpoint::Chat;
  return {{"id", h.id},
          {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
          {"created", h.created},
          {"model", h.model},
          {"system_fingerprint", "lazyllm"}};
}

json choice(const ResponseHead& h, const std::string& text, json finish_reason, bool chunk, bool with_role) {
  json c = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", std::move(finish_reason)}};
  if (h.endpoint == Endpoint::Completions) {
    c["text"] = text;
  } else if (chunk) {
    c["delta"] = json::object();
    if (with_role) c["delta"]["role"] = "assistant";
    if (!text.empty() || with_role) c["delta"]["content"] = text;
  } else {
    c["message"] = {{"role", "assistant"}, {"content", text}};
  }
  return c;
}

}  // namespace

ResponseHead make_head(Endpoint endpoint, const std::string& model) {
  return {endpoint, new_id(endpoint == Endpoint::Chat ? "chatcmpl" : "cmpl"), static_cast<int64_t>(std::time(nullptr)),
          model};
}

json usage_json(const GenerationResult& r) {
  json u = {{"prompt_tokens", r.prompt_tokens},
            {"completion_tokens", r.completion_tokens},
            {"total_tokens", r.prompt_tokens + r.completion_tokens},
            {"ttft_ms", r.ttft_ms},
            {"queue_ms", r.queue_ms},
            {"prompt_computed_fraction", r.prompt_computed_fraction}};
  // As OpenAI reports prompt caching: the prompt tokens that were not computed again.
  u["prompt_tokens_details"] = {{"cached_tokens", r.cached_tokens}};
  if (r.timed_out) u["timed_out"] = true;
  return u;
}

json completion_json(const ResponseHead& h, const std::string& text, const GenerationResult& r) {
  json j = base(h, false);
  j["choices"] = json::array({choice(h, text, r.finish_reason, false, false)});
  j["usage"] = usage_json(r);
  return j;
}

json chunk_json(const ResponseHead& h, const std::string& text, bool first_chat_chunk) {
  json j = base(h, true);
  j["choices"] = json::array({choice(h, text, nullptr, true, first_chat_chunk)});
  return j;
}

json final_chunk_json(const ResponseHead& h, const GenerationResult& r) {
  json j = base(h, true);
  j["choices"] = json::array({choice(h, "", r.finish_reason, true, false)});
  j["usage"] = usage_json(r);
  return j;
}

json usage_chunk_json(const ResponseHead& h, const GenerationResult& r) {
  json j = base(h, true);
  j["choices"] = json::array();
  j["usage"] = usage_json(r);
  return j;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& j) { return "data: " + dump(j) + "\n\n"; }

}  // namespace lazyllm::server
