#pragma once
// A file written through POSIX calls, so that a failed write says why ("No space left on
// device", "Disk quota exceeded", ...): std::ofstream only says that it failed.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>

#include "error.hpp"

namespace autoround {

class OutputFile {
 public:
  /// Create or truncate `path` for writing.
  explicit OutputFile(std::filesystem::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot open for writing");
  }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  const std::filesystem::path& path() const { return path_; }

  void write(std::span<const std::byte> bytes) {
    const std::byte* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("write failed");
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }

  /// Close, reporting what the kernel reports (a network or quota file system may report a
  /// failed write only here).
  void close() {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("write failed");
  }

 private:
  [[noreturn]] void fail(const char* what) const {
    const int error = errno;
    throw Error(path_.string() + ": " + what + ": " + std::strerror(error));
  }

  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace autoround
