// Text helpers that behave like the Python string operations LongBench's metrics use, so scores
// match its scorer: code points, str.split() whitespace, str.lower(), string.punctuation.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lazyllm::eval {

// UTF-8 to code points; each invalid byte becomes U+FFFD (as Python's errors="replace").
std::u32string to_code_points(std::string_view s);
std::string to_utf8(std::u32string_view s);

// Python's str.isspace() set of characters.
bool is_py_space(char32_t c);
// str.split() with no argument: runs of whitespace separate, no empty pieces.
std::vector<std::string> split_whitespace(std::string_view s);
// Simple Unicode lower-casing (the C.UTF-8 locale's towlower; ASCII when that is unavailable).
std::u32string lower(std::u32string_view s);
char32_t lower(char32_t c);
// Letters, digits and underscore: the characters of a regex \w word.
bool is_word_char(char32_t c);
// One of Python's string.punctuation: !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
bool is_ascii_punct(char32_t c);

// s with leading `c` characters removed (Python's s.lstrip(c)).
std::string_view lstrip(std::string_view s, char c);
// The first line of s after leading newlines (LongBench's prediction.lstrip('\n').split('\n')[0]).
std::string_view first_line(std::string_view s);

}  // namespace lazyllm::eval
