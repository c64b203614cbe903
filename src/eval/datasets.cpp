#include "eval/datasets.h"

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "lazyllm/error.h"

namespace lazyllm::eval {
namespace {

// Walks the template: literal text to `text`, each {name} to `field`. Throws on bad braces.
template <typename Text, typename Field>
void walk_template(std::string_view t, const std::string& where, Text text, Field field) {
  size_t i = 0;
  while (i < t.size()) {
    const char c = t[i];
    if ((c == '{' || c == '}') && i + 1 < t.size() && t[i + 1] == c) {
      text(std::string_view(&t[i], 1));
      i += 2;
    } else if (c == '{') {
      const size_t close = t.find('}', i);
      if (close == std::string_view::npos) throw Error(where + ": unmatched '{' in prompt template");
      const std::string_view name = t.substr(i + 1, close - i - 1);
      if (name != "context" && name != "input")
        throw Error(where + ": prompt template placeholder '{" + std::string(name) +
                    "}' is not {context} or {input} (write {{ and }} for literal braces)");
      field(name);
      i = close + 1;
    } else if (c == '}') {
      throw Error(where + ": unmatched '}' in prompt template (write }} for a literal brace)");
    } else {
      const size_t next = t.find_first_of("{}", i);
      const size_t end = next == std::string_view::npos ? t.size() : next;
      text(t.substr(i, end - i));
      i = end;
    }
  }
}

}  // namespace

Metric metric_for_name(std::string_view d) {
  auto has = [&](std::string_view s) { return d.find(s) != std::string_view::npos; };
  if (has("count")) return Metric::kCount;
  if (has("retrieval")) return Metric::kRetrieval;
  if (has("summ")) return Metric::kRougeL;
  if (has("code")) return Metric::kCodeSim;
  if (has("class")) return Metric::kClassification;
  return Metric::kQaF1;
}

void check_template(std::string_view t, const std::string& where) {
  walk_template(t, where, [](std::string_view) {}, [](std::string_view) {});
}

std::string render_prompt(std::string_view t, const Sample& s) {
  std::string out;
  out.reserve(t.size() + s.context.size() + s.input.size());
  walk_template(
      t, "dataset '" + s.dataset + "'", [&](std::string_view text) { out += text; },
      [&](std::string_view name) { out += name == "context" ? s.context : s.input; });
  return out;
}

std::string render_through_context(std::string_view t, const Sample& s) {
  std::string out;
  size_t end = 0;
  bool input_seen = false;
  walk_template(
      t, "dataset '" + s.dataset + "'", [&](std::string_view text) { out += text; },
      [&](std::string_view name) {
        input_seen = input_seen || name != "context";
        out += name == "context" ? s.context : s.input;
        if (!input_seen) end = out.size();
      });
  out.resize(end);
  return out;
}

DatasetConfigs DatasetConfigs::from_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read dataset config '" + path + "'");
  return from_json_text(std::string(std::istreambuf_iterator<char>(in), {}), path);
}

DatasetConfigs DatasetConfigs::from_json_text(const std::string& text, const std::string& where) {
  using nlohmann::json;
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(where + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw Error(where + ": expected an object of dataset names");
  DatasetConfigs c;
  for (const auto& [name, v] : j.items()) {
    const std::string at = where + ": dataset '" + name + "'";
    if (!v.is_object()) throw Error(at + ": expected an object");
    Override o;
    for (const auto& [key, val] : v.items()) {
      if (key == "template") {
        if (!val.is_string()) throw Error(at + ": 'template' must be a string");
        o.prompt_template = val.get<std::string>();
        check_template(*o.prompt_template, at);
      } else if (key == "metric") {
        if (!val.is_string()) throw Error(at + ": 'metric' must be a string");
        o.metric = metric_from_name(val.get<std::string>());
        if (!o.metric) throw Error(at + ": unknown metric '" + val.get<std::string>() + "' (" + metric_names() + ")");
      } else if (key == "max_new_tokens") {
        if (!val.is_number_integer() || val.get<int64_t>() < 1 || val.get<int64_t>() > 100000)
          throw Error(at + ": 'max_new_tokens' must be an integer in [1, 100000]");
        o.max_new_tokens = val.get<int>();
      } else if (key == "first_line_only") {
        if (!val.is_boolean()) throw Error(at + ": 'first_line_only' must be true or false");
        o.first_line_only = val.get<bool>();
      } else {
        throw Error(at + ": unknown key '" + key + "' (template, metric, max_new_tokens, first_line_only)");
      }
    }
    c.overrides_[name] = o;
  }
  return c;
}

DatasetConfig DatasetConfigs::lookup(const std::string& dataset) const {
  DatasetConfig c;
  if (auto lb = longbench_config(dataset)) {
    c = *lb;
  } else {
    c.prompt_template = std::string(kGenericTemplate);
    c.metric = metric_for_name(dataset);
  }
  if (auto it = overrides_.find(dataset); it != overrides_.end()) {
    const Override& o = it->second;
    if (o.prompt_template) c.prompt_template = *o.prompt_template;
    if (o.metric) c.metric = *o.metric;
    if (o.max_new_tokens) c.max_new_tokens = *o.max_new_tokens;
    if (o.first_line_only) c.first_line_only = *o.first_line_only;
  }
  return c;
}

}  // namespace lazyllm::eval
