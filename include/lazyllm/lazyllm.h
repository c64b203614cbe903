// lazyllm.cpp public API: load a GGUF model, tokenize (tokenizer.h), run sessions (prefill +
// decode) with optional LazyLLM dynamic token pruning, sample, and read statistics.
//
// Where the boundary is: the headers in include/lazyllm/ are the library's API. The server
// (src/server) and the eval harness (src/eval) are libraries built on it; the CLI
// (tools/cli) is a thin layer over the three, and its `gen-model` command also uses the
// engine's GGUF writer (src/model/gen_model.h). Types declared here only by name (GGUFFile,
// ModelWeights) are the engine's own; the tests reach backends through
// src/runtime/session_internals.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lazyllm/error.h"

namespace lazyllm {

class GGUFFile;
class Tokenizer;
struct ModelWeights;
class ThreadPool;
class ForwardBackend;
class CpuForward;
struct LayerSchedule;
struct SessionInternals;
class SessionBatch;
struct SessionOptions;
class KvPool;

// ---------------------------------------------------------------- devices

// Where a session computes: the CPU kernels or the CUDA backend (NVIDIA GPUs).
enum class Device { Cpu, Cuda };
// True when this build has the CUDA backend and a GPU is present.
bool cuda_available();
// Cuda when cuda_available(), else Cpu.
Device default_device();
// "cpu", "cuda" or "auto" (= default_device()). Throws Error for anything else, and for "cuda"
// when no GPU backend is available.
Device parse_device(std::string_view name);
std::string_view device_name(Device d);
// What computes on `d`, for reports: the GPU's name, SMs and memory, or the CPU's model name.
std::string device_description(Device d);

// How the CUDA backend keeps a model's weight matrices on the GPU. kNative keeps the quantized
// types it has kernels for (Q8_0, Q4_0) in their GGUF blocks and reads them directly; other
// types, and every matrix under kBf16, are converted to bf16 at load (F16/BF16 as stored).
enum class GpuWeights { kNative, kBf16 };
// "native" or "bf16"; throws Error for anything else.
GpuWeights parse_gpu_weights(std::string_view name);
std::string_view gpu_weights_name(GpuWeights w);

// The CPU kernels this process runs. Their instruction-set level is the CPU's best unless the
// environment variable LAZYLLM_CPU_TARGET=avx512|avx2|sse4|scalar caps it (read once, at the
// first kernel call), so one machine can run the paths of older CPUs; any other value makes
// this (and the first kernel call) throw Error. OpenBLAS picks its own kernels
// (OPENBLAS_CORETYPE caps those).
struct CpuKernels {
  std::string level;        // in use: "avx512", "avx2", "sse4", "scalar"; "sve", "neon" on arm64 ("native" elsewhere)
  std::string detected;     // the CPU's own level
  std::string cap;          // LAZYLLM_CPU_TARGET's level, or "none"
  std::string vector;       // Highway kernels (vector ops, fused dequantize-dot decode): "hwy-AVX3", "hwy-AVX2", ...
  // Q8_0/Q4_0 decode in fast math: "int8-vnni-avx512", "int8-avx2", or "none" (the vector kernels)
  std::string decode_int8;
  std::string gemm_f32;     // prefill matmul: "f32-avx512", "f32-avx2" or "openblas-sgemm"
  // quantized prefill in fast math: "bf16-avx512" where it beats gemm_f32 (AMD's AVX512_BF16
  // cores), or "none" (gemm_f32)
  std::string gemm_bf16;
  // Q8_0/Q4_0 prefill in fast math where gemm_bf16 is "none" and gemm_f32 is the AVX2 kernel:
  // "int8-avx2", or "none" (gemm_f32)
  std::string gemm_int8;
  // attention's matrix products (prefill, revival batches): the f32 kernel's name, or "openblas-sgemm"
  std::string attention;
  std::string openblas;  // OpenBLAS's kernels (where attention or gemm_f32 is openblas-sgemm): its core name
};
CpuKernels cpu_kernels();

// ---------------------------------------------------------------- model

struct ModelConfig {
  std::string architecture;  // "llama" or "qwen2"
  std::string name;
  int n_vocab = 0;
  int n_embd = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int n_ff = 0;
  int n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  bool rope_neox = false;  // NeoX (split-half) rotation instead of interleaved pairs
  // RoPE scaling: "none", "linear" or "llama3".
  std::string rope_scaling = "none";
  float rope_scale_factor = 1.0f;
  float rope_low_freq_factor = 1.0f;
  float rope_high_freq_factor = 4.0f;
  int rope_orig_ctx = 0;
  bool qkv_bias = false;
  bool tied_embeddings = false;
};

// Where the CPU backend reads a model's weights from. kCopy: a private copy in anonymous memory
// advised for huge pages, made when the first CPU session starts (decode streams every weight
// each token, and streams them faster from 2 MiB pages than from the page cache's 4 KiB ones);
// it falls back to the mapping when memory is short. kMapped: the file's memory mapping, shared
// with other processes through the page cache (less memory when several processes serve one
// file). The CUDA backend copies the weights to the GPU either way.
enum class HostWeights { kCopy, kMapped };

class Model {
 public:
  // Memory-maps and validates a GGUF file. Throws Error naming what is wrong.
  static std::shared_ptr<Model> load(const std::string& path, HostWeights host = HostWeights::kCopy);
  // Loads only the vocabulary (works on vocab-only GGUF files).
  static std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);
  ~Model();

  const ModelConfig& config() const { return config_; }
  // Brings the weights into host memory for the CPU backend as load() was asked to (once; later
  // calls return the same) and says how they are held: "private copy (huge pages)", "file
  // mapping", or "file mapping (<why not copied>)".
  std::string make_host_resident() const;
  // make_host_resident's answer, or empty before it.
  std::string host_weights() const;
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // The chat template the file carries (tokenizer.chat_template), if any.
  std::optional<std::string> chat_template() const;
  // The engine's view of the file and its weights (opaque outside the library).
  const ModelWeights& weights() const { return *weights_; }
  const GGUFFile& file() const { return *file_; }
  // Human-readable summary (architecture, sizes, tensor types, tokenizer, context).
  std::string describe() const;
  // Bytes of GPU memory the CUDA backend's copy of the weights takes in `mode` (shared by the
  // model's sessions), and the bf16 scratch each session adds to dequantize one quantized matrix
  // for its prefill products (0 when no matrix stays quantized). Computed on the host; needs no GPU.
  struct GpuWeightBytes {
    int64_t weights = 0;
    int64_t dequant_scratch = 0;
  };
  GpuWeightBytes gpu_weight_bytes(GpuWeights mode) const;
  // Whether backend_cache holds `key` (without making it).
  bool has_backend_cache(const std::string& key) const;
  // State a compute backend keeps per model for as long as the model lives (the CUDA backend's
  // weights on the GPU), made by `make` on the first request for `key`. Thread-safe.
  std::shared_ptr<void> backend_cache(const std::string& key, const std::function<std::shared_ptr<void>()>& make) const;

 private:
  struct BackendCache;
  mutable std::unique_ptr<BackendCache> backend_cache_;
  Model();
  ModelConfig config_;
  HostWeights host_ = HostWeights::kCopy;
  std::unique_ptr<GGUFFile> file_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ModelWeights> weights_;
};

// ---------------------------------------------------------------- LazyLLM schedule

// Progressive pruning: at layer `layer`, keep `keep` (0 < keep <= 1) of the tokens still alive.
struct PrunePoint {
  int layer = 0;
  double keep = 1.0;
};

// How a pruning layer chooses the tokens it keeps. kStatic and kRandom are the paper's
// ablations: they show what LazyLLM's dynamic choice buys.
enum class PruneSelection {
  kLazy,    // by the last token's attention; re-chosen at every decode step (pruned tokens revive)
  kStatic,  // by attention, once in prefill; decode attends to what prefill left, never revives
  kRandom,  // seeded random tokens in prefill (same counts); decode as kStatic
};

// How LazyLLM decodes after a pruned prefill (kLazy selection only; the ablations never revive).
enum class LazyDecode {
  kAuto,      // kComplete on the GPU (where a re-selecting step still costs more than a baseline
              // step); on the CPU kReselect, or under PrunePolicy::kAuto kReselect from 3072
              // context tokens on and kComplete below (prune/cost_model.h; docs/lazyllm.md)
  kReselect,  // the paper's: every step re-selects from the new token's attention and revives
  kComplete,  // the first decode step computes every deferred (token, layer) pair in one batch,
              // with the prefill's products; later steps are baseline steps over the full cache
};

struct PruneSchedule {
  std::vector<PrunePoint> points;  // sorted by layer, layers in [1, n_layers)
  PruneSelection selection = PruneSelection::kLazy;
  LazyDecode decode = LazyDecode::kAuto;
  uint64_t seed = 0;  // kRandom only: the same seed and prompt give the same tokens
  // kReselect only: at most this many pruned tokens revive in one decode step (the best-ranked
  // ones; a pruning layer keeps the next-ranked tokens it already has K/V for instead of the
  // rest); -1: no limit (the paper's rule). Changes the answers: see docs/lazyllm.md.
  int revive_budget = -1;
  bool empty() const { return points.empty(); }
  // Parses "[MODE:]L:k,L:k,...": L a layer index, or a fraction of depth in (0,1) such as 0.3;
  // k the fraction kept. MODE is "lazy" (the default), "reselect" or "complete" (lazy with that
  // decode rule; see LazyDecode), "reselect@N" (at most N revivals a step), "static", "random" or
  // "random@SEED".
  // Throws Error on malformed specs or out-of-range values. to_string() parses back to the same.
  static PruneSchedule parse(std::string_view spec, int n_layers);
  // The default schedule (see docs/lazyllm.md for how it was chosen).
  static PruneSchedule default_for(int n_layers);
  static constexpr std::string_view kDefaultSpec = "0.3:0.5,0.6:0.5,0.9:0.5";
  // Keep fraction at each layer (1.0 where the schedule does not prune).
  std::vector<double> keep_per_layer(int n_layers) const;
  std::string to_string() const;
};

// ---------------------------------------------------------------- sampling

struct SamplingParams {
  float temperature = 0.8f;  // 0 = greedy (argmax)
  int top_k = 40;            // 0 = off
  float top_p = 0.95f;       // 1 = off
  float min_p = 0.05f;       // 0 = off
  float repeat_penalty = 1.0f;
  int repeat_last_n = 64;
  uint64_t seed = 0xC0FFEE;
};

// The greedy choice: the first index of the largest logit. NaN logits are never chosen; 0 when
// every logit is NaN or -inf (or there are none).
int32_t greedy_token(std::span<const float> logits);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks the next token from `logits` given the tokens seen so far (for the repeat penalty).
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  uint64_t rng_state_;
  // Every token's probability, drawn in id order (no top-k and no top-p).
  int32_t sample_all(std::span<const float> logits);
  std::vector<float> penalized_;  // the logits after the repeat penalty, when it applies
  std::vector<float> probs_;      // sample_all's probabilities
  std::vector<std::pair<float, int32_t>> scratch_;
};

// ---------------------------------------------------------------- memory

// The bytes a session of `options` will hold on its device (options.device), estimated on the
// host from the model's shapes and the options, before anything is allocated. On the CPU the
// weights are the mapped file's tensors and the rest is host memory; on CUDA all of it is GPU
// memory (the CUDA context and cuBLAS's workspace aside), and a session that would not fit fails
// with this breakdown before it allocates anything.
struct MemoryEstimate {
  int64_t weights = 0;    // as the device holds them: the file's blocks, or bf16 where the GPU converts
  int64_t kv_cache = 0;   // K and V of every layer for the whole context (f16, f32 on the CPU without
                          // kv_f16), with each slot's position
  int64_t aux_cache = 0;  // LazyLLM's Aux Cache at its bound, a row per context position (0 without a schedule)
  int64_t scratch = 0;    // activations and staging at the largest batch: a prefill of the whole context
  int64_t total() const { return weights + kv_cache + aux_cache + scratch; }
};
MemoryEstimate estimate_memory(const Model& model, const SessionOptions& options);

// ---------------------------------------------------------------- session

// When a session's schedule runs: kAuto asks the cost model (prune/cost_model.h) at each prefill
// and leaves a prompt unpruned where pruning cannot pay (tiny models, short prompts on a GPU);
// kAlways prunes every prompt the schedule can. The library runs the schedule it is given
// (kAlways); `run`, `bench` and `serve` default to kAuto (`--prune-always` for kAlways), while
// `agree` and `eval`, which measure what a schedule does to the answers, run it as given.
enum class PrunePolicy { kAuto, kAlways };

struct SessionOptions {
  int n_ctx = 0;      // 0 = the model's trained context length
  int n_threads = 0;  // 0 = all cores
  PruneSchedule prune;  // empty = baseline (no pruning)
  PrunePolicy prune_policy = PrunePolicy::kAlways;
  // KV cache in half precision (default, as llama.cpp) or f32 (for exact reference comparisons).
  bool kv_f16 = true;
  // Reduced-precision products for quantized weights where the CPU has them, as llama.cpp:
  // prefill in bf16 with f32 sums (AVX512_BF16), decode with 8-bit activations and exact
  // int32 block sums for Q8_0/Q4_0 (AVX512_VNNI). About 2x faster each; f32/f16 weights are
  // unaffected. false keeps every product in f32 (for exact reference comparisons).
  bool fast_math = true;
  // Cpu by default so library results do not depend on the machine; tools pass default_device().
  // The CUDA backend keeps K/V in half precision and ignores kv_f16 and n_threads.
  Device device = Device::Cpu;
  // CUDA only: the weights' form on the GPU (see GpuWeights).
  GpuWeights gpu_weights = GpuWeights::kNative;
  // CUDA only: load, when the session is made, the cuBLAS kernels its prefill products can use at
  // any row count up to min(n_ctx, 8192), once a process per product shape (0.7-1.2 s for a
  // 7B model). Without it the first request that meets a kernel pays its loading (milliseconds
  // each), and LazyLLM's pruned layers meet several per new prompt length. Off pays off only for a
  // process that answers once (`lazyllm run`).
  bool gpu_warmup = true;
  // CUDA only, LazyLLM over quantized weights: a pruned prefill dequantizes the matrices of the
  // layers where it defers rows into bf16 copies it keeps (where free memory stays above 5% of the
  // GPU's, at least 1 GiB), so the decode step that completes those rows reads them instead of
  // dequantizing the same matrices a second time. Costs their bf16 bytes (8.9 GB for llama2-7b's
  // last 22 layers), held by the session from its first pruned prefill (DeviceMemory::weight_copies).
  bool gpu_weight_copies = true;
  // Test hook: layers the schedule names select, compact and revive even at keep 1.0, so the
  // whole LazyLLM machinery runs while keeping every token (compared with the baseline in tests).
  bool force_selection = false;
  // Called during prefill after each layer (layer index, number of layers).
  std::function<void(int, int)> on_prefill_progress;
  // K/V memory shared with other sessions (a server's; src/cache/kv_pool.h), made for this model
  // and device: the session takes pages as its context grows and holds none before, instead of
  // allocating K/V for the whole context. A step that finds no free pages throws Error.
  std::shared_ptr<KvPool> kv_pool;
};

struct SessionStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_ms = 0;  // time of the last prefill (= TTFT without sampling)
  double decode_ms = 0;   // total time of decode steps
  // LazyLLM accounting. Counts are (token, layer) computations.
  int64_t prompt_token_layers_computed = 0;  // prompt tokens only, prefill + revivals
  int64_t token_layers_computed = 0;         // every token, prefill + decode
  double computed_fraction = 1.0;            // prompt_token_layers_computed / (prompt_tokens x layers)
  double prefill_computed_fraction = 1.0;    // the same, counting the last prefill only (what TTFT pays)
  std::vector<int> alive_per_layer;          // prompt tokens computed at each layer in prefill
  int64_t revived = 0;                       // (token, layer) revivals during decode
  int64_t selections = 0;                    // LazyLLM selections run (pruning layers, prefill and decode)
  // With a LazyLLM schedule after a pruned prefill: how decode runs, "reselect" or "complete".
  std::string lazy_decode;
  // With a schedule: "on", or "off: <why>" when the cost model judged that pruning this prompt
  // cannot pay (SessionOptions::prune_policy); empty without a schedule.
  std::string pruning;
  int64_t aux_cache_bytes = 0;               // hidden states held in the Aux Cache now
  int64_t aux_cache_entries = 0;
  // Re-selecting decode on a GPU: steps that ran entirely on the device (a CUDA graph that selects
  // on the GPU), and attempts handed back to the host's plan because a kept token had to revive.
  int64_t device_decode_steps = 0;
  int64_t device_decode_misses = 0;
  // Decode steps of a SessionBatch on a GPU whose weight products ran once for this sequence and
  // others of the step together.
  int64_t shared_decode_steps = 0;
  // Prefills (prompts or chunks of one) of a SessionBatch on a GPU that shared one forward with
  // other sequences' rows.
  int64_t shared_prefill_steps = 0;
};

class Session {
 public:
  Session(std::shared_ptr<const Model> model, SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Appends prompt tokens and computes them; afterwards logits() are those of the last token.
  // Throws Error if the context would overflow or a token id is out of range.
  void prefill(std::span<const int32_t> tokens);
  // Appends one token (usually the last sampled one) and computes its logits.
  void decode(int32_t token);
  std::span<const float> logits() const;

  // Generates up to max_tokens tokens after the prompt; on_token returns false to stop.
  // Stops at an end-of-generation token (not passed to on_token).
  std::vector<int32_t> generate(int max_tokens, Sampler& sampler,
                                const std::function<bool(int32_t)>& on_token = {});

  void reset();  // forget the context (keeps allocations)
  // Keeps the first n tokens of the context (their K/V) and forgets the rest, so a prompt that
  // shares them is prefilled from token n on: the result equals prefilling the whole prompt in
  // chunks. Only for n up to unpruned_prefix() (a pruned token was chosen by a later token) on a
  // backend that supports it; returns false, changing nothing, otherwise. The schedule stays.
  // Statistics restart as after reset().
  bool keep_prefix(int n);
  // The same, then runs `prune` from now on: the kept tokens stay computed at every layer and a
  // schedule prunes among the tokens prefilled after them (as a second prefill() does). Throws
  // Error for a schedule outside the model's layers, changing nothing.
  bool keep_prefix(int n, const PruneSchedule& prune);
  // Forgets the context and takes a copy of the first n tokens of `from`'s context (their K/V,
  // on the device that holds them), so a prompt that shares them is prefilled from token n on,
  // as after keep_prefix(n) on `from`. For two Session objects of the same Model, device and
  // K/V format, this one without a schedule, and n up to from.unpruned_prefix(); with a KV
  // pool, the pages for the n tokens are taken here. Returns false, with the context
  // forgotten, otherwise. `from` is not changed.
  bool copy_prefix(const Session& from, int n);
  // The leading tokens of the context computed as without pruning: every token until the
  // first prefill that ran a schedule (a prefill the cost model left unpruned counts as none),
  // so a kept or copied prefix keeps counting after a pruned rest. Decode steps after a pruned
  // prefill never count (they attend to a selection).
  int unpruned_prefix() const { return unpruned_; }
  // Forgets the context and runs `prune` from now on (the caches are kept: nothing is
  // reallocated). Throws Error for a schedule outside the model's layers, changing nothing.
  void reset(const PruneSchedule& prune);
  // With a KV pool (SessionOptions::kv_pool): makes room for `tokens` tokens of context (at most
  // n_ctx()), taking the pages missing, so the steps up to there take none; false, changing
  // nothing, when the pool has too few free. Always true without a pool.
  bool reserve_kv(int tokens);
  // Forgets the context and gives every K/V page back to the pool (reset() without a pool).
  void release_kv();
  // Pages of the pool held by this Session object.
  int64_t kv_pages() const;
  int n_past() const;
  int n_ctx() const { return n_ctx_; }
  const std::vector<int32_t>& history() const { return history_; }
  const SessionStats& stats() const { return stats_; }
  // GPU memory on the CUDA backend (all zero on the CPU): the model's weights (one copy per
  // Model, however many Session objects use it), and what this object alone holds: the
  // bf16 dequantization scratch and weight copies, the KV cache (with each slot's position), the Aux Cache once
  // allocated, and the other buffers (activations, attention and selection scratch, tables).
  struct DeviceMemory {
    int64_t weights = 0;
    int64_t dequant_scratch = 0;
    int64_t weight_copies = 0;  // SessionOptions::gpu_weight_copies
    int64_t kv_cache = 0;
    int64_t aux_cache = 0;
    int64_t scratch = 0;
  };
  DeviceMemory device_memory() const;
  const SessionOptions& options() const { return options_; }
  const Model& model() const { return *model_; }

 private:
  friend struct SessionInternals;  // the tests' access to the backend (src/runtime/session_internals.h)
  friend class SessionBatch;       // steps several sessions in one forward (src/runtime/batch.h)
  // A session computing on `pool`'s threads (shared with the other sessions of a batch).
  Session(std::shared_ptr<const Model> model, SessionOptions options, std::shared_ptr<ThreadPool> pool);
  // The halves of prefill() and decode() around the backend's work, which a batch step runs for
  // several sessions at once: the schedule the step runs under, then the bookkeeping.
  const LayerSchedule& prefill_schedule(int n_tokens);
  void book_prefill(std::span<const int32_t> tokens, const LayerSchedule& ran, int64_t prompt_layers_before, double ms);
  const LayerSchedule& decode_schedule();
  void book_decode(int32_t token, double ms);
  // With a KV pool: room for n_tokens more tokens of context, or Error.
  void take_kv(int n_tokens);
  std::shared_ptr<const Model> model_;
  SessionOptions options_;
  int n_ctx_ = 0;
  std::shared_ptr<ThreadPool> pool_;
  std::unique_ptr<ForwardBackend> backend_;
  // Whether decode after a pruned prefill of n tokens (after n_past) follows the schedule
  // (re-selection, or the ablations' fixed sets) rather than completing the deferred pairs.
  bool reselects(int n_past, int n) const;
  bool reselect_ = false;  // the rule chosen at the last pruned prefill
  bool pending_reselect_ = false;  // the rule for the prefill under way
  std::unique_ptr<LayerSchedule> schedule_, baseline_;
  // On a GPU: per layer, the bytes a prefill-sized batch moves to copy quantized weights into
  // bf16 (plan_gpu_weights), which the cost model weighs; fixed for the session's weights.
  std::vector<double> gpu_dequant_bytes_;
  bool pruned_ = false;  // a prefill of this context ran the schedule: decode follows it
  int unpruned_ = 0;     // unpruned_prefix()
  CpuForward* cpu_state_ = nullptr;  // backend_ when it is the CPU one
  std::vector<int32_t> history_;
  SessionStats stats_;
};

}  // namespace lazyllm
