// LongBench's per-dataset settings, transcribed from THUDM/LongBench (MIT licence):
// prompts from config/dataset2prompt.json (typos such as "asconcisely" kept: they are the
// benchmark's prompts), generation lengths from config/dataset2maxlen.json, metrics from
// eval.py's dataset2metric, and the first-line rule of eval.py's scorer.
#include <array>

#include "eval/datasets.h"

namespace lazyllm::eval {
namespace {

struct Entry {
  std::string_view name;
  Metric metric;
  int max_new_tokens;
  bool first_line_only;
  std::string_view prompt_template;
};

constexpr std::array kLongBench = {
    Entry{"narrativeqa", Metric::kQaF1, 128, false,
          "You are given a story, which can be either a novel or a movie script, and a question. Answer the question asconcisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nStory: {context}\n\nNow, answer the question based on the story asconcisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:"},
    Entry{"qasper", Metric::kQaF1, 128, false,
          "You are given a scientific article and a question. Answer the question as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation.\n\nArticle: {context}\n\n Answer the question based on the above article as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:"},
    Entry{"multifieldqa_en", Metric::kQaF1, 64, false,
          "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on the above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    Entry{"multifieldqa_zh", Metric::kQaF1Zh, 64, false,
          "阅读以下文字并用中文简短回答：\n\n{context}\n\n现在请基于上面的文章回答下面的问题，只告诉我答案，不要输出任何其他字词。\n\n问题：{input}\n回答："},
    Entry{"hotpotqa", Metric::kQaF1, 32, false,
          "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    Entry{"2wikimqa", Metric::kQaF1, 32, false,
          "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    Entry{"musique", Metric::kQaF1, 32, false,
          "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    Entry{"dureader", Metric::kRougeLZh, 128, false,
          "请基于给定的文章回答下述问题。\n\n文章：{context}\n\n请基于上述文章回答下面的问题。\n\n问题：{input}\n回答："},
    Entry{"gov_report", Metric::kRougeL, 512, false,
          "You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n{context}\n\nNow, write a one-page summary of the report.\n\nSummary:"},
    Entry{"qmsum", Metric::kRougeL, 512, false,
          "You are given a meeting transcript and a query containing a question or instruction. Answer the query in one or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting transcript in one or more sentences.\n\nQuery: {input}\nAnswer:"},
    Entry{"multi_news", Metric::kRougeL, 512, false,
          "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\nNow, write a one-page summary of all the news.\n\nSummary:"},
    Entry{"vcsum", Metric::kRougeLZh, 512, false,
          "下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n{context}\n\n会议总结："},
    Entry{"trec", Metric::kClassification, 64, true,
          "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}"},
    Entry{"triviaqa", Metric::kQaF1, 32, true,
          "Answer the question based on the given passage. Only give me the answer and do not output any other words. The following are some examples.\n\n{context}\n\n{input}"},
    Entry{"samsum", Metric::kRougeL, 128, true,
          "Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}"},
    Entry{"lsht", Metric::kClassification, 64, true,
          "请判断给定新闻的类别，下面是一些例子。\n\n{context}\n{input}"},
    Entry{"passage_count", Metric::kCount, 32, false,
          "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully read these paragraphs and determine how many unique paragraphs there are after removing duplicates. In other words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final count of unique paragraphs after removing duplicates. The output format should only contain the number, such as 1, 2, 3, and so on.\n\nThe final answer is: "},
    Entry{"passage_retrieval_en", Metric::kRetrieval, 32, false,
          "Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of the paragraph that the abstract is from. The answer format must be like \"Paragraph 1\", \"Paragraph 2\", etc.\n\nThe answer is: "},
    Entry{"passage_retrieval_zh", Metric::kRetrievalZh, 32, false,
          "以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n{context}\n\n下面是一个摘要\n\n{input}\n\n请输入摘要所属段落的编号。答案格式必须是\"段落1\"，\"段落2\"等格式\n\n答案是："},
    Entry{"lcc", Metric::kCodeSim, 64, false,
          "Please complete the code given below. \n{context}Next line of code:\n"},
    Entry{"repobench-p", Metric::kCodeSim, 64, false,
          "Please complete the code given below. \n{context}{input}Next line of code:\n"},
};

}  // namespace

std::optional<DatasetConfig> longbench_config(std::string_view dataset) {
  for (const Entry& e : kLongBench)
    if (e.name == dataset)
      return DatasetConfig{std::string(e.prompt_template), e.metric, e.max_new_tokens, e.first_line_only, true};
  return std::nullopt;
}

}  // namespace lazyllm::eval
