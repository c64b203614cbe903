// The per-sample log that makes an evaluation resumable: a JSONL file whose first line says
// which run it belongs to (model, data, schedules, settings) and whose other lines are
// SampleResults, appended and flushed as they are made.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "eval/result.h"

namespace lazyllm::eval {

class SampleLog {
 public:
  // Opens `path`, creating it with `run` as its header, or reads it back when it exists: the
  // stored header's "check" part must equal run["check"], else Error saying what differs. A
  // last line cut off by an interruption is dropped.
  SampleLog(std::string path, const nlohmann::json& run);

  const std::vector<SampleResult>& records() const { return records_; }
  bool has(int index, const std::string& schedule) const { return done_.count({index, schedule}) > 0; }
  void append(const SampleResult& r);

 private:
  std::string path_;
  std::vector<SampleResult> records_;
  std::set<std::pair<int, std::string>> done_;
};

}  // namespace lazyllm::eval
