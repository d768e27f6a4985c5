#pragma once
// What an optimizer policy must provide. The tuner owns the parameters (rounding offsets v and
// the min/max clipping scales) and their gradients; an optimizer turns a gradient into an
// update, keeping whatever per-parameter state it needs in its State.
#include <concepts>
#include <cstddef>
#include <span>

namespace autoround {

template <class O>
concept Optimizer = std::copy_constructible<O> &&
    requires(const O o, typename O::State state, std::span<float> params, std::span<const float> grads,
             float lr, int step, int total, std::size_t n) {
      typename O::State;
      { o.make_state(n) } -> std::same_as<typename O::State>;  // state for n parameters
      { o.rate(lr, step, total) } -> std::convertible_to<float>;  // its schedule: the rate of step for base rate lr
      { o.update(params, grads, lr, state) } -> std::same_as<void>;
    };

}  // namespace autoround
