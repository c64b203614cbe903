// libFuzzer target: the LazyLLM schedule spec parser, which reads `--prune` and every HTTP
// request's `lazy.prune`. Any text, for models of several depths, must give either a schedule
// that keeps the documented bounds or a lazyllm::Error — never another exception, a crash or a
// sanitizer report. An accepted schedule must also survive a round trip: to_string() parses back
// to the same schedule.
//
// Input: the spec as is (seeds: fuzz/corpus/schedule_fuzz/*.txt).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_util.h"
#include "lazyllm/lazyllm.h"

using namespace lazyllm;

namespace {

constexpr int kDepths[] = {1, 2, 6, 32, 80};

bool same(const PruneSchedule& a, const PruneSchedule& b) {
  if (a.selection != b.selection || a.decode != b.decode || a.seed != b.seed || a.revive_budget != b.revive_budget ||
      a.points.size() != b.points.size())
    return false;
  for (size_t i = 0; i < a.points.size(); ++i)
    if (a.points[i].layer != b.points[i].layer || a.points[i].keep != b.points[i].keep) return false;
  return true;
}

void check(std::string_view spec, int n_layers) {
  PruneSchedule s;
  try {
    s = PruneSchedule::parse(spec, n_layers);
  } catch (const Error&) {
    return;
  }
  LAZYLLM_FUZZ_CHECK(!s.points.empty());
  LAZYLLM_FUZZ_CHECK(s.revive_budget >= -1);
  LAZYLLM_FUZZ_CHECK(s.revive_budget == -1 || s.decode == LazyDecode::kReselect);
  LAZYLLM_FUZZ_CHECK(s.seed == 0 || s.selection == PruneSelection::kRandom);
  int previous = 0;
  for (const PrunePoint& p : s.points) {
    LAZYLLM_FUZZ_CHECK(p.layer > previous && p.layer < n_layers);  // sorted, distinct, in [1, n_layers)
    LAZYLLM_FUZZ_CHECK(p.keep > 0 && p.keep <= 1);
    previous = p.layer;
  }
  const auto keep = s.keep_per_layer(n_layers);
  LAZYLLM_FUZZ_CHECK(static_cast<int>(keep.size()) == n_layers && keep[0] == 1.0);
  try {
    LAZYLLM_FUZZ_CHECK(same(PruneSchedule::parse(s.to_string(), n_layers), s));
  } catch (const Error&) {
    lazyllm::fuzz::fail("to_string() of an accepted schedule does not parse back");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;  // specs are short; longer inputs only slow the search
  const std::string_view spec(reinterpret_cast<const char*>(data), size);
  for (int n_layers : kDepths) check(spec, n_layers);
  return 0;
}
