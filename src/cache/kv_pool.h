// K/V memory shared by the sessions of a server: a fixed number of pages, counted here for
// every backend. A session given the pool (SessionOptions::kv_pool) holds no K/V until it
// reserves room (Session::reserve_kv) or computes tokens, takes pages for each layer's K and V
// as its context grows, and gives them all back with Session::release_kv.
//
// A session's K (or V) of one layer is a region of whole pages, filled from its start, with
// kSlackRows rows of room past the last token (kernels may read a tile past the last key). On
// the CPU the pages are only counted (the rows live in each layer's vectors); on a GPU they are
// physical pages allocated once, when the pool is made, which each session maps into its own
// address range (runtime/cuda/kv_pages.h): K/V stays contiguous to the kernels, growing copies
// nothing, and a server's memory is fixed from the start, so a request that finds no pages waits
// instead of failing an allocation.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "lazyllm/lazyllm.h"

namespace lazyllm {

class KvPool {
 public:
  static constexpr int kSlackRows = 128;

  // `bytes` of pages for sessions of `model` on `device` (at least one page); on a GPU the pages
  // are allocated now and an Error says when they do not fit.
  static std::shared_ptr<KvPool> create(const Model& model, Device device, int64_t bytes);
  // Bytes of the pages one session with room for `tokens` tokens holds (pages_for in bytes).
  static int64_t session_bytes(const Model& model, Device device, int tokens);
  ~KvPool();
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  Device device() const { return device_; }
  int64_t page_bytes() const { return page_bytes_; }
  int64_t pages() const { return pages_; }
  int64_t free_pages() const { return free_.load(); }
  int64_t bytes() const { return pages_ * page_bytes_; }
  // Regions a session has: K and V of every layer.
  int regions() const { return regions_; }
  // Pages of one region holding K (or V) rows of `tokens` tokens, slack included.
  int64_t region_pages(int tokens) const;
  // Pages a session with room for `tokens` tokens holds.
  int64_t pages_for(int tokens) const { return regions_ * region_pages(tokens); }
  // The most tokens one session can hold with the whole pool.
  int max_tokens() const;

  // Takes n pages (false, taking none, when fewer are free) or gives n back (from any thread).
  bool take(int64_t n);
  void give(int64_t n);
  // The GPU's physical pages (runtime/cuda/kv_pages.h), null on the CPU.
  void* device_pages() const { return device_pages_.get(); }

 private:
  KvPool(const Model& model, Device device);  // the page shape; no pages
  Device device_ = Device::Cpu;
  int regions_ = 0;
  int64_t row_bytes_ = 0, page_bytes_ = 0, pages_ = 0;
  std::atomic<int64_t> free_{0};
  std::shared_ptr<void> device_pages_;
};

}  // namespace lazyllm
