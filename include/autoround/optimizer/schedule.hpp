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
/// `rate` gives the learning rate exactly as PyTorch computes it: the reference's learning rate
/// is a float32 tensor that LinearLR multiplies, step after step, by the float32 of
/// 1 + (end - start) / (total · start + (t - 1)(end - start)); those roundings decide the last
/// bits of every parameter SignSGD moves.
struct LinearDecay {
  float start_factor = 1.0f;
  float end_factor = 0.0f;
  float factor(int step, int total) const {
    if (total <= 0) return start_factor;
    const float progress = static_cast<float>(std::min(step, total)) / static_cast<float>(total);
    return start_factor + (end_factor - start_factor) * progress;
  }
  float rate(float base, int step, int total) const {
    float lr = base * start_factor;
    if (total <= 0) return lr;
    const double start = start_factor, change = static_cast<double>(end_factor) - start;
    for (int t = 1; t <= std::min(step, total); ++t)
      lr *= static_cast<float>(1.0 + change / (total * start + (t - 1) * change));
    return lr;
  }
};

/// The learning rate of `step`: the schedule's own `rate` where it has one, else base · factor.
template <LearningRateSchedule S>
float scheduled_rate(const S& schedule, float base, int step, int total) {
  if constexpr (requires { { schedule.rate(base, step, total) } -> std::convertible_to<float>; })
    return schedule.rate(base, step, total);
  else
    return base * schedule.factor(step, total);
}

/// The same learning rate at every step (for experiments).
struct ConstantRate {
  float factor(int, int) const { return 1.0f; }
};

}  // namespace autoround
