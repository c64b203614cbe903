// Errors reported to HTTP clients as OpenAI-style error objects:
// {"error": {"message", "type", "param", "code"}} with an HTTP status.
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace lazyllm::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {},
           std::string type = "invalid_request_error")
      : std::runtime_error(message), status_(status), param_(std::move(param)), code_(std::move(code)),
        type_(std::move(type)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  const std::string& type() const { return type_; }

 private:
  int status_;
  std::string param_, code_, type_;
};

// The error object; empty param/code become JSON null as in OpenAI's responses.
inline nlohmann::json error_json(const std::string& message, const std::string& type, const std::string& param,
                                 const std::string& code) {
  auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
  return {{"error", {{"message", message}, {"type", type}, {"param", or_null(param)}, {"code", or_null(code)}}}};
}

inline nlohmann::json error_json(const ApiError& e) { return error_json(e.what(), e.type(), e.param(), e.code()); }

}  // namespace lazyllm::server
