// lazyllm info: what a model file holds, and the CPU kernels that would run it.
#include <cstdio>

#include "commands.h"
#include "common.h"

namespace lazyllm::cli {

void add_info_command(CLI::App& app, int& exit_code) {
  auto model = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("info", "Describe a model file");
  cmd->add_option("-m,--model", *model, "GGUF model file")->required();
  cmd->callback([model, &exit_code] {
    std::fputs(Model::load(*model)->describe().c_str(), stdout);
    std::fputs(describe(cpu_kernels()).c_str(), stdout);
    exit_code = 0;
  });
}

}  // namespace lazyllm::cli
