// lazyllm gen-model: write a random-weight GGUF of a named shape (no download needed).
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "model/gen_model.h"

namespace lazyllm::cli {

void add_gen_model_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string shape, dims, dtype = "f32", vocab_from, out;
    uint64_t seed = 1;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("gen-model", "Write a GGUF model with random weights of a given shape");
  auto* shape = cmd->add_option("--shape", a->shape, "smollm-135m, tinyllama-1.1b, llama2-7b, llama3-8b or qwen2-0.5b");
  cmd->add_option("--dims", a->dims, "Custom shape: embd=..,layers=..,heads=..,kv_heads=..,ff=..,vocab=..,ctx=..[,arch=qwen2]")
      ->excludes(shape);
  cmd->add_option("--dtype", a->dtype, "f32, f16, bf16, q8_0, q4_0, q4_K or q6_K");
  cmd->add_option("--vocab-from", a->vocab_from, "Copy the vocabulary from this GGUF");
  cmd->add_option("--seed", a->seed, "Random seed");
  cmd->add_option("-t,--threads", a->threads, "Threads")->check(CLI::Range(1, 1024));
  cmd->add_option("-o,--output", a->out, "Output file")->required();
  cmd->callback([a, &exit_code] {
    GenModelOptions o;
    if (a->shape.empty() && a->dims.empty()) throw Error("gen-model needs --shape or --dims");
    o.spec = a->dims.empty() ? named_shape(a->shape) : parse_dims(a->dims);
    auto t = parse_dtype(a->dtype);
    if (!t) throw Error("unknown dtype '" + a->dtype + "'");
    o.dtype = *t;
    o.vocab_from = a->vocab_from;
    o.seed = a->seed;
    o.threads = a->threads;
    generate_model(o, a->out);
    std::fprintf(stderr, "wrote %s (%s, %s)\n", a->out.c_str(), o.spec.name.c_str(), a->dtype.c_str());
    exit_code = 0;
  });
}

}  // namespace lazyllm::cli
