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

// The command that starts the CLI: the built binary, or LAZYLLM_TEST_CLI where set (a shell
// command line; scripts/check-arm64.sh runs the arm64 binary through qemu-aarch64 with it, as the
// tests themselves run under qemu-user, which cannot start another arm64 program on its own).
inline std::string cli_command() {
  const char* cli = std::getenv("LAZYLLM_TEST_CLI");
  return cli && *cli ? std::string(cli) : std::string(LAZYLLM_CLI_PATH);
}

// env: shell variable assignments for the command, e.g. "LAZYLLM_CPU_TARGET=avx2".
inline CliResult run_cli(const std::string& args, const std::string& env = "") {
  const auto out = temp_path("cli.out"), err = temp_path("cli.err");
  const std::string cmd = (env.empty() ? "" : env + " ") + cli_command() + " " + args + " > " + out.string() + " 2> " +
                          err.string() + " < /dev/null";
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

}  // namespace lazyllm::test
