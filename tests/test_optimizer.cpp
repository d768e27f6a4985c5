// Optimizer policies against their defining formulas, worked by hand.
#include <doctest/doctest.h>

#include <autoround/optimizer/adam.hpp>
#include <autoround/optimizer/schedule.hpp>
#include <autoround/optimizer/sign_sgd.hpp>
#include <autoround/tune/tune_options.hpp>
#include <cmath>
#include <vector>

namespace test_optimizer {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

TEST_CASE("SignSGD moves by lr against the sign, and not at all for a zero gradient") {
  SignSGD<> opt;
  auto state = opt.make_state(3);
  std::vector<float> p{1.0f, 1.0f, 1.0f};
  const std::vector<float> g{2.0f, -3.0f, 0.0f};
  opt.update(p, g, 0.125f, state);
  CHECK(p == std::vector<float>{0.875f, 1.125f, 1.0f});
}

TEST_CASE("LinearDecay is torch's LinearLR(1 -> 0 over iters)") {
  const LinearDecay decay;
  CHECK(decay.factor(0, 200) == 1.0f);
  CHECK(decay.factor(100, 200) == 0.5f);
  CHECK(decay.factor(199, 200) == doctest::Approx(0.005));
  CHECK(decay.factor(200, 200) == 0.0f);
  // total SignSGD travel with lr = 1/iters: sum_{t<iters} (1 - t/iters) / iters = (iters + 1) / (2 iters)
  double travel = 0;
  for (int t = 0; t < 200; ++t) travel += decay.factor(t, 200) / 200.0;
  CHECK(travel == doctest::Approx(201.0 / 400.0));
}

TEST_CASE("LinearDecay::rate is LinearLR's float32 recursion") {
  // torch: lr_t = float32(lr_{t-1} * float32(1 + (0 - 1) / (T - (t - 1)))), lr_0 = float32(base)
  const LinearDecay decay;
  const float base = 1.0f / 25;
  CHECK(decay.rate(base, 0, 25) == base);
  CHECK(decay.rate(base, 1, 25) == base * 0.96f);                      // 1 - 1/25
  CHECK(decay.rate(base, 2, 25) == (base * 0.96f) * static_cast<float>(1.0 - 1.0 / 24));
  CHECK(decay.rate(base, 25, 25) == 0.0f);                             // 1 - 1/1 at the last step
  CHECK(decay.rate(base, 30, 25) == 0.0f);                             // and it stays there
  CHECK(decay.rate(base, 12, 25) == doctest::Approx(base * decay.factor(12, 25)).epsilon(1e-6));
}

TEST_CASE("auto learning rate as the reference picks it") {
  TuneOptions o;
  CHECK(o.rounding_lr(4) == doctest::Approx(1.0 / 200));
  o.iters = 1000;
  CHECK(o.rounding_lr(2) == doctest::Approx(2.0 / 1000));
  CHECK(o.rounding_lr(4) == doctest::Approx(1.0 / 1000));
  o.lr = 0.01f;
  CHECK(o.clipping_lr(4) == 0.01f);
  o.minmax_lr = 0.02f;
  CHECK(o.clipping_lr(4) == 0.02f);
}

TEST_CASE("Adam: two AdamW steps (weight decay 0) worked by hand") {
  Adam<> opt;
  auto state = opt.make_state(1);
  std::vector<float> p{0.5f};
  // step 1, g = 0.2: m = 0.02, v = 4e-5; m_hat = 0.2, v_hat = 0.04 -> p -= 0.1 * 0.2 / (0.2 + 1e-8)
  opt.update(p, std::vector<float>{0.2f}, 0.1f, state);
  CHECK(p[0] == doctest::Approx(0.5 - 0.1 * 0.2 / (0.2 + 1e-8)).epsilon(1e-6));
  // step 2, g = -0.4: m = 0.9*0.02 - 0.04 = -0.022, v = 0.999*4e-5 + 0.001*0.16 = 1.9996e-4
  const double m = -0.022, v = 1.9996e-4, c1 = 1 - 0.81, c2 = 1 - 0.999 * 0.999;
  const double expected = (0.5 - 0.1 * 0.2 / (0.2 + 1e-8)) - (0.1 / c1) * m / (std::sqrt(v) / std::sqrt(c2) + 1e-8);
  opt.update(p, std::vector<float>{-0.4f}, 0.1f, state);
  CHECK(p[0] == doctest::Approx(expected).epsilon(1e-5));
}
}  // namespace test_optimizer
