// lazyllm: command-line front end. Errors from bad input are reported in one line with a
// nonzero exit code.
#include <cstdio>
#include <exception>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "commands.h"
#include "lazyllm/error.h"
#include "lazyllm/lazyllm.h"

// Memory a Session frees (its scratch, a finished request's buffers) stays in the process for the
// next one instead of going back to the kernel: glibc maps large blocks separately and returns
// freed heap tops, so every new Session or larger step faulted its buffers in again, page by
// page. The first request at a new length paid it (eval model, 3000-token prompts, 2 cores: the
// baseline's cold TTFT 356-362 ms with glibc's defaults, 312-317 ms without the faults).
static void keep_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, -1);
#endif
}

int main(int argc, char** argv) {
  keep_freed_memory();
  CLI::App app{"lazyllm: Llama-family inference with LazyLLM dynamic token pruning"};
  app.require_subcommand(1);
  int exit_code = 0;
  lazyllm::cli::add_run_command(app, exit_code);
  lazyllm::cli::add_tokenize_command(app, exit_code);
  lazyllm::cli::add_info_command(app, exit_code);
  lazyllm::cli::add_gen_model_command(app, exit_code);
  lazyllm::cli::add_bench_command(app, exit_code);
  lazyllm::cli::add_agree_command(app, exit_code);
  lazyllm::cli::add_serve_command(app, exit_code);
  lazyllm::cli::add_eval_command(app, exit_code);
  lazyllm::cli::add_calibrate_command(app, exit_code);
  try {
    lazyllm::cpu_kernels();  // a bad LAZYLLM_CPU_TARGET stops every command here, in one line
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const lazyllm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return exit_code;
}
