// DoubleQuantizer (GGUF k-quants' double quantization) and the k-quant encoding of its tuned
// weights, against AutoRound's own code: tests/fixtures/reference_kquants.safetensors
// (scripts/make_kquant_fixtures.py) holds, for Q2_K..Q6_K, the reference's fake-quantized
// weight, group scales/mins and super-group d/dmin for given v / min_scale / max_scale, the
// autograd gradients of sum(qdq * grad_out), and the blocks its GGUF packer writes.
#include <doctest/doctest.h>

#include <autoround/backend/cpu.hpp>
#include <autoround/format/ggml_blocks.hpp>
#include <autoround/format/safetensors.hpp>
#include <autoround/pack/ggml_tuned_kquant.hpp>
#include <autoround/tune/layer_tuner.hpp>
#include <autoround/tune/tunable_weight.hpp>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace test_double_quantizer {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

static_assert(SuperGroupQuantizer<Q4KQuantizer> && !Quantizer<Q4KQuantizer>);
static_assert(SuperGroupQuantizer<DynamicDoubleQuantizer> && WeightQuantizer<DynamicDoubleQuantizer>);
static_assert(Quantizer<DynamicIntQuantizer> && !SuperGroupQuantizer<DynamicIntQuantizer>);

namespace {
const SafetensorsFile& fixture() {
  static const SafetensorsFile f(AUTOROUND_FIXTURES_DIR "/reference_kquants.safetensors");
  return f;
}
std::vector<float> floats(const std::string& name) {
  const auto v = fixture().view_as<float>(name, Dtype::F32);
  return {v.begin(), v.end()};
}

struct Case {
  ggml::Type type;
  QuantSpec spec;
  RowMatrix weight;
};

Case load(const std::string& name) {
  std::istringstream meta(fixture().metadata().at(name));
  std::string type_name, sym;
  QuantSpec spec;
  meta >> type_name >> spec.bits >> spec.group_size >> sym >> spec.super_group_size >> spec.super_bits;
  spec.symmetry = sym == "sym" ? Symmetric : Asymmetric;
  const auto& t = fixture().tensor(name + ".weight");
  RowMatrix w(t.shape[0], t.shape[1]);
  const auto values = floats(name + ".weight");
  std::copy(values.begin(), values.end(), w.data());
  const ggml::Type type = type_name == "q2_k" ? ggml::Type::Q2_K : type_name == "q3_k" ? ggml::Type::Q3_K
                        : type_name == "q4_k" ? ggml::Type::Q4_K : type_name == "q5_k" ? ggml::Type::Q5_K
                                                                                       : ggml::Type::Q6_K;
  return {type, spec, std::move(w)};
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}
}  // namespace

TEST_CASE("DoubleQuantizer: forward, scales and gradients equal AutoRound's int_asym_dq / int_sym_dq") {
  for (const std::string name : {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k"}) {
    CAPTURE(name);
    const Case c = load(name);
    REQUIRE(ggml::double_quant_spec_for(c.type) == c.spec);
    const DynamicDoubleQuantizer q(c.spec);
    TunableWeight<DynamicDoubleQuantizer> state(q, view(c.weight), name);
    state.rounding = floats(name + ".v");
    state.min_scale = floats(name + ".min_scale");
    state.max_scale = floats(name + ".max_scale");

    RowMatrix out(c.weight.rows(), c.weight.cols());
    state.forward(Cpu{}, mutable_view(out));
    const auto qdq = floats(name + ".qdq");
    std::size_t differ = 0;
    for (std::size_t i = 0; i < qdq.size(); ++i) differ += out.data()[i] != qdq[i];
    CHECK_MESSAGE(differ == 0, differ << " of " << qdq.size() << " fake-quantized values differ");

    const QuantizedWeight<DynamicDoubleQuantizer> result = state.encode();
    CHECK(result.scales == floats(name + ".scale"));
    CHECK(result.super_scales == floats(name + ".d_scale"));
    if (c.spec.symmetry == Asymmetric) {
      CHECK(result.mins == floats(name + ".wmin"));
      CHECK(result.super_mins == floats(name + ".d_wmin"));
    }
    const RowMatrix deq = result.dequantize();
    CHECK(std::equal(qdq.begin(), qdq.end(), deq.data()));  // encode() and forward() agree

    // gradients: the reference's are float32 autograd sums, ours are accumulated in double
    RowMatrix grad(c.weight.rows(), c.weight.cols());
    const auto grad_out = floats(name + ".grad_out");
    std::copy(grad_out.begin(), grad_out.end(), grad.data());
    std::vector<float> gmin, gmax;
    state.backward(Cpu{}, mutable_view(grad), gmin, gmax);
    const auto check_close = [&](const float* ours, const std::vector<float>& ref, const char* what) {
      const double tol = 2e-5 * std::max(max_abs(ref), 1e-6);
      std::size_t bad = 0, worst = 0;
      for (std::size_t i = 0; i < ref.size(); ++i)
        if (std::fabs(static_cast<double>(ours[i]) - ref[i]) > tol) {
          if (bad++ == 0) worst = i;
        }
      CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << ref.size() << " differ, first at " << worst << ": "
                                   << ours[worst] << " vs " << ref[worst]);
    };
    check_close(grad.data(), floats(name + ".grad_v"), "dL/dv");
    check_close(gmin.data(), floats(name + ".grad_min_scale"), "dL/dmin_scale");
    check_close(gmax.data(), floats(name + ".grad_max_scale"), "dL/dmax_scale");
  }
}

TEST_CASE("tuned k-quant blocks equal AutoRound's GGUF packer byte for byte, and hold the tuned values") {
  for (const std::string name : {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k"}) {
    CAPTURE(name);
    const Case c = load(name);
    TunableWeight<DynamicDoubleQuantizer> state(DynamicDoubleQuantizer(c.spec), view(c.weight), name);
    state.rounding = floats(name + ".v");
    state.min_scale = floats(name + ".min_scale");
    state.max_scale = floats(name + ".max_scale");
    const QuantizedWeight<DynamicDoubleQuantizer> result = state.encode();
    const std::vector<std::byte> ours = ggml::encode_tuned(c.type, double_quant_view(result), name);
    const auto ref = fixture().view_as<std::uint8_t>(name + ".packed", Dtype::U8);
    REQUIRE(ours.size() == ref.size());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) differ += static_cast<std::uint8_t>(ours[i]) != ref[i];
    CHECK_MESSAGE(differ == 0, differ << " of " << ref.size() << " bytes differ");

    // what llama.cpp reads back is the tuned weight up to the fp16 rounding of d and dmin: the
    // levels re-derived by the packer are the tuned codes, so each value moves by at most
    // |fp16(d) - d| * |scale code| * |code - zero| + |fp16(dmin) - dmin| * min code
    std::vector<float> back(static_cast<std::size_t>(c.weight.size()));
    ggml::dequantize(c.type, ours, back);
    const RowMatrix tuned = result.dequantize();
    const auto fp16_error = [](float x) { return std::fabs(static_cast<double>(round_to_half(x)) - x); };
    std::size_t beyond = 0;
    for (std::size_t i = 0; i < back.size(); ++i) {
      const Index r = static_cast<Index>(i) / c.weight.cols(), col = static_cast<Index>(i) % c.weight.cols();
      const auto k = static_cast<std::size_t>(r * (c.weight.cols() / c.spec.group_size) + col / c.spec.group_size);
      const auto s = k / static_cast<std::size_t>(c.spec.super_group_size);
      const double d = result.super_scales[s];
      double bound = fp16_error(result.super_scales[s]) * std::fabs(result.scales[k] / d) *
                     std::fabs(static_cast<double>(result.codes[i]) - result.zeros[k]);
      if (c.spec.symmetry == Asymmetric)
        bound += fp16_error(result.super_mins[s]) * std::fabs(result.mins[k] / result.super_mins[s]);
      beyond += std::fabs(static_cast<double>(back[i]) - tuned.data()[i]) > bound * 1.001 + 1e-6 * std::fabs(tuned.data()[i]) + 1e-12;
    }
    CHECK_MESSAGE(beyond == 0, beyond << " of " << back.size() << " values differ from the tuned ones by more than the fp16 rounding of d/dmin");
  }
}

TEST_CASE("Q4_K blocks unpack to the tuned codes bit for bit") {
  const Case c = load("q4_k");
  TunableWeight<DynamicDoubleQuantizer> state(DynamicDoubleQuantizer(c.spec), view(c.weight), "q4_k");
  state.rounding = floats("q4_k.v");
  state.min_scale = floats("q4_k.min_scale");
  state.max_scale = floats("q4_k.max_scale");
  const auto result = state.encode();
  const std::vector<std::byte> bytes = ggml::encode_tuned(ggml::Type::Q4_K, double_quant_view(result));
  std::size_t compared = 0, differ = 0;
  for (std::size_t b = 0; b < bytes.size() / sizeof(ggml::BlockQ4_K); ++b) {
    ggml::BlockQ4_K y;
    std::memcpy(&y, bytes.data() + b * sizeof y, sizeof y);
    CHECK(half_bits_to_float(y.d) == round_to_half(result.super_scales[b]));
    CHECK(half_bits_to_float(y.dmin) == round_to_half(result.super_mins[b]));
    for (int i = 0; i < ggml::QK_K; ++i) {
      std::uint8_t scale_code, min_code;
      ggml::scale_min_k4(i / 32, y.scales, scale_code, min_code);
      if (scale_code == 0) continue;  // every level dequantizes alike there
      const int level = (i % 64 < 32) ? (y.qs[32 * (i / 64) + i % 32] & 0xF) : (y.qs[32 * (i / 64) + i % 32] >> 4);
      ++compared;
      differ += level != result.codes[b * ggml::QK_K + static_cast<std::size_t>(i)];
    }
  }
  CHECK(compared > 0);
  CHECK_MESSAGE(differ == 0, differ << " of " << compared << " levels differ from the tuned codes");
}

TEST_CASE("DoubleQuantizer: bad configurations and shapes are named") {
  CHECK_THROWS_WITH_AS((DynamicDoubleQuantizer(QuantSpec{4, 32, Asymmetric, 8, 1})), doctest::Contains("super_bits = 1"), Error);
  CHECK_THROWS_WITH_AS((DynamicDoubleQuantizer(QuantSpec{4, 32, Asymmetric, 64, 6})),
                       doctest::Contains("super_group_size = 64"), Error);
  CHECK_THROWS_WITH_AS((DynamicDoubleQuantizer(QuantSpec{4, 32, Asymmetric, 0, 6})), doctest::Contains("super_bits = 6"), Error);
  CHECK_THROWS_WITH_AS((Q4KQuantizer(QuantSpec{4, 32, Asymmetric, 16, 6})), doctest::Contains("super_group_size = 16"), Error);
  CHECK_THROWS_WITH_AS((DynamicIntQuantizer(QuantSpec{4, 32, Asymmetric, 8, 6})), doctest::Contains("DoubleQuantizer"), Error);
  const RowMatrix w = RowMatrix::Constant(4, 576, 0.5f);  // 576 = 2.25 super-blocks of 256
  CHECK_THROWS_WITH_AS((TunableWeight<Q4KQuantizer>(Q4KQuantizer{}, view(w), "blk.0.attn_q.weight")),
                       "blk.0.attn_q.weight: in_features = 576 is not a multiple of the super-group (8 groups of 32 = 256 weights)",
                       Error);
  RowMatrix bad = RowMatrix::Zero(2, 256);
  bad(1, 7) = std::nanf("");
  CHECK_THROWS_WITH_AS((TunableWeight<Q4KQuantizer>(Q4KQuantizer{}, view(bad), "w")), doctest::Contains("(1, 7) is NaN"), Error);
  // Q4_K weights cannot be written as Q6_K blocks
  const RowMatrix flat = RowMatrix::Constant(1, 256, 0.25f);
  const auto rtn = quantize_rtn(Q4KQuantizer{}, view(flat));
  CHECK_THROWS_WITH_AS(ggml::encode_tuned(ggml::Type::Q6_K, double_quant_view(rtn), "x"), doctest::Contains("Q6_K"), Error);
}

TEST_CASE("DoubleQuantizer without a second level is IntQuantizer") {
  RowMatrix w(8, 96);
  for (Index i = 0; i < w.size(); ++i) w.data()[i] = std::sin(0.37f * static_cast<float>(i)) * 0.1f;
  for (QuantSpec spec : {QuantSpec{4, 32, Asymmetric}, QuantSpec{3, 64, Symmetric}}) {
    const auto a = quantize_rtn(DynamicDoubleQuantizer(spec), view(w));
    const auto b = quantize_rtn(DynamicIntQuantizer(spec), view(w));
    CHECK(a.codes == b.codes);
    CHECK(a.scales == b.scales);
    CHECK(a.zeros == b.zeros);
    CHECK(a.mins.empty());
  }
}
}  // namespace test_double_quantizer
