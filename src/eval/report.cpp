#include "eval/report.h"

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "lazyllm/error.h"

extern char** environ;

namespace lazyllm::eval {
namespace {

struct Sums {
  int n = 0;
  double score = 0, ttft = 0, computed = 0;
  void add(const SampleResult& r) { ++n, score += r.score, ttft += r.ttft_ms, computed += r.computed_fraction; }
  Aggregate mean() const {
    Aggregate a;
    a.samples = n;
    if (n) a.score = 100 * score / n, a.ttft_ms = ttft / n, a.computed_fraction = computed / n;
    return a;
  }
};

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// gnuplot string literal in single quotes (a quote is doubled).
std::string gp_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

}  // namespace

Report summarize(const std::vector<SampleResult>& results, const std::vector<std::string>& schedule_names) {
  Report rep;
  std::map<std::string, std::map<std::string, Sums>> sums;  // schedule -> dataset -> sums
  std::map<std::string, Sums> all;
  for (const auto& r : results) {
    if (std::find(rep.datasets.begin(), rep.datasets.end(), r.dataset) == rep.datasets.end())
      rep.datasets.push_back(r.dataset);
    sums[r.schedule][r.dataset].add(r);
    all[r.schedule].add(r);
  }
  for (const auto& name : schedule_names) {
    ScheduleReport s;
    s.name = name;
    double score_sum = 0;
    for (const auto& d : rep.datasets) {
      s.datasets[d] = sums[name][d].mean();
      score_sum += s.datasets[d].score;
    }
    s.overall = all[name].mean();
    if (!rep.datasets.empty()) s.overall.score = score_sum / rep.datasets.size();
    rep.schedules.push_back(std::move(s));
  }
  if (rep.schedules.empty()) return rep;
  const ScheduleReport& base = rep.schedules.front();
  for (auto& s : rep.schedules) {
    auto ratio = [](double b, double t) { return t > 0 ? b / t : 0.0; };
    s.overall.speedup = ratio(base.overall.ttft_ms, s.overall.ttft_ms);
    for (auto& [d, a] : s.datasets) a.speedup = ratio(base.datasets.at(d).ttft_ms, a.ttft_ms);
  }
  return rep;
}

nlohmann::json to_json(const Report& r) {
  auto agg = [](const Aggregate& a) {
    return nlohmann::json{{"samples", a.samples},
                          {"score", a.score},
                          {"ttft_ms", a.ttft_ms},
                          {"computed_fraction", a.computed_fraction},
                          {"speedup", a.speedup}};
  };
  nlohmann::json results = nlohmann::json::array();
  for (const auto& s : r.schedules) {
    nlohmann::json j = agg(s.overall);
    j["name"] = s.name;
    nlohmann::json ds = nlohmann::json::object();
    for (const auto& d : r.datasets) ds[d] = agg(s.datasets.at(d));
    j["datasets"] = ds;
    results.push_back(j);
  }
  return {{"datasets", r.datasets}, {"results", results}};
}

std::string to_markdown(const Report& r) {
  std::ostringstream o;
  o << "| schedule | score | TTFT (ms) | speedup | computed |\n| --- | ---: | ---: | ---: | ---: |\n";
  for (const auto& s : r.schedules)
    o << "| " << s.name << " | " << fixed(s.overall.score, 2) << " | " << fixed(s.overall.ttft_ms, 1) << " | "
      << fixed(s.overall.speedup, 2) << "x | " << fixed(100 * s.overall.computed_fraction, 1) << "% |\n";
  o << "\n| dataset | samples | schedule | score | TTFT (ms) | speedup | computed |\n"
       "| --- | ---: | --- | ---: | ---: | ---: | ---: |\n";
  for (const auto& d : r.datasets)
    for (const auto& s : r.schedules) {
      const Aggregate& a = s.datasets.at(d);
      o << "| " << d << " | " << a.samples << " | " << s.name << " | " << fixed(a.score, 2) << " | "
        << fixed(a.ttft_ms, 1) << " | " << fixed(a.speedup, 2) << "x | " << fixed(100 * a.computed_fraction, 1)
        << "% |\n";
    }
  return o.str();
}

void write_plot(const Report& r, const std::string& png_path, const std::string& title) {
  namespace fs = std::filesystem;
  const fs::path png(png_path);
  const fs::path dat = fs::path(png).replace_extension(".dat"), gp = fs::path(png).replace_extension(".gp");
  {
    // One data block per schedule (blocks are separated by two blank lines), so each gets its
    // own colour and legend entry.
    std::ofstream d(dat);
    for (const auto& s : r.schedules)
      d << "# " << s.name << "\n" << fixed(s.overall.speedup, 4) << " " << fixed(s.overall.score, 4) << "\n\n\n";
    if (!d.flush()) throw Error("cannot write '" + dat.string() + "'");
  }
  {
    std::ofstream g(gp);
    g << "set terminal pngcairo size 1100,600 noenhanced\n"
      << "set output " << gp_quote(png.string()) << "\n"
      << "set title " << gp_quote(title) << "\n"
      << "set xlabel 'TTFT speedup over the baseline (x)'\n"
      << "set ylabel 'score (0-100)'\n"
      << "set grid\nset key outside right top\nset yrange [0:105]\n"  // scores are 0-100
      << "set offsets graph 0.1, graph 0.1, 0, 0\n"
      << "plot";
    // The marker tells the selection (circle: baseline/LazyLLM, square: static, triangle:
    // random); colours cycle, so two schedules never share both.
    for (size_t i = 0; i < r.schedules.size(); ++i) {
      const std::string& name = r.schedules[i].name;
      const int pt = name.starts_with("static:") ? 5 : name.starts_with("random") ? 9 : 7;
      g << (i ? ", \\\n    " : " ") << (i ? "''" : gp_quote(dat.string())) << " index " << i
        << " using 1:2 with points linecolor " << i + 1 << " pointtype " << pt << " pointsize 2 title "
        << gp_quote(name);
    }
    g << "\n";
    if (!g.flush()) throw Error("cannot write '" + gp.string() + "'");
  }
  // gnuplot's own messages (such as "empty y range" when every score is 0) go to plot.log.
  const std::string script = gp.string(), log = fs::path(png).replace_extension(".log").string();
  char* argv[] = {const_cast<char*>("gnuplot"), const_cast<char*>(script.c_str()), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid;
  const int rc = posix_spawnp(&pid, "gnuplot", &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw Error("cannot run gnuplot for the plot (install it: apt-get install gnuplot-nox)");
  int status = 0;
  waitpid(pid, &status, 0);
  // posix_spawnp reports a missing program as exit status 127 from the child.
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    throw Error("cannot run gnuplot for the plot (install it: apt-get install gnuplot-nox)");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error("gnuplot failed to draw '" + png_path + "' (see " + log + ")");
}

}  // namespace lazyllm::eval
