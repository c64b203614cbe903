#include "prune/saved_schedule.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "util/file_identity.h"

namespace lazyllm {

std::string saved_schedule_path(const std::string& model_path) { return model_path + ".lazy.json"; }

void set_model_identity(SavedSchedule& s, const std::string& model_path) {
  const nlohmann::json id = file_identity(model_path, false);
  s.model_file = std::filesystem::path(model_path).filename().string();
  s.model_bytes = id.at("bytes").get<int64_t>();
  s.model_hash = id.at("fnv1a").get<std::string>();
}

void write_saved_schedule(const std::string& path, const SavedSchedule& s) {
  const nlohmann::json j = {
      {"format", kSavedScheduleFormat},
      {"schedule", s.schedule},
      {"n_layers", s.n_layers},
      {"model", {{"file", s.model_file}, {"bytes", s.model_bytes}, {"fnv1a", s.model_hash}}},
      {"data", {{"file", s.data_file}, {"bytes", s.data_bytes}, {"fnv1a", s.data_hash}}},
      {"samples", s.samples},
      {"score", s.score},
      {"baseline_score", s.baseline_score},
      {"speedup", s.speedup},
      {"computed_fraction", s.computed_fraction},
      {"goal", s.goal},
      {"device", s.device},
      {"date", s.date},
  };
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << j.dump(2) << "\n";
    if (!out.flush()) {
      std::remove(tmp.c_str());
      throw Error("cannot write '" + tmp + "'");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error("cannot write '" + path + "': " + ec.message());
  }
}

SavedSchedule read_saved_schedule(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read '" + path + "'");
  const std::string text(std::istreambuf_iterator<char>(in), {});
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw Error("'" + path + "' is not a JSON object");
  try {
    if (j.at("format").get<std::string>() != kSavedScheduleFormat)
      throw Error("'" + path + "' has format '" + j.at("format").get<std::string>() + "', not '" +
                  std::string(kSavedScheduleFormat) + "'");
    SavedSchedule s;
    s.schedule = j.at("schedule").get<std::string>();
    s.n_layers = j.at("n_layers").get<int>();
    const auto& m = j.at("model");
    s.model_file = m.at("file").get<std::string>();
    s.model_bytes = m.at("bytes").get<int64_t>();
    s.model_hash = m.at("fnv1a").get<std::string>();
    const auto& d = j.at("data");
    s.data_file = d.at("file").get<std::string>();
    s.data_bytes = d.at("bytes").get<int64_t>();
    s.data_hash = d.at("fnv1a").get<std::string>();
    s.samples = j.at("samples").get<int>();
    s.score = j.at("score").get<double>();
    s.baseline_score = j.at("baseline_score").get<double>();
    s.speedup = j.at("speedup").get<double>();
    s.computed_fraction = j.at("computed_fraction").get<double>();
    s.goal = j.at("goal").get<std::string>();
    s.device = j.at("device").get<std::string>();
    s.date = j.at("date").get<std::string>();
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + path + "' is not a saved schedule (" + e.what() + ")");
  }
}

SavedScheduleLookup find_saved_schedule(const std::string& model_path, int n_layers) {
  SavedScheduleLookup r;
  r.path = saved_schedule_path(model_path);
  std::error_code ec;
  if (!std::filesystem::exists(r.path, ec)) return r;
  try {
    SavedSchedule s = read_saved_schedule(r.path);
    SavedSchedule now;
    set_model_identity(now, model_path);
    if (now.model_bytes != s.model_bytes || now.model_hash != s.model_hash) {
      r.problem = "it was calibrated for another model file (" + s.model_file + ", " +
                  std::to_string(s.model_bytes) + " bytes, hash " + s.model_hash + "; this one: " +
                  std::to_string(now.model_bytes) + " bytes, hash " + now.model_hash + ")";
      return r;
    }
    if (s.n_layers != n_layers) {
      r.problem = "it was calibrated for " + std::to_string(s.n_layers) + " layers, the model has " +
                  std::to_string(n_layers);
      return r;
    }
    r.schedule = PruneSchedule::parse(s.schedule, n_layers);
    if (r.schedule.selection != PruneSelection::kLazy) {
      r.problem = "its schedule '" + s.schedule + "' is an ablation, not a LazyLLM schedule";
      r.schedule = {};
      return r;
    }
    r.saved = std::move(s);
  } catch (const Error& e) {
    r.problem = e.what();
    r.schedule = {};
  }
  return r;
}

}  // namespace lazyllm
