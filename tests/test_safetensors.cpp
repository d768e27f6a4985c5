// safetensors: the reference package's file (tests/fixtures/reference.safetensors, made by
// scripts/make_safetensors_fixture.py) is read back with the values it was given, our writer
// reproduces it byte for byte, and truncated or hostile files give clear errors.
#include <doctest/doctest.h>

#include <autoround/format/safetensors.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace test_safetensors {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;
namespace fs = std::filesystem;

namespace {
const std::string fixture = AUTOROUND_FIXTURES_DIR "/reference.safetensors";

std::vector<std::byte> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

// The fixture's tensors, recomputed from the formulas in the script (parked in memory, or on
// disk in a SpillFile at `spill`).
SafetensorsWriter fixture_writer(const fs::path& spill = {}) {
  std::vector<float> weight(24), norm{1.0f, -2.5f, 0.125f};
  for (int i = 0; i < 24; ++i) weight[i] = (static_cast<float>(i) - 11.5f) / 8.0f;
  std::vector<std::int32_t> qweight(6);
  for (int i = 0; i < 6; ++i) qweight[i] = static_cast<std::int32_t>(static_cast<std::int64_t>(i) * 123456789 - 300000000);
  std::vector<std::uint16_t> scales(6);
  for (int i = 0; i < 6; ++i) scales[i] = float_to_half_bits(static_cast<float>(i) / 16.0f + 0.25f);
  std::vector<std::uint8_t> codes{0, 50, 100, 150, 200};
  SafetensorsWriter w = spill.empty() ? SafetensorsWriter() : SafetensorsWriter(spill);
  // deliberately not in the file's order: the writer sorts as the reference does
  w.add<std::uint8_t>("lm_head.codes", Dtype::U8, {5}, codes);
  w.add<float>("model.layers.0.self_attn.q_proj.weight", Dtype::F32, {4, 6}, weight);
  w.add<std::uint16_t>("model.layers.0.self_attn.q_proj.scales", Dtype::F16, {2, 3}, scales);
  w.add<float>("empty", Dtype::F32, {0, 3}, std::span<const float>());
  w.add<std::int32_t>("model.layers.0.self_attn.q_proj.qweight", Dtype::I32, {2, 3}, qweight);
  w.add<float>("model.norm.weight", Dtype::F32, {3}, norm);
  w.set_metadata("format", "pt");
  return w;
}

std::vector<std::byte> with_header(const std::string& json, std::size_t data_bytes) {
  std::vector<std::byte> b(8 + json.size() + data_bytes, std::byte{0});
  const std::uint64_t n = json.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, json.data(), json.size());
  return b;
}
}  // namespace

TEST_CASE("the reference package's file reads back with its values, zero-copy") {
  const SafetensorsFile f(fixture);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.tensors().size() == 6);
  const RowMatrix w = f.to_float("model.layers.0.self_attn.q_proj.weight");
  CHECK(w.rows() == 4);
  CHECK(w.cols() == 6);
  CHECK(w(0, 0) == -11.5f / 8);
  CHECK(w(3, 5) == 11.5f / 8);
  const auto q = f.view_as<std::int32_t>("model.layers.0.self_attn.q_proj.qweight", Dtype::I32);
  CHECK(q[5] == 5 * 123456789 - 300000000);
  CHECK(q.data() == reinterpret_cast<const std::int32_t*>(f.tensor("model.layers.0.self_attn.q_proj.qweight").data.data()));
  CHECK(f.to_float("model.layers.0.self_attn.q_proj.scales")(1, 2) == 5.0f / 16 + 0.25f);
  CHECK(f.tensor("empty").element_count() == 0);
  CHECK(f.to_float("empty").size() == 0);  // no bytes, no copy (found by the fuzzer under UBSan)
  CHECK_THROWS_WITH_AS(f.view_as<float>("lm_head.codes", Dtype::F32), doctest::Contains("is U8, not F32"), Error);
  CHECK_THROWS_WITH_AS(f.tensor("nope"), doctest::Contains("no tensor named 'nope'"), Error);
}

TEST_CASE("a tensor's bytes copied out without mapping them equal the mapped bytes; a wrong size is an error") {
  // (what the embedding's rows are read with: MappedFile::copy, pread at the view's offset)
  const auto check = [](const SafetensorsFile& f) {
    const std::span<const std::byte> q = f.tensor("model.layers.0.self_attn.q_proj.qweight").data;
    std::vector<std::byte> out(q.size() - 8);
    f.copy(q.subspan(4, out.size()), out);
    CHECK(std::equal(out.begin(), out.end(), q.begin() + 4));
    std::vector<std::byte> small(3);
    CHECK_THROWS_WITH_AS(f.copy(q.subspan(0, 4), small), doctest::Contains("copy: 4 bytes into 3"), Error);
  };
  check(SafetensorsFile(fixture));  // mapped: read with pread
  std::ifstream in(fixture, std::ios::binary);
  const std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  check(SafetensorsFile("in memory", std::move(bytes)));  // in memory: copied
}

TEST_CASE("our writer reproduces the reference file byte for byte, and writes atomically") {
  const SafetensorsWriter w = fixture_writer();
  CHECK(w.serialize() == read_bytes(fixture));
  const auto path = fs::temp_directory_path() / "autoround_test_written.safetensors";
  w.write(path);
  CHECK(read_bytes(path.string()) == read_bytes(fixture));
  CHECK_FALSE(fs::exists(path.string() + ".tmp"));
  fs::remove(path);
  CHECK_THROWS_WITH_AS(SafetensorsWriter().add<float>("x", Dtype::F32, {2, 2}, std::vector<float>(3)),
                       doctest::Contains("tensor 'x': 12 bytes do not hold its shape"), Error);
}

TEST_CASE("a writer whose tensors wait on disk writes the same bytes, and leaves no spill file") {
  const auto spill = fs::temp_directory_path() / "autoround_test_writer.spill";
  const SafetensorsWriter w = fixture_writer(spill);
  CHECK_FALSE(fs::exists(spill));  // unlinked as soon as it was made
  CHECK(w.serialize() == read_bytes(fixture));
  // read back in pieces smaller than a tensor: the same bytes
  SpillFile file(spill);
  const std::vector<std::byte> bytes = read_bytes(fixture);
  CHECK(file.append(bytes) == 0);
  CHECK(file.append(std::span<const std::byte>(bytes).first(5)) == bytes.size());
  std::vector<std::byte> back;
  file.read(3, bytes.size() - 3, [&](std::span<const std::byte> piece) {
    CHECK(piece.size() <= 7);
    back.insert(back.end(), piece.begin(), piece.end());
  }, 7);
  CHECK(back == std::vector<std::byte>(bytes.begin() + 3, bytes.end()));
  CHECK_THROWS_WITH_AS(file.read(bytes.size(), 6, [](auto) {}), doctest::Contains("autoround_test_writer.spill: read failed"), Error);
  CHECK_THROWS_WITH_AS(SpillFile("/nonexistent-dir/x.spill"), doctest::Contains("/nonexistent-dir/x.spill: cannot create"), Error);
}

TEST_CASE("a tensor given in pieces is the tensor given whole, in memory and spilled; a wrong count is an error") {
  std::vector<float> values(24);
  for (int i = 0; i < 24; ++i) values[static_cast<std::size_t>(i)] = static_cast<float>(i) * 0.5f - 3.0f;
  const auto bytes = std::as_bytes(std::span<const float>(values));
  SafetensorsWriter whole;
  whole.add<float>("t", Dtype::F32, {4, 6}, values);
  const auto in_pieces = [&](SafetensorsWriter& w, std::size_t cut_at, std::size_t end) {
    w.add_pieces("t", Dtype::F32, {4, 6}, bytes.size(), [&](auto&& put) {
      put(bytes.subspan(0, cut_at));
      put(bytes.subspan(cut_at, end - cut_at));
    });
  };
  SafetensorsWriter memory, spilled(fs::temp_directory_path() / "autoround_test_pieces.spill");
  in_pieces(memory, 24, bytes.size());
  in_pieces(spilled, 40, bytes.size());
  CHECK(memory.serialize() == whole.serialize());
  CHECK(spilled.serialize() == whole.serialize());
  SafetensorsWriter short_one;
  CHECK_THROWS_WITH_AS(in_pieces(short_one, 8, bytes.size() - 4), doctest::Contains("tensor 't': 92 of its 96 bytes given"), Error);
  SafetensorsWriter long_one;
  CHECK_THROWS_WITH_AS(long_one.add_pieces("t", Dtype::F32, {2}, 8, [&](auto&& put) { put(bytes.subspan(0, 12)); }),
                       doctest::Contains("more bytes given than its shape holds"), Error);
}

TEST_CASE("every truncation of a valid file is an error naming the file") {
  const auto bytes = read_bytes(fixture);
  for (std::size_t size = 0; size < bytes.size(); ++size) {
    CAPTURE(size);
    CHECK_THROWS_WITH_AS(SafetensorsFile("cut.safetensors", std::vector<std::byte>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size))),
                         doctest::Contains("cut.safetensors"), Error);
  }
}

TEST_CASE("hostile headers") {
  auto error_of = [](const std::vector<std::byte>& b) {
    try {
      SafetensorsFile f("h.safetensors", b);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::vector<std::byte> huge(16, std::byte{0});
  const std::uint64_t n = 1ULL << 62;
  std::memcpy(huge.data(), &n, 8);
  CHECK(error_of(huge).find("exceeds 100 MB") != std::string::npos);
  CHECK(error_of(with_header("{\"a\":", 0)).find("not valid JSON") != std::string::npos);
  CHECK(error_of(with_header("[1,2]", 0)).find("not a JSON object") != std::string::npos);
  CHECK(error_of(with_header(R"({"a":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}})", 4)).find("unsupported dtype 'F99'") != std::string::npos);
  CHECK(error_of(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4)).find("do not hold shape") != std::string::npos);
  CHECK(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4000]}})", 4)).find("outside the 4 data bytes") != std::string::npos);
  CHECK(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", 8)).find("overlaps") != std::string::npos);
  CHECK(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)).find("gap") != std::string::npos);
  CHECK(error_of(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 9)).find("5 bytes after the last tensor") != std::string::npos);
  CHECK(error_of(with_header(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)).find("non-negative integers") != std::string::npos);
  CHECK(error_of(with_header(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", 4)).find("impossibly large") != std::string::npos);
  CHECK(error_of(with_header(R"({"__metadata__":{"k":1}})", 0)).find("is not a string") != std::string::npos);
  CHECK(error_of(with_header(R"({"a":{"dtype":"F32"}})", 0)).find("needs dtype, shape and data_offsets") != std::string::npos);
}

TEST_CASE("sharded checkpoints through model.safetensors.index.json") {
  const auto dir = fs::temp_directory_path() / "autoround_test_sharded";
  fs::remove_all(dir);
  fs::create_directories(dir);
  SafetensorsWriter a, b;
  a.add<float>("x", Dtype::F32, {2}, std::vector<float>{1, 2});
  b.add<float>("y", Dtype::F32, {1}, std::vector<float>{3});
  a.write(dir / "model-00001-of-00002.safetensors");
  b.write(dir / "model-00002-of-00002.safetensors");
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"metadata":{},"weight_map":{"x":"model-00001-of-00002.safetensors","y":"model-00002-of-00002.safetensors"}})";
  const SafetensorsCheckpoint ckpt(dir);
  CHECK(ckpt.to_float("y")(0, 0) == 3.0f);
  CHECK(ckpt.to_float("x")(0, 1) == 2.0f);
  CHECK(ckpt.names().size() == 2);
  std::ofstream(dir / "model.safetensors.index.json") << R"({"weight_map":{"x":"../../etc/passwd"}})";
  CHECK_THROWS_WITH_AS(SafetensorsCheckpoint{dir}, doctest::Contains("must be a plain file name"), Error);
  std::ofstream(dir / "model.safetensors.index.json") << R"({"weight_map":{"z":"model-00001-of-00002.safetensors"}})";
  CHECK_THROWS_WITH_AS(SafetensorsCheckpoint{dir}, doctest::Contains("tensor 'z' is not in"), Error);
  fs::remove_all(dir);
}
}  // namespace test_safetensors
