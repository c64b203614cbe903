// lazyllm gen-model: write a random-weight GGUF of a named or custom shape (no download needed).
#include <chrono>
#include <cstdio>
#include <optional>

#include "commands.h"
#include "common.h"
#include "model/gen_model.h"

namespace lazyllm::cli {

void add_gen_model_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string shape, dims, dtype = "f32", vocab_from, out;
    uint64_t seed = 1;
    int threads = 0, layers = 0;
    bool no_data = false;
  };
  auto a = std::make_shared<Args>();
  std::string shapes;
  for (const auto& s : named_shapes()) shapes += (shapes.empty() ? "" : ", ") + s;
  CLI::App* cmd = app.add_subcommand("gen-model", "Write a GGUF model with random weights of a given shape");
  auto* shape = cmd->add_option("--shape", a->shape, "Named shape: " + shapes);
  auto* dims = cmd->add_option("--dims", a->dims,
                               "Custom shape: embd=..,layers=..,heads=..,kv_heads=..,ff=..,vocab=..,ctx=.."
                               "[,arch=qwen2][,tied=1][,rope_base=..][,llama3_rope=1]");
  dims->excludes(shape);
  cmd->add_option("--dtype", a->dtype,
                  "Type of the weight matrices: f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K, or q4_K_M (Q4_K with "
                  "Q6_K where Q4_K_M files have it)")
      ->capture_default_str();
  cmd->add_option("--vocab-from", a->vocab_from, "Copy the vocabulary (tokenizer.* metadata) from this GGUF");
  cmd->add_option("--layers", a->layers, "Override the shape's number of layers (a model of full width, fewer layers)")
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_flag("--no-data", a->no_data,
                "Write the header and tensor table only; the tensor data reads as zeros and, as a sparse file, takes no "
                "disk (for testing loading and memory reports at full size)");
  cmd->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")->check(CLI::Range(1, 1024));
  cmd->add_option("-o,--output", a->out, "Output file")->required();
  cmd->callback([a, &exit_code] {
    if (a->shape.empty() && a->dims.empty()) throw Error("gen-model needs --shape NAME or --dims SPEC");
    GenModelOptions o;
    o.spec = a->dims.empty() ? named_shape(a->shape) : parse_dims(a->dims);
    if (a->layers > 0) {
      o.spec.name += ", " + std::to_string(a->layers) + " of " + std::to_string(o.spec.layers) + " layers";
      o.spec.layers = a->layers;
    }
    o.tensor_data = !a->no_data;
    o.q4_k_m = a->dtype == "q4_K_M" || a->dtype == "q4_k_m";
    const auto t = o.q4_k_m ? std::optional<DType>(DType::Q4_K) : parse_dtype(a->dtype);
    if (!t) throw Error("unknown dtype '" + a->dtype + "' (f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K, q4_K_M)");
    o.dtype = *t;
    o.vocab_from = a->vocab_from;
    o.seed = a->seed;
    o.threads = a->threads;
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t bytes = generate_model(o, a->out);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "wrote %s (%s, %s, %.1f MiB%s) in %.1f s\n", a->out.c_str(), o.spec.name.c_str(),
                 o.q4_k_m ? "q4_K_M" : std::string(dtype_name(o.dtype)).c_str(), bytes / 1048576.0,
                 o.tensor_data ? "" : ", no tensor data", secs);
    exit_code = 0;
  });
}

}  // namespace lazyllm::cli
