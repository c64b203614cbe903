#include <chrono>
#include <string>

#include "cache/kv_pool.h"
#include "format/gguf.h"
#include "lazyllm/tokenizer.h"
#include "model/weights.h"
#include "prune/cost_model.h"
#include "prune/lazy_plan.h"
#include "runtime/cpu/cpu_forward.h"
#include "runtime/cuda/cuda_forward.h"
#include "runtime/gpu_weight_plan.h"
#include "runtime/memory_plan.h"
#include "runtime/session_internals.h"
#include "util/thread_pool.h"

namespace lazyllm {
namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void check_schedule_layers(const PruneSchedule& prune, int n_layers) {
  for (const auto& p : prune.points)
    if (p.layer < 1 || p.layer >= n_layers)
      throw Error("prune schedule layer " + std::to_string(p.layer) + " is outside [1, " + std::to_string(n_layers - 1) +
                  "]");
}

// The schedule as the forward pass runs it, after checking its layers (Error).
std::unique_ptr<LayerSchedule> layer_schedule(const PruneSchedule& prune, int n_layers, bool force_selection) {
  check_schedule_layers(prune, n_layers);
  return std::make_unique<LayerSchedule>(LayerSchedule::from(prune, n_layers, force_selection));
}

}  // namespace

Session::Session(std::shared_ptr<const Model> model, SessionOptions options)
    : Session(std::move(model), std::move(options), nullptr) {}

Session::Session(std::shared_ptr<const Model> model, SessionOptions options, std::shared_ptr<ThreadPool> pool)
    : model_(std::move(model)), options_(std::move(options)) {
  const ModelConfig& c = model_->config();
  n_ctx_ = options_.n_ctx > 0 ? options_.n_ctx : c.n_ctx_train;
  if (n_ctx_ > (1 << 22)) throw Error("context size " + std::to_string(n_ctx_) + " is too large");
  if (options_.n_threads < 0) throw Error("thread count must be positive");
  schedule_ = layer_schedule(options_.prune, c.n_layers, options_.force_selection);
  if (options_.kv_pool && options_.kv_pool->device() != options_.device)
    throw Error("the KV pool was made for " + std::string(device_name(options_.kv_pool->device())) + ", not " +
                std::string(device_name(options_.device)));
  baseline_ = std::make_unique<LayerSchedule>(LayerSchedule::baseline(c.n_layers));
  pool_ = pool ? std::move(pool)
               : std::make_shared<ThreadPool>(options_.n_threads > 0 ? options_.n_threads : ThreadPool::default_threads());
  if (options_.device == Device::Cuda) {
    // Say what does not fit before allocating anything, not with an allocation failure halfway.
    SessionOptions planned = options_;
    planned.n_ctx = n_ctx_;
    const std::string short_of = cuda_available() ? memory_shortfall(*model_, planned, cuda_free_memory(),
                                                                     cuda_weights_resident(*model_, options_.gpu_weights))
                                                  : "";
    if (!short_of.empty()) throw Error("CUDA backend: the model at this context " + short_of);
    backend_ = make_cuda_forward(*model_, n_ctx_, options_.gpu_weights, options_.gpu_warmup, options_.kv_pool.get(),
                                 options_.gpu_weight_copies);
    gpu_dequant_bytes_ = plan_gpu_weights(c, model_->weights(), options_.gpu_weights).dequant_bytes;
  } else {
    // The CPU computes from the weights in host memory: bring them all in now, not page by page
    // in the first prefill (1.1B f32 model, 16-token first prefill of a fresh process: ~1.49 s
    // before, ~1.24 s after, on 2 cores), as a private copy in huge pages unless asked not to.
    model_->make_host_resident();
    auto cpu = std::make_unique<CpuForward>(*model_, n_ctx_, options_.kv_f16, *pool_);
    cpu->set_matmul_precision(options_.fast_math ? MatmulPrecision::kFast : MatmulPrecision::kF32);
    cpu->set_kv_pool(options_.kv_pool.get());
    cpu_state_ = cpu.get();
    backend_ = std::move(cpu);
  }
}

Session::~Session() = default;

bool Session::reselects(int n_past, int n) const {
  if (options_.prune.selection != PruneSelection::kLazy) return true;  // the ablations' fixed sets
  if (options_.prune.decode != LazyDecode::kAuto) return options_.prune.decode == LazyDecode::kReselect;
  if (options_.device == Device::Cuda) return false;
  // The CPU: under the cost model, by the context's length (cost_model.h); else the paper's.
  if (options_.prune_policy == PrunePolicy::kAuto) return n_past + n >= kReselectMinContext;
  return true;
}

int Session::n_past() const { return backend_->n_past(); }

Session::DeviceMemory Session::device_memory() const { return backend_->device_memory(); }

std::span<const float> Session::logits() const { return backend_->logits(); }

void Session::reset() {
  backend_->clear();
  pruned_ = reselect_ = false;
  unpruned_ = 0;
  history_.clear();
  stats_ = {};
}

bool Session::keep_prefix(int n) {
  if (n < 0 || n > unpruned_ || n > n_past()) return false;
  if (!backend_->keep_prefix(n)) return false;
  pruned_ = reselect_ = false;
  unpruned_ = n;
  history_.resize(static_cast<size_t>(n));
  stats_ = {};
  return true;
}

bool Session::keep_prefix(int n, const PruneSchedule& prune) {
  auto schedule = layer_schedule(prune, model_->config().n_layers, options_.force_selection);
  if (!keep_prefix(n)) return false;
  options_.prune = prune;
  schedule_ = std::move(schedule);
  return true;
}

bool Session::copy_prefix(const Session& from, int n) {
  reset();
  if (&from == this || !options_.prune.empty() || from.model_ != model_ || from.options_.device != options_.device ||
      n < 0 || n > from.unpruned_ || n > from.n_past() || n > static_cast<int>(from.history_.size()))
    return false;
  if (!backend_->copy_prefix_from(*from.backend_, n)) return false;
  history_.assign(from.history_.begin(), from.history_.begin() + n);
  unpruned_ = n;
  return true;
}

bool Session::reserve_kv(int tokens) { return backend_->reserve_kv(tokens); }

void Session::release_kv() {
  reset();
  backend_->release_kv();
}

int64_t Session::kv_pages() const { return backend_->kv_pages(); }

void Session::take_kv(int n_tokens) {
  const int need = backend_->n_past() + n_tokens;
  if (options_.kv_pool && !backend_->reserve_kv(need))
    throw Error("the KV pool has no free pages for a context of " + std::to_string(need) + " tokens (" +
                std::to_string(options_.kv_pool->free_pages()) + " of " + std::to_string(options_.kv_pool->pages()) +
                " free)");
}

void Session::reset(const PruneSchedule& prune) {
  auto schedule = layer_schedule(prune, model_->config().n_layers, options_.force_selection);
  reset();
  options_.prune = prune;
  schedule_ = std::move(schedule);
}

const LayerSchedule& Session::prefill_schedule(int n_tokens) {
  take_kv(n_tokens);
  // The cost model may leave this prompt unpruned; a forced schedule (a test hook) always runs.
  const LayerSchedule* sched = schedule_.get();
  pending_reselect_ = reselects(backend_->n_past(), n_tokens);
  if (schedule_->any()) {
    stats_.pruning = "on";
    if (options_.prune_policy == PrunePolicy::kAuto && !options_.force_selection) {
      DeviceCost cost = device_cost(options_.device, *model_, pool_->size());
      cost.dequant_bytes = gpu_dequant_bytes_;
      cost.completion_reads_copies = options_.gpu_weight_copies;
      const PruneVerdict v =
          judge_prefill(*model_, plan_prefill(n_tokens, *schedule_), backend_->n_past(), cost, !pending_reselect_);
      stats_.pruning = v.why;
      if (!v.prune) sched = baseline_.get();
    }
  }
  return *sched;
}

void Session::book_prefill(std::span<const int32_t> tokens, const LayerSchedule& ran, int64_t prompt_layers_before,
                           double ms) {
  const int n_layers = model_->config().n_layers;
  if (&ran == schedule_.get()) pruned_ = true, reselect_ = pending_reselect_;
  stats_.prefill_ms = ms;
  // A prefill that pruned nothing after an unpruned context is computed as the baseline's.
  const bool unpruned = !ran.any() && unpruned_ == static_cast<int>(history_.size());
  history_.insert(history_.end(), tokens.begin(), tokens.end());
  if (unpruned) unpruned_ = static_cast<int>(history_.size());
  stats_.prompt_tokens += static_cast<int>(tokens.size());
  const ForwardCounters& k = backend_->counters();
  stats_.alive_per_layer = k.alive_per_layer;
  stats_.selections = k.selections;
  stats_.prefill_computed_fraction =
      static_cast<double>(k.prompt_token_layers - prompt_layers_before) / (double(tokens.size()) * n_layers);
  stats_.token_layers_computed = k.token_layers;
  stats_.prompt_token_layers_computed = k.prompt_token_layers;
  stats_.computed_fraction = static_cast<double>(k.prompt_token_layers) / (double(stats_.prompt_tokens) * n_layers);
  stats_.aux_cache_bytes = backend_->aux_bytes();
  stats_.aux_cache_entries = backend_->aux_entries();
  stats_.shared_prefill_steps = backend_->decode_path_stats().shared_prefills;
}

void Session::prefill(std::span<const int32_t> tokens) {
  const int64_t before = backend_->counters().prompt_token_layers;
  auto t0 = std::chrono::steady_clock::now();
  const LayerSchedule& sched = prefill_schedule(static_cast<int>(tokens.size()));
  backend_->prefill(tokens, sched, options_.on_prefill_progress);
  book_prefill(tokens, sched, before, ms_since(t0));
}

const LayerSchedule& Session::decode_schedule() {
  take_kv(1);
  // After a pruned prefill, LazyLLM decodes by its rule: re-selecting every step, or computing
  // every deferred pair in the first step (a decode step with nothing pruned revives all of them
  // in one batch; every later step finds the full cache and is a baseline step).
  const bool reselect = pruned_ && reselect_;
  if (pruned_ && options_.prune.selection == PruneSelection::kLazy) stats_.lazy_decode = reselect ? "reselect" : "complete";
  return reselect ? *schedule_ : *baseline_;
}

void Session::book_decode(int32_t token, double ms) {
  const int n_layers = model_->config().n_layers;
  stats_.decode_ms += ms;
  // A step that re-selects attends to a selection (decode_schedule()); any other step after an
  // unpruned context is the baseline's.
  const bool selects = pruned_ && reselect_ && schedule_->any();
  const bool unpruned = !selects && unpruned_ == static_cast<int>(history_.size());
  history_.push_back(token);
  if (unpruned) unpruned_ = static_cast<int>(history_.size());
  ++stats_.generated_tokens;
  const ForwardCounters& k = backend_->counters();
  stats_.token_layers_computed = k.token_layers;
  stats_.prompt_token_layers_computed = k.prompt_token_layers;
  stats_.revived = k.revived;
  stats_.selections = k.selections;
  if (stats_.prompt_tokens > 0)
    stats_.computed_fraction = static_cast<double>(k.prompt_token_layers) / (double(stats_.prompt_tokens) * n_layers);
  stats_.aux_cache_bytes = backend_->aux_bytes();
  stats_.aux_cache_entries = backend_->aux_entries();
  const DecodePathStats path = backend_->decode_path_stats();
  stats_.device_decode_steps = path.device_steps;
  stats_.device_decode_misses = path.device_misses;
  stats_.shared_decode_steps = path.shared_steps;
  stats_.shared_prefill_steps = path.shared_prefills;
}

void Session::decode(int32_t token) {
  auto t0 = std::chrono::steady_clock::now();
  backend_->decode(token, decode_schedule());
  book_decode(token, ms_since(t0));
}

std::vector<int32_t> Session::generate(int max_tokens, Sampler& sampler, const std::function<bool(int32_t)>& on_token) {
  std::vector<int32_t> out;
  if (n_past() == 0) throw Error("generate: prefill a prompt first");
  const Tokenizer& tok = model_->tokenizer();
  for (int i = 0; i < max_tokens; ++i) {
    int32_t next = sampler.sample(logits(), history_);
    if (tok.is_eog(next)) break;
    out.push_back(next);
    if (on_token && !on_token(next)) break;
    if (i + 1 == max_tokens) break;  // no need to compute logits nobody will read
    if (n_past() >= n_ctx_) break;   // context full
    decode(next);
  }
  return out;
}

CpuForward& SessionInternals::cpu(Session& s) {
  if (!s.cpu_state_) throw Error("the CPU backend is not the one computing here (--device cuda)");
  return *s.cpu_state_;
}

}  // namespace lazyllm
