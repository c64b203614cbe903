// The one exception type the library throws for bad input (files, prompts, settings).
#pragma once

#include <stdexcept>
#include <string>

namespace lazyllm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace lazyllm
