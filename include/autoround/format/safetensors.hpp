#pragma once
// safetensors (Hugging Face): reading through a memory map with zero-copy tensor views, and
// writing through a temporary file renamed into place when complete.
//
//   | u64 N (little-endian) | N bytes of JSON header | data |
//   header: {"name": {"dtype": "F16", "shape": [out, in], "data_offsets": [begin, end]}, ...,
//            "__metadata__": {"key": "value", ...}}       offsets are relative to the data start
// The reader checks everything before handing out a view: header size within the file (and at
// most 100 MB), valid JSON, known dtypes, shape x dtype size == byte length, offsets inside the
// data, tensors neither overlapping nor leaving gaps (as the reference library requires).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../core/atomic_file.hpp"
#include "../core/error.hpp"
#include "../core/fp16.hpp"
#include "../core/mapped_file.hpp"
#include "../core/spill_file.hpp"
#include "../core/matrix.hpp"
#include "ggml_blocks.hpp"

namespace autoround {

enum class Dtype { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3 };

inline std::size_t dtype_size(Dtype d) {
  switch (d) {
    case Dtype::BOOL: case Dtype::U8: case Dtype::I8: case Dtype::F8_E4M3: return 1;
    case Dtype::I16: case Dtype::U16: case Dtype::F16: case Dtype::BF16: return 2;
    case Dtype::I32: case Dtype::U32: case Dtype::F32: return 4;
    default: return 8;
  }
}
inline const char* dtype_name(Dtype d) {
  constexpr const char* names[] = {"BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64", "F8_E4M3"};
  return names[static_cast<int>(d)];
}
inline std::optional<Dtype> dtype_from_name(const std::string& name) {
  for (int i = 0; i <= static_cast<int>(Dtype::F8_E4M3); ++i)
    if (name == dtype_name(static_cast<Dtype>(i))) return static_cast<Dtype>(i);
  return std::nullopt;
}

struct SafetensorsTensor {
  std::string name;
  Dtype dtype{};
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;
  std::int64_t element_count() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

class SafetensorsFile {
 public:
  static constexpr std::uint64_t max_header_bytes = 100'000'000;

  explicit SafetensorsFile(const std::string& path) : file_(path) { parse(); }
  /// Parse bytes already in memory; `name` stands for the file in error messages.
  SafetensorsFile(const std::string& name, std::vector<std::byte> bytes) : file_(name, std::move(bytes)) { parse(); }

  const std::string& path() const { return file_.path(); }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  const SafetensorsTensor* find(const std::string& name) const {
    const auto it = std::find_if(tensors_.begin(), tensors_.end(), [&](const auto& t) { return t.name == name; });
    return it == tensors_.end() ? nullptr : &*it;
  }
  const SafetensorsTensor& tensor(const std::string& name) const {
    if (const auto* t = find(name)) return *t;
    throw Error(path() + ": no tensor named '" + name + "'");
  }

  /// A zero-copy typed view; T must match the stored dtype's size and the data be aligned for T.
  template <class T>
  std::span<const T> view_as(const std::string& name, Dtype expected) const {
    const SafetensorsTensor& t = tensor(name);
    if (t.dtype != expected)
      throw Error(path() + ": tensor '" + name + "' is " + dtype_name(t.dtype) + ", not " + dtype_name(expected));
    if (reinterpret_cast<std::uintptr_t>(t.data.data()) % alignof(T) != 0)
      throw Error(path() + ": tensor '" + name + "' is not aligned for a zero-copy view");
    return {reinterpret_cast<const T*>(t.data.data()), t.data.size() / sizeof(T)};
  }

  /// F32 / F16 / BF16 tensor as float32 [rows, cols] (1-D tensors: one row; more dims: last is cols).
  RowMatrix to_float(const std::string& name) const {
    const SafetensorsTensor& t = tensor(name);
    if (t.dtype != Dtype::F32 && t.dtype != Dtype::F16 && t.dtype != Dtype::BF16)
      throw Error(path() + ": tensor '" + name + "' is " + dtype_name(t.dtype) + ", not a float type");
    const Index cols = t.shape.empty() ? 1 : static_cast<Index>(t.shape.back());
    const Index rows = cols == 0 ? 0 : static_cast<Index>(t.element_count()) / cols;
    RowMatrix m(rows, cols);
    // plain little-endian floats: the same layouts ggml's F32 / F16 / BF16 tensors use
    const ggml::Type as = t.dtype == Dtype::F32 ? ggml::Type::F32 : t.dtype == Dtype::F16 ? ggml::Type::F16 : ggml::Type::BF16;
    ggml::dequantize(as, t.data, std::span<float>(m.data(), static_cast<std::size_t>(m.size())));
    return m;
  }

  /// Drop the tensor's mapped pages from memory (MappedFile::release): for streaming readers.
  void release(const std::string& name) const { file_.release(tensor(name).data); }
  /// Copy `part` (a view into tensor bytes of this file) out without mapping it (MappedFile::copy).
  void copy(std::span<const std::byte> part, std::span<std::byte> out) const { file_.copy(part, out); }

 private:
  void parse() {
    const std::string& p = path();
    const auto bytes = file_.bytes();
    if (bytes.size() < 8) throw Error(p + ": truncated: no safetensors header length");
    std::uint64_t header_size;
    std::memcpy(&header_size, bytes.data(), 8);
    if (header_size > max_header_bytes) throw Error(p + ": header of " + std::to_string(header_size) + " bytes exceeds 100 MB");
    if (header_size > bytes.size() - 8)
      throw Error(p + ": truncated: header of " + std::to_string(header_size) + " bytes, file has " + std::to_string(bytes.size()));
    const char* text = reinterpret_cast<const char*>(bytes.data() + 8);
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(text, text + header_size);
    } catch (const nlohmann::json::exception& e) {
      throw Error(p + ": header is not valid JSON: " + e.what());
    }
    if (!header.is_object()) throw Error(p + ": header is not a JSON object");
    const auto data = bytes.subspan(8 + static_cast<std::size_t>(header_size));
    std::vector<std::pair<std::uint64_t, std::uint64_t>> extents;
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        if (!entry.is_object()) throw Error(p + ": __metadata__ is not an object");
        for (const auto& [key, value] : entry.items()) {
          if (!value.is_string()) throw Error(p + ": __metadata__ value for '" + key + "' is not a string");
          metadata_[key] = value.get<std::string>();
        }
        continue;
      }
      const std::string where = p + ": tensor '" + name + "'";
      if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
        throw Error(where + ": needs dtype, shape and data_offsets");
      SafetensorsTensor t;
      t.name = name;
      if (!entry["dtype"].is_string()) throw Error(where + ": dtype is not a string");
      const auto dtype = dtype_from_name(entry["dtype"].get<std::string>());
      if (!dtype) throw Error(where + ": unsupported dtype '" + entry["dtype"].get<std::string>() + "'");
      t.dtype = *dtype;
      const auto& shape = entry["shape"];
      if (!shape.is_array() || shape.size() > 8) throw Error(where + ": shape must be an array of at most 8 sizes");
      std::uint64_t count = 1;
      for (const auto& d : shape) {
        if (!d.is_number_unsigned()) throw Error(where + ": shape entries must be non-negative integers");
        const auto size = d.get<std::uint64_t>();
        if (size != 0 && count > (std::uint64_t{1} << 48) / size) throw Error(where + ": shape is impossibly large");
        count *= size;
        t.shape.push_back(static_cast<std::int64_t>(size));
      }
      const auto& offsets = entry["data_offsets"];
      if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
        throw Error(where + ": data_offsets must be [begin, end]");
      const auto begin = offsets[0].get<std::uint64_t>(), end = offsets[1].get<std::uint64_t>();
      if (begin > end || end > data.size())
        throw Error(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] lie outside the " +
                    std::to_string(data.size()) + " data bytes (truncated?)");
      if (end - begin != count * dtype_size(t.dtype))
        throw Error(where + ": " + std::to_string(end - begin) + " bytes do not hold shape x " + dtype_name(t.dtype));
      t.data = data.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(end - begin));
      extents.emplace_back(begin, end);
      tensors_.push_back(std::move(t));
    }
    std::sort(extents.begin(), extents.end());
    std::uint64_t expected = 0;
    for (const auto& [begin, end] : extents) {
      if (begin != expected) throw Error(p + ": tensor data " + (begin < expected ? "overlaps" : "leaves a gap") + " at byte " + std::to_string(begin));
      expected = end;
    }
    if (expected != data.size()) throw Error(p + ": " + std::to_string(data.size() - expected) + " bytes after the last tensor");
  }

  MappedFile file_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// A checkpoint directory: model.safetensors, or shards listed in model.safetensors.index.json.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::filesystem::path& dir) : dir_(dir.string()) {
    const auto index = dir / "model.safetensors.index.json";
    if (std::filesystem::exists(index)) {
      std::ifstream in(index);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(in);
      } catch (const nlohmann::json::exception& e) {
        throw Error(index.string() + ": not valid JSON: " + e.what());
      }
      if (!j.contains("weight_map") || !j["weight_map"].is_object()) throw Error(index.string() + ": no weight_map");
      std::map<std::string, std::size_t> opened;
      for (const auto& [name, file] : j["weight_map"].items()) {
        if (!file.is_string()) throw Error(index.string() + ": weight_map entry '" + name + "' is not a file name");
        const std::string shard = file.get<std::string>();
        if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
          throw Error(index.string() + ": shard name '" + shard + "' must be a plain file name");
        auto [it, inserted] = opened.emplace(shard, files_.size());
        if (inserted) files_.emplace_back((dir / shard).string());
        if (!files_[it->second].find(name))
          throw Error(index.string() + ": tensor '" + name + "' is not in " + shard);
        where_[name] = it->second;
      }
    } else {
      files_.emplace_back((dir / "model.safetensors").string());
      for (const auto& t : files_[0].tensors()) where_[t.name] = 0;
    }
  }
  const SafetensorsFile& file_of(const std::string& name) const {
    const auto it = where_.find(name);
    if (it == where_.end()) throw Error(dir_ + ": checkpoint has no tensor named '" + name + "'");
    return files_[it->second];
  }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const SafetensorsTensor& tensor(const std::string& name) const { return file_of(name).tensor(name); }
  RowMatrix to_float(const std::string& name) const { return file_of(name).to_float(name); }
  void release(const std::string& name) const { file_of(name).release(name); }
  /// Copy `part` of tensor `name`'s bytes out without mapping them (MappedFile::copy).
  void copy(const std::string& name, std::span<const std::byte> part, std::span<std::byte> out) const { file_of(name).copy(part, out); }
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto& [name, file] : where_) n.push_back(name);
    return n;
  }

 private:
  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::size_t> where_;
};

/// Collects tensors, then writes one safetensors file byte for byte as the reference writes it.
/// The tensors wait in memory, or, given a spill file, on disk (the header, written first, needs
/// them all: a shard of a large checkpoint need not sit in host memory until it is complete).
class SafetensorsWriter {
 public:
  SafetensorsWriter() = default;
  /// Tensors added are parked in a SpillFile at `spill` (created, and unlinked at once).
  explicit SafetensorsWriter(const std::filesystem::path& spill) : spill_(std::make_unique<SpillFile>(spill)) {}

  void add(const std::string& name, Dtype dtype, std::vector<std::int64_t> shape, std::span<const std::byte> bytes) {
    check(name, dtype, shape, bytes.size());
    if (spill_) entries_.push_back({name, dtype, std::move(shape), {}, bytes.size(), spill_->append(bytes)});
    else entries_.push_back({name, dtype, std::move(shape), std::vector<std::byte>(bytes.begin(), bytes.end()), bytes.size(), 0});
  }
  /// As above, taking the bytes over (no copy).
  void add(const std::string& name, Dtype dtype, std::vector<std::int64_t> shape, std::vector<std::byte>&& bytes) {
    if (spill_) return add(name, dtype, std::move(shape), std::span<const std::byte>(bytes));
    check(name, dtype, shape, bytes.size());
    const std::size_t size = bytes.size();
    entries_.push_back({name, dtype, std::move(shape), std::move(bytes), size, 0});
  }
  template <class T>
  void add(const std::string& name, Dtype dtype, std::vector<std::int64_t> shape, std::span<const T> values) {
    add(name, dtype, std::move(shape), std::as_bytes(values));
  }
  /// A tensor of `bytes` bytes given in pieces, in order: fill(put) calls put(span) for each. With
  /// a spill file it is never whole in memory (a large model's embedding and LM head).
  template <class Fill>
  void add_pieces(const std::string& name, Dtype dtype, std::vector<std::int64_t> shape, std::size_t bytes, Fill&& fill) {
    check(name, dtype, shape, bytes);
    std::vector<std::byte> kept;
    const std::uint64_t at = spill_ ? spill_->size() : 0;
    std::size_t given = 0;
    fill([&](std::span<const std::byte> piece) {
      detail::require(given + piece.size() <= bytes, "safetensors writer: tensor '" + name + "': more bytes given than its shape holds");
      given += piece.size();
      if (spill_) spill_->append(piece);
      else kept.insert(kept.end(), piece.begin(), piece.end());
    });
    detail::require(given == bytes, "safetensors writer: tensor '" + name + "': " + std::to_string(given) + " of its " +
                                        std::to_string(bytes) + " bytes given");
    entries_.push_back({name, dtype, std::move(shape), std::move(kept), bytes, at});
  }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

 private:
  void check(const std::string& name, Dtype dtype, const std::vector<std::int64_t>& shape, std::size_t bytes) const {
    std::uint64_t count = 1;
    for (auto d : shape) {
      detail::require(d >= 0, "safetensors writer: tensor '" + name + "' has a negative dimension");
      count *= static_cast<std::uint64_t>(d);
    }
    detail::require(count * dtype_size(dtype) == bytes,
                    "safetensors writer: tensor '" + name + "': " + std::to_string(bytes) + " bytes do not hold its shape");
    detail::require(std::none_of(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.name == name; }),
                    "safetensors writer: tensor '" + name + "' added twice");
  }

 public:

  /// The whole file's bytes, laid out as the reference writer (safetensors 0.4) lays them out:
  /// tensors sorted by dtype (wider first, in the format's dtype order) then name, stored
  /// contiguously in that order; compact JSON with "__metadata__" first and each entry's keys
  /// in the order dtype, shape, data_offsets; header padded with spaces to a multiple of 8.
  std::vector<std::byte> serialize() const {
    std::vector<std::byte> out;
    pieces([&](std::span<const std::byte> bytes) { out.insert(out.end(), bytes.begin(), bytes.end()); });
    return out;
  }
  /// Write to `path` via `path.tmp` and a rename: the file is complete or absent. The tensors'
  /// bytes go to the file as they are, without a second copy of the whole file in memory.
  void write(const std::filesystem::path& path) const {
    write_file_atomically_from(path, [&](auto&& put) { pieces(put); });
  }
  /// (name, bytes) of every tensor added.
  std::vector<std::pair<std::string, std::size_t>> sizes() const {
    std::vector<std::pair<std::string, std::size_t>> out;
    for (const Entry& e : entries_) out.emplace_back(e.name, e.size);
    return out;
  }

 private:
  // The file as consecutive pieces: the 8-byte header length and the header, then each tensor.
  template <class Put>
  void pieces(Put&& put) const {
    std::vector<const Entry*> order;
    for (const Entry& e : entries_) order.push_back(&e);
    std::stable_sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
      return a->dtype != b->dtype ? a->dtype > b->dtype : a->name < b->name;
    });
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::uint64_t offset = 0;
    for (const Entry* e : order) {
      nlohmann::ordered_json entry;
      entry["dtype"] = dtype_name(e->dtype);
      entry["shape"] = e->shape;
      entry["data_offsets"] = {offset, offset + e->size};
      header[e->name] = std::move(entry);
      offset += e->size;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::byte length[8];
    const std::uint64_t n = text.size();
    std::memcpy(length, &n, 8);
    put(std::span<const std::byte>(length, 8));
    put(std::as_bytes(std::span<const char>(text.data(), text.size())));
    for (const Entry* e : order)
      if (spill_) spill_->read(e->spilled_at, e->size, put);
      else put(std::span<const std::byte>(e->bytes));
  }

  struct Entry {
    std::string name;
    Dtype dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> bytes;  // empty when spilled
    std::size_t size;
    std::uint64_t spilled_at;
  };
  std::unique_ptr<SpillFile> spill_;
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace autoround
