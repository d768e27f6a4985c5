#pragma once
// Reading GGUF files (llama.cpp's container; layout documented in docs/formats.md):
//   header   | magic "GGUF" u32 | version u32 (2 or 3) | tensor_count u64 | kv_count u64 |
//   metadata | kv_count x (key: string, value_type: u32, value) |
//   tensors  | tensor_count x (name: string, n_dims: u32, dims: u64[n_dims], type: u32, offset: u64) |
//   padding to general.alignment (default 32), then tensor data at the given offsets.
// string = u64 length + UTF-8 bytes; arrays = element type u32 + count u64 + elements.
// Everything is checked against the file's size before it is read: a truncated or hostile file
// gives an Error naming the file and what is wrong, never an out-of-bounds read.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/mapped_file.hpp"
#include "../core/matrix.hpp"
#include "ggml_blocks.hpp"

namespace autoround {

/// GGUF's metadata value types (the u32 written before each value).
enum class GgufType : std::uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9,
  U64 = 10, I64 = 11, F64 = 12,
};

/// One metadata value. Integers keep their sign class; arrays hold values of one type. `type`
/// (and `element_type` for arrays) is the exact type on disk, so that a writer can copy it.
struct GgufValue {
  enum class Kind { Unsigned, Signed, Float, Bool, String, Array } kind = Kind::Unsigned;
  GgufType type = GgufType::U32;
  GgufType element_type = GgufType::U8;
  std::uint64_t u = 0;
  std::int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  std::vector<GgufValue> array;
};

struct GgufTensor {
  std::string name;
  std::vector<std::uint64_t> dims;  ///< ggml order: dims[0] varies fastest (a row of a matrix)
  ggml::Type type{};
  std::uint64_t offset = 0;         ///< from the start of the data section
  std::span<const std::byte> data;  ///< the tensor's bytes inside the mapped file
  std::uint64_t element_count = 0;

  Index cols() const { return static_cast<Index>(dims[0]); }
  Index rows() const { return static_cast<Index>(element_count / dims[0]); }
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path) : file_(path) { parse(); }
  /// Parse bytes already in memory; `name` stands for the file in error messages.
  GgufFile(const std::string& name, std::vector<std::byte> bytes) : file_(name, std::move(bytes)) { parse(); }

  const std::string& path() const { return file_.path(); }
  std::uint32_t version() const { return version_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  /// Metadata keys in the order the file lists them.
  const std::vector<std::string>& metadata_order() const { return metadata_order_; }

  const GgufTensor* find_tensor(const std::string& name) const {
    const auto it = std::find_if(tensors_.begin(), tensors_.end(), [&](const GgufTensor& t) { return t.name == name; });
    return it == tensors_.end() ? nullptr : &*it;
  }
  const GgufTensor& tensor(const std::string& name) const {
    if (const GgufTensor* t = find_tensor(name)) return *t;
    throw Error(path() + ": no tensor named '" + name + "'");
  }

  const GgufValue* find(const std::string& key) const {
    const auto it = metadata_.find(key);
    return it == metadata_.end() ? nullptr : &it->second;
  }
  std::uint64_t get_uint(const std::string& key) const {
    const GgufValue& v = require_key(key);
    if (v.kind == GgufValue::Kind::Unsigned) return v.u;
    if (v.kind == GgufValue::Kind::Signed && v.i >= 0) return static_cast<std::uint64_t>(v.i);
    throw Error(path() + ": metadata '" + key + "' is not a non-negative integer");
  }
  double get_float(const std::string& key) const {
    const GgufValue& v = require_key(key);
    if (v.kind == GgufValue::Kind::Float) return v.f;
    throw Error(path() + ": metadata '" + key + "' is not a float");
  }
  bool get_bool(const std::string& key) const {
    const GgufValue& v = require_key(key);
    if (v.kind == GgufValue::Kind::Bool) return v.b;
    throw Error(path() + ": metadata '" + key + "' is not a bool");
  }
  std::string get_string(const std::string& key) const {
    const GgufValue& v = require_key(key);
    if (v.kind == GgufValue::Kind::String) return v.s;
    throw Error(path() + ": metadata '" + key + "' is not a string");
  }

  /// The tensor as float32 [rows, cols] (quantized types are dequantized).
  RowMatrix to_float(const GgufTensor& t) const {
    RowMatrix m(t.rows(), t.cols());
    try {
      ggml::dequantize(t.type, t.data, std::span<float>(m.data(), static_cast<std::size_t>(m.size())));
    } catch (const Error& e) {
      throw Error(path() + ": tensor '" + t.name + "': " + e.what());
    }
    return m;
  }
  RowMatrix to_float(const std::string& name) const { return to_float(tensor(name)); }
  /// Drop the tensor's mapped pages from memory (MappedFile::release): for streaming readers.
  void release(const GgufTensor& t) const { file_.release(t.data); }
  /// Copy `part` (a view into a tensor's bytes) out without mapping it (MappedFile::copy).
  void copy(std::span<const std::byte> part, std::span<std::byte> out) const { file_.copy(part, out); }

 private:
  // A bounds-checked reader over the mapped bytes.
  struct Cursor {
    std::span<const std::byte> bytes;
    std::size_t pos = 0;
    const std::string* path;

    void need(std::uint64_t n, const char* what) const {
      if (n > bytes.size() - pos)
        throw Error(*path + ": truncated: " + what + " at byte " + std::to_string(pos) + " needs " + std::to_string(n) +
                    " bytes, " + std::to_string(bytes.size() - pos) + " left");
    }
    template <class T>
    T read(const char* what) {
      need(sizeof(T), what);
      T value;
      std::memcpy(&value, bytes.data() + pos, sizeof(T));
      pos += sizeof(T);
      return value;
    }
    std::string read_string(const char* what) {
      const auto length = read<std::uint64_t>(what);
      need(length, what);
      std::string s(reinterpret_cast<const char*>(bytes.data() + pos), static_cast<std::size_t>(length));
      pos += static_cast<std::size_t>(length);
      return s;
    }
  };

  const GgufValue& require_key(const std::string& key) const {
    if (const GgufValue* v = find(key)) return *v;
    throw Error(path() + ": metadata key '" + key + "' is missing");
  }

  GgufValue read_value(Cursor& c, std::uint32_t type, int depth) {
    GgufValue v;
    v.type = static_cast<GgufType>(type);
    switch (static_cast<GgufType>(type)) {
      case GgufType::U8: v.u = c.read<std::uint8_t>("u8 value"); break;
      case GgufType::I8:
        v.kind = GgufValue::Kind::Signed;
        v.i = c.read<std::int8_t>("i8 value");
        break;
      case GgufType::U16: v.u = c.read<std::uint16_t>("u16 value"); break;
      case GgufType::I16:
        v.kind = GgufValue::Kind::Signed;
        v.i = c.read<std::int16_t>("i16 value");
        break;
      case GgufType::U32: v.u = c.read<std::uint32_t>("u32 value"); break;
      case GgufType::I32:
        v.kind = GgufValue::Kind::Signed;
        v.i = c.read<std::int32_t>("i32 value");
        break;
      case GgufType::F32:
        v.kind = GgufValue::Kind::Float;
        v.f = c.read<float>("f32 value");
        break;
      case GgufType::Bool: {
        const auto b = c.read<std::uint8_t>("bool value");
        if (b > 1) throw Error(path() + ": bool value " + std::to_string(b) + " at byte " + std::to_string(c.pos - 1));
        v.kind = GgufValue::Kind::Bool;
        v.b = b == 1;
        break;
      }
      case GgufType::String:
        v.kind = GgufValue::Kind::String;
        v.s = c.read_string("string value");
        break;
      case GgufType::Array: {
        if (depth > 4) throw Error(path() + ": arrays nested deeper than 4 levels");
        const auto element_type = c.read<std::uint32_t>("array type");
        const auto count = c.read<std::uint64_t>("array length");
        c.need(count, "array elements");  // every element takes at least one byte
        v.kind = GgufValue::Kind::Array;
        v.element_type = static_cast<GgufType>(element_type);
        v.array.reserve(static_cast<std::size_t>(count));
        for (std::uint64_t k = 0; k < count; ++k) v.array.push_back(read_value(c, element_type, depth + 1));
        break;
      }
      case GgufType::U64: v.u = c.read<std::uint64_t>("u64 value"); break;
      case GgufType::I64:
        v.kind = GgufValue::Kind::Signed;
        v.i = c.read<std::int64_t>("i64 value");
        break;
      case GgufType::F64:
        v.kind = GgufValue::Kind::Float;
        v.f = c.read<double>("f64 value");
        break;
      default:
        throw Error(path() + ": unknown metadata value type " + std::to_string(type) + " at byte " + std::to_string(c.pos));
    }
    return v;
  }

  void parse() {
    const std::string& p = file_.path();
    Cursor c{file_.bytes(), 0, &p};
    if (c.read<std::uint32_t>("magic") != 0x46554747u) throw Error(p + ": not a GGUF file (bad magic)");
    version_ = c.read<std::uint32_t>("version");
    if (version_ != 2 && version_ != 3) throw Error(p + ": GGUF version " + std::to_string(version_) + " is not supported (2 or 3)");
    const auto tensor_count = c.read<std::uint64_t>("tensor count");
    const auto kv_count = c.read<std::uint64_t>("metadata count");
    c.need(kv_count, "metadata");
    for (std::uint64_t k = 0; k < kv_count; ++k) {
      std::string key = c.read_string("metadata key");
      const auto type = c.read<std::uint32_t>("metadata type");
      GgufValue value = read_value(c, type, 0);
      if (!metadata_.emplace(key, std::move(value)).second) throw Error(p + ": metadata key '" + key + "' appears twice");
      metadata_order_.push_back(key);
    }
    std::uint64_t alignment = 32;
    if (const GgufValue* a = find("general.alignment")) {
      alignment = a->kind == GgufValue::Kind::Unsigned ? a->u : 0;
      if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > 65536)
        throw Error(p + ": general.alignment must be a power of two up to 65536");
    }
    c.need(tensor_count, "tensor infos");
    for (std::uint64_t k = 0; k < tensor_count; ++k) {
      GgufTensor t;
      t.name = c.read_string("tensor name");
      const auto n_dims = c.read<std::uint32_t>("tensor dimension count");
      if (n_dims == 0 || n_dims > 4) throw Error(p + ": tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
      t.element_count = 1;
      for (std::uint32_t d = 0; d < n_dims; ++d) {
        const auto dim = c.read<std::uint64_t>("tensor dimension");
        if (dim == 0 || dim > (std::uint64_t{1} << 40) / t.element_count)
          throw Error(p + ": tensor '" + t.name + "' has an impossible shape");
        t.dims.push_back(dim);
        t.element_count *= dim;
      }
      t.type = static_cast<ggml::Type>(c.read<std::uint32_t>("tensor type"));
      t.offset = c.read<std::uint64_t>("tensor offset");
      const ggml::TypeTraits tr = ggml::traits(t.type);
      if (tr.block_weights == 0)
        throw Error(p + ": tensor '" + t.name + "' has ggml type " + std::to_string(static_cast<unsigned>(t.type)) +
                    ", which this reader does not support");
      if (t.dims[0] % tr.block_weights != 0)
        throw Error(p + ": tensor '" + t.name + "' rows of " + std::to_string(t.dims[0]) + " are not whole " + tr.name + " blocks");
      if (t.offset % alignment != 0) throw Error(p + ": tensor '" + t.name + "' data is not aligned to " + std::to_string(alignment));
      if (find_tensor(t.name)) throw Error(p + ": tensor '" + t.name + "' appears twice");
      tensors_.push_back(std::move(t));
    }
    const std::uint64_t data_start = (c.pos + alignment - 1) / alignment * alignment;
    const std::uint64_t file_size = file_.bytes().size();
    std::vector<std::pair<std::uint64_t, std::uint64_t>> extents;
    for (GgufTensor& t : tensors_) {
      const ggml::TypeTraits tr = ggml::traits(t.type);
      const std::uint64_t size = t.element_count / tr.block_weights * tr.block_bytes;
      if (data_start > file_size || t.offset > file_size - data_start || size > file_size - data_start - t.offset)
        throw Error(p + ": tensor '" + t.name + "' data (" + std::to_string(size) + " bytes at offset " +
                    std::to_string(t.offset) + ") lies beyond the end of the file (truncated?)");
      t.data = file_.bytes().subspan(static_cast<std::size_t>(data_start + t.offset), static_cast<std::size_t>(size));
      extents.emplace_back(t.offset, t.offset + size);
    }
    std::sort(extents.begin(), extents.end());
    for (std::size_t k = 1; k < extents.size(); ++k)
      if (extents[k].first < extents[k - 1].second) throw Error(p + ": tensor data regions overlap");
  }

  MappedFile file_;
  std::uint32_t version_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<std::string> metadata_order_;
  std::vector<GgufTensor> tensors_;
};

}  // namespace autoround
