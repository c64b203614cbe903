// Read-only memory mapping of a whole file. Weights are used in place from the mapping,
// so loading a model costs no copy and pages come in on first use.
#pragma once

#include <cstddef>
#include <cstdint>
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

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace lazyllm
