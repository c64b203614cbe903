#include "cache/kv_pool.h"

#include <algorithm>
#include <string>

#include "lazyllm/error.h"
#include "runtime/cuda/cuda_forward.h"
#include "util/byte_size.h"

namespace lazyllm {
namespace {

constexpr int64_t kCpuPageBytes = int64_t{2} << 20;  // the GPU's usual mapping granularity

}  // namespace

KvPool::KvPool(const Model& model, Device device) : device_(device) {
  const ModelConfig& c = model.config();
  regions_ = 2 * c.n_layers;
  row_bytes_ = int64_t{c.n_kv_heads} * c.head_dim * 2;  // half floats, as both backends keep K/V
  page_bytes_ = device == Device::Cuda ? cuda_kv_page_bytes() : kCpuPageBytes;
}

int64_t KvPool::session_bytes(const Model& model, Device device, int tokens) {
  const KvPool shape(model, device);
  return shape.pages_for(tokens) * shape.page_bytes_;
}

std::shared_ptr<KvPool> KvPool::create(const Model& model, Device device, int64_t bytes) {
  std::shared_ptr<KvPool> p(new KvPool(model, device));
  p->pages_ = bytes / p->page_bytes_;
  if (p->pages_ < p->regions_)
    throw Error("a KV pool of " + format_size(bytes) + " holds less than a page for each layer's K and V (" +
                std::to_string(p->regions_) + " pages of " + std::to_string(p->page_bytes_ >> 10) + " KiB)");
  p->free_ = p->pages_;
  if (device == Device::Cuda) p->device_pages_ = make_cuda_kv_pages(p->pages_);
  return p;
}

KvPool::~KvPool() = default;

int64_t KvPool::region_pages(int tokens) const {
  if (tokens <= 0) return 0;
  const int64_t bytes = (int64_t{tokens} + kSlackRows) * row_bytes_;
  return (bytes + page_bytes_ - 1) / page_bytes_;
}

int KvPool::max_tokens() const {
  const int64_t region_bytes = pages_ / regions_ * page_bytes_;
  return static_cast<int>(std::min<int64_t>(region_bytes / row_bytes_ - kSlackRows, int64_t{1} << 30));
}

bool KvPool::take(int64_t n) {
  int64_t f = free_.load();
  do {
    if (n > f) return false;
  } while (!free_.compare_exchange_weak(f, f - n));
  return true;
}

void KvPool::give(int64_t n) { free_.fetch_add(n); }

}  // namespace lazyllm
