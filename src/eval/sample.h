// One evaluation sample in LongBench's JSONL format, and the reader for such files.
#pragma once

#include <string>
#include <vector>

namespace lazyllm::eval {

struct Sample {
  int index = 0;  // 0-based line number among the file's samples (blank lines skipped)
  std::string id;       // _id
  std::string dataset;  // selects the prompt template, metric and generation length
  std::string input;    // the question or instruction (may be empty)
  std::string context;  // the long document
  std::vector<std::string> answers;      // at least one
  std::vector<std::string> all_classes;  // classification datasets only (null elsewhere)
  int length = 0;  // LongBench's word count of the context (informational)
  // Optional (not a LongBench field): the source the sample comes from (a package, a repository,
  // a document collection). Samples of one group are alike, so calibration counts groups, not
  // samples, when it judges how a loss carries over to new data. Empty when absent.
  std::string group;
};

// Reads one JSON object a line with fields input, context, answers, all_classes, length,
// dataset, _id and group (length, all_classes and group may be absent or null). Throws Error
// naming the file, line and field for malformed lines, missing or mistyped fields and an empty
// file.
std::vector<Sample> read_jsonl(const std::string& path);

}  // namespace lazyllm::eval
