#pragma once
// What a quantizer policy must provide, so a researcher can plug in their own code format.
//
// A quantizer maps one group of weights w (with the tunable rounding offsets v and the group's
// tunable min/max clipping scales) to integer codes and one (scale, zero) pair, such that
// w ≈ scale * (code - zero). The tuner needs the forward (fake-quantize), the
// straight-through-estimator backward, and the final encoding; formats need bits and group size.
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../core/config.hpp"

namespace autoround {

/// The clamped range of one group: wmin = min(min(w), 0), wmax = max(max(w), 0).
struct GroupRange {
  float wmin = 0.0f;
  float wmax = 0.0f;
};

/// One group's dequantization: w = scale * (code - zero) - min. `min` is 0 except for
/// double-quantized asymmetric k-quants (DoubleQuantizer), whose offset is not a whole code.
struct GroupQuant {
  float scale = 1.0f;
  float zero = 0.0f;
  float min = 0.0f;
  /// FloatQuantizer's NVFP4: the reference's multiplier into the code domain (1 / (scale /
  /// global scale)), kept as it computed it so the forward is bit for bit its own.
  float inverse = 0.0f;
};

/// One super-group's second-level scales (GGUF k-quants' d and dmin): each group's scale is
/// a small integer times `scale`, each group's min a small integer times `min`.
struct SuperQuant {
  float scale = 0.0f;
  float min = 0.0f;
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

/// The most groups one super-group may have (GGUF's Q2_K/Q3_K/Q6_K use 16): the tuners keep a
/// super-group's per-group values in fixed arrays of this size.
inline constexpr std::size_t max_super_group = 32;

/// A policy whose groups are quantized together in super-groups (GGUF k-quants: the group
/// scales are themselves quantized per super-group), so that the forward and the backward of
/// the scales see a whole super-group at once. See DoubleQuantizer.
template <class Q>
concept SuperGroupQuantizer = std::copy_constructible<Q> &&
    requires(const Q q, std::span<const GroupRange> ranges, std::span<const float> s, std::span<GroupQuant> quants,
             std::span<const GroupQuant> cquants, GroupQuant gq, std::span<const float> w, std::span<float> out,
             std::span<std::uint8_t> codes, std::span<ScaleGrad> grads) {
  { q.bits() } -> std::convertible_to<int>;
  { q.group_size() } -> std::convertible_to<int>;
  { q.symmetry() } -> std::same_as<Symmetry>;
  { q.super_group_size() } -> std::convertible_to<int>;  // groups per super-group
  // each group's (scale, zero, min) of one super-group; returns its second-level scales
  { q.quantize_super_group(ranges, s, s, quants) } -> std::same_as<SuperQuant>;
  { q.fake_quantize(w, w, gq, out) } -> std::same_as<void>;
  { q.encode(w, w, gq, codes) } -> std::same_as<void>;
  // straight-through backward of one super-group: dL/dv into `out`, dL/d clipping scales into `grads`
  { q.backward(w, w, ranges, s, s, cquants, w, out, grads) } -> std::same_as<void>;
};

/// What the tuners accept: a per-group Quantizer or a SuperGroupQuantizer.
template <class Q>
concept WeightQuantizer = Quantizer<Q> || SuperGroupQuantizer<Q>;

/// The quantizer one layer's weight is tuned with: one with a per-tensor scale (FloatQuantizer's
/// NVFP4) takes it from that weight unless it has one already (fused layers share theirs); any
/// other as it is. (TunableWeight and both CUDA runs set their layers up with it.)
template <class Q, class Weight>
Q set_up_for_weight(const Q& quantizer, const Weight& weight) {
  if constexpr (requires { { quantizer.for_weight(weight) } -> std::same_as<Q>; })
    if (!quantizer.global_scale()) return quantizer.for_weight(weight);
  return quantizer;
}

/// A quantizer whose codes index a floating-point element grid (FloatQuantizer: E2M1 / E4M3
/// elements under an E8M0, E4M3 or float scale) rather than evenly spaced integers: its results
/// pack as compressed-tensors' or ggml's MXFP4 tensors, and its layers' inputs may be quantized.
template <class Q>
concept FloatCodeQuantizer = Quantizer<Q> && requires(const Q q, std::uint8_t code, float scale) {
  { q.dequantize_code(code, scale) } -> std::convertible_to<float>;
};

}  // namespace autoround
