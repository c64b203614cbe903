#include "eval/metrics.h"

#include <algorithm>
#include <map>

#include "eval/text.h"
#include "lazyllm/error.h"

namespace lazyllm::eval {
namespace {

constexpr std::pair<Metric, std::string_view> kNames[] = {
    {Metric::kQaF1, "qa_f1"},
    {Metric::kQaF1Zh, "qa_f1_zh"},
    {Metric::kRougeL, "rouge_l"},
    {Metric::kRougeLZh, "rouge_l_zh"},
    {Metric::kClassification, "classification"},
    {Metric::kRetrieval, "retrieval"},
    {Metric::kRetrievalZh, "retrieval_zh"},
    {Metric::kCount, "count"},
    {Metric::kCodeSim, "code_sim"},
};

// F1 of two token multisets (collections.Counter intersection).
double f1_tokens(const std::vector<std::string>& pred, const std::vector<std::string>& truth) {
  std::map<std::string, int> counts;
  for (const auto& t : truth) ++counts[t];
  int same = 0;
  for (const auto& t : pred) {
    auto it = counts.find(t);
    if (it != counts.end() && it->second > 0) --it->second, ++same;
  }
  if (same == 0) return 0.0;
  const double precision = 1.0 * same / pred.size(), recall = 1.0 * same / truth.size();
  return 2 * precision * recall / (precision + recall);
}

// Chinese punctuation that LongBench's normalize_zh_answer removes besides string.punctuation.
bool is_zh_punct(char32_t c) {
  static const std::u32string kCn =
      U"！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏.";
  return is_ascii_punct(c) || kCn.find(c) != std::u32string::npos;
}

// Characters as tokens, lowercased, without whitespace and punctuation (jieba words would be
// runs of these characters; this is the documented approximation).
std::vector<std::string> zh_char_tokens(std::string_view s) {
  std::vector<std::string> out;
  for (char32_t c : to_code_points(s)) {
    c = lower(c);
    if (is_py_space(c) || is_zh_punct(c)) continue;
    out.push_back(to_utf8(std::u32string(1, c)));
  }
  return out;
}

// re.findall(r"\d+", s) with ASCII digits.
std::vector<std::string> find_numbers(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] >= '0' && s[i] <= '9') {
      size_t j = i;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
      out.emplace_back(s.substr(i, j - i));
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

double share_equal(const std::vector<std::string>& numbers, std::string_view want) {
  if (numbers.empty()) return 0.0;
  const auto right = std::count(numbers.begin(), numbers.end(), want);
  return static_cast<double>(right) / numbers.size();
}

}  // namespace

std::string_view metric_name(Metric m) {
  for (const auto& [k, name] : kNames)
    if (k == m) return name;
  return "?";
}

std::optional<Metric> metric_from_name(std::string_view name) {
  for (const auto& [k, n] : kNames)
    if (n == name) return k;
  return std::nullopt;
}

std::string metric_names() {
  std::string s;
  for (const auto& [k, name] : kNames) s += (s.empty() ? "" : ", ") + std::string(name);
  return s;
}

std::string normalize_answer(std::string_view s) {
  // lower, remove punctuation, remove articles (whole \w runs "a", "an", "the"), fix whitespace.
  std::u32string t;
  for (char32_t c : lower(to_code_points(s)))
    if (!is_ascii_punct(c)) t.push_back(c);
  std::u32string no_articles;
  size_t i = 0;
  while (i < t.size()) {
    if (!is_word_char(t[i])) {
      no_articles.push_back(t[i++]);
      continue;
    }
    size_t j = i;
    while (j < t.size() && is_word_char(t[j])) ++j;
    const std::u32string_view word(t.data() + i, j - i);
    if (word == U"a" || word == U"an" || word == U"the") no_articles.push_back(U' ');
    else no_articles.append(word);
    i = j;
  }
  std::string out;
  for (const auto& w : split_whitespace(to_utf8(no_articles))) out += (out.empty() ? "" : " ") + w;
  return out;
}

double qa_f1_score(std::string_view prediction, std::string_view ground_truth) {
  return f1_tokens(split_whitespace(normalize_answer(prediction)), split_whitespace(normalize_answer(ground_truth)));
}

double qa_f1_zh_score(std::string_view prediction, std::string_view ground_truth) {
  return f1_tokens(zh_char_tokens(prediction), zh_char_tokens(ground_truth));
}

double rouge_l_zh_score(std::string_view prediction, std::string_view ground_truth) {
  // LongBench joins jieba's words with spaces and scores that with ROUGE-L, unnormalized; here
  // every non-space character is a word (punctuation kept: a '.' still ends a sentence).
  auto spaced = [](std::string_view s) {
    std::u32string out;
    for (char32_t c : to_code_points(s)) {
      if (is_py_space(c)) continue;
      if (!out.empty()) out.push_back(U' ');
      out.push_back(c);
    }
    return to_utf8(out);
  };
  return rouge_l_score(spaced(prediction), spaced(ground_truth));
}

double classification_score(std::string_view prediction, std::string_view ground_truth,
                            const std::vector<std::string>& all_classes) {
  std::vector<std::string> matches;
  for (const auto& c : all_classes)
    if (prediction.find(c) != std::string_view::npos) matches.push_back(c);
  // LongBench drops classes that are part of the true class name, removing from the list it
  // iterates over: Python then skips the element after each removal. Reproduced on purpose.
  for (size_t i = 0; i < matches.size(); ++i) {
    const std::string term = matches[i];
    if (ground_truth.find(term) != std::string_view::npos && term != ground_truth)
      matches.erase(std::find(matches.begin(), matches.end(), term));
  }
  if (std::find(matches.begin(), matches.end(), ground_truth) == matches.end()) return 0.0;
  return 1.0 / matches.size();
}

double retrieval_score(std::string_view prediction, std::string_view ground_truth, bool zh) {
  const std::string_view marker = zh ? "段落" : "Paragraph ";
  size_t p = ground_truth.find(marker);
  while (p != std::string_view::npos) {
    const size_t d = p + marker.size();
    if (d < ground_truth.size() && ground_truth[d] >= '0' && ground_truth[d] <= '9') {
      size_t e = d;
      while (e < ground_truth.size() && ground_truth[e] >= '0' && ground_truth[e] <= '9') ++e;
      return share_equal(find_numbers(prediction), ground_truth.substr(d, e - d));
    }
    p = ground_truth.find(marker, p + 1);
  }
  throw Error("retrieval answer '" + std::string(ground_truth) + "' names no paragraph ('" + std::string(marker) +
              "N')");
}

double count_score(std::string_view prediction, std::string_view ground_truth) {
  return share_equal(find_numbers(prediction), ground_truth);
}

double code_sim_score(std::string_view prediction, std::string_view ground_truth) {
  // The first line that is not a comment or a code fence.
  std::string_view rest = lstrip(prediction, '\n'), line;
  while (true) {
    const size_t nl = rest.find('\n');
    const std::string_view l = rest.substr(0, nl);
    if (l.find('`') == std::string_view::npos && l.find('#') == std::string_view::npos &&
        l.find("//") == std::string_view::npos) {
      line = l;
      break;
    }
    if (nl == std::string_view::npos) break;
    rest = rest.substr(nl + 1);
  }
  return fuzz_ratio(line, ground_truth) / 100.0;
}

double score(Metric m, std::string_view prediction, std::string_view ground_truth,
             const std::vector<std::string>& all_classes) {
  switch (m) {
    case Metric::kQaF1: return qa_f1_score(prediction, ground_truth);
    case Metric::kQaF1Zh: return qa_f1_zh_score(prediction, ground_truth);
    case Metric::kRougeL: return rouge_l_score(prediction, ground_truth);
    case Metric::kRougeLZh: return rouge_l_zh_score(prediction, ground_truth);
    case Metric::kClassification: return classification_score(prediction, ground_truth, all_classes);
    case Metric::kRetrieval: return retrieval_score(prediction, ground_truth, false);
    case Metric::kRetrievalZh: return retrieval_score(prediction, ground_truth, true);
    case Metric::kCount: return count_score(prediction, ground_truth);
    case Metric::kCodeSim: return code_sim_score(prediction, ground_truth);
  }
  return 0.0;
}

double sample_score(Metric m, std::string_view prediction, const std::vector<std::string>& answers,
                    const std::vector<std::string>& all_classes, bool first_line_only) {
  if (first_line_only) prediction = first_line(prediction);
  double best = 0.0;
  for (const auto& a : answers) best = std::max(best, score(m, prediction, a, all_classes));
  return best;
}

}  // namespace lazyllm::eval
