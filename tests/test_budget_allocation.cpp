// The size-budget choice (tune/budget_allocation.hpp) against exhaustive search: optimal wherever
// the relaxation's solution fills the budget, never over it, and elsewhere within the
// relaxation's bound of the optimum.
#include <doctest/doctest.h>

#include <autoround/tune/budget_allocation.hpp>
#include <cmath>
#include <limits>
#include <random>

namespace test_budget_allocation {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
using Items = std::vector<std::vector<BudgetOption>>;

double total_cost(const Items& items, const std::vector<std::size_t>& choice) {
  double c = 0;
  for (std::size_t i = 0; i < items.size(); ++i) c += items[i][choice[i]].cost;
  return c;
}
std::uint64_t total_bytes(const Items& items, const std::vector<std::size_t>& choice) {
  std::uint64_t b = 0;
  for (std::size_t i = 0; i < items.size(); ++i) b += items[i][choice[i]].bytes;
  return b;
}
/// The best cost within `budget`, by trying every combination.
double exhaustive(const Items& items, std::uint64_t budget) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<std::size_t> choice(items.size(), 0);
  for (;;) {
    if (total_bytes(items, choice) <= budget) best = std::min(best, total_cost(items, choice));
    std::size_t i = 0;
    while (i < items.size() && ++choice[i] == items[i].size()) choice[i++] = 0;
    if (i == items.size()) return best;
  }
}
/// Types as in a GGUF file: more bytes, less error, a tensor's own scale; some options dominated.
Items random_items(std::mt19937& rng, std::size_t n) {
  std::uniform_real_distribution<double> unit(0.1, 1.0);
  Items items(n);
  for (auto& item : items) {
    const double size = 100.0 * unit(rng), weight = unit(rng);
    for (double bits : {2.6, 3.4, 4.5, 5.0, 5.5, 6.6}) {
      const double noise = unit(rng);
      item.push_back({static_cast<std::uint64_t>(size * bits), weight * std::pow(2.0, -2.0 * bits) * (0.5 + noise)});
    }
  }
  return items;
}
}  // namespace

TEST_CASE("allocate_budget: exact where the relaxation fills the budget, feasible and near the optimum elsewhere") {
  std::mt19937 rng(5);
  for (int round = 0; round < 30; ++round) {
    const Items items = random_items(rng, 5);  // 6^5 = 7776 combinations
    std::uint64_t low = 0, high = 0;
    for (const auto& item : items) {
      std::uint64_t lo = item[0].bytes, hi = item[0].bytes;
      for (const auto& o : item) lo = std::min(lo, o.bytes), hi = std::max(hi, o.bytes);
      low += lo, high += hi;
    }
    // the relaxation's solutions: for a price per byte, each item's cheapest cost + price · bytes
    for (double price : {1e-5, 1e-4, 1e-3, 3e-3, 1e-2}) {
      std::vector<std::size_t> relaxed(items.size());
      for (std::size_t i = 0; i < items.size(); ++i) {
        std::size_t best = 0;
        for (std::size_t k = 1; k < items[i].size(); ++k)
          if (items[i][k].cost + price * items[i][k].bytes < items[i][best].cost + price * items[i][best].bytes) best = k;
        relaxed[i] = best;
      }
      const std::uint64_t budget = total_bytes(items, relaxed);
      const auto choice = allocate_budget(items, budget);
      CHECK(total_bytes(items, choice) <= budget);
      CHECK(total_cost(items, choice) == doctest::Approx(exhaustive(items, budget)).epsilon(1e-12));
    }
    // any budget: within it, and above the optimum by at most one item's whole range of cost
    // (the relaxation's bound: its solution differs from the greedy prefix in one item's step)
    double widest = 0;
    for (const auto& item : items) {
      double lo = item[0].cost, hi = item[0].cost;
      for (const auto& o : item) lo = std::min(lo, o.cost), hi = std::max(hi, o.cost);
      widest = std::max(widest, hi - lo);
    }
    for (int k = 0; k < 5; ++k) {
      const std::uint64_t budget = low + (high - low) * static_cast<std::uint64_t>(k + 1) / 6;
      const auto choice = allocate_budget(items, budget);
      const double cost = total_cost(items, choice), optimum = exhaustive(items, budget);
      CHECK(total_bytes(items, choice) <= budget);
      CHECK(cost >= optimum * (1 - 1e-12));
      CHECK(cost <= optimum + widest);
    }
  }
}

TEST_CASE("allocate_budget: a budget below the smallest options names both sizes; an item with no options is refused") {
  const Items items = {{{10, 1.0}, {20, 0.5}}, {{5, 2.0}}};
  CHECK_THROWS_WITH_AS(allocate_budget(items, 14), doctest::Contains("the smallest types already take 15 bytes"), Error);
  CHECK(allocate_budget(items, 15) == std::vector<std::size_t>{0, 0});
  CHECK(allocate_budget(items, 25) == std::vector<std::size_t>{1, 0});
  CHECK_THROWS_WITH_AS(allocate_budget({{}}, 100), doctest::Contains("item 0 has no options"), Error);
}
}  // namespace test_budget_allocation
