// FP8_BLOCK (FloatQuantizer<Fp8Block>: E4M3 weights under one scale per 128 x 128 tile, inputs
// E4M3 per token and 128 features) against auto-round 0.16.1 itself: the package's
// WrapperLinear._qdq_weight on a 256 x 384 weight, quant_block_fp_sym on a 200 x 300 one (ragged
// edge tiles, which the package's tuning cannot run), quant_fp8_sym on the inputs; values and
// autograd's gradients (tests/fixtures/fp8_block.safetensors, scripts/make_fp8_block_fixture.py).
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <autoround/export/quantized_llama.hpp>
#include <autoround/format/safetensors.hpp>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace test_fp8_block {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
const SafetensorsFile& fixture() {
  static const SafetensorsFile file{std::string(AUTOROUND_FIXTURES_DIR) + "/fp8_block.safetensors"};
  return file;
}

// The fixture script's inputs, computed as it computes them (integers over integers in float32,
// times powers of two: exact on both sides).
std::int64_t ramp(std::int64_t i, std::int64_t mul, std::int64_t mod, std::int64_t add = 0) { return (i * mul + add) % mod; }

RowMatrix weight(Index rows, Index cols) {
  RowMatrix w(rows, cols);
  for (Index i = 0; i < rows * cols; ++i)
    w.data()[i] = static_cast<float>(ramp(i, 7919, 20011, 13) - 10005) / 10005.0f / 64.0f * std::ldexp(1.0f, static_cast<int>((i / cols) % 5) - 2);
  w(3, 5) = 0.9f;
  w(130, 200) = -1.7f;
  w(70, 250) = 2.5f;
  w.block(150, 10, 10, 10).setZero();
  return w;
}
std::vector<float> offsets(Index rows, Index cols) {
  std::vector<float> v(static_cast<std::size_t>(rows * cols));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = i < 4 ? 0.0f : static_cast<float>(ramp(static_cast<std::int64_t>(i), 104729, 901) - 450) / 1000.0f;
  return v;
}
RowMatrix grad_out(Index rows, Index cols) {
  RowMatrix g(rows, cols);
  for (Index i = 0; i < rows * cols; ++i) g.data()[i] = static_cast<float>(ramp(i, 15485863, 1999) - 999) / 999.0f;
  return g;
}
std::vector<float> values(const std::string& name) {
  const RowMatrix m = fixture().to_float(name);
  return {m.data(), m.data() + m.size()};
}
}  // namespace

TEST_CASE("FP8_BLOCK weights: values and gradients equal auto-round 0.16.1's, whole and ragged tiles") {
  for (const auto& [prefix, rows, cols] : {std::tuple<std::string, Index, Index>{"tiled", 256, 384}, {"ragged", 200, 300}}) {
    CAPTURE(prefix);
    const RowMatrix w = weight(rows, cols);
    TunableWeight<Fp8BlockQuantizer> tw(Fp8BlockQuantizer{}, view(w));
    const GroupLayout& layout = tw.layout();
    CHECK(layout.row_bands() == 2);
    CHECK(layout.groups_per_row() == 3);
    CHECK(layout.group_index(rows - 1, 2) == 5);
    tw.rounding = offsets(rows, cols);
    tw.max_scale = values(prefix + ".max_scale");
    REQUIRE(tw.max_scale.size() == 6);

    RowMatrix ours(rows, cols);
    tw.forward(Cpu{2}, mutable_view(ours));
    const std::vector<float> out = values(prefix + ".out");
    int same = 0;
    for (Index i = 0; i < rows * cols; ++i) same += ours.data()[i] == out[static_cast<std::size_t>(i)];
    CHECK(same == rows * cols);  // bit for bit

    RowMatrix grad = grad_out(rows, cols);
    std::vector<float> gmin, gmax;
    tw.backward(Cpu{2}, mutable_view(grad), gmin, gmax);
    const std::vector<float> grad_v = values(prefix + ".grad_v"), grad_ms = values(prefix + ".grad_max_scale");
    same = 0;
    int zero = 0;
    for (Index i = 0; i < rows * cols; ++i) {
      same += grad.data()[i] == grad_v[static_cast<std::size_t>(i)];
      zero += grad_v[static_cast<std::size_t>(i)] == 0.0f;
    }
    CHECK(same == rows * cols);  // dL/dv bit for bit
    CHECK(zero > 0);             // the tiles' maxima at ±448 · scale pass none (the clamp)
    for (std::size_t k = 0; k < 6; ++k) {
      CAPTURE(k);
      CHECK(gmin[k] == 0.0f);
      // a tile's 16384 terms summed in double here, in float32 in torch's order there
      CHECK(gmax[k] == doctest::Approx(grad_ms[k]).epsilon(1e-4));
      CHECK((gmax[k] > 0) == (grad_ms[k] > 0));
    }

    // the tiles' float32 scales, and codes that dequantize to the tuned values
    const QuantizedWeight<Fp8BlockQuantizer> qw = tw.encode();
    CHECK(qw.scales == values(prefix + ".scale"));
    CHECK(qw.dequantize() == ours);
  }
}

TEST_CASE("FP8_BLOCK inputs: per token and 128 features as quant_fp8_sym, its backward as autograd's") {
  const RowMatrix x = fixture().to_float("act.x"), g = fixture().to_float("act.grad_out");
  const auto act = activation_quant_for(float_spec(FloatFormat::Fp8Block));
  REQUIRE(act.has_value());
  CHECK(act->static_scale(LinearInput::Mlp) == 0.0f);  // dynamic: no calibrated scale
  RowMatrix q = x;
  act->apply(q, LinearInput::Mlp);
  CHECK(q == fixture().to_float("act.out"));
  RowMatrix dx = g;
  act->backward(x, dx, LinearInput::Mlp);
  const RowMatrix expected = fixture().to_float("act.grad_x");
  // bit for bit but at each group's largest element, which also receives the scale's share (its
  // terms summed in double here, in float32 there)
  const Index groups = x.rows() * 3;
  int same = 0, close = 0;
  for (Index i = 0; i < x.size(); ++i) {
    const float e = expected.data()[i];
    same += dx.data()[i] == e;
    close += std::abs(dx.data()[i] - e) <= 1e-4f * std::max(std::abs(e), std::abs(g.data()[i]));
  }
  CHECK(same >= x.size() - groups);
  CHECK(close == x.size());
  CHECK(dx != g);  // not straight through
}

TEST_CASE("FP8_BLOCK as a scheme: the preset, its tiles, what refuses it") {
  const QuantSpec s = float_spec(FloatFormat::Fp8Block);
  CHECK(s.bits == 8);
  CHECK(s.group_size == 128);
  CHECK(s.group_rows == 128);
  CHECK(s.act_bits == 8);
  CHECK(DynamicFloatQuantizer(s).format() == FloatFormat::Fp8Block);
  CHECK(DynamicFloatQuantizer(float_spec(FloatFormat::Fp8)).format() == FloatFormat::Fp8);
  QuantSpec bad = s;
  bad.group_rows = 64;
  CHECK_THROWS_WITH(static_cast<void>(DynamicFloatQuantizer(bad)), doctest::Contains("group_size = (64, 128)"));
  bad = float_spec(FloatFormat::MxFp4);
  bad.group_rows = 128;
  CHECK_THROWS_WITH(static_cast<void>(DynamicFloatQuantizer(bad)), doctest::Contains("group size is 32"));

  // a negative weight that rounds to zero: +0 and code 0x00, as the reference's straight-through
  // cast (e4m3(x) - x) + x gives (torch: quant_block_fp_sym of [1, -1e-6] -> [1, +0])
  RowMatrix tiny = RowMatrix::Zero(1, 2);
  tiny << 1.0f, -1e-6f;
  TunableWeight<Fp8BlockQuantizer> tw(Fp8BlockQuantizer{}, view(tiny));
  RowMatrix q(1, 2);
  tw.forward(Cpu{1}, mutable_view(q));
  CHECK(q(0, 1) == 0.0f);
  CHECK_FALSE(std::signbit(q(0, 1)));
  CHECK(tw.encode().codes == std::vector<std::uint8_t>{0x7e, 0x00});  // 448 (the maximum's code), +0

  // a fused tensor (Phi-3's qkv_proj) stacks whole tiles only: a 200-row part would split one
  RowMatrix w = RowMatrix::Constant(200, 128, 0.01f);
  const QuantizedWeight<Fp8BlockQuantizer> part = TunableWeight<Fp8BlockQuantizer>(Fp8BlockQuantizer{}, view(w)).encode();
  CHECK_THROWS_WITH(static_cast<void>(stack_rows<Fp8BlockQuantizer>({&part, &part}, "qkv_proj")), doctest::Contains("splits a 128-row tile"));
  RowMatrix w2 = RowMatrix::Constant(256, 128, 0.01f);
  w2(255, 0) = 1.0f;  // the second band's tile scale differs from the first's
  const QuantizedWeight<Fp8BlockQuantizer> whole = TunableWeight<Fp8BlockQuantizer>(Fp8BlockQuantizer{}, view(w2)).encode();
  const QuantizedWeight<Fp8BlockQuantizer> stacked = stack_rows<Fp8BlockQuantizer>({&whole, &part}, "qkv_proj");
  CHECK(stacked.layout.row_bands() == 4);  // 256 + 200 rows: 2 + 2 bands
  CHECK(stacked.scales.size() == 4);
  CHECK(stacked.dequantize().topRows(256) == whole.dequantize());
  CHECK(stacked.dequantize().bottomRows(200) == part.dequantize());

  // a GGUF source's q/k rows reorder to Hugging Face's within each head, so within a tile: the scales stay
  std::vector<Index> from(256);
  for (Index r = 0; r < 256; ++r) from[static_cast<std::size_t>(r)] = (r / 64) * 64 + (r % 2 ? 32 + r % 64 / 2 : r % 64 / 2);
  const QuantizedWeight<Fp8BlockQuantizer> permuted = permute_rows(whole, from);
  CHECK(permuted.scales == whole.scales);
  for (Index r : {0, 1, 63, 130, 255}) CHECK(permuted.dequantize().row(r) == whole.dequantize().row(from[static_cast<std::size_t>(r)]));
  from[0] = 200;
  CHECK_THROWS_WITH(static_cast<void>(permute_rows(whole, from)), doctest::Contains("would leave its 128-row tile"));
}
}  // namespace test_fp8_block
