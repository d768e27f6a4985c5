#pragma once
// The reference's Adam variant (adam_round/adam.py: torch.optim.AdamW with weight_decay = 0,
// betas (0.9, 0.999), eps 1e-8), written as torch computes it:
// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "optimizer.hpp"
#include "schedule.hpp"

namespace autoround {

template <LearningRateSchedule Schedule = LinearDecay>
struct Adam {
  struct State {
    std::vector<float> first_moment, second_moment;
    int steps = 0;
  };
  Schedule schedule{};
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;

  State make_state(std::size_t n) const { return {std::vector<float>(n, 0.0f), std::vector<float>(n, 0.0f), 0}; }
  /// The learning rate of `step` for a parameter group whose base rate is `base`.
  float rate(float base, int step, int total) const { return scheduled_rate(schedule, base, step, total); }
  void update(std::span<float> params, std::span<const float> grads, float lr, State& state) const {
    ++state.steps;
    const double correction1 = 1.0 - std::pow(static_cast<double>(beta1), state.steps);
    const double correction2 = 1.0 - std::pow(static_cast<double>(beta2), state.steps);
    const float step_size = static_cast<float>(lr / correction1);
    const float root_correction2 = static_cast<float>(std::sqrt(correction2));
    for (std::size_t i = 0; i < params.size(); ++i) {
      float& m = state.first_moment[i];
      float& v = state.second_moment[i];
      m = beta1 * m + (1.0f - beta1) * grads[i];
      v = beta2 * v + (1.0f - beta2) * grads[i] * grads[i];
      params[i] -= step_size * m / (std::sqrt(v) / root_correction2 + eps);
    }
  }
};

}  // namespace autoround
