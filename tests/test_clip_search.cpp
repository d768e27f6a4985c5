// ClipInit::WeightedSearch (tune/clip_search.hpp): the searched clipping of a group against
// hand-computed errors, the importance against a direct computation of the block's inputs, and
// the tuning runs starting from the searched scales.
#include <doctest/doctest.h>

#include <autoround/backend/cpu.hpp>
#include <autoround/optimizer/sign_sgd.hpp>
#include <autoround/quantizer/double_quantizer.hpp>
#include <autoround/quantizer/int_quantizer.hpp>
#include <autoround/tune/block_tuning_run.hpp>
#include <autoround/tune/clip_search.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "support/random_model.hpp"

namespace test_clip_search {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
RowMatrix random_weight(Index rows, Index cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  RowMatrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}
LlamaModel random_model(unsigned seed) {
  std::mt19937 rng(seed);
  return test_models::small_random_model(rng);
}
const auto serial = [](Index n, auto&& f) {
  for (Index i = 0; i < n; ++i) f(i);
};

// Σ a (w − qdq)² of one 2-bit asym group at (lo, hi), written out from int.py's formulas.
double error_by_hand(const std::vector<float>& w, const std::vector<float>& a, float lo, float hi) {
  float wmin = 0, wmax = 0;
  for (float x : w) wmin = std::min(wmin, x), wmax = std::max(wmax, x);
  const float scale = std::max(round_to_half((wmax * hi - wmin * lo) / 3.0f), round_to_half(1e-5f));
  const float zero = std::nearbyint(-wmin * lo / scale);
  double e = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const float q = std::clamp(std::nearbyint(w[i] / scale) + zero, 0.0f, 3.0f);
    e += a[i] * std::pow(w[i] - scale * (q - zero), 2);
  }
  return e;
}
}  // namespace

TEST_CASE("one outlier: clipped when its channel is unimportant, kept when it matters") {
  // 2-bit asym, one group of 8: seven weights in [-0.3, 0.3] and one at 2.0.
  const std::vector<float> w{0.3f, -0.3f, 0.1f, -0.1f, 0.2f, -0.2f, 0.0f, 2.0f};
  const Eigen::Map<const RowMatrix> weight(w.data(), 1, 8);
  const DynamicIntQuantizer q(QuantSpec{2, 8, Asymmetric});
  std::vector<float> lo(1), hi(1);

  std::vector<float> quiet(8, 1.0f);
  quiet[7] = 1e-4f;  // the outlier's input channel is almost never active
  const ClipSearch by_importance{.magnitude_weighted = false};  // the hand-computed errors weigh by a alone
  search_clip_scales(q, MatrixView(weight.data(), 1, 8), quiet, serial, lo, hi, by_importance);
  // by hand: full range, scale 0.77, zero 0: every small weight rounds to 0 or 0.77 (error 0.28);
  // (lo, hi) = (1, 0.5): scale 0.43, zero 1, codes {-0.43, 0, 0.43, 0.87} (error 0.136)
  CHECK(error_by_hand(w, quiet, 1, 1) == doctest::Approx(0.28).epsilon(1e-3));
  CHECK(error_by_hand(w, quiet, 1, 0.5f) == doctest::Approx(0.1356).epsilon(2e-2));
  CHECK(error_by_hand(w, quiet, lo[0], hi[0]) <= error_by_hand(w, quiet, 1, 0.5f));
  CHECK(hi[0] < 0.6f);  // the outlier is clipped

  std::vector<float> loud(8, 1.0f);
  loud[7] = 1e4f;  // the outlier's channel dominates the output
  search_clip_scales(q, MatrixView(weight.data(), 1, 8), loud, serial, lo, hi, by_importance);
  // full range: 2.0 lands on 2.3 (error 1e4 · 0.09 = 900); the search must put a code within 0.1 of it
  CHECK(error_by_hand(w, loud, 1, 1) > 890);
  CHECK(error_by_hand(w, loud, lo[0], hi[0]) < 1e4 * 0.01 + 0.3);
  CHECK(hi[0] > 0.8f);  // clipping 2.0 hard would cost 1e4 · (2 − clipped)²
}

TEST_CASE("the grid search's error is never above the full range's, and is the best of its grid's axes") {
  const DynamicIntQuantizer q(QuantSpec{3, 16, Asymmetric});
  const RowMatrix weight = random_weight(8, 64, 11);
  std::vector<float> a(64);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.1f + static_cast<float>(i % 7);
  for (const bool magnitude : {false, true}) {
    CAPTURE(magnitude);
    std::vector<float> lo(32), hi(32);
    search_clip_scales(q, view(weight), a, serial, lo, hi, ClipSearch{.magnitude_weighted = magnitude, .refits = 0});
    const std::vector<float> zeros(16, 0.0f);
    // the weights written out: a_j, or a_j · sqrt(σ² + w_j²) with σ² the row's mean square (llama.cpp's)
    auto error = [&](Index r, Index g, float l, float h) {
      const double sigma2 = weight.row(r).cast<double>().squaredNorm() / 64.0;
      const std::span<const float> w(weight.data() + r * 64 + g * 16, 16);
      std::vector<float> out(16);
      q.fake_quantize(w, zeros, q.group_quant(group_range(w), l, h), out);
      double e = 0;
      for (std::size_t j = 0; j < 16; ++j) {
        const double aj = a[static_cast<std::size_t>(g * 16) + j];
        e += (magnitude ? aj * std::sqrt(sigma2 + w[j] * w[j]) : aj) * std::pow(w[j] - out[j], 2);
      }
      return e;
    };
    int clipped = 0;
    for (Index r = 0; r < 8; ++r)
      for (Index g = 0; g < 4; ++g) {
        const auto k = static_cast<std::size_t>(r * 4 + g);
        const double found = error(r, g, lo[k], hi[k]);
        CHECK(found <= error(r, g, 1, 1) * (1 + 1e-6));
        for (int i = 0; i <= 20; ++i) {  // no single ratio on either axis through the result does better
          const float t = 1.0f - 0.5f * static_cast<float>(i) / 20.0f;
          CHECK(found <= error(r, g, lo[k], t) * (1 + 1e-6));
          CHECK(found <= error(r, g, t, hi[k]) * (1 + 1e-6));
        }
        clipped += lo[k] < 1 || hi[k] < 1;
      }
    CHECK(clipped > 16);  // at 3 bits most groups of Gaussian weights gain from clipping
  }
}

TEST_CASE("least-squares refit: a 4-bit symmetric group's scale, by hand") {
  // w = {1, 0.45, 0.2, -0.1}, a = 1. The larger side (1) maps to q = -8: scale = -ratio / 8.
  // Grid (steps of 0.025): ratio 1 gives codes {-8, -4, -2, 1} and error 0.005625; ratio 0.975 (the
  // grid's best) 0.004424; 0.95 0.004883. For the codes {-8, -4, -2, 1} the least-squares scale is
  // Σ w q / Σ q² = -10.3 / 85 = -0.121176 (ratio 0.96941), where the codes stay the same and the
  // error is 0.004382.
  const std::vector<float> w{1.0f, 0.45f, 0.2f, -0.1f}, a(4, 1.0f);
  const DynamicIntQuantizer q(QuantSpec{4, 4, Symmetric});
  const std::vector<float> zeros(4, 0.0f);
  auto error = [&](float l, float h) {
    std::vector<float> out(4);
    q.fake_quantize(w, zeros, q.group_quant(group_range(w), l, h), out);
    double e = 0;
    for (std::size_t j = 0; j < 4; ++j) e += std::pow(w[j] - out[j], 2);
    return e;
  };
  CHECK(error(1, 1) == doctest::Approx(0.005625).epsilon(1e-3));
  CHECK(error(0.975f, 0.975f) == doctest::Approx(0.004424).epsilon(1e-3));
  std::vector<float> lo(1), hi(1);
  search_clip_scales(q, MatrixView(w.data(), 1, 4), a, serial, lo, hi, ClipSearch{.magnitude_weighted = false, .refits = 0});
  CHECK(hi[0] == doctest::Approx(0.975f));
  search_clip_scales(q, MatrixView(w.data(), 1, 4), a, serial, lo, hi, ClipSearch{.magnitude_weighted = false, .refits = 2});
  CHECK(hi[0] == doctest::Approx(0.96941).epsilon(2e-4));
  CHECK(q.group_quant(group_range(w), lo[0], hi[0]).scale == doctest::Approx(-0.121176).epsilon(1e-3));
  CHECK(error(lo[0], hi[0]) == doctest::Approx(0.004382).epsilon(5e-3));
}

TEST_CASE("least-squares refits never raise a group's error and lower many (asymmetric and symmetric)") {
  const RowMatrix weight = random_weight(16, 128, 13);
  std::vector<float> a(128);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.05f + static_cast<float>((i * 7) % 11);
  for (const QuantSpec spec : {QuantSpec{2, 32, Asymmetric}, QuantSpec{4, 32, Symmetric}, QuantSpec{3, 32, Asymmetric}}) {
    CAPTURE(spec.bits);
    const DynamicIntQuantizer q(spec);
    std::vector<float> lo0(64), hi0(64), lo(64), hi(64);
    search_clip_scales(q, view(weight), a, serial, lo0, hi0, ClipSearch{.magnitude_weighted = false, .refits = 0});
    search_clip_scales(q, view(weight), a, serial, lo, hi, ClipSearch{.magnitude_weighted = false, .refits = 3});
    const std::vector<float> zeros(32, 0.0f);
    auto error = [&](Index r, Index g, float l, float h) {
      const std::span<const float> w(weight.data() + r * 128 + g * 32, 32);
      std::vector<float> out(32);
      q.fake_quantize(w, zeros, q.group_quant(group_range(w), l, h), out);
      double e = 0;
      for (std::size_t j = 0; j < 32; ++j) e += a[static_cast<std::size_t>(g * 32) + j] * std::pow(w[j] - out[j], 2);
      return e;
    };
    int lower = 0;
    double grid = 0, refit = 0;
    for (Index r = 0; r < 16; ++r)
      for (Index g = 0; g < 4; ++g) {
        const auto k = static_cast<std::size_t>(r * 4 + g);
        const double e0 = error(r, g, lo0[k], hi0[k]), e1 = error(r, g, lo[k], hi[k]);
        CHECK(e1 <= e0);
        lower += e1 < e0;
        grid += e0, refit += e1;
        CHECK(lo[k] >= 0.0f);
        CHECK(hi[k] <= 1.0f);
      }
    MESSAGE("W" << spec.bits << "G32: refits lower " << lower << " of 64 groups; total error " << grid << " -> " << refit);
    CHECK(lower > 8);
  }
}

TEST_CASE("k-quant (DoubleQuantizer) groups are searched too") {
  const DynamicDoubleQuantizer q(QuantSpec{2, 16, Asymmetric, 16, 4});  // GGUF Q2_K
  const RowMatrix weight = random_weight(4, 256, 5);
  std::vector<float> lo(64), hi(64);
  search_clip_scales(q, view(weight), {}, serial, lo, hi);
  int clipped = 0;
  for (std::size_t k = 0; k < lo.size(); ++k) {
    CHECK(lo[k] >= 0.5f);  // the grid's range (no refits by default)
    CHECK(hi[k] <= 1.0f);
    clipped += lo[k] < 1 || hi[k] < 1;
  }
  CHECK(clipped > 32);
}

TEST_CASE("input importance: the mean square of each linear's input channel") {
  const LlamaModel model = random_model(3);
  const LlamaBlock& block = model.blocks[0];
  std::vector<RowMatrix> inputs{random_weight(5, model.config.hidden, 7), random_weight(5, model.config.hidden, 8)};
  const InputImportance imp = input_importance(block, model.config, inputs);
  // q/k/v see the attention RMSNorm of the input: computed here directly
  Eigen::VectorXd expected = Eigen::VectorXd::Zero(model.config.hidden);
  for (const RowMatrix& x : inputs)
    for (Index t = 0; t < x.rows(); ++t) {
      const double r = 1.0 / std::sqrt(x.row(t).cast<double>().squaredNorm() / static_cast<double>(x.cols()) + model.config.rms_eps);
      for (Index j = 0; j < x.cols(); ++j) expected[j] += std::pow(x(t, j) * r * block.attn_norm[j], 2);
    }
  expected /= 10.0;
  for (Linear l : {Linear::Query, Linear::Key, Linear::Value})
    for (Index j = 0; j < model.config.hidden; ++j)
      CHECK(imp[static_cast<std::size_t>(l)][static_cast<std::size_t>(j)] == doctest::Approx(expected[j]).epsilon(1e-4));
  CHECK(static_cast<Index>(imp[static_cast<std::size_t>(Linear::Down)].size()) == model.config.intermediate);
  CHECK(static_cast<Index>(imp[static_cast<std::size_t>(Linear::Output)].size()) == model.config.heads * model.config.head_dim);
}

TEST_CASE("BlockTuningRun starts from the searched clipping: lower RTN block error than the full range") {
  const LlamaModel model = random_model(4);
  std::vector<RowMatrix> inputs;
  for (int s = 0; s < 4; ++s) inputs.push_back(random_weight(16, model.config.hidden, 20 + s));
  BlockTuningRun<DynamicIntQuantizer, SignSGD<LinearDecay>, Cpu>::LayerQuantizers quantizers(all_linears.size());
  for (auto& q : quantizers) q = DynamicIntQuantizer(QuantSpec{2, 32, Asymmetric});
  TuneOptions options;
  options.iters = 0;
  BlockTuningRun<DynamicIntQuantizer, SignSGD<LinearDecay>, Cpu> unit(options, quantizers, {}, {}, model.blocks[0], model.config,
                                                                      std::span<const RowMatrix>(inputs), "block");
  options.clip_init = ClipInit::WeightedSearch;
  BlockTuningRun<DynamicIntQuantizer, SignSGD<LinearDecay>, Cpu> searched(options, quantizers, {}, {}, model.blocks[0],
                                                                          model.config, std::span<const RowMatrix>(inputs), "block");
  const double e_unit = unit.evaluate(), e_searched = searched.evaluate();
  MESSAGE("W2G32 RTN block error: full range " << e_unit << ", searched " << e_searched);
  CHECK(e_searched < 0.8 * e_unit);
  // the encoded result carries the searched scales
  const auto result = searched.result();
  CHECK(result[0].has_value());
}

TEST_CASE("SymmetricSearch::ScaleGrid: llama.cpp's code grids and least-squares scale, by hand") {
  // 4-bit sym, one group {-0.8, 0.75}, weights 1. The grids k = -5 .. 9 (k = 0 first) give codes
  // (-8, 7): Σwl = 6.4 + 5.25 = 11.65, Σl² = 113, score 11.65² / 113 = 1.201084; k = -9 .. -6 give
  // (-7, 7) (-0.8 · (7.1 .. 7.4) / 0.8 rounds to -7, 0.75 · (7.1 .. 7.4) / 0.8 to 7): Σwl = 10.85,
  // Σl² = 98, score 1.201250, the best. Its scale 10.85 / 98 = 0.110714 is 1.10714 of the full
  // range's 0.8 / 8: above 1, so the ceiling decides whether the group may start there.
  const std::vector<float> w{-0.8f, 0.75f}, a{1.0f, 1.0f};
  const DynamicIntQuantizer q(QuantSpec{4, 2, Symmetric});
  std::vector<float> lo(1), hi(1);
  const ClipSearch scales{.symmetric = SymmetricSearch::ScaleGrid, .ceiling = 1.25f};
  search_clip_scales(q, MatrixView(w.data(), 1, 2), a, serial, lo, hi, scales);
  CHECK(lo[0] == doctest::Approx(10.85 / 98 * 8 / 0.8).epsilon(1e-6));
  CHECK(hi[0] == lo[0]);
  const GroupQuant gq = q.group_quant(group_range(w), lo[0], hi[0]);
  CHECK(gq.scale == doctest::Approx(0.110714).epsilon(1e-3));  // fp16; the larger side (-0.8) maps to code 0
  std::vector<std::uint8_t> codes(2);
  q.encode(w, std::vector<float>(2, 0.0f), gq, codes);
  CHECK(codes[0] == 8 - 7);
  CHECK(codes[1] == 8 + 7);
  // At the reference's ceiling the group starts at the full range.
  search_clip_scales(q, MatrixView(w.data(), 1, 2), a, serial, lo, hi, ClipSearch{.symmetric = SymmetricSearch::ScaleGrid});
  CHECK(lo[0] == 1.0f);
  CHECK(hi[0] == 1.0f);
  // Weighted: the second weight's error 3x as costly, (-7, 7) still wins (Σωwl = 5.6 + 15.75,
  // Σωl² = 49 + 147: 2.325625 against (-8, 7)'s 22.15² / 211 = 2.325225), at the scale 21.35 / 196.
  // An all-zero group stays at 1.
  const std::vector<float> heavy{1.0f, 3.0f};
  search_clip_scales(q, MatrixView(w.data(), 1, 2), heavy, serial, lo, hi, scales);
  CHECK(lo[0] == doctest::Approx(21.35 / 196 * 8 / 0.8).epsilon(1e-6));
  const std::vector<float> zero_group{0.0f, 0.0f};
  search_clip_scales(q, MatrixView(zero_group.data(), 1, 2), a, serial, lo, hi, scales);
  CHECK(lo[0] == 1.0f);
  // Asymmetric groups ignore it and keep the clipping grid.
  const DynamicIntQuantizer asym(QuantSpec{4, 2, Asymmetric});
  std::vector<float> glo(1), ghi(1);
  search_clip_scales(asym, MatrixView(w.data(), 1, 2), a, serial, lo, hi, scales);
  search_clip_scales(asym, MatrixView(w.data(), 1, 2), a, serial, glo, ghi, ClipSearch{});
  CHECK(lo[0] == glo[0]);
  CHECK(hi[0] == ghi[0]);
}

TEST_CASE("SymmetricSearch::ScaleGrid reaches the Q4_0 layers of a GGUF mix (a DoubleQuantizer without a second level)") {
  const RowMatrix weight = random_weight(4, 64, 5);
  const std::vector<float> a(64, 1.0f);
  const ClipSearch scales{.symmetric = SymmetricSearch::ScaleGrid, .ceiling = 1.25f};
  const DynamicIntQuantizer plain(QuantSpec{4, 32, Symmetric});
  const DynamicDoubleQuantizer fallback(QuantSpec{4, 32, Symmetric});
  const DynamicDoubleQuantizer q3k(QuantSpec{3, 16, Symmetric, 16, 6});
  CHECK(scale_grid_searched(plain, scales));
  CHECK(scale_grid_searched(fallback, scales));
  CHECK_FALSE(scale_grid_searched(q3k, scales));
  CHECK_FALSE(scale_grid_searched(plain, ClipSearch{}));
  std::vector<float> lo(8), hi(8), dlo(8), dhi(8);
  search_clip_scales(plain, view(weight), a, serial, lo, hi, scales);
  search_clip_scales(fallback, view(weight), a, serial, dlo, dhi, scales);
  CHECK(lo == dlo);
  CHECK(hi == dhi);
  CHECK(std::any_of(lo.begin(), lo.end(), [](float r) { return r != 1.0f; }));
}

TEST_CASE("SymmetricSearch::DivisorGrid: SignRoundV2's scales max|w| / d, by hand") {
  // 2-bit sym (codes -2 .. 1, the largest |w| at -2), one group {-1.0, 0.9}, weights 1. The full
  // range (d = 2): scale 0.5, 0.9 clamps to 0.5: error 0.16. For d in [1.1, 1.5): -1 rounds to
  // code -1 and 0.9 to 1, error (1 - 1/d)² + (0.9 - 1/d)², least at the grid's end d = 1.1 (0.00835;
  // d in [1.5, 2): at least 0.165). So the ratio 2 / 1.1 = 1.818 when the ceiling allows it; below
  // ceiling 1 no candidate beats the full range.
  const std::vector<float> w{-1.0f, 0.9f}, a{1.0f, 1.0f};
  const DynamicIntQuantizer q(QuantSpec{2, 2, Symmetric});
  std::vector<float> lo(1), hi(1);
  const ClipSearch divisors{.symmetric = SymmetricSearch::DivisorGrid, .ceiling = 2.0f};
  CHECK(scale_grid_searched(q, divisors));
  search_clip_scales(q, MatrixView(w.data(), 1, 2), a, serial, lo, hi, divisors);
  CHECK(lo[0] == doctest::Approx(2.0 / 1.1).epsilon(1e-6));
  CHECK(hi[0] == lo[0]);
  const GroupQuant gq = q.group_quant(group_range(w), lo[0], hi[0]);
  std::vector<float> out(2);
  q.fake_quantize(w, std::vector<float>(2, 0.0f), gq, out);
  CHECK(out[0] == doctest::Approx(-1.0 / 1.1).epsilon(1e-3));  // code -1 at scale 1/1.1 (fp16)
  CHECK(out[1] == doctest::Approx(1.0 / 1.1).epsilon(1e-3));
  search_clip_scales(q, MatrixView(w.data(), 1, 2), a, serial, lo, hi, ClipSearch{.symmetric = SymmetricSearch::DivisorGrid});
  CHECK(lo[0] == 1.0f);
  CHECK(hi[0] == 1.0f);
  // 4 bits: the grid d = 8 ± 0.06 k spans [2, 14]; a group on the full range's own grid stays there
  const std::vector<float> on_grid{-0.8f, -0.3f, 0.2f, 0.7f};
  const DynamicIntQuantizer q4(QuantSpec{4, 4, Symmetric});
  search_clip_scales(q4, MatrixView(on_grid.data(), 1, 4), std::vector<float>(4, 1.0f), serial, lo, hi, divisors);
  CHECK(lo[0] == 1.0f);
}
}  // namespace test_clip_search
