// Stop strings over streamed text: nothing of a stop string is ever emitted, text that only
// looked like the start of one is released, and the text before the stop is kept whole.
#include <gtest/gtest.h>

#include "server/stop_matcher.h"

namespace lazyllm::server {
namespace {

// Feeds the pieces one by one; returns everything emitted (flush included unless stopped).
std::string run(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) {
    out += m.feed(p);
    if (m.stopped()) return out;
  }
  return out + m.flush();
}

TEST(ServerStop, StopSplitAcrossPieces) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.feed("abc E"), "abc ");  // "E" might begin "END": held back
  EXPECT_EQ(m.feed("N"), "");
  EXPECT_EQ(m.feed("Dxyz"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.flush(), "");
}

TEST(ServerStop, FalseStartIsReleased) {
  StopMatcher m({"END"});
  EXPECT_EQ(run(m, {"E", "N", "d", "!"}), "ENd!");
  EXPECT_FALSE(m.stopped());
}

TEST(ServerStop, EarliestOfSeveral) {
  StopMatcher m({"world", "lo w"});
  EXPECT_EQ(run(m, {"hel", "lo world"}), "hel");
  EXPECT_TRUE(m.stopped());
}

TEST(ServerStop, NoStopsPassesThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.feed("abc"), "abc");
  EXPECT_EQ(m.flush(), "");
}

TEST(ServerStop, MultiByteStop) {
  StopMatcher m({"\xC3\xA9t\xC3\xA9"});  // "été"
  EXPECT_EQ(run(m, {"l'\xC3\xA9", "t", "\xC3\xA9 chaud"}), "l'");
}

TEST(ServerStop, StopAtVeryStart) {
  StopMatcher m({"\n"});
  EXPECT_EQ(run(m, {"\nabc"}), "");
  EXPECT_TRUE(m.stopped());
}

}  // namespace
}  // namespace lazyllm::server
