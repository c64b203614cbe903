// Read-only memory mapping of a whole file. Weights are used in place from the mapping,
// so loading a model costs no copy and pages come in on first use.
#pragma once

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
  // Maps every page now (once per file), so that the first pass over the weights does not take
  // a page fault per few pages of a multi-gigabyte model: first-token latency then matches later
  // ones. Best effort: a kernel without MADV_POPULATE_READ just faults pages in on use.
  void populate() const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  mutable std::once_flag populated_;
};

}  // namespace lazyllm
