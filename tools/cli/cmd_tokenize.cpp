// lazyllm tokenize: text to token ids (works on vocabulary-only GGUF files).
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "lazyllm/tokenizer.h"

namespace lazyllm::cli {

void add_tokenize_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string model, prompt, file;
    bool no_bos = false, ids = false, special = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text");
  cmd->add_option("-m,--model", a->model, "GGUF model or vocabulary file")->required();
  auto* p = cmd->add_option("-p,--prompt", a->prompt, "Text");
  cmd->add_option("-f,--file", a->file, "Read the text from a file")->excludes(p);
  cmd->add_flag("--no-bos", a->no_bos, "Do not add the BOS token");
  cmd->add_flag("--ids", a->ids, "Print only the ids");
  cmd->add_flag("--special", a->special, "Parse special tokens in the text");
  cmd->callback([a, p, &exit_code] {
    auto tok = Model::load_tokenizer(a->model);
    std::string text = read_prompt(a->prompt, a->file, p->count() > 0);
    std::vector<int32_t> ids = tok->encode(text, !a->no_bos && tok->add_bos(), a->special);
    if (a->ids) {
      std::string line = "[";
      for (size_t i = 0; i < ids.size(); ++i) line += (i ? ", " : "") + std::to_string(ids[i]);
      std::printf("%s]\n", line.c_str());
    } else {
      for (int32_t id : ids) {
        // Control tokens decode to nothing; show their names instead.
        const TokenType type = tok->token_type(id);
        nlohmann::json piece = type == TokenType::Control || type == TokenType::Unknown
                                   ? std::string(tok->token_text(id)) : tok->token_to_piece(id);
        std::printf("%6d -> %s\n", id, piece.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      }
    }
    exit_code = 0;
  });
}

}  // namespace lazyllm::cli
