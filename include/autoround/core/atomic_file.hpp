#pragma once
// Output files appear complete or not at all: bytes go to "<path>.tmp", which is renamed over
// `path` only after every write and the close succeeded (rename is atomic within one file
// system). A failure removes the .tmp file and names its reason ("No space left on device").
#include <cstddef>
#include <filesystem>
#include <span>

#include "error.hpp"
#include "output_file.hpp"

namespace autoround {

/// Write a file from consecutive pieces (`pieces(put)` calls put(bytes) for each), atomically.
template <class Pieces>
void write_file_atomically_from(const std::filesystem::path& path, Pieces&& pieces) {
  const auto tmp = std::filesystem::path(path.string() + ".tmp");
  try {
    OutputFile out(tmp);
    pieces([&](std::span<const std::byte> bytes) { out.write(bytes); });
    out.close();
  } catch (...) {  // nothing half-written is left behind; the error says why (OutputFile)
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
  std::filesystem::rename(tmp, path);
}

inline void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  write_file_atomically_from(path, [&](auto&& put) { put(bytes); });
}

}  // namespace autoround
