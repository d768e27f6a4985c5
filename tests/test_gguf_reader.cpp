// GGUF reader on hand-built files: a valid one with values worked out by hand, and truncated or
// hostile ones that must give a clear error (never a crash or an out-of-bounds read).
#include <doctest/doctest.h>

#include <autoround/format/gguf_reader.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace test_gguf_reader {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {

struct Bytes {
  std::vector<std::uint8_t> data;
  template <class T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    data.insert(data.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<std::uint64_t>(s.size());
    data.insert(data.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& pad_to(std::size_t alignment) {
    while (data.size() % alignment) data.push_back(0);
    return *this;
  }
};

// A file in the temp directory that is removed when the test binary exits.
std::string write_temp(const Bytes& b, const std::string& name) {
  struct Cleanup {
    std::vector<std::filesystem::path> paths;
    ~Cleanup() {
      for (const auto& p : paths) std::filesystem::remove(p);
    }
  };
  static Cleanup cleanup;
  const auto path = std::filesystem::temp_directory_path() / ("autoround_test_" + name + ".gguf");
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data.data()), static_cast<std::streamsize>(b.data.size()));
  cleanup.paths.push_back(path);
  return path.string();
}

// header + one string kv + one u32 kv + tensors: "w" (Q4_1, 2 rows x 32) and "n" (F32, 4)
Bytes valid_file(std::uint64_t w_offset = 0, std::uint64_t n_offset = 64, bool place_data = true) {
  Bytes b;
  b.put<std::uint32_t>(0x46554747u).put<std::uint32_t>(3).put<std::uint64_t>(2).put<std::uint64_t>(2);
  b.str("general.architecture").put<std::uint32_t>(8).str("llama");
  b.str("llama.block_count").put<std::uint32_t>(4).put<std::uint32_t>(7);
  b.str("w").put<std::uint32_t>(2).put<std::uint64_t>(32).put<std::uint64_t>(2).put<std::uint32_t>(3).put<std::uint64_t>(w_offset);
  b.str("n").put<std::uint32_t>(1).put<std::uint64_t>(4).put<std::uint32_t>(0).put<std::uint64_t>(n_offset);
  b.pad_to(32);
  const std::size_t data_start = b.data.size();
  // Q4_1 block 0: d = 0.5 (0x3800), m = -1 (0xbc00), nibbles: low = j % 16, high = 15 - j % 16
  for (int row = 0; row < 2; ++row) {
    b.put<std::uint16_t>(0x3800).put<std::uint16_t>(row == 0 ? 0xbc00 : 0x0000);
    for (int j = 0; j < 16; ++j) b.put<std::uint8_t>(static_cast<std::uint8_t>(j | ((15 - j) << 4)));
  }
  while (place_data && b.data.size() < data_start + n_offset) b.data.push_back(0);
  for (float f : {1.5f, -2.0f, 0.25f, 8.0f}) b.put<float>(f);
  return b;
}

}  // namespace

TEST_CASE("a valid file: metadata, shapes, and Q4_1 / F32 values worked by hand") {
  const GgufFile f(write_temp(valid_file(), "valid"));
  CHECK(f.version() == 3);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_uint("llama.block_count") == 7);
  const GgufTensor& w = f.tensor("w");
  CHECK(w.rows() == 2);
  CHECK(w.cols() == 32);
  const RowMatrix m = f.to_float(w);
  // row 0: weight j = 0.5 * j - 1 for j < 16, weight j + 16 = 0.5 * (15 - j) - 1; row 1 without the offset
  CHECK(m(0, 0) == -1.0f);
  CHECK(m(0, 15) == 6.5f);
  CHECK(m(0, 16) == 6.5f);
  CHECK(m(0, 31) == -1.0f);
  CHECK(m(1, 3) == 1.5f);
  CHECK(f.to_float("n") == (RowMatrix(1, 4) << 1.5f, -2.0f, 0.25f, 8.0f).finished());
  CHECK_THROWS_WITH_AS(f.tensor("missing"), doctest::Contains("no tensor named 'missing'"), Error);
  CHECK_THROWS_WITH_AS(f.get_uint("general.architecture"), doctest::Contains("is not a non-negative integer"), Error);
}

TEST_CASE("every truncation of a valid file is an error naming the file") {
  const Bytes full = valid_file();
  for (std::size_t size = 0; size < full.data.size(); size += (size < 200 ? 1 : 7)) {
    Bytes cut;
    cut.data.assign(full.data.begin(), full.data.begin() + static_cast<std::ptrdiff_t>(size));
    const std::string path = write_temp(cut, "truncated");
    CAPTURE(size);
    CHECK_THROWS_WITH_AS(GgufFile{path}, doctest::Contains(path.c_str()), Error);
  }
}

TEST_CASE("hostile headers") {
  SUBCASE("bad magic") {
    Bytes b = valid_file();
    b.data[0] = 'X';
    CHECK_THROWS_WITH_AS(GgufFile{write_temp(b, "magic")}, doctest::Contains("not a GGUF file"), Error);
  }
  SUBCASE("a string claiming 2^63 bytes") {
    Bytes b;
    b.put<std::uint32_t>(0x46554747u).put<std::uint32_t>(3).put<std::uint64_t>(0).put<std::uint64_t>(1);
    b.put<std::uint64_t>(1ULL << 63);
    CHECK_THROWS_WITH_AS(GgufFile{write_temp(b, "huge_string")}, doctest::Contains("truncated: metadata key"), Error);
  }
  SUBCASE("an array claiming 2^60 elements") {
    Bytes b;
    b.put<std::uint32_t>(0x46554747u).put<std::uint32_t>(3).put<std::uint64_t>(0).put<std::uint64_t>(1);
    b.str("k").put<std::uint32_t>(9).put<std::uint32_t>(0).put<std::uint64_t>(1ULL << 60);
    CHECK_THROWS_WITH_AS(GgufFile{write_temp(b, "huge_array")}, doctest::Contains("array elements"), Error);
  }
  SUBCASE("a tensor count larger than the file") {
    Bytes b;
    b.put<std::uint32_t>(0x46554747u).put<std::uint32_t>(3).put<std::uint64_t>(1ULL << 62).put<std::uint64_t>(0);
    CHECK_THROWS_AS(GgufFile{write_temp(b, "tensor_count")}, Error);
  }
  SUBCASE("unknown value type") {
    Bytes b;
    b.put<std::uint32_t>(0x46554747u).put<std::uint32_t>(3).put<std::uint64_t>(0).put<std::uint64_t>(1);
    b.str("k").put<std::uint32_t>(99);
    CHECK_THROWS_WITH_AS(GgufFile{write_temp(b, "value_type")}, doctest::Contains("unknown metadata value type 99"), Error);
  }
  SUBCASE("tensor data beyond the end of the file") {
    CHECK_THROWS_WITH_AS(GgufFile{write_temp(valid_file(0, 1 << 20, false), "beyond")}, doctest::Contains("beyond the end"), Error);
  }
  SUBCASE("overlapping tensors") {
    CHECK_THROWS_WITH_AS(GgufFile{write_temp(valid_file(0, 32), "overlap")}, doctest::Contains("overlap"), Error);
  }
  SUBCASE("unaligned tensor data") {
    CHECK_THROWS_WITH_AS(GgufFile{write_temp(valid_file(0, 68), "unaligned")}, doctest::Contains("not aligned"), Error);
  }
  SUBCASE("missing file") {
    CHECK_THROWS_WITH_AS(GgufFile{"/nonexistent/model.gguf"}, doctest::Contains("/nonexistent/model.gguf: cannot open"), Error);
  }
}

TEST_CASE("a file written by the reference writer (gguf-py, scripts/make_gguf_seed.py)") {
  const GgufFile f(AUTOROUND_FIXTURES_DIR "/../fuzz/corpus/gguf/tiny.gguf");
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_uint("llama.block_count") == 2);
  CHECK(f.get_uint("test.u32") == 7);
  CHECK(f.get_float("test.f32") == 0.5);
  CHECK(f.find("test.bool")->b);
  CHECK(f.get_string("test.string") == "h\xc3\xa9llo");
  CHECK(f.find("test.array")->array.size() == 3);
  CHECK(f.find("test.strings")->array[1].s == "bc");
  const RowMatrix a = f.to_float("f32");
  CHECK(a.rows() == 2);
  CHECK(a.cols() == 4);
  CHECK(a(1, 3) == 3.5f);
  CHECK(f.to_float("f16")(2, 1) == 1.25f);
  // values gguf-py's dequantize gives for this Q8_0 tensor
  const RowMatrix q = f.to_float("q8_0");
  CHECK(q(0, 0) == doctest::Approx(-1.9688721).epsilon(1e-7));
  CHECK(q(0, 20) == doctest::Approx(-0.71313477).epsilon(1e-7));
  CHECK(q(1, 31) == doctest::Approx(1.9688721).epsilon(1e-7));
}
}  // namespace test_gguf_reader
