#pragma once
// SignSGD (auto_round/algorithms/quantization/sign_round/sign_sgd.py with its default
// momentum 0): p <- p - lr * sign(grad), sign(0) = 0 as torch.sign.
#include <cstddef>
#include <span>

#include "optimizer.hpp"
#include "schedule.hpp"

namespace autoround {

template <LearningRateSchedule Schedule = LinearDecay>
struct SignSGD {
  struct State {};  // stateless
  Schedule schedule{};

  State make_state(std::size_t) const { return {}; }
  /// The learning rate of `step` for a parameter group whose base rate is `base`.
  float rate(float base, int step, int total) const { return scheduled_rate(schedule, base, step, total); }
  void update(std::span<float> params, std::span<const float> grads, float lr, State&) const {
    for (std::size_t i = 0; i < params.size(); ++i) {
      const float g = grads[i];
      params[i] -= g > 0.0f ? lr : (g < 0.0f ? -lr : 0.0f);
    }
  }
};

}  // namespace autoround
