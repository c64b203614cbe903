// A KvPool's pages on the GPU (cache/kv_pool.h): physical memory allocated once, in pages of the
// driver's mapping granularity (cuMemCreate), and each session's K/V address range, reserved for
// its whole context when the session is made and backed by pool pages as its context grows
// (cuMemMap). Kernels see one contiguous K and V array per layer, as with a plain allocation;
// growing copies nothing and moves no pointer, so captured decode graphs stay valid.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace lazyllm {
class KvPool;
}

namespace lazyllm::cuda {

// The driver's mapping granularity on device 0 (bytes of one page).
int64_t kv_page_bytes();

class PhysicalPages;

// One session's K/V regions (each layer's K, then its V), `region_bytes` of address space each,
// backed from the start by the pool's pages.
class MappedKv {
 public:
  MappedKv(KvPool& pool, int regions, int64_t region_pages);
  ~MappedKv();
  MappedKv(const MappedKv&) = delete;
  MappedKv& operator=(const MappedKv&) = delete;

  void* region(int r) const;
  // Pages backing each region now.
  int64_t mapped() const { return mapped_; }
  // Backs every region with `pages` pages from its start (at most the reservation): false,
  // changing nothing, when the pool has too few free. Never shrinks.
  bool grow_to(int64_t pages);
  // Gives every page back to the pool.
  void release();

 private:
  KvPool& pool_;
  PhysicalPages& pages_;
  int regions_;
  int64_t region_pages_, mapped_ = 0;
  uint64_t base_ = 0;              // the reserved range: regions_ x region_pages_ pages
  std::vector<uint64_t> handles_;  // by region, then page
};

}  // namespace lazyllm::cuda
