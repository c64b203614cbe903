#include <map>
#include <mutex>
#include <sstream>

#include "format/gguf.h"
#include "lazyllm/tokenizer.h"
#include "model/weights.h"

namespace lazyllm {

struct Model::BackendCache {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<void>> entries;
};

Model::Model() : backend_cache_(std::make_unique<BackendCache>()) {}

std::optional<std::string> Model::chat_template() const {
  if (const GGUFValue* v = file_->find("tokenizer.chat_template"); v && v->type == GGUFType::STRING)
    return std::string(v->str);
  return std::nullopt;
}
Model::~Model() = default;

std::shared_ptr<void> Model::backend_cache(const std::string& key,
                                           const std::function<std::shared_ptr<void>()>& make) const {
  std::lock_guard<std::mutex> lock(backend_cache_->mu);
  std::shared_ptr<void>& entry = backend_cache_->entries[key];
  if (!entry) entry = make();
  return entry;
}

bool Model::has_backend_cache(const std::string& key) const {
  std::lock_guard<std::mutex> lock(backend_cache_->mu);
  const auto it = backend_cache_->entries.find(key);
  return it != backend_cache_->entries.end() && it->second;
}

std::shared_ptr<Model> Model::load(const std::string& path, HostWeights host) {
  std::shared_ptr<Model> m(new Model());
  m->host_ = host;
  m->file_ = GGUFFile::open(path);
  m->tokenizer_ = Tokenizer::from_gguf(*m->file_);
  m->config_ = read_model_config(*m->file_, m->tokenizer_->n_vocab());
  m->weights_ = bind_weights(*m->file_, m->config_);
  return m;
}

std::string Model::make_host_resident() const { return file_->make_resident(host_ == HostWeights::kCopy); }

std::string Model::host_weights() const { return file_->resident(); }

std::unique_ptr<Tokenizer> Model::load_tokenizer(const std::string& path) {
  auto f = GGUFFile::open(path);
  return Tokenizer::from_gguf(*f);
}

std::string Model::describe() const {
  const ModelConfig& c = config_;
  std::map<std::string, int> types;
  int64_t params = 0, bytes = 0;
  for (const auto& t : file_->tensors()) {
    ++types[std::string(dtype_name(t.type))];
    params += t.n_elements();
    bytes += t.n_bytes;
  }
  std::ostringstream o;
  o << "file:          " << file_->name() << " (GGUF v" << file_->version() << ", " << file_->file_size() << " bytes)\n"
    << "architecture:  " << c.architecture << (c.name.empty() ? "" : " (" + c.name + ")") << "\n"
    << "parameters:    " << params << " (" << bytes / (1024.0 * 1024.0) << " MiB of tensor data)\n"
    << "layers:        " << c.n_layers << "\n"
    << "embedding:     " << c.n_embd << "\n"
    << "heads:         " << c.n_heads << " query, " << c.n_kv_heads << " key/value (head size " << c.head_dim << ")\n"
    << "feed-forward:  " << c.n_ff << "\n"
    << "vocabulary:    " << c.n_vocab << "\n"
    << "context:       " << c.n_ctx_train << " (trained)\n"
    << "rope:          base " << c.rope_base << ", " << (c.rope_neox ? "neox" : "normal") << " layout, scaling "
    << c.rope_scaling;
  if (c.rope_scaling == "linear") o << " x" << c.rope_scale_factor;
  o << "\n"
    << "qkv bias:      " << (c.qkv_bias ? "yes" : "no") << "\n"
    << "tied output:   " << (c.tied_embeddings ? "yes" : "no") << "\n"
    << "rms epsilon:   " << c.rms_eps << "\n"
    << "tensor types:  ";
  bool first = true;
  for (const auto& [name, n] : types) {
    o << (first ? "" : ", ") << name << " x" << n;
    first = false;
  }
  o << "\n"
    << "tokenizer:     " << tokenizer_->model_name() << " (" << tokenizer_->kind_name() << ", pre: "
    << tokenizer_->pre_name() << "), bos " << tokenizer_->bos() << ", eos " << tokenizer_->eos();
  if (tokenizer_->eot() >= 0) o << ", eot " << tokenizer_->eot();
  o << (tokenizer_->add_bos() ? ", adds bos" : ", no bos added") << "\n";
  return o.str();
}

}  // namespace lazyllm
