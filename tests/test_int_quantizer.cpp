// IntQuantizer forward against values worked out by hand from the reference formulas
// (auto_round/data_type/int.py), and the padding rule against an explicitly padded weight.
#include <doctest/doctest.h>

#include <array>
#include <autoround/quantizer/int_quantizer.hpp>
#include <autoround/quantizer/quantized_weight.hpp>
#include <autoround/tune/layer_tuner.hpp>
#include <cstdint>
#include <vector>

namespace test_int_quantizer {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
template <class Q>
std::vector<float> fake_quantize(const Q& q, std::vector<float> w, std::vector<float> v, float min_scale = 1,
                                 float max_scale = 1, GroupQuant* params = nullptr) {
  std::vector<float> out(w.size());
  const GroupQuant gq = q.group_quant(group_range(w), min_scale, max_scale);
  if (params) *params = gq;
  q.fake_quantize(w, v, gq, out);
  return out;
}
}  // namespace

TEST_CASE("asym 2-bit: scale from the clamped range, zero point, round half to even") {
  const IntQuantizer<2, 4, Asymmetric> q;
  GroupQuant gq;
  // wmin = -1, wmax = 2: scale = 3 / 3 = 1, zero = round(1 / 1) = 1; 0.5 rounds to 0 (even)
  CHECK(fake_quantize(q, {-1.0f, 0.25f, 0.5f, 2.0f}, {0, 0, 0, 0}, 1, 1, &gq) ==
        std::vector<float>{-1.0f, 0.0f, 0.0f, 2.0f});
  CHECK(gq.scale == 1.0f);
  CHECK(gq.zero == 1.0f);
  SUBCASE("v shifts the rounding") {
    CHECK(fake_quantize(q, {-1.0f, 0.25f, 0.5f, 2.0f}, {0, 0, 0.3f, 0}) == std::vector<float>{-1, 0, 1, 2});
  }
  SUBCASE("min_scale clips the range; the scale goes through fp16") {
    // scale = fp16(2.5 / 3) = 0.83349609375, zero = round(0.5 / scale) = 1
    const auto out = fake_quantize(q, {-1.0f, 0.25f, 0.5f, 2.0f}, {0, 0, 0, 0}, 0.5f, 1.0f, &gq);
    CHECK(gq.scale == 0.83349609375f);
    CHECK(gq.zero == 1.0f);
    CHECK(out == std::vector<float>{-0.83349609375f, 0.0f, 0.83349609375f, 1.6669921875f});
  }
}

TEST_CASE("sym 4-bit full range: the larger side maps to code 0 (q = -8)") {
  const IntQuantizer<4, 4, Symmetric> q;
  GroupQuant gq;
  SUBCASE("negative side larger: positive scale") {
    // max_v = +0.7, scale = fp16(0.7 / 8) = 0.0875244140625, q = [-8, 1, 4, 6]
    const auto out = fake_quantize(q, {-0.7f, 0.1f, 0.35f, 0.5f}, {0, 0, 0, 0}, 1, 1, &gq);
    CHECK(gq.scale == 0.0875244140625f);
    CHECK(gq.zero == 8.0f);
    CHECK(out == std::vector<float>{-0.7001953125f, 0.0875244140625f, 0.35009765625f, 0.525146484375f});
    std::vector<std::uint8_t> codes(4);
    std::vector<float> w{-0.7f, 0.1f, 0.35f, 0.5f}, v(4, 0.0f);
    q.encode(w, v, gq, codes);
    CHECK(codes == std::vector<std::uint8_t>{0, 9, 12, 14});
  }
  SUBCASE("positive side larger: negative scale") {
    // max_v = -0.8, scale = fp16(-0.1) = -0.0999755859375, q = [2, -8]
    const auto out = fake_quantize(q, {-0.2f, 0.8f}, {0, 0}, 1, 1, &gq);
    CHECK(gq.scale == -0.0999755859375f);
    CHECK(out == std::vector<float>{-0.199951171875f, 0.7998046875f});
  }
}

TEST_CASE("zero-range and tiny groups use the 1e-5 scale threshold") {
  const float threshold = 1.0013580322265625e-05f;  // fp16(1e-5)
  GroupQuant gq;
  SUBCASE("asym all zeros") {
    CHECK(fake_quantize(IntQuantizer<4, 4, Asymmetric>{}, {0, 0, 0}, {0, 0, 0}, 1, 1, &gq) == std::vector<float>{0, 0, 0});
    CHECK(gq.scale == threshold);
    CHECK(gq.zero == 0.0f);
  }
  SUBCASE("sym all zeros") {
    CHECK(fake_quantize(IntQuantizer<4, 4, Symmetric>{}, {0, 0}, {0, 0}, 1, 1, &gq) == std::vector<float>{0, 0});
    CHECK(gq.scale == threshold);
  }
  SUBCASE("asym range below fp16's smallest subnormal") {
    fake_quantize(IntQuantizer<4, 4, Asymmetric>{}, {1e-7f, -2e-7f}, {0, 0}, 1, 1, &gq);
    CHECK(gq.scale == threshold);
  }
  SUBCASE("sym keeps the sign of a clamped negative scale") {
    // max_v = -4e-5, scale = fp16(-5e-6) (a negative subnormal) -> clamped to -threshold
    fake_quantize(IntQuantizer<4, 4, Symmetric>{}, {4e-5f, -1e-6f}, {0, 0}, 1, 1, &gq);
    CHECK(gq.scale == -threshold);
  }
  SUBCASE("sym scale that rounds to -0 in fp16 is not negative: +threshold, as torch.where(scale < 0)") {
    fake_quantize(IntQuantizer<4, 4, Symmetric>{}, {1e-7f, -1e-8f}, {0, 0}, 1, 1, &gq);
    CHECK(gq.scale == threshold);
  }
}

TEST_CASE("compile-time and Dynamic quantizers are the same code") {
  const IntQuantizer<3, 32, Symmetric> fixed;
  const DynamicIntQuantizer dynamic(QuantSpec{3, 32, Symmetric});
  CHECK(fixed.spec() == dynamic.spec());
  const std::vector<float> w{-0.31f, 0.02f, 0.4f, -0.05f, 0.17f}, v{0.1f, -0.2f, 0.0f, 0.45f, -0.45f};
  CHECK(fake_quantize(fixed, w, v, 0.9f, 0.8f) == fake_quantize(dynamic, w, v, 0.9f, 0.8f));
  const IntQuantizer<Dynamic, 128, Asymmetric> bits_at_runtime(QuantSpec{2, 128, Asymmetric});
  CHECK(bits_at_runtime.bits() == 2);
  CHECK(bits_at_runtime.max_code() == 3);
}

TEST_CASE("in_features not a multiple of the group size: same as zero padding (reference)") {
  // 3 rows x 10 cols at group 4 -> groups of 4, 4, 2; the reference pads to 12 with zeros.
  RowMatrix w(3, 10), padded = RowMatrix::Zero(3, 12);
  for (Index r = 0; r < 3; ++r)
    for (Index c = 0; c < 10; ++c) w(r, c) = std::sin(0.7f * static_cast<float>(r * 10 + c)) * (c == 9 ? 3.0f : 1.0f);
  padded.leftCols(10) = w;
  const IntQuantizer<4, 4, Asymmetric> q;
  const auto short_groups = quantize_rtn(q, view(w));
  const auto with_padding = quantize_rtn(q, view(padded));
  CHECK(short_groups.layout.groups_per_row() == 3);
  CHECK(short_groups.scales == with_padding.scales);
  CHECK(short_groups.zeros == with_padding.zeros);
  CHECK(short_groups.dequantize() == with_padding.dequantize().leftCols(10));
}

TEST_CASE("per-channel (-1) and rows shorter than a group are one group per row") {
  RowMatrix w(2, 6);
  w << 1, -2, 3, -4, 5, -6, 0.5, 0.25, -0.125, 1, 2, -3;
  const auto per_channel = quantize_rtn(IntQuantizer<4, PerChannel, Symmetric>{}, view(w));
  const auto short_row = quantize_rtn(IntQuantizer<4, 128, Symmetric>{}, view(w));
  CHECK(per_channel.layout.groups_per_row() == 1);
  CHECK(per_channel.scales == short_row.scales);
  // row 0: a = 6 > b = 5, scale = fp16(6 / 8) = 0.75; -6 -> code 0
  CHECK(per_channel.scales[0] == 0.75f);
  CHECK(per_channel.code(0, 5) == 0);
  CHECK(per_channel.code(0, 4) == 8 + 7);  // 5 / 0.75 = 6.67 -> 7
}
}  // namespace test_int_quantizer
