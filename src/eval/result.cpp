#include "eval/result.h"

#include "lazyllm/error.h"

namespace lazyllm::eval {

nlohmann::json to_json(const SampleResult& r) {
  return {{"index", r.index},
          {"id", r.id},
          {"dataset", r.dataset},
          {"schedule", r.schedule},
          {"score", r.score},
          {"ttft_ms", r.ttft_ms},
          {"computed_fraction", r.computed_fraction},
          {"prompt_tokens", r.prompt_tokens},
          {"truncated", r.truncated},
          {"generated_tokens", r.generated_tokens},
          {"prediction", r.prediction}};
}

SampleResult result_from_json(const nlohmann::json& j, const std::string& where) {
  try {
    SampleResult r;
    r.index = j.at("index").get<int>();
    r.id = j.at("id").get<std::string>();
    r.dataset = j.at("dataset").get<std::string>();
    r.schedule = j.at("schedule").get<std::string>();
    r.score = j.at("score").get<double>();
    r.ttft_ms = j.at("ttft_ms").get<double>();
    r.computed_fraction = j.at("computed_fraction").get<double>();
    r.prompt_tokens = j.at("prompt_tokens").get<int>();
    r.truncated = j.at("truncated").get<bool>();
    r.generated_tokens = j.at("generated_tokens").get<int>();
    r.prediction = j.at("prediction").get<std::string>();
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": not a sample record (" + e.what() + ")");
  }
}

}  // namespace lazyllm::eval
