// ROUGE-L as the Python `rouge` package computes it (Rouge().get_scores(avg=True)["rouge-l"]["f"],
// which LongBench's rouge_score returns): summary-level LCS with sentences split at '.', word
// sets rather than counts (its default exclusive=True), and one particular LCS traceback.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "eval/metrics.h"
#include "eval/text.h"

namespace lazyllm::eval {
namespace {

// [" ".join(s.split()) for s in text.split(".") if len(s) > 0], each then split(" ") into words.
// A sentence of only whitespace becomes one empty word, as in Python.
std::vector<std::vector<std::string>> sentences(std::string_view text) {
  std::vector<std::vector<std::string>> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t dot = text.find('.', start);
    if (dot == std::string_view::npos) dot = text.size();
    const std::string_view piece = text.substr(start, dot - start);
    if (!piece.empty()) {
      std::vector<std::string> words = split_whitespace(piece);
      if (words.empty()) words.emplace_back();
      out.push_back(std::move(words));
    }
    start = dot + 1;
  }
  return out;
}

// The words of the LCS of x (reference) and y (candidate), by the package's traceback.
std::vector<std::string> lcs_words(const std::vector<std::string>& x, const std::vector<std::string>& y) {
  const size_t n = x.size(), m = y.size();
  std::vector<int> t((n + 1) * (m + 1), 0);
  auto at = [&](size_t i, size_t j) -> int& { return t[i * (m + 1) + j]; };
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j)
      at(i, j) = x[i - 1] == y[j - 1] ? at(i - 1, j - 1) + 1 : std::max(at(i - 1, j), at(i, j - 1));
  std::vector<std::string> out;
  size_t i = n, j = m;
  while (i > 0 && j > 0) {
    if (x[i - 1] == y[j - 1]) {
      out.push_back(x[i - 1]);
      --i, --j;
    } else if (at(i - 1, j) > at(i, j - 1)) {
      --i;
    } else {
      --j;
    }
  }
  return out;
}

}  // namespace

double rouge_l_score(std::string_view prediction, std::string_view ground_truth) {
  const auto hyp = sentences(prediction), ref = sentences(ground_truth);
  if (hyp.empty() || ref.empty()) return 0.0;  // the package raises; LongBench scores 0
  std::set<std::string> ref_words, hyp_words, lcs_union;
  for (const auto& s : ref) ref_words.insert(s.begin(), s.end());
  for (const auto& s : hyp) hyp_words.insert(s.begin(), s.end());
  for (const auto& r : ref)
    for (const auto& h : hyp)
      for (auto& w : lcs_words(r, h)) lcs_union.insert(std::move(w));
  const double llcs = static_cast<double>(lcs_union.size());
  const double r_lcs = llcs / ref_words.size(), p_lcs = llcs / hyp_words.size();
  return 2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8));
}

}  // namespace lazyllm::eval
