// ggml block quantization and the GGUF container against the reference tools: the fixture
// tests/fixtures/reference_quants.gguf (scripts/make_ggml_fixtures.py) was written by gguf-py's
// GGUFWriter, with Q4_0/Q4_1/Q8_0 blocks from gguf-py's quantizers and Q2_K..Q6_K blocks from
// llama.cpp's own ggml_quantize_chunk. We must produce the same blocks from the same input, read
// them as gguf-py reads them, and rewrite the whole file byte for byte.
#include <doctest/doctest.h>

#include <autoround/format/gguf_reader.hpp>
#include <autoround/format/gguf_writer.hpp>
#include <autoround/pack/ggml_quantize.hpp>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace test_ggml_quantize {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
const std::string fixture_path = AUTOROUND_FIXTURES_DIR "/reference_quants.gguf";
const GgufFile& fixture() {
  static const GgufFile f(fixture_path);
  return f;
}
std::vector<std::byte> bytes_of(const GgufTensor& t) { return {t.data.begin(), t.data.end()}; }
const ggml::Type all_types[] = {ggml::Type::Q4_0, ggml::Type::Q4_1, ggml::Type::Q5_0, ggml::Type::Q5_1, ggml::Type::Q8_0, ggml::Type::Q2_K,
                                ggml::Type::Q3_K, ggml::Type::Q4_K, ggml::Type::Q5_K, ggml::Type::Q6_K};
std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
}  // namespace

TEST_CASE("our block quantizers reproduce gguf-py's and llama.cpp's blocks byte for byte") {
  const RowMatrix x = fixture().to_float("input");
  const std::span<const float> input(x.data(), static_cast<std::size_t>(x.size()));
  for (ggml::Type type : all_types) {
    const std::string name = lower(ggml::traits(type).name);
    CAPTURE(name);
    const GgufTensor& expected = fixture().tensor(name);
    CHECK(expected.type == type);
    const std::vector<std::byte> ours = ggml::quantize(type, input);
    REQUIRE(ours.size() == expected.data.size());
    std::size_t first_difference = ours.size();
    for (std::size_t i = 0; i < ours.size(); ++i)
      if (ours[i] != expected.data[i]) { first_difference = i; break; }
    CHECK_MESSAGE(first_difference == ours.size(), "first different byte: " << first_difference << " of " << ours.size());
  }
}

TEST_CASE("BF16: round to nearest even, as torch's .to(torch.bfloat16) (a bf16 Gemma checkpoint's embedding scale)") {
  // hand-computed: 1 + 2^-8 lies halfway between bf16 1 (0x3F80) and 1 + 2^-7 (0x3F81): to the even
  // 0x3F80; 1 + 3·2^-8 halfway between 0x3F81 and 0x3F82: to 0x3F82; √2816 = 53.0660 (0x42544395)
  // rounds to 53.0 (0x4254), as transformers' Gemma scales a bf16 embedding; -0, inf stay
  const std::vector<float> x = {1.0f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, std::sqrt(2816.0f), -0.0f, INFINITY, -2.5f};
  const std::vector<std::uint16_t> expected = {0x3F80, 0x3F80, 0x3F82, 0x4254, 0x8000, 0x7F80, 0xC020};
  const std::vector<std::byte> bytes = ggml::quantize(ggml::Type::BF16, x);
  REQUIRE(bytes.size() == 2 * x.size());
  std::vector<float> back(x.size());
  ggml::dequantize(ggml::Type::BF16, bytes, back);
  for (std::size_t i = 0; i < x.size(); ++i) {
    CAPTURE(i);
    std::uint16_t b;
    std::memcpy(&b, bytes.data() + 2 * i, 2);
    CHECK(b == expected[i]);
    CHECK(std::bit_cast<std::uint32_t>(back[i]) == static_cast<std::uint32_t>(expected[i]) << 16);
  }
}

TEST_CASE("our dequantization of every block type equals gguf-py's") {
  for (ggml::Type type : all_types) {
    const std::string name = lower(ggml::traits(type).name);
    CAPTURE(name);
    const RowMatrix ours = fixture().to_float(name);
    const RowMatrix theirs = fixture().to_float(name + ".dequantized");
    REQUIRE(ours.rows() == theirs.rows());
    CHECK((ours - theirs).cwiseAbs().maxCoeff() == 0.0f);
  }
}

TEST_CASE("quantization error is what each block type promises") {
  // an independent sanity bound: relative RMS error per type on the heavy-tailed input
  const RowMatrix x = fixture().to_float("input");
  const std::span<const float> input(x.data(), static_cast<std::size_t>(x.size()));
  const double bound[] = {0.12, 0.12, 0.06, 0.06, 0.01, 0.45, 0.25, 0.12, 0.06, 0.03};
  int k = 0;
  for (ggml::Type type : all_types) {
    const auto bytes = ggml::quantize(type, input);
    std::vector<float> back(input.size());
    ggml::dequantize(type, bytes, back);
    double err = 0, ref = 0;
    for (std::size_t i = 0; i < back.size(); ++i) {
      err += (back[i] - input[i]) * (back[i] - input[i]);
      ref += input[i] * input[i];
    }
    CAPTURE(ggml::traits(type).name);
    CHECK(std::sqrt(err / ref) < bound[k++]);
  }
}

TEST_CASE("GgufWriter rewrites gguf-py's file byte for byte, and round-trips through our reader") {
  GgufWriter w;
  for (const std::string& key : fixture().metadata_order()) w.set(key, fixture().metadata().at(key));
  for (const GgufTensor& t : fixture().tensors()) w.add_tensor(t.name, t.dims, t.type, bytes_of(t));
  const std::vector<std::byte> ours = w.serialize();
  std::ifstream in(fixture_path, std::ios::binary);
  const std::vector<char> theirs((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(ours.size() == theirs.size());
  CHECK(std::memcmp(ours.data(), theirs.data(), ours.size()) == 0);

  const auto path = std::filesystem::temp_directory_path() / "autoround_test_writer.gguf";
  w.write(path);
  const GgufFile back(path.string());
  CHECK(back.get_string("test.string") == "héllo");
  CHECK(back.metadata().at("test.u64").u == (std::uint64_t{1} << 63) + 5);
  CHECK(back.metadata().at("test.strings").array.at(2).s == "bc");
  CHECK(back.tensor("q6_k").type == ggml::Type::Q6_K);
  CHECK(!std::filesystem::exists(path.string() + ".tmp"));
  std::filesystem::remove(path);
}

TEST_CASE("GgufStreamWriter writes gguf-py's file byte for byte, one tensor at a time; a broken stream leaves nothing") {
  GgufWriter layout;
  for (const std::string& key : fixture().metadata_order()) layout.set(key, fixture().metadata().at(key));
  for (const GgufTensor& t : fixture().tensors()) layout.declare_tensor(t.name, t.dims, t.type);
  const auto path = std::filesystem::temp_directory_path() / "autoround_test_stream_writer.gguf";
  std::filesystem::remove(path);
  {
    GgufStreamWriter stream(path, layout);
    for (const GgufTensor& t : fixture().tensors()) stream.write(t.name, bytes_of(t));
    CHECK(!std::filesystem::exists(path));  // only the .tmp until finish()
    stream.finish();
  }
  std::ifstream ours_in(path, std::ios::binary), theirs_in(fixture_path, std::ios::binary);
  const std::vector<char> ours((std::istreambuf_iterator<char>(ours_in)), std::istreambuf_iterator<char>());
  const std::vector<char> theirs((std::istreambuf_iterator<char>(theirs_in)), std::istreambuf_iterator<char>());
  REQUIRE(ours.size() == theirs.size());
  CHECK(std::memcmp(ours.data(), theirs.data(), ours.size()) == 0);
  std::filesystem::remove(path);

  const auto& tensors = fixture().tensors();
  REQUIRE(tensors.size() >= 2);
  {  // out of order, wrong size, finished early: clear errors, and no file
    GgufStreamWriter stream(path, layout);
    CHECK_THROWS_WITH_AS(stream.write(tensors[1].name, bytes_of(tensors[1])),
                         doctest::Contains(("'" + tensors[1].name + "' written where '" + tensors[0].name + "' is declared").c_str()), Error);
    auto short_bytes = bytes_of(tensors[0]);
    short_bytes.pop_back();
    CHECK_THROWS_WITH_AS(stream.write(tensors[0].name, short_bytes), doctest::Contains("bytes do not hold its shape"), Error);
    stream.write(tensors[0].name, bytes_of(tensors[0]));
    CHECK_THROWS_WITH_AS(stream.finish(), doctest::Contains(("finished before tensor '" + tensors[1].name + "'").c_str()), Error);
  }
  CHECK(!std::filesystem::exists(path));
  CHECK(!std::filesystem::exists(path.string() + ".tmp"));
}

TEST_CASE("tuned weights go into Q4_0 / Q4_1 / Q8_0 unchanged") {
  auto q = make_unpacked(4, 32, Symmetric, 2, 64);
  for (std::size_t i = 0; i < q.codes.size(); ++i) q.codes[i] = static_cast<std::uint8_t>((i * 7) % 16);
  for (std::size_t g = 0; g < q.scales.size(); ++g) {
    q.scales[g] = round_to_half(0.01f * static_cast<float>(g + 1) * (g % 2 ? -1.0f : 1.0f));  // sym scales may be negative
    q.zeros[g] = 8;
  }
  std::vector<float> back(128);
  ggml::dequantize(ggml::Type::Q4_0, ggml::encode_tuned(ggml::Type::Q4_0, int_view(q)), back);
  const RowMatrix expected = q.dequantize();
  for (Index i = 0; i < 128; ++i) CHECK(back[static_cast<std::size_t>(i)] == expected.data()[i]);

  auto a = make_unpacked(4, 32, Asymmetric, 2, 64);
  a.codes = q.codes;
  for (std::size_t g = 0; g < a.scales.size(); ++g) {
    a.scales[g] = round_to_half(0.01f * static_cast<float>(g + 1));
    a.zeros[g] = static_cast<std::int32_t>(g * 3);
  }
  ggml::dequantize(ggml::Type::Q4_1, ggml::encode_tuned(ggml::Type::Q4_1, int_view(a)), back);
  const RowMatrix expected_a = a.dequantize();
  for (Index i = 0; i < 128; ++i) {  // m = -scale * zero rounded to fp16: off by at most half its ulp
    const std::size_t g = static_cast<std::size_t>(i / 32);
    const float m = a.scales[g] * static_cast<float>(a.zeros[g]);
    CHECK(std::fabs(back[static_cast<std::size_t>(i)] - expected_a.data()[i]) <= m * 0x1p-11f + 1e-9f);
  }

  CHECK_THROWS_WITH_AS(ggml::encode_tuned(ggml::Type::Q4_0, int_view(a), "blk.0.attn_q.weight"),
                       doctest::Contains("blk.0.attn_q.weight: W4G32 asym weights have no exact encoding as Q4_0"), Error);
  CHECK_THROWS_WITH_AS(ggml::quantize(ggml::Type::Q4_K, std::vector<float>(100)),
                       doctest::Contains("not a whole number of Q4_K blocks of 256"), Error);
}

TEST_CASE("MXFP4 (ggml type 39): gguf-py's blocks byte for byte, its dequantization, a hostile scale byte") {
  // tests/fixtures/reference_mxfp4.gguf: scripts/make_mxfp4_fixture.py (gguf-py 0.19.0's MXFP4,
  // its transcription of ggml's quantize_row_mxfp4_ref): exact ties, zero blocks, tiny and large exponents
  const GgufFile f(AUTOROUND_FIXTURES_DIR "/reference_mxfp4.gguf");
  const GgufTensor& expected = f.tensor("mxfp4");
  REQUIRE(expected.type == ggml::Type::MXFP4);
  CHECK(std::string(ggml::traits(ggml::Type::MXFP4).name) == "MXFP4");
  const RowMatrix x = f.to_float("input");
  const std::vector<std::byte> ours = ggml::quantize(ggml::Type::MXFP4, std::span<const float>(x.data(), static_cast<std::size_t>(x.size())));
  REQUIRE(ours.size() == expected.data.size());
  CHECK(std::equal(ours.begin(), ours.end(), expected.data.begin()));
  const RowMatrix back = f.to_float("mxfp4"), theirs = f.to_float("mxfp4.dequantized");
  CHECK((back - theirs).cwiseAbs().maxCoeff() == 0.0f);
  // hand-worked: the tie block (largest 6, e = 127): 0.25 and 0.75 and 5 go to the smaller neighbour
  CHECK(back(1, 32) == 0.0f);
  CHECK(back(1, 33) == 0.5f);
  CHECK(back(1, 38) == 4.0f);
  CHECK(back(1, 40) == 0.0f);   // -0.25: ggml never writes -0
  CHECK(back(1, 64) == 4.0f);   // a power-of-two maximum is exact
  // E8M0 byte 255 is NaN: refused with the tensor's name, as ggml's validation refuses it
  std::vector<std::byte> bad(17, std::byte{0});
  bad[0] = std::byte{0xFF};
  std::vector<float> out(32);
  CHECK_THROWS_WITH(ggml::dequantize(ggml::Type::MXFP4, bad, out), doctest::Contains("255"));
}
}  // namespace test_ggml_quantize
