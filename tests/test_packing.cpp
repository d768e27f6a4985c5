// auto_round / auto_gptq / auto_awq packing against AutoRound's own packers: for each case in
// tests/fixtures/reference_packing.safetensors (scripts/make_pack_fixtures.py) we pack the same
// codes, scales and zero points and must produce the reference's qweight, qzeros, scales and
// g_idx byte for byte; unpacking gives the inputs back bit for bit.
#include <doctest/doctest.h>

#include <autoround/format/safetensors.hpp>
#include <autoround/pack/awq.hpp>
#include <autoround/pack/gptq.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace test_packing {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
const SafetensorsFile& fixture() {
  static const SafetensorsFile f(AUTOROUND_FIXTURES_DIR "/reference_packing.safetensors");
  return f;
}

template <class T>
std::vector<T> values(const std::string& name, Dtype dtype) {
  const auto v = fixture().view_as<T>(name, dtype);
  return {v.begin(), v.end()};
}

struct Case {
  std::string format;
  Symmetry symmetry;
  QuantizedWeight<DynamicIntQuantizer> weight;
};

Case load(const std::string& name) {
  std::istringstream meta(fixture().metadata().at(name));
  std::string format, sym;
  int bits = 0, group_size = 0;
  meta >> format >> bits >> group_size >> sym;
  const Symmetry symmetry = sym == "sym" ? Symmetric : Asymmetric;
  const auto& codes = fixture().tensor(name + ".codes");
  Case c{format, symmetry, make_unpacked(bits, group_size, symmetry, codes.shape[0], codes.shape[1])};
  c.weight.codes = values<std::uint8_t>(name + ".codes", Dtype::U8);
  c.weight.zeros = values<std::int32_t>(name + ".zero", Dtype::I32);
  c.weight.scales.clear();
  for (std::uint16_t h : fixture().view_as<std::uint16_t>(name + ".scale", Dtype::F16))
    c.weight.scales.push_back(half_bits_to_float(h));
  return c;
}

std::vector<std::string> cases_of(const std::string& format) {
  std::vector<std::string> names;
  for (const auto& [name, meta] : fixture().metadata())
    if (meta.rfind(format + " ", 0) == 0) names.push_back(name);
  return names;
}

void check_same_weights(const QuantizedWeight<DynamicIntQuantizer>& a, const QuantizedWeight<DynamicIntQuantizer>& b) {
  CHECK(a.codes == b.codes);
  CHECK(a.zeros == b.zeros);
  CHECK(a.scales == b.scales);
}
}  // namespace

TEST_CASE("auto_round packing equals AutoRound's qlinear_torch, and unpacks to the inputs") {
  const auto names = cases_of("auto_round");
  REQUIRE(names.size() == 6);
  for (const auto& name : names) {
    CAPTURE(name);
    const Case c = load(name);
    const GptqTensors t = pack_gptq(c.weight, GptqZeros::Stored);
    CHECK(t.qweight == values<std::int32_t>(name + ".qweight", Dtype::I32));
    CHECK(t.qzeros == values<std::int32_t>(name + ".qzeros", Dtype::I32));
    CHECK(t.scales == values<std::uint16_t>(name + ".scales", Dtype::F16));
    CHECK(fixture().tensor(name + ".qweight").shape == std::vector<std::int64_t>{t.qweight_rows(), t.out_features});
    CHECK(fixture().tensor(name + ".qzeros").shape == std::vector<std::int64_t>{t.groups(), t.qzeros_cols()});
    check_same_weights(unpack_gptq(t, c.symmetry), c.weight);
  }
}

TEST_CASE("auto_gptq (GPTQ v1) packing equals qlinear_torch_zp, zero - 1 and g_idx included") {
  const auto names = cases_of("auto_gptq");
  REQUIRE(names.size() == 6);
  for (const auto& name : names) {
    CAPTURE(name);
    const Case c = load(name);
    const GptqTensors t = pack_gptq(c.weight, GptqZeros::MinusOne, /*with_g_idx=*/true);
    CHECK(t.qweight == values<std::int32_t>(name + ".qweight", Dtype::I32));
    CHECK(t.qzeros == values<std::int32_t>(name + ".qzeros", Dtype::I32));
    CHECK(t.scales == values<std::uint16_t>(name + ".scales", Dtype::F16));
    CHECK(t.g_idx == values<std::int32_t>(name + ".g_idx", Dtype::I32));
    const auto back = unpack_gptq(t, c.symmetry);
    CHECK(back.codes == c.weight.codes);
    if (name.find("zero0") == std::string::npos) check_same_weights(back, c.weight);
    else  // v1 has no encoding for a zero point of 0: it reads back as 1, the others intact
      for (std::size_t i = 0; i < back.zeros.size(); ++i) CHECK(back.zeros[i] == std::max(c.weight.zeros[i], 1));
  }
}

TEST_CASE("auto_awq packing equals WQLinear_GEMM.from_linear (nibble order 0 2 4 6 1 3 5 7)") {
  const auto names = cases_of("auto_awq");
  REQUIRE(names.size() == 2);
  for (const auto& name : names) {
    CAPTURE(name);
    const Case c = load(name);
    const AwqTensors t = pack_awq(c.weight);
    CHECK(t.qweight == values<std::int32_t>(name + ".qweight", Dtype::I32));
    CHECK(t.qzeros == values<std::int32_t>(name + ".qzeros", Dtype::I32));
    CHECK(t.scales == values<std::uint16_t>(name + ".scales", Dtype::F16));
    check_same_weights(unpack_awq(t, c.symmetry), c.weight);
  }
}

TEST_CASE("hand-computed words: 4-bit GPTQ and AWQ order, 3-bit straddling fields") {
  auto q = make_unpacked(4, 8, Asymmetric, 8, 8);
  for (Index r = 0; r < 8; ++r)
    for (Index c = 0; c < 8; ++c) q.codes[static_cast<std::size_t>(r * 8 + c)] = static_cast<std::uint8_t>((c + r) & 15);
  std::fill(q.scales.begin(), q.scales.end(), 1.0f);
  for (Index r = 0; r < 8; ++r) q.zeros[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(r);
  const auto g = pack_gptq(q, GptqZeros::Stored);
  CHECK(static_cast<std::uint32_t>(g.qweight[0]) == 0x76543210u);  // column 0: codes 0..7 along the input
  CHECK(static_cast<std::uint32_t>(g.qzeros[0]) == 0x76543210u);   // zero points of outputs 0..7
  const auto m1 = pack_gptq(q, GptqZeros::MinusOne);
  CHECK(static_cast<std::uint32_t>(m1.qzeros[0]) == 0x65432100u);  // zero - 1, and 0 stays 0 (no v1 encoding)
  const auto a = pack_awq(q);
  CHECK(static_cast<std::uint32_t>(a.qweight[0]) == 0x75316420u);  // input 0: outputs 0,2,4,6,1,3,5,7
  CHECK(static_cast<std::uint32_t>(a.qzeros[0]) == 0x75316420u);

  auto t = make_unpacked(3, 32, Asymmetric, 32, 32);
  for (std::size_t i = 0; i < t.codes.size(); ++i) t.codes[i] = static_cast<std::uint8_t>(i % 32 == 10 || i % 32 == 21 ? 7 : 0);
  std::fill(t.scales.begin(), t.scales.end(), 1.0f);
  const auto p = pack_gptq(t, GptqZeros::Stored);
  CHECK(static_cast<std::uint32_t>(p.qweight[0 * 32]) == 0xC0000000u);  // low two bits of value 10
  CHECK(static_cast<std::uint32_t>(p.qweight[1 * 32]) == 0x80000001u);  // its top bit, low bit of 21
  CHECK(static_cast<std::uint32_t>(p.qweight[2 * 32]) == 0x00000003u);  // top two bits of 21
}

TEST_CASE("shapes the formats cannot hold are refused with the layer's name") {
  auto odd = make_unpacked(4, 32, Asymmetric, 12, 64);
  CHECK_THROWS_WITH_AS(pack_gptq(odd, GptqZeros::Stored, false, "model.layers.0.mlp.up_proj"),
                       doctest::Contains("model.layers.0.mlp.up_proj: out_features = 12 must be a multiple of 8"), Error);
  CHECK_THROWS_WITH_AS(pack_awq(odd, "x"), doctest::Contains("out_features = 12 must be a multiple of 8 for AWQ"), Error);
  auto short_group = make_unpacked(4, 64, Asymmetric, 8, 96);
  CHECK_THROWS_WITH_AS(pack_awq(short_group, "x"), doctest::Contains("must be a multiple of group_size = 64"), Error);
  auto five = make_unpacked(5, 32, Asymmetric, 32, 64);
  CHECK_THROWS_WITH_AS(pack_gptq(five, GptqZeros::Stored, false, "x"), doctest::Contains("2, 3, 4 and 8 bits, not 5"), Error);
  auto three = make_unpacked(3, 16, Asymmetric, 32, 48);
  CHECK_THROWS_WITH_AS(pack_gptq(three, GptqZeros::Stored, false, "x"), doctest::Contains("in_features = 48 must be a multiple of 32"), Error);
  GptqTensors truncated = pack_gptq(make_unpacked(4, 32, Asymmetric, 8, 32), GptqZeros::Stored);
  truncated.qweight.pop_back();
  CHECK_THROWS_WITH_AS(unpack_gptq(truncated, Asymmetric, "x"), doctest::Contains("sizes do not match"), Error);
}
}  // namespace test_packing
