#pragma once
// Mixed precision at a size budget: each item (a tensor) has options (its storage types), each
// with a size and a cost (the estimated rise of the loss, tune/fisher_factors.hpp); choose one
// option per item so that the sizes fit the budget and the costs' sum is smallest — a
// multiple-choice knapsack.
//
// Solved as its Lagrangian relaxation is: every item starts at its smallest option, then the
// upgrades along each item's lower convex hull of (size, cost) are taken in order of cost saved
// per byte, largest first, while they fit; an upgrade that does not fit is passed over (a smaller
// one elsewhere may). Where the taken upgrades fill the budget exactly, that choice is optimal for
// it (the relaxation's solution is feasible); otherwise at most one upgrade's worth of bytes stays
// unused, which a last pass spends on the best single change that still fits (any option, hull or
// not). Deterministic: ties go to the earlier item.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <queue>
#include <string>
#include <vector>

#include "../core/error.hpp"

namespace autoround {

struct BudgetOption {
  std::uint64_t bytes = 0;
  double cost = 0;
};

/// What the items take at their smallest options: the least any allocation needs.
inline std::uint64_t smallest_total(const std::vector<std::vector<BudgetOption>>& items) {
  std::uint64_t total = 0;
  for (const auto& options : items) {
    std::uint64_t least = options.empty() ? 0 : options.front().bytes;
    for (const BudgetOption& o : options) least = std::min(least, o.bytes);
    total += least;
  }
  return total;
}

/// The chosen option's index for each item; throws when even the smallest options exceed
/// `budget`.
inline std::vector<std::size_t> allocate_budget(const std::vector<std::vector<BudgetOption>>& items, std::uint64_t budget) {
  const std::size_t n = items.size();
  std::vector<std::vector<std::size_t>> hulls(n);  // option indices along the lower convex hull, by size
  std::uint64_t used = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& options = items[i];
    detail::require(!options.empty(), "allocate_budget: item " + std::to_string(i) + " has no options");
    std::vector<std::size_t> order(options.size());
    for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return options[a].bytes != options[b].bytes ? options[a].bytes < options[b].bytes : options[a].cost < options[b].cost;
    });
    std::vector<std::size_t>& hull = hulls[i];
    for (std::size_t k : order) {
      const BudgetOption& o = options[k];
      if (!hull.empty() && o.cost >= options[hull.back()].cost) continue;  // dominated: larger, no cheaper
      // drop the last point while it lies on or above the segment from its predecessor to o
      while (hull.size() >= 2) {
        const BudgetOption& a = options[hull[hull.size() - 2]];
        const BudgetOption& b = options[hull.back()];
        const double lhs = (b.cost - a.cost) * static_cast<double>(o.bytes - a.bytes);
        const double rhs = (o.cost - a.cost) * static_cast<double>(b.bytes - a.bytes);
        if (lhs >= rhs) hull.pop_back();  // b's saving per byte does not beat going straight to o
        else break;
      }
      hull.push_back(k);
    }
    used += options[hull.front()].bytes;
  }
  if (used > budget)
    throw Error("size budget of " + std::to_string(budget) + " bytes: the smallest types already take " + std::to_string(used) + " bytes");
  std::vector<std::size_t> step(n, 0);  // position on each hull
  struct Upgrade {
    double saving_per_byte;
    std::size_t item;
    bool operator<(const Upgrade& other) const {  // max-heap: largest saving per byte, then the earlier item
      return saving_per_byte != other.saving_per_byte ? saving_per_byte < other.saving_per_byte : item > other.item;
    }
  };
  auto next = [&](std::size_t i) {
    const auto& h = hulls[i];
    const BudgetOption& a = items[i][h[step[i]]];
    const BudgetOption& b = items[i][h[step[i] + 1]];
    return Upgrade{(a.cost - b.cost) / static_cast<double>(b.bytes - a.bytes), i};
  };
  std::priority_queue<Upgrade> queue;
  for (std::size_t i = 0; i < n; ++i)
    if (hulls[i].size() > 1) queue.push(next(i));
  while (!queue.empty()) {
    const Upgrade u = queue.top();
    queue.pop();
    const std::size_t i = u.item;
    const std::uint64_t extra = items[i][hulls[i][step[i] + 1]].bytes - items[i][hulls[i][step[i]]].bytes;
    if (used + extra > budget) continue;  // does not fit: this item stays where it is
    used += extra;
    ++step[i];
    if (step[i] + 1 < hulls[i].size()) queue.push(next(i));
  }
  std::vector<std::size_t> choice(n);
  for (std::size_t i = 0; i < n; ++i) choice[i] = hulls[i][step[i]];
  // spend what is left on the single change (any option of any item) that saves the most
  for (;;) {
    double best_saving = 0;
    std::size_t best_item = n, best_option = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const BudgetOption& now = items[i][choice[i]];
      for (std::size_t k = 0; k < items[i].size(); ++k) {
        const BudgetOption& o = items[i][k];
        if (used - now.bytes + o.bytes > budget) continue;
        const double saving = now.cost - o.cost;
        if (saving > best_saving) best_saving = saving, best_item = i, best_option = k;
      }
    }
    if (best_item == n) break;
    used = used - items[best_item][choice[best_item]].bytes + items[best_item][best_option].bytes;
    choice[best_item] = best_option;
  }
  return choice;
}

}  // namespace autoround
