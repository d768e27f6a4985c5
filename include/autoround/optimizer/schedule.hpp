#pragma once
// Learning-rate schedules: the factor applied to the base learning rate at a given step.
#include <algorithm>
#include <concepts>

namespace autoround {

template <class S>
concept LearningRateSchedule = std::copy_constructible<S> && requires(const S s, int step, int total) {
  { s.factor(step, total) } -> std::convertible_to<float>;
};

/// torch.optim.lr_scheduler.LinearLR(start_factor=1, end_factor=0, total_iters=iters), the
/// reference's default: step t (0-based) uses lr * (1 - t / iters), reaching 0 at t = iters.
struct LinearDecay {
  float start_factor = 1.0f;
  float end_factor = 0.0f;
  float factor(int step, int total) const {
    if (total <= 0) return start_factor;
    const float progress = static_cast<float>(std::min(step, total)) / static_cast<float>(total);
    return start_factor + (end_factor - start_factor) * progress;
  }
};

/// The same learning rate at every step (for experiments).
struct ConstantRate {
  float factor(int, int) const { return 1.0f; }
};

}  // namespace autoround
