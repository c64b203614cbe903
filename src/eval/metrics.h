// LongBench's metrics (THUDM/LongBench metrics.py), re-implemented to give the same numbers.
// Each scores one prediction against one ground truth in [0, 1]; a sample's score is the best
// over its answers. Differences from the Python scorer (see docs/eval.md): the Chinese metrics
// split text into characters instead of jieba words, and \d matches ASCII digits only.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lazyllm::eval {

enum class Metric {
  kQaF1,            // token F1 after normalization (lowercase, no punctuation, no articles)
  kQaF1Zh,          // F1 over characters, Chinese punctuation removed
  kRougeL,          // ROUGE-L F (the `rouge` package: summary level, sentences split at '.')
  kRougeLZh,        // ROUGE-L over characters
  kClassification,  // which of all_classes the prediction names
  kRetrieval,       // the numbers in the prediction that equal the "Paragraph N" of the answer
  kRetrievalZh,     // the same for "段落N"
  kCount,           // the numbers in the prediction that equal the answer
  kCodeSim,         // fuzzywuzzy ratio of the first code line (difflib's matching blocks)
};

// Names as used on the command line and in JSON: qa_f1, qa_f1_zh, rouge_l, rouge_l_zh,
// classification, retrieval, retrieval_zh, count, code_sim.
std::string_view metric_name(Metric m);
std::optional<Metric> metric_from_name(std::string_view name);
std::string metric_names();  // "qa_f1, qa_f1_zh, ..." for error messages

// LongBench's normalize_answer: lowercase, ASCII punctuation removed, articles (a, an, the)
// removed, whitespace collapsed.
std::string normalize_answer(std::string_view s);

double qa_f1_score(std::string_view prediction, std::string_view ground_truth);
double qa_f1_zh_score(std::string_view prediction, std::string_view ground_truth);
double rouge_l_score(std::string_view prediction, std::string_view ground_truth);
double rouge_l_zh_score(std::string_view prediction, std::string_view ground_truth);
double classification_score(std::string_view prediction, std::string_view ground_truth,
                            const std::vector<std::string>& all_classes);
// Throws Error when the ground truth has no paragraph number.
double retrieval_score(std::string_view prediction, std::string_view ground_truth, bool zh = false);
double count_score(std::string_view prediction, std::string_view ground_truth);
double code_sim_score(std::string_view prediction, std::string_view ground_truth);
// fuzzywuzzy's fuzz.ratio (0-100) with difflib's SequenceMatcher, over code points.
int fuzz_ratio(std::string_view a, std::string_view b);

double score(Metric m, std::string_view prediction, std::string_view ground_truth,
             const std::vector<std::string>& all_classes);
// A sample's score: the best over its answers. With `first_line_only`, only the prediction's
// first line counts (LongBench does this for trec, triviaqa, samsum and lsht).
double sample_score(Metric m, std::string_view prediction, const std::vector<std::string>& answers,
                    const std::vector<std::string>& all_classes, bool first_line_only);

}  // namespace lazyllm::eval
