// Read-only memory mapping of a whole file. Weights are used in place from the mapping, so
// loading a model costs no copy; a CPU session then makes the bytes resident (make_resident).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

namespace lazyllm {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws lazyllm::Error
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Brings every byte into memory now (once per file), so the first pass over the weights does
  // not take a page fault per few pages of a multi-gigabyte model.
  //  - private_copy: the file is read into private anonymous memory advised for huge pages, which
  //    then replaces the mapping at the same address (so every pointer into data() stays valid).
  //    Decode streams all the weights each token, and from 2 MiB pages it streams them faster
  //    than from the page cache's 4 KiB pages (tinyllama-1.1b f32 decode, 2 Zen 4 cores, about
  //    1.2-1.5x). Falls back to the mapping when the memory available is short of the file or
  //    the copy fails.
  //  - otherwise, or on fallback: the mapping's pages are faulted in (shared with other processes
  //    through the page cache). Best effort on a kernel without MADV_POPULATE_READ.
  // Returns how the bytes are held, as resident() does.
  std::string make_resident(bool private_copy) const;
  // "private copy (huge pages)", "file mapping", or "file mapping (<why not copied>)"; empty
  // before make_resident.
  std::string resident() const;

 private:
  bool copy_into_anonymous_memory(std::string* why_not) const;

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t span_ = 0;  // bytes reserved at data_: size_ rounded up to whole huge pages
  int fd_ = -1;      // the file, open for make_resident's copy
  mutable std::once_flag resident_once_;
  mutable std::string resident_;                   // written once, inside resident_once_
  mutable std::atomic<bool> resident_set_{false};  // resident_ is written (for resident())
};

}  // namespace lazyllm
