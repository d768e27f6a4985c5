// LayerTuner behaviour on small synthetic layers (accuracy on real weights: test_real_layers).
#include <doctest/doctest.h>

#include <autoround/optimizer/adam.hpp>
#include <autoround/quantizer/int_quantizer.hpp>
#include <autoround/tune/layer_tuner.hpp>
#include <cmath>
#include <random>

namespace test_layer_tuner {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
struct Problem {
  RowMatrix weight, inputs;
};
// Heavy-tailed weights; correlated inputs (a low-rank mix plus noise, as real activations are).
// With white inputs round-to-nearest is already optimal per weight and there is nothing to tune.
Problem make_problem(Index out, Index in, Index tokens, unsigned seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> heavy(3.0f);
  std::normal_distribution<float> normal;
  const Index rank = std::max<Index>(4, in / 4);
  RowMatrix mix(rank, in), latent(tokens, rank);
  for (Index i = 0; i < mix.size(); ++i) mix.data()[i] = normal(rng);
  for (Index i = 0; i < latent.size(); ++i) latent.data()[i] = normal(rng);
  Problem p{RowMatrix(out, in), latent * mix};
  for (Index i = 0; i < p.weight.size(); ++i) p.weight.data()[i] = 0.02f * heavy(rng);
  for (Index i = 0; i < p.inputs.size(); ++i) p.inputs.data()[i] += 0.1f * normal(rng);
  return p;
}
TuneOptions small_options(int iters = 60) {
  TuneOptions o;
  o.iters = iters;
  o.seqlen = 16;
  o.batch_size = 4;
  return o;
}

/// A researcher's own policy: symmetric codes with power-of-two scales (MX-style), STE on v only.
struct PowerOfTwoQuantizer {
  int bits() const { return 4; }
  int group_size() const { return 32; }
  Symmetry symmetry() const { return Symmetric; }
  GroupQuant group_quant(GroupRange r, float, float) const {
    const float amax = std::max(-r.wmin, r.wmax);
    return {amax > 0 ? std::exp2(std::ceil(std::log2(amax / 7.0f))) : 1.0f, 8.0f};
  }
  void fake_quantize(std::span<const float> w, std::span<const float> v, GroupQuant gq, std::span<float> out) const {
    for (std::size_t i = 0; i < w.size(); ++i)
      out[i] = gq.scale * (std::clamp(std::nearbyint(w[i] / gq.scale + v[i]) + 8.0f, 0.0f, 15.0f) - 8.0f);
  }
  void encode(std::span<const float> w, std::span<const float> v, GroupQuant gq, std::span<std::uint8_t> c) const {
    for (std::size_t i = 0; i < w.size(); ++i)
      c[i] = static_cast<std::uint8_t>(std::clamp(std::nearbyint(w[i] / gq.scale + v[i]) + 8.0f, 0.0f, 15.0f));
  }
  ScaleGrad backward(std::span<const float> w, std::span<const float> v, GroupRange, float, float, GroupQuant gq,
                     std::span<const float> g, std::span<float> gv) const {
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float u = std::nearbyint(w[i] / gq.scale + v[i]) + 8.0f;
      gv[i] = (u >= 0 && u <= 15) ? g[i] * gq.scale : 0.0f;
    }
    return {};
  }
};
static_assert(Quantizer<PowerOfTwoQuantizer>);
}  // namespace

TEST_CASE("iters = 0 is round-to-nearest") {
  const auto p = make_problem(8, 40, 64, 1);
  TuneOptions o = small_options(0);
  const LayerTuner<IntQuantizer<4, 16, Asymmetric>> tuner(o);
  const auto tuned = tuner.tune(view(p.weight), view(p.inputs));
  const auto rtn = quantize_rtn(IntQuantizer<4, 16, Asymmetric>{}, view(p.weight));
  CHECK(tuned.codes == rtn.codes);
  CHECK(tuned.scales == rtn.scales);
  CHECK(tuned.stats.steps_run == 0);
}

TEST_CASE_TEMPLATE("tuning lowers the output error below RTN", Q, IntQuantizer<4, 32, Asymmetric>,
                   IntQuantizer<4, 32, Symmetric>, IntQuantizer<2, 32, Asymmetric>) {
  // every step sees all 8 samples, so the best step is not just the easiest minibatch
  const auto p = make_problem(24, 96, 256, 2);
  TuneOptions o = small_options(100);
  o.seqlen = 32;
  o.batch_size = 8;
  const auto tuned = LayerTuner<Q>(o).tune(view(p.weight), view(p.inputs));
  const auto rtn = quantize_rtn(Q{}, view(p.weight));
  const double rtn_mse = output_mse(view(p.weight), rtn, view(p.inputs));
  const double tuned_mse = output_mse(view(p.weight), tuned, view(p.inputs));
  MESSAGE("bits " << Q{}.bits() << ": rtn " << rtn_mse << " tuned " << tuned_mse << " (step-0 loss "
                  << tuned.stats.rtn_loss << ", best " << tuned.stats.best_loss << " at step " << tuned.stats.best_step << ")");
  CHECK(tuned_mse < 0.85 * rtn_mse);  // measured 0.55-0.75 on this problem
  CHECK(tuned.stats.best_loss < tuned.stats.rtn_loss);
  CHECK(tuned.stats.steps_run == 100);
  for (float s : tuned.scales) CHECK(std::fabs(s) == round_to_half(std::fabs(s)));  // stored scales are fp16 values
}

TEST_CASE("deterministic for a fixed seed, and independent of the thread count") {
  const auto p = make_problem(16, 64, 128, 3);
  using Q = IntQuantizer<3, 32, Asymmetric>;
  const auto a = LayerTuner<Q>(small_options()).tune(view(p.weight), view(p.inputs));
  const auto b = LayerTuner<Q>(small_options()).tune(view(p.weight), view(p.inputs));
  CHECK(a.codes == b.codes);
  CHECK(a.scales == b.scales);
  CHECK(a.stats.best_loss == b.stats.best_loss);
  const auto one_thread = LayerTuner<Q, SignSGD<>, Cpu>(small_options(), Q{}, {}, Cpu{1}).tune(view(p.weight), view(p.inputs));
  CHECK(one_thread.codes == a.codes);
  CHECK(one_thread.stats.best_loss == a.stats.best_loss);
  TuneOptions other_seed = small_options();
  other_seed.seed = 7;
  const auto c = LayerTuner<Q>(other_seed).tune(view(p.weight), view(p.inputs));
  CHECK(c.stats.rtn_loss != a.stats.rtn_loss);  // a different first minibatch
}

TEST_CASE("policies plug in: a user-defined quantizer and the Adam optimizer") {
  const auto p = make_problem(16, 64, 128, 4);
  const auto rtn_p2 = LayerTuner<PowerOfTwoQuantizer>(small_options(0)).tune(view(p.weight), view(p.inputs));
  const auto tuned_p2 = LayerTuner<PowerOfTwoQuantizer>(small_options()).tune(view(p.weight), view(p.inputs));
  for (float s : tuned_p2.scales) CHECK(std::exp2(std::round(std::log2(s))) == s);
  CHECK(output_mse(view(p.weight), tuned_p2, view(p.inputs)) < output_mse(view(p.weight), rtn_p2, view(p.inputs)));

  using Q = IntQuantizer<4, 32, Asymmetric>;
  TuneOptions adam_options = small_options();
  adam_options.lr = 5e-3f;
  const auto adam = LayerTuner<Q, Adam<>>(adam_options).tune(view(p.weight), view(p.inputs));
  const auto rtn = quantize_rtn(Q{}, view(p.weight));
  CHECK(output_mse(view(p.weight), adam, view(p.inputs)) < output_mse(view(p.weight), rtn, view(p.inputs)));
}

TEST_CASE("best-step bookkeeping and early stop") {
  const auto p = make_problem(16, 64, 128, 5);
  using Q = IntQuantizer<2, 32, Asymmetric>;
  TuneOptions o = small_options(80);
  o.dynamic_max_gap = 3;
  const auto early = LayerTuner<Q>(o).tune(view(p.weight), view(p.inputs));
  CHECK(early.stats.steps_run <= 80);
  CHECK(early.stats.steps_run - 1 - early.stats.best_step <= 3);

  o.dynamic_max_gap = -1;
  o.use_best = false;  // the reference's not_use_best_mse: parameters of the last step
  const auto last = LayerTuner<Q>(o).tune(view(p.weight), view(p.inputs));
  CHECK(last.stats.steps_run == 80);
}

TEST_CASE("separate full-precision inputs: target from fp inputs, prediction from quantized-path inputs") {
  const auto p = make_problem(16, 64, 128, 6);
  RowMatrix shifted = p.inputs;
  shifted.array() += 0.05f;  // as if earlier quantized layers perturbed the activations
  using Q = IntQuantizer<4, 32, Asymmetric>;
  const auto tuned = LayerTuner<Q>(small_options()).tune(view(p.weight), view(shifted), view(p.inputs));
  CHECK(tuned.stats.best_loss < tuned.stats.rtn_loss);
  // with identical inputs, both code paths see the same loss at step 0 (up to float rounding)
  const auto same = LayerTuner<Q>(small_options(1)).tune(view(p.weight), view(p.inputs), view(p.inputs));
  const auto plain = LayerTuner<Q>(small_options(1)).tune(view(p.weight), view(p.inputs));
  CHECK(same.stats.rtn_loss == doctest::Approx(plain.stats.rtn_loss).epsilon(1e-3).scale(0));  // relative
}
}  // namespace test_layer_tuner
