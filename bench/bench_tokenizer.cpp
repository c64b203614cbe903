// Benchmark of prompt tokenization: loads a GGUF file's vocabulary and encodes one text R times.
//
// Built by CMake as build/lazyllm_bench_tokenizer.
// Run: build/lazyllm_bench_tokenizer MODEL.gguf [TEXT_FILE | --words N] [--reps R] [--special]
//   TEXT_FILE  the text to encode (default: --words 3000, a fixed pseudo-random English text)
//   --reps R   timed encodes (default 50), after one warm-up
//   --special  parse control tokens written in the text
// Prints one JSON line; "hash" (FNV-1a of the token ids) tells whether two builds' outputs agree.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "lazyllm/lazyllm.h"
#include "lazyllm/tokenizer.h"

namespace {

// Words drawn with a fixed seed (mt19937's sequence is the same everywhere), with some
// punctuation, digits and line breaks, so the text looks like prose to the tokenizer.
std::string generated_text(int n_words) {
  static const char* const kWords[] = {
      "the",         "of",          "and",        "to",        "in",      "a",          "is",
      "that",        "for",         "it",         "as",        "was",     "with",       "be",
      "by",          "on",          "not",        "he",        "this",    "are",        "or",
      "his",         "from",        "at",         "which",     "but",     "have",       "an",
      "had",         "they",        "you",        "were",      "their",   "one",        "all",
      "we",          "can",         "her",        "has",       "there",   "been",       "if",
      "more",        "when",        "will",       "would",     "who",     "so",         "no",
      "tokenizer",   "vocabulary",  "inference",  "attention", "prompt",  "language",   "model",
      "generation",  "probability", "sentence",   "paragraph", "quickly", "remarkable", "understanding",
      "engineering", "performance", "throughput", "Paris",     "Monday",  "2026",       "42",
      "café",        "naïve",       "über",       "日本語",    "—",       "(see",       "above)",
      "e.g.",        "i.e."};
  constexpr size_t kN = sizeof kWords / sizeof kWords[0];
  std::mt19937 rng(12345);
  std::string s;
  for (int i = 0; i < n_words; ++i) {
    if (i > 0) s += rng() % 23 == 0 ? "\n" : " ";
    s += kWords[rng() % kN];
    if (rng() % 11 == 0) s += rng() % 2 ? "," : ".";
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL.gguf [TEXT_FILE | --words N] [--reps R] [--special]\n", argv[0]);
    return 2;
  }
  const std::string model = argv[1];
  std::string text_file;
  int words = 3000, reps = 50;
  bool special = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--words" && i + 1 < argc) words = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--special") special = true;
    else text_file = a;
  }
  std::string text;
  if (!text_file.empty()) {
    std::ifstream in(text_file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read %s\n", text_file.c_str());
      return 1;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  } else {
    text = generated_text(words);
  }

  try {
    const auto tok = lazyllm::Model::load_tokenizer(model);
    std::vector<int32_t> ids = tok->encode(text, tok->add_bos(), special);  // warm-up
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      ids = tok->encode(text, tok->add_bos(), special);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const double median = reps % 2 ? ms[reps / 2] : (ms[reps / 2 - 1] + ms[reps / 2]) / 2;
    uint64_t hash = 14695981039346656037ULL;
    for (int32_t id : ids) hash = (hash ^ static_cast<uint32_t>(id)) * 1099511628211ULL;
    nlohmann::json j;
    j["model"] = model.substr(model.find_last_of('/') + 1);
    j["kind"] = std::string(tok->kind_name());
    j["bytes"] = text.size(), j["tokens"] = ids.size(), j["reps"] = reps;
    j["ms_median"] = median, j["ms_min"] = ms[0], j["tokens_per_s"] = ids.size() / (median / 1e3);
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
    j["hash"] = hex;
    std::printf("%s\n", j.dump().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
