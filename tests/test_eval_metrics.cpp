// LongBench's metrics, normalization, templates and truncation against hand-computed values.
// Where a value comes from a quirk of LongBench's Python scorer (the rouge package's word sets,
// difflib's autojunk, the classification list edited while iterated), the comment derives it;
// each was also checked against the Python scorer (metrics.py with rouge 1.0.1 and difflib).
#include <gtest/gtest.h>

#include "eval/datasets.h"
#include "eval/metrics.h"
#include "eval/text.h"
#include "eval/truncate.h"
#include "lazyllm/error.h"

namespace lazyllm::eval {
namespace {

TEST(EvalNormalize, LowercasePunctuationArticlesWhitespace) {
  EXPECT_EQ(normalize_answer("The Quick, brown fox -- an ANT's theory!"), "quick brown fox ants theory");
  EXPECT_EQ(normalize_answer("  A\tcat\n\nthe  end "), "cat end");
  EXPECT_EQ(normalize_answer("Theatre anthem another"), "theatre anthem another");  // whole words only
  EXPECT_EQ(normalize_answer("the"), "");
  EXPECT_EQ(normalize_answer("Ünïcode ÉCOLE"), "ünïcode école");  // Unicode lower-casing
  EXPECT_EQ(normalize_answer("a\xC2\xA0" "b"), "b");             // no-break space is whitespace
}

TEST(EvalMetrics, QaF1) {
  // "eiffel tower in paris" vs "eiffel tower": 2 common, P = 2/4, R = 2/2, F1 = 2/3.
  EXPECT_DOUBLE_EQ(qa_f1_score("The Eiffel Tower, in Paris!", "eiffel tower"), 2.0 / 3);
  // "theatre and anthem" vs "theatre anthem": P = 2/3, R = 1, F1 = 0.8.
  EXPECT_DOUBLE_EQ(qa_f1_score("Theatre and the anthem", "theatre anthem"), 0.8);
  // Multiset overlap: {cat, cat, dog} & {cat, dog, dog} = {cat, dog}: P = R = 2/3.
  EXPECT_DOUBLE_EQ(qa_f1_score("cat cat dog", "cat dog dog"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(qa_f1_score("", "x"), 0.0);
  EXPECT_DOUBLE_EQ(qa_f1_score("The answer.", "answer"), 1.0);
}

TEST(EvalMetrics, QaF1ChineseByCharacters) {
  // Characters 北 京 vs 北 京 市 (punctuation dropped): P = 1, R = 2/3, F1 = 0.8.
  EXPECT_NEAR(qa_f1_zh_score("北京。", "北京市"), 0.8, 1e-12);
}

TEST(EvalMetrics, RougeL) {
  // One sentence each; word sets ref {a, c, e}, hyp {a, b, c, d}; LCS a c: R = 2/3, P = 2/4.
  EXPECT_NEAR(rouge_l_score("a b c d", "a c e"), 2 * (2.0 / 3 * 0.5) / (2.0 / 3 + 0.5 + 1e-8), 1e-12);
  // Word sets, not counts: every word of "y x y x" is in an LCS with "x y x y": F = 1 (- 1e-8).
  EXPECT_NEAR(rouge_l_score("x y x y", "y x y x"), 0.999999995, 1e-12);
  // "Hello. " splits into "Hello" and " ", whose one word is empty: P = 1/2, R = 1.
  EXPECT_NEAR(rouge_l_score("Hello. ", "Hello"), 0.6666666622222223, 1e-12);
  // Summary level over sentences, LCS union per reference sentence (value of the Python scorer):
  // ref {the, cat, was, on, mat, happy} (6), hyp {the, cat, sat, on, mat, it, was, happy} (8),
  // union of LCS words over both reference sentences = all 6 -> R = 1, P = 6/8.
  EXPECT_NEAR(rouge_l_score("the cat sat on the mat. it was happy", "the cat was on the mat. the cat was happy"),
              0.8571428522448981, 1e-12);
  EXPECT_DOUBLE_EQ(rouge_l_score("...", "x"), 0.0);  // no sentence: the package raises, LongBench scores 0
  EXPECT_DOUBLE_EQ(rouge_l_score("", "x"), 0.0);
}

TEST(EvalMetrics, RougeLChineseByCharacters) {
  // Words 北 京 市 vs 北 京: LCS 北 京, R = 1, P = 2/3.
  EXPECT_NEAR(rouge_l_zh_score("北京市", "北京"), 2 * (2.0 / 3) / (2.0 / 3 + 1 + 1e-8), 1e-12);
  // Punctuation is kept (unlike qa_f1_zh): "，" is a word of the prediction only.
  EXPECT_NEAR(rouge_l_zh_score("北，京", "北京"), 2 * (2.0 / 3) / (2.0 / 3 + 1 + 1e-8), 1e-12);
}

TEST(EvalMetrics, Classification) {
  const std::vector<std::string> classes = {"LOC", "Entity", "Entity type", "Human"};
  EXPECT_DOUBLE_EQ(classification_score("This is a location question about LOC", "LOC", classes), 1.0);
  // "Entity" is part of the true "Entity type", so it is dropped: 1 match left.
  EXPECT_DOUBLE_EQ(classification_score("Entity and Entity type", "Entity type", classes), 1.0);
  EXPECT_DOUBLE_EQ(classification_score("Human and Entity", "Human", {"LOC", "Entity", "Human"}), 0.5);
  EXPECT_DOUBLE_EQ(classification_score("nothing", "LOC", classes), 0.0);
  // Matches [A, A B, A B C, B]. "A" is removed, which makes Python's loop skip "A B" (it stays);
  // "A B C" is the truth itself; "B" is removed: [A B, A B C] -> 1/2 (not 1, as intended).
  EXPECT_DOUBLE_EQ(classification_score("A B C", "A B C", {"A", "A B", "A B C", "B"}), 0.5);
  EXPECT_DOUBLE_EQ(classification_score("A B", "A B C", {"A", "A B", "A B C", "B"}), 0.0);
}

TEST(EvalMetrics, RetrievalAndCount) {
  // Numbers 12 and 2; one equals the answer's paragraph: 1/2.
  EXPECT_DOUBLE_EQ(retrieval_score("Paragraph 12, or paragraph 2", "Paragraph 12"), 0.5);
  EXPECT_DOUBLE_EQ(retrieval_score("Paragraph 7", "Paragraph 7"), 1.0);
  EXPECT_DOUBLE_EQ(retrieval_score("no idea", "Paragraph 7"), 0.0);
  EXPECT_DOUBLE_EQ(retrieval_score("段落3", "段落3", true), 1.0);
  EXPECT_THROW(retrieval_score("1", "seven"), Error);
  // Numbers 3, 4, 3: two of three equal "3".
  EXPECT_DOUBLE_EQ(count_score("There are 3 or 4, maybe 3", "3"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(count_score("none", "3"), 0.0);
  EXPECT_DOUBLE_EQ(count_score("03", "3"), 0.0);  // compared as strings
}

TEST(EvalMetrics, CodeSimIsDifflibRatio) {
  EXPECT_EQ(fuzz_ratio("abcd", "bcde"), 75);  // block "bcd": 2*3/8
  // The first line "    return a + b" (16) holds all of "return a + b" (12): 2*12/28 = 85.7 -> 86.
  EXPECT_DOUBLE_EQ(code_sim_score("    return a + b\n", "return a + b"), 0.86);
  // Comment lines are skipped; "x = foo(1)" vs "x = foo(2)": 2*9/20 = 90.
  EXPECT_DOUBLE_EQ(code_sim_score("# comment\nx = foo(1)", "x = foo(2)"), 0.90);
  EXPECT_DOUBLE_EQ(code_sim_score("```python\n// c\n", "abc"), 0.0);
  // Longest block first, then nothing on either side: "kitten" is lost (50, not an LCS's 57).
  EXPECT_EQ(fuzz_ratio("kitten sitting", "sitting kitten"), 50);
  EXPECT_EQ(fuzz_ratio("same", "same"), 100);
  EXPECT_EQ(fuzz_ratio("", "x"), 0);
  // autojunk: in a 220-character b every letter is "popular" and cannot seed a match; only the
  // extension from the range start matches, here the whole 19-character prefix: 2*19/239 -> 16.
  std::string b;
  for (int i = 0; i < 5; ++i) b += "the quick brown fox jumps over the lazy dog ";
  EXPECT_EQ(fuzz_ratio("the quick brown fox", b), 16);
  std::string a4;
  for (int i = 0; i < 55; ++i) a4 += "aaaa";
  EXPECT_EQ(fuzz_ratio("aaaa", a4), 4);
  EXPECT_EQ(fuzz_ratio(std::string(150, 'x') + std::string(80, 'a'), std::string(120, 'a') + std::string(100, 'x')), 0);
}

TEST(EvalMetrics, SampleScoreBestAnswerAndFirstLine) {
  EXPECT_DOUBLE_EQ(sample_score(Metric::kQaF1, "Paris", {"London", "paris"}, {}, false), 1.0);
  // First line only (trec, triviaqa, samsum, lsht): the second line does not count.
  EXPECT_DOUBLE_EQ(sample_score(Metric::kQaF1, "\n\nRome\nParis", {"Paris"}, {}, true), 0.0);
  EXPECT_DOUBLE_EQ(sample_score(Metric::kQaF1, "\n\nParis\nRome", {"Paris"}, {}, true), 1.0);
  for (const char* name : {"qa_f1", "qa_f1_zh", "rouge_l", "rouge_l_zh", "classification", "retrieval",
                           "retrieval_zh", "count", "code_sim"})
    EXPECT_EQ(metric_name(*metric_from_name(name)), name);
  EXPECT_FALSE(metric_from_name("f1"));
}

TEST(EvalText, Utf8RoundTripAndInvalidBytes) {
  EXPECT_EQ(to_utf8(to_code_points("héllo 北京 🙂")), "héllo 北京 🙂");
  EXPECT_EQ(to_code_points("a\xFF" "b"), std::u32string(U"a\uFFFDb"));
  EXPECT_EQ(to_code_points("\xE5\x8C"), std::u32string(U"\uFFFD\uFFFD"));  // cut-off character
  EXPECT_EQ(first_line("\n\nfirst\nsecond"), "first");
}

TEST(EvalDatasets, LongBenchTableAndGenericMapping) {
  const DatasetConfigs none;
  const DatasetConfig hq = none.lookup("hotpotqa");
  EXPECT_TRUE(hq.longbench);
  EXPECT_EQ(hq.metric, Metric::kQaF1);
  EXPECT_EQ(hq.max_new_tokens, 32);
  EXPECT_EQ(none.lookup("gov_report").metric, Metric::kRougeL);
  EXPECT_EQ(none.lookup("gov_report").max_new_tokens, 512);
  EXPECT_EQ(none.lookup("lcc").metric, Metric::kCodeSim);
  EXPECT_EQ(none.lookup("passage_retrieval_en").metric, Metric::kRetrieval);
  EXPECT_TRUE(none.lookup("samsum").first_line_only);
  EXPECT_FALSE(none.lookup("qasper").first_line_only);
  // Not in LongBench: generic template, metric by name.
  const DatasetConfig g = none.lookup("synthetic_needle");
  EXPECT_FALSE(g.longbench);
  EXPECT_EQ(g.prompt_template, kGenericTemplate);
  EXPECT_EQ(g.metric, Metric::kQaF1);
  EXPECT_EQ(none.lookup("kv_count").metric, Metric::kCount);
  EXPECT_EQ(none.lookup("synthetic_summary").metric, Metric::kRougeL);
  EXPECT_EQ(none.lookup("para_retrieval").metric, Metric::kRetrieval);
  EXPECT_EQ(none.lookup("code_complete").metric, Metric::kCodeSim);
  EXPECT_EQ(none.lookup("topic_class").metric, Metric::kClassification);
}

TEST(EvalDatasets, ConfigOverridesFieldByField) {
  auto c = DatasetConfigs::from_json_text(
      R"({"needle": {"template": "Doc: {context}\nQ: {input}\nA:", "max_new_tokens": 8},
          "hotpotqa": {"metric": "rouge_l"}})",
      "cfg");
  EXPECT_EQ(c.lookup("needle").prompt_template, "Doc: {context}\nQ: {input}\nA:");
  EXPECT_EQ(c.lookup("needle").max_new_tokens, 8);
  EXPECT_EQ(c.lookup("needle").metric, Metric::kQaF1);
  EXPECT_EQ(c.lookup("hotpotqa").metric, Metric::kRougeL);
  EXPECT_EQ(c.lookup("hotpotqa").max_new_tokens, 32);  // still LongBench's
  for (const char* bad : {"[]", "{\"x\": 1}", "{\"x\": {\"metric\": \"f1\"}}", "{\"x\": {\"template\": \"{question}\"}}",
                          "{\"x\": {\"max_new_tokens\": 0}}", "{\"x\": {\"colour\": 1}}", "{\"x\": {\"template\": \"{\"}}", "{"})
    EXPECT_THROW(DatasetConfigs::from_json_text(bad, "cfg"), Error) << bad;
}

TEST(EvalTemplates, RenderLikePythonFormat) {
  Sample s;
  s.dataset = "d";
  s.context = "CTX {input}";  // values are inserted verbatim, never formatted again
  s.input = "Q?";
  EXPECT_EQ(render_prompt(kGenericTemplate, s), "CTX {input}\n\nQ?");
  EXPECT_EQ(render_prompt("{{literal}} {context}|{input}}}", s), "{literal} CTX {input}|Q?}");
  EXPECT_EQ(render_prompt(DatasetConfigs{}.lookup("trec").prompt_template, s),
            "Please determine the type of the question below. Here are some examples of questions.\n\nCTX {input}\nQ?");
  EXPECT_THROW(render_prompt("{_id}", s), Error);
  EXPECT_THROW(render_prompt("a } b", s), Error);
}

// The prompt through its document: what a server's prefix cache would hold of it.
TEST(EvalTemplates, RenderThroughTheDocument) {
  Sample s;
  s.dataset = "d";
  s.context = "CTX";
  s.input = "Q?";
  EXPECT_EQ(render_through_context(kGenericTemplate, s), "CTX");
  EXPECT_EQ(render_through_context("Read: {context}. Again: {context}\n{input}", s), "Read: CTX. Again: CTX");
  EXPECT_EQ(render_through_context("{input} {context}", s), "");  // the question first: no shared document
  EXPECT_EQ(render_through_context("just {input}", s), "");
  EXPECT_EQ(render_through_context("{context}|{input}|{context}", s), "CTX");  // the question is not shared
  EXPECT_THROW(render_through_context("{_id}", s), Error);
}

// The first k tokens of an uncut prompt of 10 after a cut to 6: [0, 3) and [7, 10) stay.
TEST(EvalTruncate, APrefixThroughTheCut) {
  EXPECT_EQ(prefix_after_cut(2, 10, 10), 2u);  // not cut
  EXPECT_EQ(prefix_after_cut(2, 10, 6), 2u);
  EXPECT_EQ(prefix_after_cut(3, 10, 6), 3u);
  EXPECT_EQ(prefix_after_cut(5, 10, 6), 3u);  // ends in the dropped middle
  EXPECT_EQ(prefix_after_cut(7, 10, 6), 3u);
  EXPECT_EQ(prefix_after_cut(8, 10, 6), 4u);
  EXPECT_EQ(prefix_after_cut(10, 10, 6), 6u);
}

TEST(EvalTruncate, KeepsFirstAndLastHalf) {
  std::vector<int32_t> t(10);
  for (int i = 0; i < 10; ++i) t[i] = i;
  EXPECT_EQ(truncate_middle(t, 10), t);
  EXPECT_EQ(truncate_middle(t, 20), t);
  EXPECT_EQ(truncate_middle(t, 6), (std::vector<int32_t>{0, 1, 2, 7, 8, 9}));
  EXPECT_EQ(truncate_middle(t, 5), (std::vector<int32_t>{0, 1, 8, 9}));  // int(5 / 2) = 2 each side
  EXPECT_EQ(truncate_middle(t, 2), (std::vector<int32_t>{0, 9}));
  EXPECT_THROW(truncate_middle(t, 1), Error);
}

}  // namespace
}  // namespace lazyllm::eval
