#include "format/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "lazyllm/error.h"
#include "util/byte_size.h"

namespace lazyllm {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// `span` bytes of fresh anonymous memory at a huge-page boundary, with `prot`; nullptr on failure.
uint8_t* map_aligned(size_t span, int prot, int extra_flags) {
  void* r = ::mmap(nullptr, span + kHugePage, prot, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
  if (r == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(r);
  const uintptr_t base = round_up(start, kHugePage);
  if (base > start) ::munmap(r, base - start);
  if (const size_t tail = kHugePage - (base - start); tail > 0) ::munmap(reinterpret_cast<void*>(base + span), tail);
  return reinterpret_cast<uint8_t*>(base);
}

// One value of a "key: number" file line (/proc/meminfo's "MemAvailable:      123 kB").
bool read_field(const char* path, const std::string& key, uint64_t* value) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    std::istringstream s(line.substr(key.size()));
    return static_cast<bool>(s >> *value);
  }
  return false;
}

uint64_t read_number(const char* path) {
  std::ifstream in(path);
  uint64_t v = 0;
  return in >> v ? v : std::numeric_limits<uint64_t>::max();  // "max" or unreadable: no limit
}

// Memory this process may still fill: the system's available memory, and in a cgroup (v2) with
// a limit, that limit less what the group uses, its reclaimable page cache counted as free.
uint64_t available_memory() {
  uint64_t avail = std::numeric_limits<uint64_t>::max();
  if (uint64_t kb = 0; read_field("/proc/meminfo", "MemAvailable:", &kb)) avail = kb * 1024;
  const uint64_t limit = read_number("/sys/fs/cgroup/memory.max");
  const uint64_t used = read_number("/sys/fs/cgroup/memory.current");
  if (limit != std::numeric_limits<uint64_t>::max() && used != std::numeric_limits<uint64_t>::max()) {
    uint64_t file = 0;
    read_field("/sys/fs/cgroup/memory.stat", "file ", &file);
    const uint64_t in_use = used > file ? used - file : 0;
    avail = std::min(avail, limit > in_use ? limit - in_use : 0);
  }
  return avail;
}

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error("'" + path + "' is not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    // The mapping starts at a huge-page boundary and owns whole huge pages (the tail past the
    // file reserved, inaccessible), so that make_resident can swap in a copy huge page by page.
    span_ = round_up(size_, kHugePage);
    uint8_t* base = map_aligned(span_, PROT_NONE, MAP_NORESERVE);
    void* p = base ? ::mmap(base, size_, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) : MAP_FAILED;
    if (p == MAP_FAILED) {
      int e = errno;
      if (base) ::munmap(base, span_);
      ::close(fd);
      throw Error("cannot map '" + path + "': " + std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  fd_ = fd;  // kept for make_resident's copy: the same file even if its path is replaced
}

bool MappedFile::copy_into_anonymous_memory(std::string* why_not) const {
  // Leave room for the session's own buffers: the copy must fit with an eighth to spare and 1 GiB.
  const uint64_t need = size_ + size_ / 8 + (uint64_t{1} << 30);
  if (const uint64_t avail = available_memory(); avail < need) {
    *why_not = format_gib(static_cast<int64_t>(avail)) + " of memory available, a private copy needs " +
               format_gib(static_cast<int64_t>(need));
    return false;
  }
  uint8_t* copy = map_aligned(span_, PROT_READ | PROT_WRITE, 0);
  if (!copy) {
    *why_not = std::string("cannot allocate the copy: ") + std::strerror(errno);
    return false;
  }
  ::madvise(copy, span_, MADV_HUGEPAGE);  // best effort: EINVAL where huge pages are off
  // Read, not copied from the mapping: the mapping's pages would be this process's too until the
  // swap, doubling its resident size at the peak.
  for (size_t done = 0; done < size_;) {
    const ssize_t got =
        ::pread(fd_, copy + done, std::min<size_t>(size_ - done, size_t{64} << 20), static_cast<off_t>(done));
    if (got <= 0) {
      *why_not =
          "cannot read the file: " + std::string(got < 0 ? std::strerror(errno) : "it is shorter than when opened");
      ::munmap(copy, span_);
      return false;
    }
    done += static_cast<size_t>(got);
  }
  ::mprotect(copy, span_, PROT_READ);
  // Replaces the file mapping (and its reserved tail) at the same address in one step.
  if (::mremap(copy, span_, span_, MREMAP_MAYMOVE | MREMAP_FIXED, const_cast<uint8_t*>(data_)) == MAP_FAILED) {
    *why_not = std::string("cannot move the copy into place: ") + std::strerror(errno);
    ::munmap(copy, span_);
    return false;
  }
  return true;
}

std::string MappedFile::make_resident(bool private_copy) const {
  std::call_once(resident_once_, [this, private_copy] {
    std::string why_not = "not asked for a private copy";
    if (data_ && private_copy && copy_into_anonymous_memory(&why_not)) {
      resident_ = "private copy (huge pages)";
    } else {
      resident_ = private_copy ? "file mapping (" + why_not + ")" : "file mapping";
#ifdef MADV_POPULATE_READ
      if (data_) ::madvise(const_cast<uint8_t*>(data_), size_, MADV_POPULATE_READ);
#else
      if (data_) ::madvise(const_cast<uint8_t*>(data_), size_, MADV_WILLNEED);
#endif
    }
    resident_set_.store(true, std::memory_order_release);
  });
  return resident_;
}

std::string MappedFile::resident() const {
  return resident_set_.load(std::memory_order_acquire) ? resident_ : std::string();
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), span_);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace lazyllm
