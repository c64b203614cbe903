#include "eval/sample_log.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "lazyllm/error.h"

namespace lazyllm::eval {
namespace {

// The first key of `check` whose value differs between the log and this run.
std::string first_difference(const nlohmann::json& stored, const nlohmann::json& now) {
  for (const auto& [k, v] : now.items())
    if (!stored.contains(k) || stored[k] != v) return k;
  for (const auto& [k, v] : stored.items())
    if (!now.contains(k)) return k;
  return "";
}

}  // namespace

SampleLog::SampleLog(std::string path, const nlohmann::json& run) : path_(std::move(path)) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path_, ec) || fs::file_size(path_, ec) == 0) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("cannot write evaluation log '" + path_ + "'");
    out << run.dump() << '\n';
    if (!out.flush()) throw Error("cannot write evaluation log '" + path_ + "'");
    return;
  }
  std::ifstream in(path_, std::ios::binary);
  if (!in) throw Error("cannot read evaluation log '" + path_ + "'");
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  // Complete lines only: an interrupted write leaves a last line without its newline.
  const size_t complete = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  std::istringstream lines(text.substr(0, complete));
  std::string line;
  int lineno = 0;
  while (std::getline(lines, line)) {
    ++lineno;
    const std::string where = path_ + ":" + std::to_string(lineno);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(where + ": not valid JSON (" + e.what() + "); delete the log to start over");
    }
    if (lineno == 1) {
      if (!j.is_object() || !j.contains("check"))
        throw Error(where + ": not an evaluation log header; delete the file or use another --out");
      const std::string diff = first_difference(j["check"], run.at("check"));
      if (!diff.empty())
        throw Error("evaluation log '" + path_ + "' belongs to a different run (its " + diff + " was " +
                    j["check"].value(diff, nlohmann::json()).dump() + ", now " +
                    run.at("check").value(diff, nlohmann::json()).dump() +
                    "); resume with the same model, data and schedules, or use another --out");
      continue;
    }
    SampleResult r = result_from_json(j, where);
    if (done_.insert({r.index, r.schedule}).second) records_.push_back(std::move(r));
  }
  if (lineno == 0) throw Error("evaluation log '" + path_ + "' has no complete header line; delete it to start over");
  if (complete < text.size()) fs::resize_file(path_, complete);  // drop the cut-off line
}

void SampleLog::append(const SampleResult& r) {
  std::ofstream out(path_, std::ios::binary | std::ios::app);
  out << to_json(r).dump() << '\n';
  if (!out.flush()) throw Error("cannot append to evaluation log '" + path_ + "'");
  done_.insert({r.index, r.schedule});
  records_.push_back(r);
}

}  // namespace lazyllm::eval
