// Subcommands of the `lazyllm` tool. Each adds itself to the app and runs through the library API.
#pragma once

#include <CLI/CLI.hpp>

namespace lazyllm::cli {

// Each returns the subcommand it registered; its callback sets `exit_code`.
void add_run_command(CLI::App& app, int& exit_code);
void add_tokenize_command(CLI::App& app, int& exit_code);
void add_info_command(CLI::App& app, int& exit_code);
void add_gen_model_command(CLI::App& app, int& exit_code);
void add_bench_command(CLI::App& app, int& exit_code);
void add_agree_command(CLI::App& app, int& exit_code);
void add_serve_command(CLI::App& app, int& exit_code);
void add_eval_command(CLI::App& app, int& exit_code);
void add_calibrate_command(CLI::App& app, int& exit_code);

}  // namespace lazyllm::cli
