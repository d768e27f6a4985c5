// FloatQuantizer (MXFP4, MXFP8, NVFP4, FP8 per channel) against auto-round 0.16.1 itself: the
// package's WrapperLinear._qdq_weight on one weight with nonzero v and max_scale != 1, its values
// and autograd's gradients (tests/fixtures/float_quantizer.json, scripts/make_fp_fixtures.py);
// the element formats against their definitions.
#include <doctest/doctest.h>

#include <autoround/backend/cpu.hpp>
#include <autoround/core/fp16.hpp>
#include <autoround/model/activation_quant.hpp>
#include <autoround/quantizer/float_quantizer.hpp>
#include <autoround/quantizer/int_quantizer.hpp>
#include <autoround/tune/tunable_weight.hpp>
#include <autoround/pack/float_tensors.hpp>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace test_float_quantizer {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
nlohmann::json fixture() {
  std::ifstream in(std::string(AUTOROUND_FIXTURES_DIR) + "/float_quantizer.json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}
std::vector<float> floats(const nlohmann::json& j) {
  std::vector<float> out;
  for (const auto& x : j) out.push_back(static_cast<float>(x.get<double>()));
  return out;
}
QuantSpec spec_of(const nlohmann::json& c) {
  const std::string t = c["data_type"];
  QuantSpec s{c["bits"].get<int>(), c["group_size"].get<int>(), Symmetric};
  s.data_type = t == "mx_fp" ? DataType::MxFp : t == "nv_fp" ? DataType::NvFp : DataType::Fp;
  return s;
}
}  // namespace

TEST_CASE("E2M1, E4M3 and E8M0 as the formats define them") {
  using namespace minifloat;
  for (std::uint8_t c = 0; c < 16; ++c) CHECK(e2m1_code(e2m1_value(c)) == (c == 8 ? 8 : c));
  CHECK(e2m1_value(0x7) == 6.0f);
  CHECK(e2m1_value(0xB) == -1.5f);
  CHECK(e2m1_code(-0.0f) == 8);  // -0 keeps its sign bit, as the reference's packer
  // torch's float8_e4m3fn cast: ties to even, subnormals from 2^-9, 448 the largest
  CHECK(e4m3_round(1.0625f) == 1.0f);
  CHECK(e4m3_round(1.1875f) == 1.25f);
  CHECK(e4m3_round(232.0f) == 224.0f);
  CHECK(e4m3_round(248.0f) == 256.0f);
  CHECK(e4m3_round(0x1p-10f) == 0.0f);
  CHECK(e4m3_round(1.5f * 0x1p-10f) == 0x1p-9f);
  CHECK(e4m3_round(2.5f * 0x1p-9f) == 0x1p-8f);
  CHECK(e4m3_round(-500.0f) == -448.0f);
  int finite = 0;
  for (int c = 0; c < 256; ++c) {
    const float x = e4m3_value(static_cast<std::uint8_t>(c));
    if (std::isnan(x)) continue;
    ++finite;
    CHECK(e4m3_round(x) == x);
    if (c != 0x80) CHECK(e4m3_code(x) == c);
  }
  CHECK(finite == 254);  // 0x7f and 0xff are NaN
  CHECK(e4m3_value(0x7e) == 448.0f);
  CHECK(e8m0_code(1.0f) == 127);
  CHECK(e8m0_code(0x1p-127f) == 0);
  CHECK(e8m0_value(130) == 8.0f);
}

TEST_CASE("the host's bit-level shortcuts equal the library functions they replace") {
  // floor_log2 / even_integer / pow2 / frexp_exponent stand for floorf(log2f(u)), fmodf(t, 2) == 0,
  // ldexpf(1, e) and frexpf in the per-element loops (all 2^32 floats were checked once; here:
  // every float of [0.5, 8), the 4096 below every power of two, where log2f may round up onto it,
  // and a spread of others).
  long checked = 0, differing = 0;  // counted, not asserted one by one: tens of millions
  auto check = [&](float u) {
    const float t = u - 0.5f;
    differing += float_formulas::floor_log2(u) != floorf(log2f(u));
    differing += float_formulas::even_integer(t) != (fmodf(t, 2.0f) == 0.0f);
    differing += float_formulas::even_integer(-t) != (fmodf(-t, 2.0f) == 0.0f);
    ++checked;
  };
  for (float u = 0.5f; u < 8.0f; u = std::nextafter(u, 9.0f)) check(u);
  int rounded_up = 0;  // powers of two whose predecessors log2f rounds onto them: the slow path's reason
  for (int e = -125; e <= 127; ++e) {
    float u = std::ldexp(1.0f, e);
    for (int i = 0; i < 4096; ++i) {
      u = std::nextafter(u, 0.0f);
      check(u);
      rounded_up += floorf(log2f(u)) == static_cast<float>(e);
    }
  }
  CHECK(rounded_up > 0);
  for (float u = 0x1p-149f; u < 0x1p127f; u = std::fmax(u * 1.0009765625f, std::nextafter(u, 1.0f))) check(u);  // subnormals too
  CHECK(checked > 34'000'000);
  CHECK(differing == 0);
  for (int e = -126; e <= 127; ++e) REQUIRE(minifloat::pow2(e) == std::ldexp(1.0f, e));
  for (int e = -125; e <= 128; ++e) {  // 0.75 * 2^e: normal
    int expected = 0;
    std::frexp(std::ldexp(1.5f, e - 1), &expected);
    REQUIRE(minifloat::frexp_exponent(std::ldexp(1.5f, e - 1)) == expected);
  }
  CHECK(!float_formulas::even_integer(0x1p-149f));  // its half rounds to 0: not an integer's double
  CHECK(!float_formulas::even_integer(INFINITY));
  CHECK(float_formulas::even_integer(-0.0f));
}

TEST_CASE("values and gradients equal auto-round 0.16.1's (MXFP4, MXFP8, NVFP4, FP8 per channel)") {
  const nlohmann::json fx = fixture();
  const Index rows = fx["rows"], cols = fx["cols"];
  const std::vector<float> w = floats(fx["weight"]), grad_out = floats(fx["grad_out"]);
  const RowMatrix weight = Eigen::Map<const RowMatrix>(w.data(), rows, cols);
  for (const auto& c : fx["cases"]) {
    const std::string title = c["title"];
    CAPTURE(title);
    const DynamicFloatQuantizer q = DynamicFloatQuantizer(spec_of(c)).for_weight(view(weight));
    if (c.contains("global_scale")) CHECK(q.global_scale() == static_cast<float>(c["global_scale"].get<double>()));
    const std::vector<float> v = floats(c["v"]), ms = floats(c["max_scale"]), out = floats(c["out"]),
                             scale = floats(c["scale"]), grad_v = floats(c["grad_v"]), grad_ms = floats(c["grad_max_scale"]);
    CHECK(c["min_scale_grad_is_none"].get<bool>());  // min_scale is unused by every format: we hand SignSGD a 0

    // through the tuner's own state (TunableWeight: NVFP4's global scale from the weight)
    TunableWeight<DynamicFloatQuantizer> tw(DynamicFloatQuantizer(spec_of(c)), view(weight));
    REQUIRE(tw.max_scale.size() == ms.size());
    tw.rounding = v;
    tw.max_scale = ms;
    RowMatrix ours(rows, cols);
    tw.forward(Cpu{1}, mutable_view(ours));
    int same = 0;
    for (Index i = 0; i < rows * cols; ++i) same += ours.data()[i] == out[static_cast<std::size_t>(i)];
    CHECK(same == rows * cols);  // bit for bit

    RowMatrix grad = Eigen::Map<const RowMatrix>(grad_out.data(), rows, cols);
    std::vector<float> gmin, gmax;
    tw.backward(Cpu{1}, mutable_view(grad), gmin, gmax);
    same = 0;
    for (Index i = 0; i < rows * cols; ++i) same += grad.data()[i] == grad_v[static_cast<std::size_t>(i)];
    CHECK(same == rows * cols);  // dL/dv bit for bit
    for (std::size_t k = 0; k < ms.size(); ++k) {
      CAPTURE(k);
      CHECK(gmin[k] == 0.0f);
      // the group sums are taken in double here, in float32 in torch's order there
      CHECK(gmax[k] == doctest::Approx(grad_ms[k]).epsilon(2e-5));
      CHECK((gmax[k] > 0) == (grad_ms[k] > 0));
    }

    // the scales the formats store, and codes that dequantize to the tuned values
    const QuantizedWeight<DynamicFloatQuantizer> qw = tw.encode();
    REQUIRE(qw.scales.size() == scale.size());
    for (std::size_t k = 0; k < scale.size(); ++k) {
      CAPTURE(k);
      if (q.format() == FloatFormat::MxFp4 || q.format() == FloatFormat::MxFp8)
        CHECK(qw.scales[k] == std::ldexp(1.0f, static_cast<int>(scale[k])));  // the package returns the exponent
      else
        CHECK(qw.scales[k] == scale[k]);
    }
    const RowMatrix back = qw.dequantize();
    CHECK(back == ours);
  }
}

TEST_CASE("an all-zero group: the reference's values, and a max_scale gradient of 0 (the reference's is NaN)") {
  for (FloatFormat f : {FloatFormat::MxFp4, FloatFormat::MxFp8, FloatFormat::NvFp4, FloatFormat::Fp8}) {
    CAPTURE(static_cast<int>(f));
    RowMatrix w = RowMatrix::Zero(2, 32);
    w(1, 3) = 0.7f;  // the other row is all zeros
    TunableWeight<DynamicFloatQuantizer> tw(DynamicFloatQuantizer(float_spec(f)), view(w));
    for (float& x : tw.rounding) x = 0.3f;
    RowMatrix out(2, 32);
    tw.forward(Cpu{1}, mutable_view(out));
    // as the reference: an all-zero MX group takes log2(0) as 1 (S = 2^(1 - emax)), so v = 0.3 rounds
    // to one element step (MXFP4: 0.5 · 2^-1); NVFP4's zero block scale zeroes it; FP8's scale is clipped to 1/(448·512)
    const float expected = f == FloatFormat::MxFp4 ? 0.25f : f == FloatFormat::MxFp8 ? 0.3125f * 0x1p-7f
                         : f == FloatFormat::NvFp4 ? 0.0f : 0.3125f * (1.0f / (448.0f * 512.0f));
    for (Index c = 0; c < 32; ++c) CHECK(out(0, c) == expected);
    CHECK(out.allFinite());
    RowMatrix grad = RowMatrix::Ones(2, 32);
    std::vector<float> gmin, gmax;
    tw.backward(Cpu{1}, mutable_view(grad), gmin, gmax);
    CHECK(gmax[0] == 0.0f);
    for (float g : gmax) CHECK(std::isfinite(g));
  }
}

TEST_CASE("bad floating-point schemes name what is wrong") {
  QuantSpec s = float_spec(FloatFormat::MxFp4);
  s.group_size = 128;
  CHECK_THROWS_WITH(static_cast<void>(DynamicFloatQuantizer(s)), doctest::Contains("group size is 32"));
  s = float_spec(FloatFormat::NvFp4);
  s.bits = 8;
  CHECK_THROWS_WITH(static_cast<void>(DynamicFloatQuantizer(s)), doctest::Contains("nv_fp has 4 bits"));
  CHECK_THROWS_WITH(DynamicIntQuantizer(float_spec(FloatFormat::Fp8)), doctest::Contains("FloatQuantizer"));
  CHECK_THROWS_WITH(DynamicFloatQuantizer(QuantSpec(4, 32, Symmetric)), doctest::Contains("IntQuantizer"));
  CHECK_THROWS_WITH(NvFp4Quantizer(float_spec(FloatFormat::MxFp4)), doctest::Contains("compile-time Format"));
}

TEST_CASE("activation quantization equals auto-round's quant_mx and nv_fp4_with_static_gs") {
  const nlohmann::json fx = fixture();
  const Index rows = fx["rows"], cols = fx["cols"];
  const auto& a = fx["activations"];
  const std::vector<float> x = floats(a["x"]);
  const float act_max = static_cast<float>(a["nvfp4_act_max"].get<double>());
  for (const auto& [key, format] : {std::pair{"mxfp4", FloatFormat::MxFp4}, std::pair{"mxfp8", FloatFormat::MxFp8}, std::pair{"nvfp4", FloatFormat::NvFp4}}) {
    CAPTURE(key);
    const auto act = activation_quant_for(float_spec(format), {act_max, act_max, act_max, act_max});
    REQUIRE(act.has_value());
    RowMatrix m = Eigen::Map<const RowMatrix>(x.data(), rows, cols);
    act->apply(m, LinearInput::Mlp);
    const std::vector<float> expected = floats(a[key]);
    int same = 0;
    for (Index i = 0; i < rows * cols; ++i) same += m.data()[i] == expected[static_cast<std::size_t>(i)];
    CHECK(same == rows * cols);
  }
  CHECK_FALSE(activation_quant_for(QuantSpec{4, 128, Symmetric}).has_value());  // integer schemes: weights only
  // the _RCEIL presets: quant_mx_rceil's rounded-up shared exponent
  int differs_from_floor = 0;
  for (const auto& [key, format] : {std::pair{"mxfp4_rceil", FloatFormat::MxFp4}, std::pair{"mxfp8_rceil", FloatFormat::MxFp8}}) {
    CAPTURE(key);
    QuantSpec spec = float_spec(format);
    spec.act_rceil = true;
    const auto act = activation_quant_for(spec);
    REQUIRE(act.has_value());
    RowMatrix m = Eigen::Map<const RowMatrix>(x.data(), rows, cols), floor_rule = m;
    act->apply(m, LinearInput::Attention);
    activation_quant_for(float_spec(format))->apply(floor_rule, LinearInput::Attention);
    const std::vector<float> expected = floats(a[key]);
    int same = 0;
    for (Index i = 0; i < rows * cols; ++i) {
      same += m.data()[i] == expected[static_cast<std::size_t>(i)];
      differs_from_floor += m.data()[i] != floor_rule.data()[i];
    }
    CHECK(same == rows * cols);
  }
  CHECK(differs_from_floor > 0);  // the fixture tells the two rules apart
  QuantSpec bad = float_spec(FloatFormat::NvFp4);
  bad.act_rceil = true;
  CHECK_THROWS_WITH(static_cast<void>(DynamicFloatQuantizer(bad)), doctest::Contains("act_rceil"));
}

TEST_CASE("the activation quantizers' backward equals autograd's through the package's functions") {
  const nlohmann::json fx = fixture();
  const Index rows = fx["rows"], cols = fx["cols"];
  const auto& a = fx["activations"];
  const std::vector<float> x = floats(a["x"]), g = floats(a["grad_out"]);
  const RowMatrix X = Eigen::Map<const RowMatrix>(x.data(), rows, cols), G = Eigen::Map<const RowMatrix>(g.data(), rows, cols);
  const float act_max = static_cast<float>(a["nvfp4_act_max"].get<double>());
  struct Case {
    const char* key;
    FloatFormat format;
    bool rceil;
  };
  for (const Case c : {Case{"mxfp4", FloatFormat::MxFp4, false}, Case{"mxfp8", FloatFormat::MxFp8, false},
                       Case{"mxfp4_rceil", FloatFormat::MxFp4, true}, Case{"mxfp8_rceil", FloatFormat::MxFp8, true},
                       Case{"nvfp4", FloatFormat::NvFp4, false}}) {
    CAPTURE(c.key);
    QuantSpec spec = float_spec(c.format);
    spec.act_rceil = c.rceil;
    const auto act = activation_quant_for(spec, {act_max, act_max, act_max, act_max});
    REQUIRE(act.has_value());
    RowMatrix dx = G;
    act->backward(X, dx, LinearInput::MlpProduct);
    // Bit for bit except where a group's largest element also receives the scale's share: the
    // package sums that share's float32 terms in torch's order, we in double (as the weights'
    // max_scale gradient), so those differ in the last bits.
    const std::vector<float> expected = floats(a["grad_x"][c.key]);
    const Index groups = rows * cols / float_spec(c.format).group_size;
    int same = 0, close = 0, not_identity = 0;
    for (Index i = 0; i < rows * cols; ++i) {
      const float e = expected[static_cast<std::size_t>(i)];
      same += dx.data()[i] == e;
      close += std::abs(dx.data()[i] - e) <= 2e-5f * std::max(std::abs(e), std::abs(G.data()[i]));
      not_identity += dx.data()[i] != G.data()[i];
    }
    CHECK(same >= rows * cols - groups);
    CHECK(close == rows * cols);
    CHECK(not_identity > rows * cols / 3);  // a plain straight-through backward fails this case
  }
  // FP8_STATIC: the clamp's mask under a calibrated maximum below the input's (act_max_scale 0.9:
  // the reference's tuned factor on it, which ActivationQuant takes as part of the maximum)
  const auto& f = a["fp8_static"];
  const float tensor_max = static_cast<float>(f["tensor_max"].get<double>());
  const float factor = static_cast<float>(f["act_max_scale"].get<double>());
  const auto act = activation_quant_for(float_spec(FloatFormat::Fp8), {0.0f, 0.0f, 0.0f, tensor_max * factor});
  REQUIRE(act.has_value());
  RowMatrix q = X, dx = G;
  act->apply(q, LinearInput::MlpProduct);
  act->backward(X, dx, LinearInput::MlpProduct);
  const std::vector<float> out = floats(f["out"]), expected = floats(f["grad_x"]);
  int same_out = 0, same_grad = 0, clamped = 0;
  for (Index i = 0; i < rows * cols; ++i) {
    same_out += q.data()[i] == out[static_cast<std::size_t>(i)];
    same_grad += dx.data()[i] == expected[static_cast<std::size_t>(i)];
    clamped += expected[static_cast<std::size_t>(i)] == 0.0f && G.data()[i] != 0.0f;
  }
  CHECK(same_out == rows * cols);
  CHECK(same_grad == rows * cols);
  CHECK(clamped > 0);
  RowMatrix wrong(2, 3);
  CHECK_THROWS_WITH(act->backward(X, wrong, LinearInput::Mlp), doctest::Contains("shapes differ"));
}

TEST_CASE("packing: compressed-tensors' nibble order and scale bytes, llama.cpp's block_mxfp4") {
  // one row of 64 MXFP4 codes 0..15 repeated, group scales 2^-3 and 2^2
  QuantizedWeight<DynamicFloatQuantizer> q{DynamicFloatQuantizer(float_spec(FloatFormat::MxFp4)), GroupLayout(1, 64, 32), {}, {}, {}, {}, {}, {}, {}};
  for (int i = 0; i < 64; ++i) q.codes.push_back(static_cast<std::uint8_t>(i % 16));
  q.scales = {0.125f, 4.0f};
  q.zeros = {0, 0};
  const FloatTensors t = pack_float(q, "layer");
  REQUIRE(t.weight.size() == 32);
  CHECK(t.weight[0] == 0x10);  // columns 0 and 1: the even one in the low nibble
  CHECK(t.weight[7] == 0xfe);  // columns 14, 15
  CHECK(t.scale == std::vector<std::uint8_t>{124, 129});  // E8M0: 127 + log2
  CHECK(t.packed_pairs);
  CHECK_FALSE(t.e4m3_scales);
  const std::vector<std::uint8_t> g = pack_ggml_mxfp4(q, "layer");
  REQUIRE(g.size() == 34);
  CHECK(g[0] == 124);
  CHECK(g[1] == 0x00);   // element 0 (code 0) low, element 16 (code 0) high
  CHECK(g[2] == 0x11);   // elements 1 and 17
  CHECK(g[16] == 0xff);  // elements 15 and 31
  CHECK(g[17] == 129);
  // dequantized: E2M1 value times the scale, as both readers compute it
  const RowMatrix w = q.dequantize();
  CHECK(w(0, 7) == 6.0f * 0.125f);
  CHECK(w(0, 32 + 11) == -1.5f * 4.0f);

  // NVFP4: E4M3 scale bytes, the global scale, the input scale from the calibration maximum
  QuantizedWeight<DynamicFloatQuantizer> n{DynamicFloatQuantizer(float_spec(FloatFormat::NvFp4)).with_global_scale(1344.0f),
                                           GroupLayout(1, 16, 16), std::vector<std::uint8_t>(16, 2), {96.0f}, {0}, {}, {}, {}, {}};
  n.input_absmax = 8.0f;
  const FloatTensors nt = pack_float(n, "nv");
  CHECK(nt.e4m3_scales);
  CHECK(nt.scale == std::vector<std::uint8_t>{minifloat::e4m3_code(96.0f)});
  CHECK(minifloat::e4m3_code(96.0f) == 0x6c);  // 1.5 · 2^6: exponent 13, mantissa 4
  CHECK(nt.global_scale == 1344.0f);
  CHECK(nt.input_global_scale == 336.0f);  // 2688 / 8
  CHECK(n.dequantize()(0, 0) == doctest::Approx(1.0f * 96.0f / 1344.0f).epsilon(1e-6));
  CHECK_THROWS_WITH(pack_ggml_mxfp4(n, "nv"), doctest::Contains("only MXFP4"));
}

TEST_CASE("FP8_STATIC: the static per-tensor input quantization and the bfloat16 scales, worked by hand") {
  // the largest calibration input 896 -> s = 896 / 448 = 2; x / s on the E4M3 grid (3 mantissa bits), clamped to ±448
  const auto act = activation_quant_for(float_spec(FloatFormat::Fp8), {896.0f, 896.0f, 896.0f, 0.0f});
  REQUIRE(act.has_value());
  CHECK(act->input_scale[0] == 2.0f);
  CHECK(act->input_scale[3] == 1.0f / (448.0f * 512.0f));  // nothing measured: quant_fp8_sym's smallest scale
  RowMatrix x(1, 4);
  x << 3.3f, -1000.0f, 0.01f, 17.0f;
  act->apply(x, LinearInput::Attention);
  CHECK(x(0, 0) == 3.25f);    // 1.65 -> 1.625 (1.101b · 2^0)
  CHECK(x(0, 1) == -896.0f);  // clamped at -448 · s
  CHECK(x(0, 2) == 0.01171875f);  // 0.005 = 2.56 · 2^-9 -> 3 · 2^-9 (E4M3's subnormals are multiples of 2^-9)
  CHECK(x(0, 3) == 16.0f);        // 8.5: halfway between 8 and 9 -> 8, the even mantissa
  // weight-only FP8 (act_bits 16) has no activation quantization
  CHECK_FALSE(activation_quant_for(weight_only(float_spec(FloatFormat::Fp8))).has_value());
  CHECK_THROWS_WITH(DynamicFloatQuantizer(QuantSpec{8, PerChannel, Symmetric, 0, 0, DataType::Fp, 4}), doctest::Contains("act_bits = 4"));

  // bfloat16, round to nearest even: 0.1 = 0x3DCCCCCD -> 0x3DCD; ties to even; NaN stays NaN
  CHECK(float_to_bf16_bits(0.1f) == 0x3DCD);
  CHECK(float_to_bf16_bits(1.0f + 1.0f / 256.0f) == 0x3F80);  // halfway between 0x3F80 and 0x3F81: even
  CHECK(float_to_bf16_bits(1.0f + 3.0f / 256.0f) == 0x3F82);  // halfway between 0x3F81 and 0x3F82: even
  CHECK(std::isnan(bf16_bits_to_float(float_to_bf16_bits(std::nanf("")))));

  // packing: E4M3 codes as they are, row scales and the input scale in bfloat16
  QuantizedWeight<DynamicFloatQuantizer> q{DynamicFloatQuantizer(float_spec(FloatFormat::Fp8)), GroupLayout(2, 4, PerChannel),
                                           {0x38, 0xb8, 0x00, 0x7e, 1, 2, 3, 4}, {0.1f, 0.5f}, {0, 0}, {}, {}, {}, {}};
  q.input_absmax = 896.0f;
  const FloatTensors t = pack_float(q, "fp8");
  CHECK(t.weight == q.codes);
  CHECK(t.bf16_scale == std::vector<std::uint16_t>{0x3DCD, 0x3F00});
  CHECK(t.bf16_input_scale == 0x4000);  // 2.0
  q.input_absmax = 0.0f;                // an expert no token reached: 1
  CHECK(pack_float(q, "fp8").bf16_input_scale == 0x3F80);
  CHECK(q.dequantize()(0, 0) == doctest::Approx(0.1f));  // code 0x38 = 1.0
}

TEST_CASE("InputMaxima: an input no quantized layer reads stays float, as the reference quantizes only a quantized Linear's input") {
  // W4A4 (MXFP4) with down_proj kept float (`--layer 'down_proj=fp'`): q/k/v, o, gate/up read
  // quantized inputs, down's product stays float; with every layer float there is nothing to quantize
  InputMaxima maxima;
  const QuantSpec mx = float_spec(FloatFormat::MxFp4);
  for (LinearInput in : {LinearInput::Attention, LinearInput::AttentionOutput, LinearInput::Mlp}) maxima.add(mx, in, 3.0f);
  const auto act = maxima.activation_quant();
  REQUIRE(act.has_value());
  CHECK(act->float_input == std::array<bool, 4>{false, false, false, true});
  RowMatrix x(1, 32), product(1, 32);
  for (Index i = 0; i < 32; ++i) x(0, i) = product(0, i) = 0.37f * static_cast<float>(i) - 5.1f;
  const RowMatrix before = x;
  act->apply(x, LinearInput::Mlp);
  act->apply(product, LinearInput::MlpProduct);
  CHECK(x != before);  // on the E2M1 grid: 0.37 · i − 5.1 is not
  CHECK(product == before);
  RowMatrix grad = RowMatrix::Constant(1, 32, 0.25f);
  act->backward(before, grad, LinearInput::MlpProduct);
  CHECK(grad == RowMatrix::Constant(1, 32, 0.25f));  // the identity's gradient
  CHECK_FALSE(InputMaxima{}.activation_quant().has_value());
}
}  // namespace test_float_quantizer
