#pragma once
// What a quantizer policy must provide, so a researcher can plug in their own code format.
//
// A quantizer maps one group of weights w (with the tunable rounding offsets v and the group's
// tunable min/max clipping scales) to integer codes and one (scale, zero) pair, such that
// w ≈ scale * (code - zero). The tuner needs the forward (fake-quantize), the
// straight-through-estimator backward, and the final encoding; formats need bits and group size.
#include <concepts>
#include <cstdint>
#include <span>

#include "../core/config.hpp"

namespace autoround {

/// The clamped range of one group: wmin = min(min(w), 0), wmax = max(max(w), 0).
struct GroupRange {
  float wmin = 0.0f;
  float wmax = 0.0f;
};

/// One group's dequantization: w = scale * (code - zero).
struct GroupQuant {
  float scale = 1.0f;
  float zero = 0.0f;
};

/// Gradient of the loss with respect to one group's min_scale and max_scale.
struct ScaleGrad {
  float min_scale = 0.0f;
  float max_scale = 0.0f;
};

/// A policy that quantizes weight groups. See IntQuantizer for the reference one.
template <class Q>
concept Quantizer = std::copy_constructible<Q> && requires(const Q q, GroupRange range, GroupQuant gq, float s,
                                                           std::span<const float> w, std::span<const float> v,
                                                           std::span<const float> grad_out, std::span<float> out,
                                                           std::span<std::uint8_t> codes) {
  { q.bits() } -> std::convertible_to<int>;        // code width, for packing
  { q.group_size() } -> std::convertible_to<int>;  // > 0, or PerChannel
  { q.symmetry() } -> std::same_as<Symmetry>;      // whether zero is fixed (formats need it)
  // scale and zero of a group from its range and the tuned clipping scales (already in [0, 1])
  { q.group_quant(range, s, s) } -> std::same_as<GroupQuant>;
  // forward: out[i] = dequantized value of w[i] + v[i]-shifted rounding
  { q.fake_quantize(w, v, gq, out) } -> std::same_as<void>;
  // final codes in [0, 2^bits - 1]
  { q.encode(w, v, gq, codes) } -> std::same_as<void>;
  // straight-through backward: writes dL/dv into `out`, returns dL/dmin_scale and dL/dmax_scale
  { q.backward(w, v, range, s, s, gq, grad_out, out) } -> std::same_as<ScaleGrad>;
};

}  // namespace autoround
