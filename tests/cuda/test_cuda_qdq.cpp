// The CUDA kernels against the CPU path on the same inputs, bit for bit: fake-quantized weight,
// dL/dv, dL/dmin_scale, dL/dmax_scale, codes, the SignSGD step; the squared error to 1e-12.
// Random weights and gradients: this checks formulas, not accuracy. Without a GPU the binary
// prints why and exits 77, which CTest shows as skipped (CI has none; scripts/gpu-tests.sh
// runs it on the lent GPU machine).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "qdq_gpu.hpp"

using namespace autoround;

namespace {
QdqCase make_case(QuantSpec spec, long rows, long cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> heavy(3.0f);
  std::uniform_real_distribution<float> offset(-0.5f, 0.5f), clip(0.4f, 1.2f), unit(-1.0f, 1.0f);
  QdqCase c{spec, rows, cols, {}, {}, {}, {}, {}, 0.005f};
  const GroupLayout layout(rows, cols, spec.group_size, spec.group_rows);
  for (long i = 0; i < rows * cols; ++i) {
    c.weight.push_back(0.02f * heavy(rng));
    c.rounding.push_back(offset(rng));
    c.grad_out.push_back(unit(rng) * (i % 7 == 0 ? 0.0f : 1.0f));  // some exact zeros for sign(0)
  }
  for (long g = 0; g < layout.group_count(); ++g) {
    c.min_scale.push_back(clip(rng));  // above 1 is clamped to 1, as the reference clamps .data
    c.max_scale.push_back(clip(rng));
  }
  return c;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}
}  // namespace

namespace {
/// The GPU's forward, backward, encode and SignSGD step against TunableWeight<Q> on the CPU.
template <class Q>
void check_against_cpu(const QdqCase& c) {
  const QdqResult gpu = run_qdq_on_gpu(c);
  const RowMatrix w = Eigen::Map<const RowMatrix>(c.weight.data(), c.rows, c.cols);
  TunableWeight<Q> cpu(Q(c.spec), view(w));
  if constexpr (FloatCodeQuantizer<Q>) REQUIRE(cpu.quantizer().global_scale() == c.global_scale);
  cpu.rounding = c.rounding;
  cpu.min_scale = c.min_scale;
  cpu.max_scale = c.max_scale;
  RowMatrix out(c.rows, c.cols);
  cpu.forward(Cpu{}, mutable_view(out));
  RowMatrix grad = Eigen::Map<const RowMatrix>(c.grad_out.data(), c.rows, c.cols);
  std::vector<float> grad_min, grad_max;
  cpu.backward(Cpu{}, mutable_view(grad), grad_min, grad_max);
  const auto encoded = cpu.encode();
  std::vector<float> stepped = cpu.rounding;
  SignSGD<>::State state;
  SignSGD<>{}.update(stepped, std::span<const float>(grad.data(), static_cast<std::size_t>(grad.size())), c.lr, state);

  if (!same_bits(gpu.out, std::vector<float>(out.data(), out.data() + out.size()))) {
    std::size_t differ = 0, first = 0;
    for (std::size_t i = 0; i < gpu.out.size(); ++i)
      if (std::memcmp(&gpu.out[i], out.data() + i, 4) != 0 && differ++ == 0) first = i;
    MESSAGE(differ << " fake-quantized values differ; first at " << first << " (row " << first / c.cols << ", col "
                   << first % c.cols << "): GPU " << gpu.out[first] << " CPU " << out.data()[first] << ", weight "
                   << c.weight[first] << ", v " << c.rounding[first]);
  }
  CHECK(same_bits(gpu.out, std::vector<float>(out.data(), out.data() + out.size())));
  CHECK(same_bits(gpu.grad_v, std::vector<float>(grad.data(), grad.data() + grad.size())));
  CHECK(same_bits(gpu.grad_min, grad_min));
  if (!same_bits(gpu.grad_max, grad_max)) {
    std::size_t differ = 0, first = 0;
    for (std::size_t i = 0; i < grad_max.size() && i < gpu.grad_max.size(); ++i)
      if (std::memcmp(&gpu.grad_max[i], &grad_max[i], 4) != 0 && differ++ == 0) first = i;
    MESSAGE(differ << " of " << grad_max.size() << " max_scale gradients differ (sizes " << gpu.grad_max.size() << ", " << grad_max.size()
                   << "); first, group " << first << ": GPU " << gpu.grad_max[first] << " CPU " << grad_max[first] << ", max_scale "
                   << c.max_scale[first]);
  }
  CHECK(same_bits(gpu.grad_max, grad_max));
  CHECK(same_bits(gpu.codes, encoded.codes));
  CHECK(same_bits(gpu.rounding_after_step, stepped));
  const double expected = (out.cast<double>() - w.cast<double>()).squaredNorm();
  CHECK(gpu.squared_error == doctest::Approx(expected).epsilon(1e-12).scale(0));
}
}  // namespace

TEST_CASE("CUDA qdq forward, STE backward, encode and SignSGD equal the CPU bit for bit") {
  const QuantSpec specs[] = {{4, 128, Asymmetric}, {4, 128, Symmetric}, {2, 64, Asymmetric}, {3, 32, Symmetric},
                             {8, 32, Asymmetric}, {4, PerChannel, Asymmetric}};
  unsigned seed = 1;
  for (const QuantSpec& spec : specs)
    for (long cols : {256L, 200L}) {  // 200: a short last group
      CAPTURE(spec.bits);
      CAPTURE(spec.group_size);
      CAPTURE(cols);
      check_against_cpu<DynamicIntQuantizer>(make_case(spec, 48, cols, seed++));
    }
}

TEST_CASE("CUDA clipping search (ClipInit::WeightedSearch) chooses the host search's clipping bit for bit") {
  // heavy-tailed weights (outliers worth clipping or not) and importance spread over three
  // orders of magnitude; a short last group per row (cols not a multiple of the group); the
  // least-squares refits, refits with llama.cpp's magnitude weights, and the plain grid (the default)
  for (const ClipSearch search : {ClipSearch{.refits = 2}, ClipSearch{.magnitude_weighted = true, .refits = 2}, ClipSearch{}})
    for (const QuantSpec spec : {QuantSpec{2, 64, Asymmetric}, QuantSpec{3, 32, Asymmetric}, QuantSpec{4, 32, Symmetric}}) {
      CAPTURE(spec.bits);
      CAPTURE(search.refits);
      CAPTURE(search.magnitude_weighted);
      const QdqCase c = make_case(spec, 48, 200, 31u + static_cast<unsigned>(spec.bits));
      std::mt19937 rng(5);
      std::uniform_real_distribution<float> exponent(-3.0f, 0.0f);
      std::vector<float> importance(static_cast<std::size_t>(c.cols));
      for (float& a : importance) a = std::pow(10.0f, exponent(rng));
      const auto [gpu_lo, gpu_hi] = search_clipping_on_gpu(c, importance, search);
      const RowMatrix w = Eigen::Map<const RowMatrix>(c.weight.data(), c.rows, c.cols);
      std::vector<float> lo(gpu_lo.size()), hi(gpu_hi.size());
      search_clip_scales(DynamicIntQuantizer(spec), view(w), importance, [](Index n, auto&& f) { for (Index i = 0; i < n; ++i) f(i); }, lo,
                         hi, search);
      std::size_t clipped = 0, off_grid = 0;
      for (std::size_t g = 0; g < lo.size(); ++g) {
        clipped += lo[g] < 1.0f || hi[g] < 1.0f;
        off_grid += std::fmod(lo[g] * 40.0f + 1e-3f, 1.0f) > 2e-3f || std::fmod(hi[g] * 40.0f + 1e-3f, 1.0f) > 2e-3f;
      }
      MESSAGE("W" << spec.bits << "G" << spec.group_size << " refits " << search.refits << ": " << clipped << " of " << lo.size()
                  << " groups clipped, " << off_grid << " off the grid (refitted)");
      CHECK(clipped > lo.size() / 4);  // the search does choose clippings here, so agreeing means something
      if (search.refits > 0) CHECK(off_grid > lo.size() / 8);  // and the refits do move some
      CHECK(same_bits(gpu_lo, lo));
      CHECK(same_bits(gpu_hi, hi));
    }
}

TEST_CASE("CUDA double quantization (GGUF k-quant schemes) equals DoubleQuantizer on the CPU bit for bit") {
  unsigned seed = 100;
  for (ggml::Type type : {ggml::Type::Q2_K, ggml::Type::Q3_K, ggml::Type::Q4_K, ggml::Type::Q5_K, ggml::Type::Q6_K})
    for (long cols : {256L, 768L}) {
      const QuantSpec spec = *ggml::double_quant_spec_for(type);
      CAPTURE(spec.bits);
      CAPTURE(cols);
      check_against_cpu<DynamicDoubleQuantizer>(make_case(spec, 40, cols, seed++));
    }
}

TEST_CASE("CUDA floating-point formats (MXFP4, MXFP8, NVFP4, FP8, FP8_BLOCK) equal FloatQuantizer on the CPU bit for bit") {
  unsigned seed = 200;
  for (FloatFormat format : {FloatFormat::MxFp4, FloatFormat::MxFp8, FloatFormat::NvFp4, FloatFormat::Fp8, FloatFormat::Fp8Block})
    for (long cols : {256L, 200L}) {  // 200: a short last group
      const QuantSpec spec = float_spec(format);
      CAPTURE(static_cast<int>(format));
      CAPTURE(cols);
      // FP8_BLOCK: 300 rows, tiles of 128, 128 and 44 rows
      QdqCase c = make_case(spec, format == FloatFormat::Fp8Block ? 300 : 40, cols, seed++);
      for (long i = 0; i < cols; ++i) c.weight[static_cast<std::size_t>(i)] = 0.0f;  // an all-zero row: the zero-group paths
      c.weight[static_cast<std::size_t>(3 * cols + 5)] = 3.0f;                      // an outlier: elements under the smallest scales
      const RowMatrix w = Eigen::Map<const RowMatrix>(c.weight.data(), c.rows, c.cols);
      c.global_scale = DynamicFloatQuantizer(spec).for_weight(view(w)).global_scale();
      check_against_cpu<DynamicFloatQuantizer>(c);
    }
}

TEST_CASE("CUDA activation quantization and its backward equal ActivationQuant's on the CPU bit for bit") {
  std::mt19937 rng(7);
  std::student_t_distribution<float> heavy(3.0f);
  const long rows = 24, cols = 200;  // a short last group
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (float& v : x) v = heavy(rng);
  for (long c = 0; c < 40; ++c) x[static_cast<std::size_t>(c)] = 0.0f;  // zero groups
  const FloatFormat formats[] = {FloatFormat::MxFp4, FloatFormat::MxFp8, FloatFormat::NvFp4, FloatFormat::Fp8, FloatFormat::Fp8Block,
                                 FloatFormat::MxFp4, FloatFormat::MxFp8};
  for (int k = 0; k < 7; ++k) {
    const FloatFormat format = formats[k];
    QuantSpec spec = float_spec(format);
    spec.act_rceil = k >= 5;  // the last two: MXFP4_RCEIL, MXFP8_RCEIL
    CAPTURE(static_cast<int>(format));
    CAPTURE(spec.act_rceil);
    const float absmax = 9.5f;
    const auto act = activation_quant_for(spec, {absmax, absmax, absmax, absmax});
    REQUIRE(act);
    RowMatrix cpu = Eigen::Map<const RowMatrix>(x.data(), rows, cols);
    act->apply(cpu, LinearInput::Mlp);
    const std::size_t mlp = static_cast<std::size_t>(LinearInput::Mlp);
    const float static_scale = format == FloatFormat::Fp8 ? act->input_scale[mlp] : 0.0f;
    const std::vector<float> gpu = activation_qdq_on_gpu(spec, act->global_scale[mlp], static_scale, x, rows, cols);
    CHECK(same_bits(gpu, std::vector<float>(cpu.data(), cpu.data() + cpu.size())));
    CHECK(!same_bits(gpu, x));  // something was quantized
    std::vector<float> grad(x.size());
    for (std::size_t i = 0; i < grad.size(); ++i) grad[i] = std::cos(0.37f * static_cast<float>(i));
    RowMatrix cpu_grad = Eigen::Map<const RowMatrix>(grad.data(), rows, cols);
    act->backward(Eigen::Map<const RowMatrix>(x.data(), rows, cols), cpu_grad, LinearInput::Mlp);
    const std::vector<float> gpu_grad = activation_backward_on_gpu(spec, act->global_scale[mlp], static_scale, x, grad, rows, cols);
    CHECK(same_bits(gpu_grad, std::vector<float>(cpu_grad.data(), cpu_grad.data() + cpu_grad.size())));
    CHECK(!same_bits(gpu_grad, grad));  // not the identity
  }
}

int main(int argc, char** argv) {
  if (gpu_count() == 0) {
    std::printf("test_cuda_qdq: SKIPPED: no CUDA device here (run scripts/gpu-tests.sh on a GPU machine)\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
