// Straight-through gradients of quantize-dequantize, checked two ways:
//  - hand-derived values for a 2-bit group (with and without clipped codes);
//  - central finite differences of an independent double-precision "surrogate": the reference's
//    forward formulas with every round / fp16 cast / clamp decision frozen at the base point
//    (round(x) -> x + (round(x0) - x0)). Its exact gradient is what autograd's STE computes.
#include <doctest/doctest.h>

#include <autoround/core/fp16.hpp>
#include <autoround/quantizer/int_quantizer.hpp>
#include <autoround/backend/cpu.hpp>
#include <autoround/tune/tunable_weight.hpp>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace test_gradients {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

TEST_CASE("asym 2-bit backward, worked by hand") {
  const IntQuantizer<2, 4, Asymmetric> q;
  const std::vector<float> w{-1.0f, 0.25f, 0.5f, 2.0f}, ones(4, 1.0f);
  const GroupRange range = group_range(w);
  std::vector<float> grad_v(4);
  SUBCASE("no code clipped") {
    // s = 1, zero = 1; dL/ds = sum((code - zero) - w/s) = 0 - 0.25 - 0.5 + 0 = -0.75
    // dL/dwmax' = -0.75 / 3, dL/dwmin' = +0.75 / 3; times wmax = 2 and wmin = -1
    const std::vector<float> v(4, 0.0f);
    const ScaleGrad g = q.backward(w, v, range, 1, 1, q.group_quant(range, 1, 1), ones, grad_v);
    CHECK(grad_v == std::vector<float>{1, 1, 1, 1});
    CHECK(g.min_scale == doctest::Approx(-0.25));
    CHECK(g.max_scale == doctest::Approx(-0.5));
  }
  SUBCASE("first and last codes clipped") {
    // v pushes -1 to code -1 (clipped to 0) and 2 to code 4 (clipped to 3): no dL/dv there;
    // clipped: d out/ds = (code - zero) - wmin'/s  -> 0 and 3; free: -0.25, -0.5  => dL/ds = 2.25
    // and the zero point adds d out/dwmin' = 1 per clipped code => dL/dwmin' = -2.25/3 + 2
    const std::vector<float> v{-0.6f, 0.0f, 0.0f, 0.6f};
    const ScaleGrad g = q.backward(w, v, range, 1, 1, q.group_quant(range, 1, 1), ones, grad_v);
    CHECK(grad_v == std::vector<float>{0, 1, 1, 0});
    CHECK(g.min_scale == doctest::Approx(-1.25));
    CHECK(g.max_scale == doctest::Approx(1.5));
  }
}

namespace {

double round_even(double x) { return std::nearbyint(x); }
double to_half(double x) { return static_cast<double>(static_cast<float>(static_cast<_Float16>(static_cast<float>(x)))); }
constexpr double threshold = 1.0013580322265625e-05;

// The reference forward for one group, in double, with each discrete decision frozen.
struct Surrogate {
  std::vector<double> w, c;  // weights and the loss weights: L = sum(c * qdq(w))
  int bits;
  bool asym;
  // frozen at the base point
  std::vector<double> round_offset;
  std::vector<int> clip;  // -1 low, +1 high, 0 free
  double fp16_offset = 0, zero_offset = 0, sign = 1;
  bool scale_clamped = false, a_larger = true;

  double scale(double mn, double mx) const {
    const double wmin = std::min(0.0, *std::min_element(w.begin(), w.end()));
    const double wmax = std::max(0.0, *std::max_element(w.begin(), w.end()));
    if (asym) return scale_clamped ? threshold : (wmax * mx - wmin * mn) / ((1 << bits) - 1) + fp16_offset;
    const double a = -wmin * mn, b = wmax * mx;
    return scale_clamped ? sign * threshold : sign * (a_larger ? a : b) / (1 << (bits - 1)) + fp16_offset;
  }
  double zero(double mn, double s) const {
    const double wmin = std::min(0.0, *std::min_element(w.begin(), w.end()));
    return asym ? -wmin * mn / s + zero_offset : static_cast<double>(1 << (bits - 1));
  }
  double loss(const std::vector<double>& v, double mn, double mx) const {
    const double s = scale(mn, mx), z = zero(mn, s), maxc = (1 << bits) - 1;
    double l = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      const double code = clip[i] < 0 ? 0.0 : clip[i] > 0 ? maxc : w[i] / s + v[i] + round_offset[i] + z;
      l += c[i] * s * (code - z);
    }
    return l;
  }
  // freeze decisions at (v, mn, mx) using true rounding
  void freeze(const std::vector<double>& v, double mn, double mx) {
    const double wmin = std::min(0.0, *std::min_element(w.begin(), w.end()));
    const double wmax = std::max(0.0, *std::max_element(w.begin(), w.end()));
    double raw;
    if (asym) {
      raw = (wmax * mx - wmin * mn) / ((1 << bits) - 1);
    } else {
      const double a = -wmin * mn, b = wmax * mx;
      a_larger = a > b;
      sign = b < a ? 1 : -1;
      raw = sign * std::max(a, b) / (1 << (bits - 1));
    }
    fp16_offset = to_half(raw) - raw;
    const double s16 = to_half(raw);
    scale_clamped = std::fabs(s16) < threshold;
    const double s = scale(mn, mx);
    zero_offset = 0;
    if (asym) zero_offset = round_even(-wmin * mn / s) - (-wmin * mn / s);
    const double z = zero(mn, s), maxc = (1 << bits) - 1;
    round_offset.assign(w.size(), 0);
    clip.assign(w.size(), 0);
    for (size_t i = 0; i < w.size(); ++i) {
      const double x = w[i] / s + v[i];
      round_offset[i] = round_even(x) - x;
      const double u = round_even(x) + z;
      clip[i] = u < 0 ? -1 : (u > maxc ? 1 : 0);
    }
  }
};

template <class Q>
void check_against_finite_differences(const Q& q, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(-0.45, 0.45);
  const int n = 64;
  Surrogate s{{}, {}, q.bits(), q.symmetry() == Asymmetric, {}, {}};
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) {
    s.w.push_back(static_cast<float>(0.02 * normal(rng) * (i == 5 ? 6.0 : 1.0)));  // one outlier
    s.c.push_back(static_cast<float>(normal(rng)));
    v[i] = static_cast<float>(uniform(rng));
  }
  const double mn = 0.83, mx = 0.91;
  s.freeze(v, mn, mx);

  const std::vector<float> wf(s.w.begin(), s.w.end()), vf(v.begin(), v.end()), cf(s.c.begin(), s.c.end());
  std::vector<float> grad_v(n);
  const GroupRange range = group_range(wf);
  const ScaleGrad g = q.backward(wf, vf, range, static_cast<float>(mn), static_cast<float>(mx),
                                 q.group_quant(range, static_cast<float>(mn), static_cast<float>(mx)), cf, grad_v);
  const double h = 1e-6;
  const double fd_min = (s.loss(v, mn + h, mx) - s.loss(v, mn - h, mx)) / (2 * h);
  const double fd_max = (s.loss(v, mn, mx + h) - s.loss(v, mn, mx - h)) / (2 * h);
  // The scale gradient is autograd's: each of its two or three edges rounded to fp16 (2^-11
  // relative) before they are added, and the edges partly cancel, so it carries up to ~1e-2 of
  // relative error against the exact derivative (the fp16 behaviour itself is checked step by
  // step against auto-round in test_block_parity: without it the losses part at step 3).
  CHECK(g.min_scale == doctest::Approx(fd_min).epsilon(2e-2).scale(1e-3));  // floor 2e-5: 2^-11 of edges ~0.1
  CHECK(g.max_scale == doctest::Approx(fd_max).epsilon(2e-2).scale(1e-3));
  int clipped = 0;
  for (int i = 0; i < n; ++i) {
    auto vp = v, vm = v;
    vp[i] += h;
    vm[i] -= h;
    const double fd = (s.loss(vp, mn, mx) - s.loss(vm, mn, mx)) / (2 * h);
    CHECK(grad_v[i] == doctest::Approx(fd).epsilon(2e-3).scale(1e-6));
    clipped += s.clip[i] != 0;
  }
  MESSAGE("bits " << q.bits() << std::string(s.asym ? " asym" : " sym") << ": " << clipped << " of " << n
                  << " codes clipped; dL/dmin_scale " << g.min_scale << " (fd " << fd_min << "), dL/dmax_scale "
                  << g.max_scale << " (fd " << fd_max << ")");
}

}  // namespace

TEST_CASE("STE gradients match finite differences of the frozen reference forward") {
  for (unsigned seed : {1u, 2u, 3u}) {
    check_against_finite_differences(IntQuantizer<4, 64, Asymmetric>{}, seed);
    check_against_finite_differences(IntQuantizer<4, 64, Symmetric>{}, seed);
    check_against_finite_differences(IntQuantizer<2, 64, Asymmetric>{}, seed);
    check_against_finite_differences(IntQuantizer<3, 64, Symmetric>{}, seed);
    check_against_finite_differences(IntQuantizer<8, 64, Asymmetric>{}, seed);
  }
}

TEST_CASE("layer loss gradient: tuner pieces against finite differences of the mean squared error") {
  // L = mean((X (Wq - W)^T)^2), the layer tuner's loss; gradient via forward, GEMM, backward.
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  const Index out = 6, in = 20, tokens = 9;
  RowMatrix w(out, in), x(tokens, in);
  for (Index i = 0; i < w.size(); ++i) w.data()[i] = 0.1f * normal(rng);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
  const IntQuantizer<3, 8, Asymmetric> q;
  TunableWeight<IntQuantizer<3, 8, Asymmetric>> state(q, view(w));
  for (float& v : state.rounding) v = 0.4f * (std::uniform_real_distribution<float>(-1, 1)(rng));
  for (float& s : state.min_scale) s = 0.9f;
  for (float& s : state.max_scale) s = 0.95f;

  RowMatrix qw(out, in);
  state.forward(Cpu{}, mutable_view(qw));
  const RowMatrix diff = x * (qw - w).transpose();
  RowMatrix grad = (2.0f / static_cast<float>(diff.size())) * diff.transpose() * x;
  std::vector<float> grad_min, grad_max;
  state.backward(Cpu{}, mutable_view(grad), grad_min, grad_max);

  // finite differences of the loss in the parameters the STE treats as smooth: move v by less
  // than any rounding margin is impossible in general, so perturb with the frozen surrogate:
  // dL/dv_ij = dL/dWq_ij * s * inside, and dL/dWq is smooth (quadratic) in Wq.
  const double h = 1e-3;
  auto loss_at = [&](const RowMatrix& wq) {
    const Eigen::MatrixXd d = x.cast<double>() * (wq.cast<double>() - w.cast<double>()).transpose();
    return d.squaredNorm() / static_cast<double>(d.size());
  };
  for (Index r : {0L, 3L})
    for (Index c : {1L, 10L, 19L}) {
      RowMatrix plus = qw, minus = qw;
      plus(r, c) += static_cast<float>(h);
      minus(r, c) -= static_cast<float>(h);
      const double dl_dwq = (loss_at(plus) - loss_at(minus)) / (2 * h);
      const auto g = static_cast<std::size_t>(r * 3 + c / 8);
      const GroupQuant gq = q.group_quant(group_range(std::span<const float>(w.data() + r * in + (c / 8) * 8,
                                                                             static_cast<std::size_t>(std::min<Index>(8, in - (c / 8) * 8)))),
                                          state.min_scale[g], state.max_scale[g]);
      const float u = detail::round_half_even(w(r, c) / gq.scale + state.rounding[static_cast<std::size_t>(r * in + c)]) + gq.zero;
      const double inside = (u >= 0 && u <= 7) ? 1.0 : 0.0;
      CHECK(grad(r, c) == doctest::Approx(dl_dwq * gq.scale * inside).epsilon(1e-3).scale(1e-7));
    }
}
}  // namespace test_gradients
