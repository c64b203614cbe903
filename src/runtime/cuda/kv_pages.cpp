#include "runtime/cuda/kv_pages.h"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cache/kv_pool.h"
#include "kernels/cuda/cuda_check.h"
#include "lazyllm/error.h"
#include "runtime/cuda/cuda_forward.h"
#include "util/byte_size.h"

namespace lazyllm::cuda {
namespace {

// The driver's virtual memory calls, reached through the runtime (no link against libcuda).
struct Driver {
  PFN_cuMemGetAllocationGranularity_v10020 granularity = nullptr;
  PFN_cuMemCreate_v10020 create = nullptr;
  PFN_cuMemRelease_v10020 release = nullptr;
  PFN_cuMemAddressReserve_v10020 reserve = nullptr;
  PFN_cuMemAddressFree_v10020 address_free = nullptr;
  PFN_cuMemMap_v10020 map = nullptr;
  PFN_cuMemUnmap_v10020 unmap = nullptr;
  PFN_cuMemSetAccess_v10020 set_access = nullptr;
};

template <typename F>
void entry(F& f, const char* name) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q{};
  if (cudaGetDriverEntryPointByVersion(name, &p, 10020, cudaEnableDefault, &q) != cudaSuccess ||
      q != cudaDriverEntryPointSuccess || p == nullptr) {
    cudaGetLastError();
    throw Error(std::string("CUDA KV pool: the driver lacks ") + name);
  }
  f = reinterpret_cast<F>(p);
}

const Driver& driver() {
  static const Driver d = [] {
    check(cudaSetDevice(0), "cudaSetDevice");
    check(cudaFree(nullptr), "CUDA context");
    Driver d;
    entry(d.granularity, "cuMemGetAllocationGranularity");
    entry(d.create, "cuMemCreate");
    entry(d.release, "cuMemRelease");
    entry(d.reserve, "cuMemAddressReserve");
    entry(d.address_free, "cuMemAddressFree");
    entry(d.map, "cuMemMap");
    entry(d.unmap, "cuMemUnmap");
    entry(d.set_access, "cuMemSetAccess");
    return d;
  }();
  return d;
}

void drive(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS)
    throw Error(std::string("CUDA KV pool: ") + what + " failed (CUresult " + std::to_string(r) + ")");
}

CUmemAllocationProp page_prop() {
  CUmemAllocationProp p{};
  p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  p.location.id = 0;
  return p;
}

}  // namespace

int64_t kv_page_bytes() {
  static const int64_t bytes = [] {
    const CUmemAllocationProp p = page_prop();
    size_t g = 0;
    drive(driver().granularity(&g, &p, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED), "cuMemGetAllocationGranularity");
    return static_cast<int64_t>(g);
  }();
  return bytes;
}

// Every page of a pool, created at once; a stack of the free ones.
class PhysicalPages {
 public:
  explicit PhysicalPages(int64_t n) {
    const int64_t free_bytes = cuda_free_memory();
    if (n * kv_page_bytes() > free_bytes)
      throw Error("a KV pool of " + format_size(n * kv_page_bytes()) + " does not fit: the GPU has " +
                  format_size(free_bytes) + " free (--kv-memory)");
    const CUmemAllocationProp p = page_prop();
    free_.reserve(static_cast<size_t>(n));
    try {
      for (int64_t i = 0; i < n; ++i) {
        CUmemGenericAllocationHandle h{};
        drive(driver().create(&h, static_cast<size_t>(kv_page_bytes()), &p, 0), "cuMemCreate");
        free_.push_back(h);
      }
    } catch (...) {
      for (auto h : free_) driver().release(h);
      throw;
    }
  }
  ~PhysicalPages() {
    for (auto h : free_) driver().release(h);  // pages still mapped are released by their sessions
  }
  uint64_t take() {
    std::lock_guard lock(mu_);
    if (free_.empty()) throw Error("CUDA KV pool: no free page left (the pool's count is out of step)");
    const uint64_t h = free_.back();
    free_.pop_back();
    return h;
  }
  void give(uint64_t h) {
    std::lock_guard lock(mu_);
    free_.push_back(h);
  }

 private:
  std::mutex mu_;
  std::vector<CUmemGenericAllocationHandle> free_;
};

MappedKv::MappedKv(KvPool& pool, int regions, int64_t region_pages)
    : pool_(pool),
      pages_(*static_cast<PhysicalPages*>(pool.device_pages())),
      regions_(regions),
      region_pages_(region_pages) {
  CUdeviceptr base = 0;
  drive(driver().reserve(&base, static_cast<size_t>(regions_ * region_pages_ * kv_page_bytes()), 0, 0, 0),
        "cuMemAddressReserve");
  base_ = base;
  handles_.resize(static_cast<size_t>(regions_ * region_pages_), 0);
}

MappedKv::~MappedKv() {
  try {
    release();
  } catch (...) {  // a failing unmap at exit: the driver reclaims the pages with the context
  }
  driver().address_free(base_, static_cast<size_t>(regions_ * region_pages_ * kv_page_bytes()));
}

void* MappedKv::region(int r) const {
  return reinterpret_cast<void*>(base_ + static_cast<uint64_t>(r) * region_pages_ * kv_page_bytes());
}

bool MappedKv::grow_to(int64_t pages) {
  pages = std::min(pages, region_pages_);
  if (pages <= mapped_) return true;
  const int64_t more = pages - mapped_;
  if (!pool_.take(more * regions_)) return false;
  const size_t page = static_cast<size_t>(kv_page_bytes());
  CUmemAccessDesc access{};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = 0;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  // What this call took, so that a driver failure part way gives it all back.
  std::vector<std::pair<CUdeviceptr, uint64_t>> taken;  // address (0: not mapped yet), page
  try {
    for (int r = 0; r < regions_; ++r) {
      const CUdeviceptr at = reinterpret_cast<CUdeviceptr>(region(r)) + mapped_ * page;
      for (int64_t i = 0; i < more; ++i) {
        uint64_t& h = handles_[static_cast<size_t>(r * region_pages_ + mapped_ + i)];
        h = pages_.take();
        taken.emplace_back(0, h);
        drive(driver().map(at + i * page, page, 0, h, 0), "cuMemMap");
        taken.back().first = at + i * page;
      }
      drive(driver().set_access(at, more * page, &access, 1), "cuMemSetAccess");
    }
  } catch (...) {
    for (const auto& [addr, h] : taken) {
      if (addr != 0) driver().unmap(addr, page);
      pages_.give(h);
    }
    pool_.give(more * regions_);
    throw;
  }
  mapped_ = pages;
  return true;
}

void MappedKv::release() {
  if (mapped_ == 0) return;
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");  // no kernel may still read the pages
  const size_t page = static_cast<size_t>(kv_page_bytes());
  for (int r = 0; r < regions_; ++r) {
    drive(driver().unmap(reinterpret_cast<CUdeviceptr>(region(r)), mapped_ * page), "cuMemUnmap");
    for (int64_t i = 0; i < mapped_; ++i) pages_.give(handles_[static_cast<size_t>(r * region_pages_ + i)]);
  }
  pool_.give(mapped_ * regions_);
  mapped_ = 0;
}

}  // namespace lazyllm::cuda

namespace lazyllm {

int64_t cuda_kv_page_bytes() { return cuda::kv_page_bytes(); }

std::shared_ptr<void> make_cuda_kv_pages(int64_t pages) { return std::make_shared<cuda::PhysicalPages>(pages); }

}  // namespace lazyllm
