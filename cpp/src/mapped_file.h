// MappedFile: a whole file mapped read-only, for the parsers that take a byte buffer.
//
//   slimrt::MappedFile file = slimrt::MappedFile::open("model.gguf");   // kIo if it cannot
//   slimrt::GgufFile gguf = slimrt::parse_gguf(file.data(), file.size(), file.path());
//
// The mapping lives as long as the object (move it to keep it); pointers into it die with it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace slimrt {

class MappedFile {
 public:
  // Throws kIo "PATH: cannot open: <reason>" for a missing file, a directory or a failed mmap.
  // An empty file maps to size 0 and a null data().
  static MappedFile open(const std::string& path);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  void unmap();

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace slimrt
