// Mixed precision at an average bit width (tune/scheme_budget.hpp): the reference's bit count by
// hand, the budget kept, the overrides naming exactly the layers that left the first option, and
// the extremes of the budget.
#include <doctest/doctest.h>

#include <autoround/backend/cpu.hpp>
#include <autoround/tune/scheme_budget.hpp>
#include <random>
#include <regex>

#include "support/memory_source.hpp"
#include "support/random_model.hpp"

namespace test_scheme_budget {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

TEST_CASE("scheme_bits: the reference's count, by hand") {
  // W2A16 (group 128, sym) on [8, 576]: 5 groups per row (the last of 64), each a 16-bit scale and a
  // 2-bit zero point (counted for sym too): 8 * 576 * 2 + 8 * 5 * 18
  CHECK(scheme_bits(QuantSpec{2, 128, Symmetric}, 8, 576, false) == 9216 + 720);
  CHECK(scheme_bits(QuantSpec{2, 128, Symmetric}, 8, 576, true) == 9216);
  CHECK(scheme_bits(QuantSpec{4, PerChannel, Asymmetric}, 3, 100, false) == 1200 + 3 * 20);
  // averages as the reference prints them for a 4096-wide layer: W2A16 2.1406, W3A16 3.1484, W4A16 4.1563
  CHECK(static_cast<double>(scheme_bits(QuantSpec{2, 128, Symmetric}, 1, 4096, false)) / 4096 == doctest::Approx(2.140625));
  CHECK(static_cast<double>(scheme_bits(QuantSpec{3, 128, Symmetric}, 1, 4096, false)) / 4096 == doctest::Approx(3.1484375));
  CHECK(static_cast<double>(scheme_bits(QuantSpec{4, 128, Symmetric}, 1, 4096, false)) / 4096 == doctest::Approx(4.15625));
}

TEST_CASE("plan_avg_bits: within the budget, the overrides are exactly the layers moved, the extremes uniform") {
  std::mt19937 rng(9);
  const LlamaModel m = test_models::small_random_model(rng, 2);
  const test_models::MemorySource source{&m};
  const auto samples = test_models::random_samples(3, 16, m.config.vocab, rng);
  const ModelFisher fisher = measure_fisher(source, samples);
  const std::vector<QuantSpec> options{QuantSpec{2, 32, Asymmetric}, QuantSpec{4, 32, Asymmetric}};
  for (double avg : {2.9, 3.3, 4.0}) {  // with scales and zero points: W2G32 2 + 18/32 = 2.5625, W4G32 4.625
    CAPTURE(avg);
    const SchemePlan plan = plan_avg_bits(source, fisher, options, avg);
    REQUIRE(plan.layers.size() == 14);
    CHECK(plan.avg_bits <= avg);
    std::size_t moved = 0;
    for (const LayerSchemeChoice& l : plan.layers) {
      moved += l.chosen == 1;
      CHECK(l.loss_rise[1] < l.loss_rise[0]);  // 4 bits err less than 2 on every layer
      const bool overridden = std::any_of(plan.overrides.begin(), plan.overrides.end(), [&](const LayerOverride& o) {
        return std::regex_search(l.name, std::regex(o.pattern));
      });
      CHECK(overridden == (l.chosen == 1));
    }
    CHECK(plan.overrides.size() == moved);
    for (const LayerOverride& o : plan.overrides) CHECK(o.spec == options[1]);
    CHECK(moved > 0);
    CHECK(moved < 14);
  }
  CHECK_THROWS_WITH_AS(plan_avg_bits(source, fisher, options, 2.5), doctest::Contains("below what the smallest option takes (2.5625"), Error);
  const SchemePlan all = plan_avg_bits(source, fisher, options, 4.625);
  CHECK(all.overrides.size() == 14);
  const SchemePlan none = plan_avg_bits(source, fisher, options, 2.5625, false);
  CHECK(none.overrides.empty());
  // weights alone: 2 and 4 bits, so 3 is half of the weights at each
  const SchemePlan weights = plan_avg_bits(source, fisher, options, 3.0, true);
  CHECK(weights.avg_bits <= 3.0);
  CHECK(weights.avg_bits > 2.5);
  CHECK_THROWS_WITH_AS(plan_avg_bits(source, fisher, {QuantSpec{4, 32, Asymmetric}, float_spec(FloatFormat::MxFp4)}, 4.0),
                       doctest::Contains("integer schemes only"), Error);
}
}  // namespace test_scheme_budget
