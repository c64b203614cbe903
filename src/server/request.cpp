#include "server/request.h"

#include <cmath>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace lazyllm::server {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  throw ApiError(400, message, param, code);
}

// Numbers: JSON integers only (5.0 and 1e3 are rejected for integer fields), within [lo, hi].
int64_t get_int(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) bad(name, "'" + name + "' must be an integer", "invalid_type");
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    bad(name, "'" + name + "' is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    bad(name, "'" + name + "' is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

double get_number(const json& v, const std::string& name, double lo, double hi) {
  if (!v.is_number()) bad(name, "'" + name + "' must be a number", "invalid_type");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    char range[64];
    std::snprintf(range, sizeof range, "[%g, %g]", lo, hi);
    bad(name, "'" + name + "' is out of range " + range);
  }
  return x;
}

bool get_bool(const json& v, const std::string& name) {
  if (!v.is_boolean()) bad(name, "'" + name + "' must be a boolean", "invalid_type");
  return v.get<bool>();
}

const std::string& get_string(const json& v, const std::string& name) {
  if (!v.is_string()) bad(name, "'" + name + "' must be a string", "invalid_type");
  return v.get_ref<const std::string&>();
}

// Message content: a string, or an array of {"type": "text", "text": ...} parts (joined).
std::string get_content(const json& v, const std::string& name) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) bad(name, "'" + name + "' must be a string or an array of text parts", "invalid_type");
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& part = v[i];
    const std::string pname = name + "[" + std::to_string(i) + "]";
    if (!part.is_object()) bad(pname, "'" + pname + "' must be an object", "invalid_type");
    for (const auto& [k, x] : part.items())
      if (k != "type" && k != "text") bad(pname + "." + k, "unknown field '" + k + "' in '" + pname + "'", "unknown_parameter");
    if (!part.contains("type") || get_string(part["type"], pname + ".type") != "text")
      bad(pname + ".type", "only text content parts are supported");
    if (!part.contains("text")) bad(pname + ".text", "'" + pname + ".text' is required", "missing_parameter");
    out += get_string(part["text"], pname + ".text");
  }
  return out;
}

std::vector<ChatMessage> get_messages(const json& v, const RequestLimits& limits) {
  if (!v.is_array()) bad("messages", "'messages' must be an array", "invalid_type");
  if (v.empty()) bad("messages", "'messages' must contain at least one message");
  if (v.size() > static_cast<size_t>(limits.max_messages))
    bad("messages", "'messages' has more than " + std::to_string(limits.max_messages) + " messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& m = v[i];
    const std::string name = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(name, "'" + name + "' must be an object", "invalid_type");
    ChatMessage msg;
    bool have_content = false;
    for (const auto& [k, x] : m.items()) {
      if (k == "role") {
        msg.role = get_string(x, name + ".role");
        if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for system
        if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
          bad(name + ".role", "'" + name + ".role' must be system, user or assistant");
      } else if (k == "content") {
        msg.content = get_content(x, name + ".content");
        have_content = true;
      } else if (k == "name") {
        get_string(x, name + ".name");
      } else {
        bad(name + "." + k, "unknown field '" + k + "' in '" + name + "'", "unknown_parameter");
      }
    }
    if (msg.role.empty()) bad(name + ".role", "'" + name + ".role' is required", "missing_parameter");
    if (!have_content) bad(name + ".content", "'" + name + ".content' is required", "missing_parameter");
    out.push_back(std::move(msg));
  }
  return out;
}

std::vector<std::string> get_stop(const json& v, const RequestLimits& limits) {
  std::vector<std::string> out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (v.size() > static_cast<size_t>(limits.max_stop))
      bad("stop", "'stop' may hold at most " + std::to_string(limits.max_stop) + " strings");
    for (size_t i = 0; i < v.size(); ++i) out.push_back(get_string(v[i], "stop[" + std::to_string(i) + "]"));
  } else {
    bad("stop", "'stop' must be a string or an array of strings", "invalid_type");
  }
  for (const auto& s : out) {
    if (s.empty()) bad("stop", "stop strings must not be empty");
    if (s.size() > limits.max_stop_bytes)
      bad("stop", "stop strings may be at most " + std::to_string(limits.max_stop_bytes) + " bytes");
  }
  return out;
}

LazyOverride get_lazy(const json& v) {
  if (v.is_boolean()) return {v.get<bool>(), {}};
  if (!v.is_object()) bad("lazy", "'lazy' must be an object {\"enabled\": bool, \"prune\": string}", "invalid_type");
  LazyOverride out;
  for (const auto& [k, x] : v.items()) {
    if (k == "enabled") out.enabled = get_bool(x, "lazy.enabled");
    else if (k == "prune") out.prune = get_string(x, "lazy.prune");
    else bad("lazy." + k, "unknown field '" + k + "' in 'lazy'", "unknown_parameter");
  }
  if (!out.enabled && !out.prune.empty()) bad("lazy.prune", "'lazy.prune' given with 'lazy.enabled' false");
  return out;
}

std::string get_prompt(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array() && v.size() == 1 && v[0].is_string()) return v[0].get<std::string>();
  if (v.is_array() && v.size() > 1) bad("prompt", "only one prompt per request is supported");
  bad("prompt", "'prompt' must be a string (or an array of one string)", "invalid_type");
}

}  // namespace

CompletionRequest parse_request(std::string_view body, Endpoint endpoint, const RequestLimits& limits) {
  json j;
  try {
    j = json::parse(body);  // also rejects invalid UTF-8 inside strings
  } catch (const json::exception& e) {  // syntax errors, and numbers too large for a double
    throw ApiError(400, std::string("invalid JSON body: ") + e.what(), "", "invalid_json");
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object", "", "invalid_json");

  CompletionRequest r;
  r.endpoint = endpoint;
  const bool chat = endpoint == Endpoint::Chat;
  // OpenAI-compatible defaults (not the CLI's): plain temperature-1 sampling.
  r.sampling.temperature = 1.0f;
  r.sampling.top_p = 1.0f;
  r.sampling.top_k = 0;
  r.sampling.min_p = 0.0f;
  r.sampling.repeat_penalty = 1.0f;
  bool have_seed = false, have_input = false, have_stream_options = false;
  for (const auto& [key, v] : j.items()) {
    if (v.is_null() && key != "prompt" && key != "messages") continue;  // null = absent, as OpenAI
    if (key == "model") {
      r.model = get_string(v, key);
    } else if (key == "prompt" && !chat) {
      r.prompt = get_prompt(v);
      have_input = true;
    } else if (key == "messages" && chat) {
      r.messages = get_messages(v, limits);
      have_input = true;
    } else if (key == "max_tokens" || (chat && key == "max_completion_tokens")) {
      r.max_tokens = static_cast<int>(get_int(v, key, 1, limits.max_tokens));
    } else if (key == "temperature") {
      r.sampling.temperature = static_cast<float>(get_number(v, key, 0.0, 2.0));
    } else if (key == "top_p") {
      r.sampling.top_p = static_cast<float>(get_number(v, key, 0.0, 1.0));
      if (r.sampling.top_p <= 0.0f) bad(key, "'top_p' must be greater than 0");
    } else if (key == "top_k") {
      r.sampling.top_k = static_cast<int>(get_int(v, key, 0, 1 << 30));
    } else if (key == "min_p") {
      r.sampling.min_p = static_cast<float>(get_number(v, key, 0.0, 1.0));
    } else if (key == "seed") {
      r.sampling.seed = static_cast<uint64_t>(get_int(v, key, INT64_MIN, INT64_MAX));
      have_seed = true;
    } else if (key == "stop") {
      r.stop = get_stop(v, limits);
    } else if (key == "stream") {
      r.stream = get_bool(v, key);
    } else if (key == "stream_options") {
      if (!v.is_object()) bad(key, "'stream_options' must be an object", "invalid_type");
      for (const auto& [k, x] : v.items()) {
        if (k != "include_usage") bad("stream_options." + k, "unknown field '" + k + "' in 'stream_options'", "unknown_parameter");
        r.include_usage = get_bool(x, "stream_options.include_usage");
      }
      have_stream_options = true;
    } else if (key == "n") {
      get_int(v, key, 1, 1);
    } else if (key == "user") {
      get_string(v, key);
    } else if (key == "lazy") {
      r.lazy = get_lazy(v);
    } else {
      bad(key, "unknown or unsupported parameter '" + key + "'", "unknown_parameter");
    }
  }
  const char* input = chat ? "messages" : "prompt";
  if (!have_input) bad(input, std::string("'") + input + "' is required", "missing_parameter");
  if (have_stream_options && !r.stream) bad("stream_options", "'stream_options' is only allowed with 'stream': true");
  if (!have_seed) r.sampling.seed = std::random_device{}() * 0x100000001ull ^ std::random_device{}();
  return r;
}

}  // namespace lazyllm::server
