#pragma once
// Output files appear complete or not at all: bytes go to "<path>.tmp", which is renamed over
// `path` only after a successful flush (rename is atomic within one file system).
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <span>

#include "error.hpp"

namespace autoround {

/// Write a file from consecutive pieces (`pieces(put)` calls put(bytes) for each), atomically.
template <class Pieces>
void write_file_atomically_from(const std::filesystem::path& path, Pieces&& pieces) {
  const auto tmp = std::filesystem::path(path.string() + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    pieces([&](std::span<const std::byte> bytes) {
      if (out) out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    });
    if (!out.flush()) {
      out.close();
      std::filesystem::remove(tmp);
      throw Error(tmp.string() + ": write failed");
    }
  }
  std::filesystem::rename(tmp, path);
}

inline void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  write_file_atomically_from(path, [&](auto&& put) { put(bytes); });
}

}  // namespace autoround
