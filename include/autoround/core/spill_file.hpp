#pragma once
// Bytes parked on disk instead of in memory: a writer that must see every tensor of a file
// before it can write the file's header (safetensors: header first, tensors sorted by dtype)
// appends the tensors here as they come and copies them out in its own order. The file is
// unlinked as soon as it is created, so it never outlives the process, even one killed mid-run.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "error.hpp"

namespace autoround {

class SpillFile {
 public:
  /// Create `path` (a name this object owns: an existing file of that name is truncated; named
  /// in errors), then unlink it: only this object reaches its bytes.
  explicit SpillFile(std::filesystem::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0) fail("cannot create");
    ::unlink(path_.c_str());
  }
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;
  ~SpillFile() { ::close(fd_); }

  /// Append `bytes`; returns their offset.
  std::uint64_t append(std::span<const std::byte> bytes) {
    const std::uint64_t at = size_;
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(size_ + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("write failed");
      done += static_cast<std::size_t>(n);
    }
    size_ += bytes.size();
    return at;
  }

  /// Hand the `size` bytes at `offset` to put(span) in pieces of at most `piece` bytes.
  template <class Put>
  void read(std::uint64_t offset, std::uint64_t size, Put&& put, std::size_t piece = std::size_t{16} << 20) const {
    std::vector<std::byte> buffer(static_cast<std::size_t>(std::min<std::uint64_t>(size, piece)));
    while (size > 0) {
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(size, buffer.size()));
      const ssize_t n = ::pread(fd_, buffer.data(), want, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail("read failed");
      if (n == 0) throw Error(path_.string() + ": read failed: the spill file is shorter than what was written to it");
      put(std::span<const std::byte>(buffer.data(), static_cast<std::size_t>(n)));
      offset += static_cast<std::uint64_t>(n);
      size -= static_cast<std::uint64_t>(n);
    }
  }

  std::uint64_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  [[noreturn]] void fail(const char* what) const {
    const int error = errno;
    throw Error(path_.string() + ": " + what + ": " + std::strerror(error));
  }

  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

}  // namespace autoround
