#pragma once
// A read-only memory-mapped file (RAII). Readers hand out views into it, never copies.
// It can also own a buffer already in memory (bytes received elsewhere, fuzzing).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "error.hpp"

namespace autoround {

class MappedFile {
 public:
  explicit MappedFile(std::string path) : path_(std::move(path)) {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path_ + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Error(path_ + ": not a regular file");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        throw Error(path_ + ": cannot map: " + std::strerror(errno));
      }
      data_ = static_cast<const std::byte*>(p);
    }
    fd_ = fd;  // kept for copy(): reads that must not map pages
  }
  /// An in-memory "file" named `name` (the name appears in error messages).
  MappedFile(std::string name, std::vector<std::byte> bytes) : path_(std::move(name)), owned_(std::move(bytes)) {
    data_ = owned_.data();
    size_ = owned_.size();
  }
  MappedFile(MappedFile&& other) noexcept
      : path_(std::move(other.path_)), owned_(std::move(other.owned_)), data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)), fd_(std::exchange(other.fd_, -1)) {}
  MappedFile& operator=(MappedFile&& other) noexcept {
    std::swap(path_, other.path_);
    std::swap(owned_, other.owned_);
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(fd_, other.fd_);
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_ && owned_.empty() && size_ > 0) ::munmap(const_cast<std::byte*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }

  std::span<const std::byte> bytes() const { return {data_, size_}; }

  /// Let the kernel drop the pages of `part` (a view into this file) from this process: a mapped
  /// page that was read stays resident, and counted in the process's RSS, until unmapped, so a
  /// reader that streams a large file block by block releases each block after converting it.
  /// Reading `part` again maps the pages in again from the file. No-op for an in-memory file.
  void release(std::span<const std::byte> part) const {
    if (!owned_.empty() || part.empty() || !data_) return;
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = (reinterpret_cast<std::uintptr_t>(part.data()) + page - 1) / page * page;
    const auto end = (reinterpret_cast<std::uintptr_t>(part.data()) + part.size()) / page * page;
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
  }
  /// Copy the bytes of `part` (a view into this file) into `out` (as many bytes) with pread,
  /// without mapping them into this process. For a few rows read at random over a large tensor
  /// (a sample's embedding rows): touching them through the mapping maps whole huge pages where
  /// the kernel keeps the file in them (2 MB a fault), which stay in the RSS until released — 1 GB
  /// of an 8B model's embedding for one 2048-token sample (docs/speed.md, "Host memory").
  void copy(std::span<const std::byte> part, std::span<std::byte> out) const {
    if (part.size() != out.size()) throw Error(path_ + ": copy: " + std::to_string(part.size()) + " bytes into " + std::to_string(out.size()));
    if (part.empty()) return;
    if (fd_ < 0) {  // an in-memory file
      std::memcpy(out.data(), part.data(), part.size());
      return;
    }
    auto offset = static_cast<off_t>(part.data() - data_);
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, offset + static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw Error(path_ + ": read failed: " + (n < 0 ? std::string(std::strerror(errno)) : std::string("the file is shorter than its map")));
      done += static_cast<std::size_t>(n);
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::byte> owned_;  // empty when the bytes are mapped
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  int fd_ = -1;  // the mapped file's descriptor (-1: in memory)
};

}  // namespace autoround
