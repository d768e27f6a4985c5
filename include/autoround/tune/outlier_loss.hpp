#pragma once
// SignRoundV2's loss filtering (auto-round 0.16.1, sign_roundv2/quantizer.py `_get_loss`; arXiv
// 2512.04746): the block loss leaves out the step's largest output errors, so a few outlier
// elements do not steer every rounding of a 2-3 bit block. Of the minibatch's block-output error
// D = pred − target (every element of every sample), the k = max(1, ⌊n · fraction⌋) of largest |D|
// are dropped from the loss and its gradient; the mean still divides by all n elements (the
// reference's: a 0/1 mask inside the mean, no renormalization), and the best step is ranked by
// this loss. The reference uses fraction 0.001 for bits < 4 or 4-bit activations.
//
// Ties: every element whose |D| equals the k-th largest is dropped (the reference's torch.topk
// drops exactly k; with float outputs a tie at the threshold is rare and moves one element).
// Positions a loss mask removes are zero before the selection here; the reference selects
// before its valid-token mask (with no loss masks, the default, both are the same).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "../core/config.hpp"

namespace autoround {

/// How many of `n` errors the loss filtering drops: max(1, ⌊n · fraction⌋); 0 when fraction <= 0.
inline std::size_t outlier_count(std::size_t n, double fraction) {
  if (!(fraction > 0.0) || n == 0) return 0;
  const auto k = static_cast<std::size_t>(std::floor(static_cast<double>(n) * fraction));
  return std::clamp<std::size_t>(k, 1, n);
}

/// Sets to zero the `outlier_count(diff.size(), fraction)` entries of largest magnitude (and any
/// tied with the smallest of them); returns how many it zeroed. `scratch` is reused between calls.
inline std::size_t drop_largest_errors(std::span<float> diff, double fraction, std::vector<float>& scratch) {
  const std::size_t k = outlier_count(diff.size(), fraction);
  if (k == 0) return 0;
  scratch.resize(diff.size());
  std::transform(diff.begin(), diff.end(), scratch.begin(), [](float d) { return std::fabs(d); });
  // the k-th largest magnitude: scratch[k - 1] once partitioned in descending order
  std::nth_element(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(k - 1), scratch.end(), std::greater<float>());
  const float threshold = scratch[k - 1];
  std::size_t dropped = 0;
  for (float& d : diff)
    if (std::fabs(d) >= threshold) {
      d = 0.0f;
      ++dropped;
    }
  return dropped;
}

}  // namespace autoround
