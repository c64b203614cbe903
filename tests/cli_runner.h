// Runs the `lazyllm` binary with arguments and captures its exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "test_util.h"

namespace lazyllm::test {

struct CliResult {
  int code;
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// env: shell variable assignments for the command, e.g. "LAZYLLM_CPU_TARGET=avx2".
inline CliResult run_cli(const std::string& args, const std::string& env = "") {
  const auto out = temp_path("cli.out"), err = temp_path("cli.err");
  const std::string cmd = (env.empty() ? "" : env + " ") + std::string(LAZYLLM_CLI_PATH) + " " + args + " > " +
                          out.string() + " 2> " + err.string() + " < /dev/null";
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

}  // namespace lazyllm::test
