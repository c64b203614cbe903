#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <sstream>
#include <string>

#include "lazyllm/lazyllm.h"

namespace lazyllm {
namespace {

double parse_number(std::string_view s, std::string_view spec) {
  // std::from_chars for double is in GCC 12's libstdc++.
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty())
    throw Error("invalid prune schedule '" + std::string(spec) + "': '" + std::string(s) + "' is not a number");
  return v;
}

// Reads an optional "MODE:" prefix (a word, not a number) off `rest` into s.selection/s.seed.
void parse_selection(std::string_view& rest, std::string_view spec, PruneSchedule& s) {
  if (rest.empty() || !std::isalpha(static_cast<unsigned char>(rest[0]))) return;
  const size_t colon = rest.find(':');
  const std::string_view word = rest.substr(0, colon);
  const size_t at = word.find('@');
  const std::string_view mode = word.substr(0, at);
  if (mode == "lazy") s.selection = PruneSelection::kLazy;
  else if (mode == "reselect") s.decode = LazyDecode::kReselect;
  else if (mode == "complete") s.decode = LazyDecode::kComplete;
  else if (mode == "static") s.selection = PruneSelection::kStatic;
  else if (mode == "random") s.selection = PruneSelection::kRandom;
  else
    throw Error("invalid prune schedule '" + std::string(spec) + "': unknown selection '" + std::string(mode) +
                "' (lazy, reselect, reselect@N, complete, static, random or random@SEED)");
  if (at != std::string_view::npos) {
    const std::string_view arg = word.substr(at + 1);
    const char* end = arg.data() + arg.size();
    if (s.decode == LazyDecode::kReselect) {
      auto [p, ec] = std::from_chars(arg.data(), end, s.revive_budget);
      if (arg.empty() || ec != std::errc() || p != end || s.revive_budget < 0)
        throw Error("invalid prune schedule '" + std::string(spec) + "': '" + std::string(word) +
                    "' (reselect@N: N the most tokens revived a step, an integer >= 0)");
    } else {
      auto [p, ec] = std::from_chars(arg.data(), end, s.seed);
      if (s.selection != PruneSelection::kRandom || arg.empty() || ec != std::errc() || p != end)
        throw Error("invalid prune schedule '" + std::string(spec) + "': '" + std::string(word) +
                    "' (only random takes a seed, random@SEED, and reselect a budget, reselect@N)");
    }
  }
  rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
}

}  // namespace

PruneSchedule PruneSchedule::parse(std::string_view spec, int n_layers) {
  PruneSchedule s;
  std::string_view rest = spec;
  parse_selection(rest, spec, s);
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    if (comma != std::string_view::npos && rest.empty())
      throw Error("invalid prune schedule '" + std::string(spec) + "': trailing comma");
    size_t colon = item.find(':');
    if (colon == std::string_view::npos)
      throw Error("invalid prune schedule '" + std::string(spec) + "': expected LAYER:KEEP, got '" + std::string(item) + "'");
    double layer = parse_number(item.substr(0, colon), spec);
    double keep = parse_number(item.substr(colon + 1), spec);
    int l;
    const bool fractional = layer > 0 && layer < 1;
    if (fractional) {
      l = static_cast<int>(std::lround(layer * n_layers));  // a fraction of depth
    } else if (layer == std::floor(layer) && layer >= 1 && layer < n_layers) {
      l = static_cast<int>(layer);
    } else {
      throw Error("invalid prune schedule '" + std::string(spec) + "': layer " + std::string(item.substr(0, colon)) +
                  " must be an index in [1, " + std::to_string(n_layers - 1) + "] or a fraction of depth in (0, 1)");
    }
    l = std::clamp(l, 1, std::max(1, n_layers - 1));
    if (!(keep > 0 && keep <= 1))
      throw Error("invalid prune schedule '" + std::string(spec) + "': keep fraction " +
                  std::string(item.substr(colon + 1)) + " must be in (0, 1]");
    if (n_layers < 2) throw Error("a model with one layer cannot be pruned");
    auto it = std::find_if(s.points.begin(), s.points.end(), [&](const PrunePoint& p) { return p.layer == l; });
    if (it == s.points.end()) {
      s.points.push_back({l, keep});
    } else if (fractional) {
      // On a shallow model two fractions of depth can land on one layer: prune there by both.
      it->keep *= keep;
      if (!(it->keep > 0))
        throw Error("invalid prune schedule '" + std::string(spec) + "': the keep fractions that land on layer " +
                    std::to_string(l) + " multiply to 0");
    } else {
      throw Error("invalid prune schedule '" + std::string(spec) + "': layer " + std::to_string(l) + " appears twice");
    }
  }
  if (s.points.empty()) throw Error("invalid prune schedule: empty");
  std::sort(s.points.begin(), s.points.end(), [](const PrunePoint& a, const PrunePoint& b) { return a.layer < b.layer; });
  return s;
}

PruneSchedule PruneSchedule::default_for(int n_layers) { return parse(kDefaultSpec, n_layers); }

std::vector<double> PruneSchedule::keep_per_layer(int n_layers) const {
  std::vector<double> k(n_layers, 1.0);
  for (const auto& p : points)
    if (p.layer >= 0 && p.layer < n_layers) k[p.layer] = p.keep;
  return k;
}

std::string PruneSchedule::to_string() const {
  std::ostringstream o;
  if (decode == LazyDecode::kReselect)
    o << "reselect" << (revive_budget >= 0 ? "@" + std::to_string(revive_budget) : "") << ":";
  if (decode == LazyDecode::kComplete) o << "complete:";
  if (selection == PruneSelection::kStatic) o << "static:";
  if (selection == PruneSelection::kRandom) o << "random" << (seed ? "@" + std::to_string(seed) : "") << ":";
  for (size_t i = 0; i < points.size(); ++i) {
    // Shortest form that reads back as the same double, so to_string() parses back exactly.
    char keep[32];
    const auto r = std::to_chars(keep, keep + sizeof keep, points[i].keep);
    o << (i ? "," : "") << points[i].layer << ":" << std::string_view(keep, r.ptr - keep);
  }
  return o.str();
}

}  // namespace lazyllm
