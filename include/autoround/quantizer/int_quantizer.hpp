#pragma once
// IntQuantizer: AutoRound's integer weight quantizer (auto_round/data_type/int.py, int_asym and
// int_sym), configured at compile time (`IntQuantizer<4, 128, Asymmetric>`) or at run time
// (`IntQuantizer<Dynamic, Dynamic, Dynamic>{QuantSpec{...}}`), one code path for both.
//
// Both schemes are written as  code = clamp(round(w / scale + v) + zero, 0, 2^bits - 1),
// w_qdq = scale * (code - zero):
//   asym: scale = fp16((wmax*max_scale - wmin*min_scale) / (2^b - 1)), clamped to >= 1e-5,
//         zero  = round(-wmin*min_scale / scale)                      (a per-group zero point)
//   sym:  a = -wmin*min_scale, b = wmax*max_scale; the larger side maps to code 0 (q = -2^(b-1)):
//         scale = fp16(±max(a, b) / 2^(b-1)), |scale| clamped to >= 1e-5 keeping its sign,
//         zero  = 2^(b-1)          (the reference's q in [-2^(b-1), 2^(b-1)-1], shifted)
// which is exactly the reference's arithmetic: clamp(r + zero, 0, 2^b - 1) - zero equals its
// clamp(r, -2^(b-1), 2^(b-1) - 1) for integers r.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/fp16.hpp"
#include "quantizer.hpp"

namespace autoround {

/// A quantizer configuration read at run time (from a config file or the command line).
struct QuantSpec {
  int bits = 4;
  int group_size = 128;
  Symmetry symmetry = Asymmetric;
  /// Double quantization (GGUF k-quants, DoubleQuantizer): groups per super-group and the bits
  /// of each group scale's code; 0 = none (IntQuantizer).
  int super_group_size = 0;
  int super_bits = 0;
  /// Integer codes (IntQuantizer, DoubleQuantizer) or a floating-point format (FloatQuantizer).
  DataType data_type = DataType::Int;
  /// Bits of the layer's input activations, quantized in the tuned forward and at run time the
  /// way the weights are (the reference's act_bits): 16 = not quantized (weight-only). The FP
  /// presets MXFP4 / MXFP8 / NVFP4 are W4A4 / W8A8 / W4A4; integer schemes are weight-only.
  int act_bits = 16;
  /// MX activations' shared exponent rounded up, ceil(log2(max|x| / max element)), instead of
  /// the weights' floor rule (the reference's act_data_type mx_fp_rceil: MXFP4_RCEIL, MXFP8_RCEIL).
  bool act_rceil = false;
  /// Rows one weight group spans: 1 (a group is `group_size` inputs of one output row), or 128
  /// with group_size 128 for FP8_BLOCK's 128 x 128 tiles (the reference's group_size (128, 128)).
  int group_rows = 1;
  friend bool operator==(const QuantSpec&, const QuantSpec&) = default;
};

namespace detail {

/// Round half to even, as torch.round. Adding and subtracting 1.5 * 2^23 leaves the float
/// rounded to an integer in the default rounding mode; it vectorises where std::nearbyint
/// would be a library call. (Needs IEEE semantics: do not build with -ffast-math.)
inline float round_half_even(float x) {
  constexpr float magic = 12582912.0f;
  return std::fabs(x) < 4194304.0f ? (x + magic) - magic : x;
}

/// AutoRound's q_scale_thresh (1e-5), as the fp16 value the clamp of an fp16 scale compares to.
inline const float scale_threshold = round_to_half(1e-5f);

/// Two gradients that autograd holds as fp16 tensors, each rounded to fp16, added as PyTorch
/// adds fp16 tensors (in float, rounded to fp16 once more).
inline float fp16_sum(float a, float b) { return round_to_half(round_to_half(a) + round_to_half(b)); }

inline std::string bits_error(int bits) {
  return "bits = " + std::to_string(bits) + ": must be between 2 and 8";
}

}  // namespace detail

/// The clamped range of a group: (min(min(w), 0), max(max(w), 0)).
inline GroupRange group_range(std::span<const float> w) {
  GroupRange r;
  for (float x : w) {
    r.wmin = std::min(r.wmin, x);
    r.wmax = std::max(r.wmax, x);
  }
  return r;
}

namespace detail {
template <auto Sym>
constexpr bool valid_symmetry() {
  if constexpr (std::is_same_v<decltype(Sym), Symmetry>) return true;
  else if constexpr (std::is_same_v<decltype(Sym), int>) return Sym == Dynamic;
  else return false;
}
}  // namespace detail

template <int Bits, int GroupSize, auto Sym>
class IntQuantizer {
  static constexpr bool static_symmetry = std::is_same_v<decltype(Sym), Symmetry>;
  static_assert(Bits == Dynamic || (Bits >= 2 && Bits <= 8),
                "IntQuantizer<Bits, GroupSize, Sym>: Bits must be between 2 and 8, or Dynamic");
  static_assert(GroupSize == Dynamic || GroupSize == PerChannel || GroupSize > 0,
                "IntQuantizer<Bits, GroupSize, Sym>: GroupSize must be positive, PerChannel (-1) or Dynamic");
  static_assert(detail::valid_symmetry<Sym>(),
                "IntQuantizer<Bits, GroupSize, Sym>: Sym must be Asymmetric, Symmetric or Dynamic");

 public:
  static constexpr bool is_dynamic = Bits == Dynamic || GroupSize == Dynamic || !static_symmetry;

  /// Fully compile-time quantizers need no arguments.
  constexpr IntQuantizer()
    requires(!is_dynamic)
      : spec_{Bits, GroupSize, fixed_symmetry()} {}

  /// Run-time configuration. The parts fixed at compile time must agree with `spec`.
  explicit IntQuantizer(QuantSpec spec) : spec_(spec) {
    detail::require(spec.data_type == DataType::Int, "data_type: a floating-point format needs a FloatQuantizer");
    detail::require(spec.act_bits == 16, "act_bits = " + std::to_string(spec.act_bits) + ": integer schemes quantize weights only (16)");
    detail::require(spec.group_rows == 1, "group_rows = " + std::to_string(spec.group_rows) + ": integer groups are runs of one row (1)");
    detail::require(spec.super_group_size == 0 && spec.super_bits == 0,
                    "super_group_size / super_bits: double quantization needs a DoubleQuantizer");
    detail::require(spec.bits >= 2 && spec.bits <= 8, detail::bits_error(spec.bits));
    detail::require(spec.group_size == PerChannel || spec.group_size > 0,
                    "group_size = " + std::to_string(spec.group_size) + ": must be positive or -1 (per channel)");
    if constexpr (Bits != Dynamic)
      detail::require(spec.bits == Bits, "bits = " + std::to_string(spec.bits) +
                                             " does not match the compile-time Bits = " + std::to_string(Bits));
    if constexpr (GroupSize != Dynamic)
      detail::require(spec.group_size == GroupSize, "group_size = " + std::to_string(spec.group_size) +
                                                        " does not match the compile-time GroupSize = " +
                                                        std::to_string(GroupSize));
    if constexpr (static_symmetry)
      detail::require(spec.symmetry == fixed_symmetry(), "sym does not match the compile-time Sym");
  }

  constexpr int bits() const {
    if constexpr (Bits != Dynamic) return Bits; else return spec_.bits;
  }
  constexpr int group_size() const {
    if constexpr (GroupSize != Dynamic) return GroupSize; else return spec_.group_size;
  }
  constexpr Symmetry symmetry() const {
    if constexpr (static_symmetry) return fixed_symmetry(); else return spec_.symmetry;
  }
  constexpr QuantSpec spec() const { return {bits(), group_size(), symmetry()}; }
  constexpr int max_code() const { return (1 << bits()) - 1; }

  GroupQuant group_quant(GroupRange range, float min_scale, float max_scale) const {
    if (symmetry() == Asymmetric) {
      const float maxq = static_cast<float>(max_code());
      const float wmin = range.wmin * min_scale, wmax = range.wmax * max_scale;
      const float scale = std::max(round_to_half((wmax - wmin) / maxq), detail::scale_threshold);
      return {scale, detail::round_half_even(-wmin / scale)};
    }
    const float maxq = static_cast<float>(1 << (bits() - 1));
    const float scale = clamp_signed_scale(round_to_half(signed_max(range, min_scale, max_scale) / maxq));
    return {scale, maxq};
  }

  void fake_quantize(std::span<const float> w, std::span<const float> v, GroupQuant gq, std::span<float> out) const {
    const float maxc = static_cast<float>(max_code());
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float code = std::clamp(detail::round_half_even(w[i] / gq.scale + v[i]) + gq.zero, 0.0f, maxc);
      out[i] = gq.scale * (code - gq.zero);
    }
  }

  void encode(std::span<const float> w, std::span<const float> v, GroupQuant gq,
              std::span<std::uint8_t> codes) const {
    const float maxc = static_cast<float>(max_code());
    for (std::size_t i = 0; i < w.size(); ++i)
      codes[i] = static_cast<std::uint8_t>(
          std::clamp(detail::round_half_even(w[i] / gq.scale + v[i]) + gq.zero, 0.0f, maxc));
  }

  /// Straight-through backward (round has gradient 1, clamp passes gradient only inside its
  /// range), as autograd differentiates int.py, including where it rounds to fp16: the scale is
  /// an fp16 tensor, so each product that uses it hands back its gradient rounded to fp16 (the
  /// group sum is taken first), and the fp16 contributions are added in fp16:
  ///   asym: fp16(fp16(fp16(A) + fp16(B)) + fp16(C)),  sym: fp16(fp16(A) + fp16(B)),
  /// A = Σ g·(code − zero) (scale · (q − zero)), B = −Σ_inside g·w/s (w / scale),
  /// C = −Σ_clipped g·wmin/s (the zero point −wmin / scale). Below 6e-8 a gradient flushes to 0
  /// and SignSGD leaves that clipping scale alone, as the reference does (the runs scale the
  /// loss by TuneOptions::loss_scale = 1000 first, as the reference does).
  ScaleGrad backward(std::span<const float> w, std::span<const float> v, GroupRange range, float min_scale,
                     float max_scale, GroupQuant gq, std::span<const float> grad_out,
                     std::span<float> grad_v) const {
    const float maxc = static_cast<float>(max_code());
    const float s = gq.scale;
    const bool asym = symmetry() == Asymmetric;
    const float wmin = range.wmin * min_scale;  // asym: the clipped minimum the zero point saw
    double product = 0.0, division = 0.0, zero_point = 0.0, grad_zero_clipped = 0.0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float u = detail::round_half_even(w[i] / s + v[i]) + gq.zero;
      const bool inside = u >= 0.0f && u <= maxc;
      const float code = std::clamp(u, 0.0f, maxc);
      const double g = grad_out[i];
      grad_v[i] = inside ? static_cast<float>(g * s) : 0.0f;
      product += g * static_cast<double>(code - gq.zero);
      if (inside) {
        division -= g * static_cast<double>(w[i]) / s;
      } else if (asym) {  // clipped: the zero point moves with the scale (d zero / d scale = wmin / s^2)
        zero_point -= g * static_cast<double>(wmin) / s;
        grad_zero_clipped += g;
      }
    }
    float grad_scale = detail::fp16_sum(static_cast<float>(product), static_cast<float>(division));
    if (asym) grad_scale = detail::fp16_sum(grad_scale, static_cast<float>(zero_point));
    if (asym) {
      const float maxq = maxc;
      const float raw = round_to_half((range.wmax * max_scale - wmin) / maxq);
      const double pass = raw >= detail::scale_threshold ? 1.0 : 0.0;  // clamp(min=1e-5)
      const double d_wmax = grad_scale * pass / maxq;
      // wmin reaches the loss through the scale and, for clipped codes, the zero point
      const double d_wmin = -grad_scale * pass / maxq + grad_zero_clipped;
      return {static_cast<float>(d_wmin * range.wmin), static_cast<float>(d_wmax * range.wmax)};
    }
    const float maxq = static_cast<float>(1 << (bits() - 1));
    const float a = -(range.wmin * min_scale), b = range.wmax * max_scale;
    const float raw = round_to_half(signed_max(range, min_scale, max_scale) / maxq);
    const bool pass = raw < 0.0f ? raw <= -detail::scale_threshold : raw >= detail::scale_threshold;
    const double d_signed_max = pass ? grad_scale / maxq : 0.0;
    const double sign = b < a ? 1.0 : -1.0;
    // torch.maximum splits the gradient evenly on ties
    const double share_a = a > b ? 1.0 : (a == b ? 0.5 : 0.0);
    const double d_a = d_signed_max * sign * share_a, d_b = d_signed_max * sign * (1.0 - share_a);
    return {static_cast<float>(d_a * -range.wmin), static_cast<float>(d_b * range.wmax)};
  }

 private:
  static constexpr Symmetry fixed_symmetry() {
    if constexpr (static_symmetry) return static_cast<Symmetry>(Sym); else return Asymmetric;
  }
  // sym: the larger-magnitude side of the clipped range, signed so that it maps to code 0
  static float signed_max(GroupRange range, float min_scale, float max_scale) {
    const float a = -(range.wmin * min_scale), b = range.wmax * max_scale;
    return (b < a ? 1.0f : -1.0f) * std::max(b, a);
  }
  static float clamp_signed_scale(float scale) {
    return scale < 0.0f ? std::min(scale, -detail::scale_threshold) : std::max(scale, detail::scale_threshold);
  }

  QuantSpec spec_;
};

/// The run-time configured quantizer, for tools that read bits/group/sym from a file.
using DynamicIntQuantizer = IntQuantizer<Dynamic, Dynamic, Dynamic>;

}  // namespace autoround
