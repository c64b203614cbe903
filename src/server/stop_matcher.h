// Stop strings over streamed text: text that could be the start of a stop string is held back
// until it is known not to be one, so a stop string never reaches the client, even in part.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lazyllm::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Adds generated text; returns what may be sent now. Once a stop string is seen, stopped()
  // is true and the returned text ends just before it.
  std::string feed(std::string_view text);
  // At the end of generation: the text still held back (none after a stop).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace lazyllm::server
