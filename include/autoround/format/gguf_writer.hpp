#pragma once
// Writing GGUF v3 files, laid out as gguf-py's GGUFWriter lays them out (byte-identical for the
// same keys and tensors in the same order; see tests/test_gguf_writer.cpp):
//   header | "GGUF" | version 3 | tensor_count u64 | kv_count u64 |
//   kv     | key string | type u32 | value            (in the order they were set)
//   infos  | name string | n_dims u32 | dims u64...   | ggml type u32 | offset u64 |
//   zero padding to `alignment`, then each tensor's bytes, each padded with zeros to `alignment`.
// GgufWriter holds the whole file in memory; GgufStreamWriter (below) writes the same bytes with
// one tensor in memory at a time, for models larger than the host's memory.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "../core/atomic_file.hpp"
#include "../core/error.hpp"
#include "ggml_blocks.hpp"
#include "gguf_reader.hpp"

namespace autoround {

class GgufWriter {
 public:
  explicit GgufWriter(std::uint64_t alignment = 32) : alignment_(alignment) {
    detail::require(alignment > 0 && (alignment & (alignment - 1)) == 0, "GGUF alignment must be a power of two");
  }

  /// Set a metadata value (a key set twice keeps its first position and takes the new value).
  void set(const std::string& key, GgufValue value) {
    for (auto& kv : kv_)
      if (kv.first == key) {
        kv.second = std::move(value);
        return;
      }
    kv_.emplace_back(key, std::move(value));
  }
  void set_string(const std::string& key, std::string s) {
    GgufValue v;
    v.kind = GgufValue::Kind::String;
    v.type = GgufType::String;
    v.s = std::move(s);
    set(key, std::move(v));
  }
  void set_u32(const std::string& key, std::uint32_t x) {
    GgufValue v;
    v.type = GgufType::U32;
    v.u = x;
    set(key, std::move(v));
  }
  void set_bool(const std::string& key, bool x) {
    GgufValue v;
    v.kind = GgufValue::Kind::Bool;
    v.type = GgufType::Bool;
    v.b = x;
    set(key, std::move(v));
  }
  void set_f32(const std::string& key, float x) {
    GgufValue v;
    v.kind = GgufValue::Kind::Float;
    v.type = GgufType::F32;
    v.f = x;
    set(key, std::move(v));
  }

  /// Add a tensor: `dims` in ggml order (dims[0] = row length), `bytes` already in `type`'s blocks.
  void add_tensor(const std::string& name, std::vector<std::uint64_t> dims, ggml::Type type, std::vector<std::byte> bytes) {
    declare_tensor(name, std::move(dims), type);
    try {
      check_bytes(tensors_.back(), bytes.size());
    } catch (...) {
      tensors_.pop_back();
      throw;
    }
    tensors_.back().bytes = std::move(bytes);
  }

  /// Add a tensor whose bytes come later, through a GgufStreamWriter (in the order declared).
  void declare_tensor(const std::string& name, std::vector<std::uint64_t> dims, ggml::Type type) {
    const ggml::TypeTraits t = ggml::traits(type);
    detail::require(t.block_weights > 0, "GGUF writer: tensor '" + name + "' has an unsupported type");
    detail::require(!dims.empty() && dims.size() <= 4, "GGUF writer: tensor '" + name + "' needs 1 to 4 dimensions");
    detail::require(dims[0] % t.block_weights == 0, "GGUF writer: tensor '" + name + "' rows of " +
                                                        std::to_string(dims[0]) + " are not whole " + t.name + " blocks");
    for (const auto& e : tensors_) detail::require(e.name != name, "GGUF writer: tensor '" + name + "' added twice");
    tensors_.push_back({name, std::move(dims), type, {}});
  }

  std::vector<std::byte> serialize() const {
    std::vector<std::byte> out = header();
    for (const auto& t : tensors_) {
      check_bytes(t, t.bytes.size());
      out.insert(out.end(), t.bytes.begin(), t.bytes.end());
      out.resize(padded(out.size()), std::byte{0});
    }
    return out;
  }

  void write(const std::filesystem::path& path) const { write_file_atomically(path, serialize()); }

  /// Everything before the first tensor's bytes: header, metadata, tensor infos, padding.
  std::vector<std::byte> header() const {
    std::vector<std::byte> out;
    put<std::uint32_t>(out, 0x46554747u);
    put<std::uint32_t>(out, 3);
    put<std::uint64_t>(out, tensors_.size());
    put<std::uint64_t>(out, kv_.size());
    for (const auto& [key, value] : kv_) {
      put_string(out, key);
      put<std::uint32_t>(out, static_cast<std::uint32_t>(value.type));
      put_value(out, value, value.type);
    }
    std::uint64_t offset = 0;
    for (const auto& t : tensors_) {
      put_string(out, t.name);
      put<std::uint32_t>(out, static_cast<std::uint32_t>(t.dims.size()));
      for (auto d : t.dims) put<std::uint64_t>(out, d);
      put<std::uint32_t>(out, static_cast<std::uint32_t>(t.type));
      put<std::uint64_t>(out, offset);
      offset += padded(t.byte_count());
    }
    out.resize(padded(out.size()), std::byte{0});
    return out;
  }

  struct Tensor {
    std::string name;
    std::vector<std::uint64_t> dims;
    ggml::Type type;
    std::vector<std::byte> bytes;  ///< empty for a declared tensor
    std::uint64_t byte_count() const {
      std::uint64_t count = 1;
      for (auto d : dims) count *= d;
      const ggml::TypeTraits t = ggml::traits(type);
      return count / t.block_weights * t.block_bytes;
    }
  };
  const std::vector<Tensor>& tensors() const { return tensors_; }
  std::uint64_t padded(std::uint64_t n) const { return (n + alignment_ - 1) / alignment_ * alignment_; }

  static void check_bytes(const Tensor& t, std::size_t size) {
    detail::require(t.byte_count() == size,
                    "GGUF writer: tensor '" + t.name + "': " + std::to_string(size) + " bytes do not hold its shape");
  }

 private:

  template <class T>
  static void put(std::vector<std::byte>& out, T value) {
    const auto at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &value, sizeof(T));
  }
  static void put_string(std::vector<std::byte>& out, const std::string& s) {
    put<std::uint64_t>(out, s.size());
    const auto at = out.size();
    out.resize(at + s.size());
    if (!s.empty()) std::memcpy(out.data() + at, s.data(), s.size());
  }
  static void put_value(std::vector<std::byte>& out, const GgufValue& v, GgufType type) {
    switch (type) {
      case GgufType::U8: put<std::uint8_t>(out, static_cast<std::uint8_t>(v.u)); break;
      case GgufType::I8: put<std::int8_t>(out, static_cast<std::int8_t>(v.i)); break;
      case GgufType::U16: put<std::uint16_t>(out, static_cast<std::uint16_t>(v.u)); break;
      case GgufType::I16: put<std::int16_t>(out, static_cast<std::int16_t>(v.i)); break;
      case GgufType::U32: put<std::uint32_t>(out, static_cast<std::uint32_t>(v.u)); break;
      case GgufType::I32: put<std::int32_t>(out, static_cast<std::int32_t>(v.i)); break;
      case GgufType::F32: put<float>(out, static_cast<float>(v.f)); break;
      case GgufType::Bool: put<std::uint8_t>(out, v.b ? 1 : 0); break;
      case GgufType::String: put_string(out, v.s); break;
      case GgufType::Array:
        put<std::uint32_t>(out, static_cast<std::uint32_t>(v.element_type));
        put<std::uint64_t>(out, v.array.size());
        for (const auto& e : v.array) put_value(out, e, v.element_type);
        break;
      case GgufType::U64: put<std::uint64_t>(out, v.u); break;
      case GgufType::I64: put<std::int64_t>(out, v.i); break;
      case GgufType::F64: put<double>(out, v.f); break;
      default: throw Error("GGUF writer: unknown metadata value type " + std::to_string(static_cast<unsigned>(type)));
    }
  }

  std::uint64_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

/// The file of a GgufWriter whose tensors were declared (declare_tensor), written as their bytes
/// arrive: the header goes first (every offset follows from the declared types and shapes), then
/// each tensor in the declared order; only the tensor being written is in memory. Bytes go to
/// "<path>.tmp", renamed to `path` by finish() once every tensor arrived; a writer destroyed
/// before that (an error, an interrupt) removes the .tmp, so `path` is complete or untouched.
class GgufStreamWriter {
 public:
  GgufStreamWriter(const std::filesystem::path& path, const GgufWriter& layout)
      : path_(path), tmp_(path.string() + ".tmp"), layout_(layout), out_(tmp_) {
    put(layout_.header());
  }
  GgufStreamWriter(const GgufStreamWriter&) = delete;
  GgufStreamWriter& operator=(const GgufStreamWriter&) = delete;
  ~GgufStreamWriter() {
    if (finished_) return;
    std::error_code ignored;
    std::filesystem::remove(tmp_, ignored);
  }

  const std::filesystem::path& path() const { return path_; }

  /// The next declared tensor's bytes.
  void write(const std::string& name, std::span<const std::byte> bytes) {
    const auto& tensors = layout_.tensors();
    detail::require(next_ < tensors.size(), path_.string() + ": tensor '" + name + "' written after every declared tensor");
    const auto& t = tensors[next_];
    detail::require(t.name == name, path_.string() + ": tensor '" + name + "' written where '" + t.name + "' is declared");
    GgufWriter::check_bytes(t, bytes.size());
    put(bytes);
    put(std::vector<std::byte>(layout_.padded(bytes.size()) - bytes.size(), std::byte{0}));
    ++next_;
  }

  /// Close and rename into place; every declared tensor must have been written.
  void finish() {
    const auto& tensors = layout_.tensors();
    detail::require(next_ == tensors.size(), path_.string() + ": finished before tensor '" +
                                                 (next_ < tensors.size() ? tensors[next_].name : std::string()) + "' was written");
    out_.close();
    std::filesystem::rename(tmp_, path_);
    finished_ = true;
  }

 private:
  void put(std::span<const std::byte> bytes) { out_.write(bytes); }  // a failure names its reason (OutputFile)

  std::filesystem::path path_, tmp_;
  const GgufWriter& layout_;
  OutputFile out_;
  std::size_t next_ = 0;
  bool finished_ = false;
};

}  // namespace autoround
