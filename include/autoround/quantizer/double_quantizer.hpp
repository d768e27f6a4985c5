#pragma once
// DoubleQuantizer: AutoRound's quantizers for GGUF k-quants (auto_round/data_type/gguf.py,
// int_asym_dq and int_sym_dq), where each group's scale (and min) is itself quantized against
// one scale per super-group, as llama.cpp's Q2_K..Q6_K blocks store them. Tuning through this
// second level is what makes a tuned k-quant file hold exactly what was tuned.
//
//   asym (Q2_K, Q4_K, Q5_K):  s_j = max(fp16((wmax_j - wmin_j) / (2^b - 1)), 1e-5),  m_j = -wmin_j
//     per super-group, for x in {s, m}: d = max(x) / (2^sb - 1),
//       x'_j = min(round(x_j * ((2^sb - 1) * (1 / max(x)))), 2^sb - 1) * d,   s'_j = max(s'_j, 1e-5)
//     code = clamp(round((w + m'_j) / s'_j + v), 0, 2^b - 1),   w_qdq = s'_j * code - m'_j
//   sym (Q3_K, Q6_K):  S_j = fp16(±max(-wmin_j, wmax_j) / 2^(b-1))   (the larger side maps to code 0)
//     per super-group: d = S_k / -2^(sb-1) for k = argmax |S_j| (the first on ties),
//       s'_j = clamp(round(S_j * (1 / d)), -2^(sb-1), 2^(sb-1) - 1) * d
//     code = clamp(round(w * (1 / s'_j) + v) + 2^(b-1), 0, 2^b - 1),  w_qdq = s'_j * (code - 2^(b-1))
// with wmin_j, wmax_j the group's clamped range times its tuned min_scale / max_scale, every
// operation in float32 in the reference's order (1 / x is 0 for |x| < 1e-30, as get_reciprocal),
// and the straight-through backward autograd derives from those lines (round has gradient 1,
// clamps pass gradient inside their closed range, max routes it to the first maximal element).
//
// A QuantSpec with super_group_size = 0 (run-time configuration only) has no second level and
// behaves exactly as IntQuantizer, so a tool can hold one quantizer type for a model whose layers
// mix k-quants and their fallbacks (rows that are not a multiple of 256 weights).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "int_quantizer.hpp"
#include "quantizer.hpp"

namespace autoround {

namespace detail {
/// AutoRound's get_reciprocal for float32: 1 / x, or 0 where |x| < 1e-30.
inline float reciprocal(float x) { return std::fabs(x) >= 1e-30f ? 1.0f / x : 0.0f; }
}  // namespace detail

template <int Bits, int GroupSize, auto Sym, int SuperGroupSize, int SuperBits>
class DoubleQuantizer {
  static constexpr bool static_symmetry = std::is_same_v<decltype(Sym), Symmetry>;
  static_assert(detail::valid_symmetry<Sym>(), "DoubleQuantizer: Sym must be Asymmetric, Symmetric or Dynamic");
  static_assert(Bits == Dynamic || (Bits >= 2 && Bits <= 8), "DoubleQuantizer: Bits must be between 2 and 8, or Dynamic");
  static_assert(GroupSize == Dynamic || GroupSize > 0, "DoubleQuantizer: GroupSize must be positive, or Dynamic");
  static_assert(SuperGroupSize == Dynamic || SuperGroupSize > 0,
                "DoubleQuantizer: SuperGroupSize (groups per super-group) must be positive, or Dynamic");
  static_assert(SuperBits == Dynamic || (SuperBits >= 2 && SuperBits <= 8),
                "DoubleQuantizer: SuperBits must be between 2 and 8, or Dynamic");

 public:
  static constexpr bool is_dynamic =
      Bits == Dynamic || GroupSize == Dynamic || !static_symmetry || SuperGroupSize == Dynamic || SuperBits == Dynamic;

  constexpr DoubleQuantizer()
    requires(!is_dynamic)
      : spec_{Bits, GroupSize, fixed_symmetry(), SuperGroupSize, SuperBits} {}

  /// Run-time configuration; the parts fixed at compile time must agree with `spec`.
  explicit DoubleQuantizer(QuantSpec spec) : spec_(spec) {
    const auto fixed = [](int runtime, int compile_time, const char* name) {
      detail::require(compile_time == Dynamic || runtime == compile_time,
                      std::string(name) + " = " + std::to_string(runtime) + " does not match the compile-time " +
                          name + " = " + std::to_string(compile_time));
    };
    detail::require(spec.data_type == DataType::Int, "data_type: a floating-point format needs a FloatQuantizer");
    detail::require(spec.act_bits == 16, "act_bits = " + std::to_string(spec.act_bits) + ": integer schemes quantize weights only (16)");
    detail::require(spec.group_rows == 1, "group_rows = " + std::to_string(spec.group_rows) + ": integer groups are runs of one row (1)");
    fixed(spec.bits, Bits, "bits");
    fixed(spec.group_size, GroupSize, "group_size");
    fixed(spec.super_group_size, SuperGroupSize, "super_group_size");
    fixed(spec.super_bits, SuperBits, "super_bits");
    if constexpr (static_symmetry) detail::require(spec.symmetry == fixed_symmetry(), "sym does not match the compile-time Sym");
    detail::require(spec.bits >= 2 && spec.bits <= 8, detail::bits_error(spec.bits));
    if (spec.super_group_size == 0) {
      detail::require(spec.super_bits == 0, "super_bits = " + std::to_string(spec.super_bits) +
                                                " needs a super_group_size (0 means no double quantization)");
      plain_ = DynamicIntQuantizer(QuantSpec{spec.bits, spec.group_size, spec.symmetry});
      return;
    }
    detail::require(spec.group_size > 0, "group_size = " + std::to_string(spec.group_size) +
                                             ": double quantization needs fixed-size groups");
    detail::require(spec.super_group_size > 0, "super_group_size = " + std::to_string(spec.super_group_size) +
                                                   ": must be positive (or 0: no double quantization)");
    detail::require(spec.super_group_size <= static_cast<int>(max_groups),
                    "super_group_size = " + std::to_string(spec.super_group_size) + ": at most " +
                        std::to_string(max_groups) + " groups per super-group");
    detail::require(spec.super_bits >= 2 && spec.super_bits <= 8,
                    "super_bits = " + std::to_string(spec.super_bits) + ": must be between 2 and 8");
  }

  constexpr int bits() const { return Bits != Dynamic ? Bits : spec_.bits; }
  constexpr int group_size() const { return GroupSize != Dynamic ? GroupSize : spec_.group_size; }
  constexpr Symmetry symmetry() const { return static_symmetry ? fixed_symmetry() : spec_.symmetry; }
  /// Groups per super-group; 1 when there is no second level (each group stands alone).
  constexpr int super_group_size() const {
    if constexpr (SuperGroupSize != Dynamic) return SuperGroupSize; else return double_quantized() ? spec_.super_group_size : 1;
  }
  constexpr int super_bits() const { return SuperBits != Dynamic ? SuperBits : spec_.super_bits; }
  constexpr bool double_quantized() const { return SuperGroupSize != Dynamic || spec_.super_group_size > 0; }
  constexpr QuantSpec spec() const { return spec_; }
  constexpr int max_code() const { return (1 << bits()) - 1; }

  /// Each group's (scale, zero, min) of one super-group, from the groups' ranges and clipping
  /// scales; returns the super-group's d (and dmin) after the reference's 1e-5 clamps.
  SuperQuant quantize_super_group(std::span<const GroupRange> ranges, std::span<const float> min_scale,
                                  std::span<const float> max_scale, std::span<GroupQuant> out) const {
    if (!double_quantized()) {
      out[0] = plain_.group_quant(ranges[0], min_scale[0], max_scale[0]);
      return {};
    }
    if (symmetry() == Asymmetric) {
      const Level s = asym_level(ranges, min_scale, max_scale, /*mins=*/false);
      const Level m = asym_level(ranges, min_scale, max_scale, /*mins=*/true);
      for (std::size_t j = 0; j < ranges.size(); ++j)
        out[j] = {std::max(s.quantized(j), asym_threshold), 0.0f, m.quantized(j)};
      return {std::max(s.d, asym_threshold), std::max(m.d, asym_threshold)};
    }
    const SymLevel s = sym_level(ranges, min_scale, max_scale);
    const float zero = static_cast<float>(1 << (bits() - 1));
    for (std::size_t j = 0; j < ranges.size(); ++j) out[j] = {s.quantized(j), zero, 0.0f};
    return {s.d, 0.0f};
  }

  void fake_quantize(std::span<const float> w, std::span<const float> v, GroupQuant gq, std::span<float> out) const {
    if (!double_quantized()) return plain_.fake_quantize(w, v, gq, out);
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float code = code_of(w[i], v[i], gq);
      out[i] = symmetry() == Asymmetric ? gq.scale * code - gq.min : gq.scale * (code - gq.zero);
    }
  }

  void encode(std::span<const float> w, std::span<const float> v, GroupQuant gq, std::span<std::uint8_t> codes) const {
    if (!double_quantized()) return plain_.encode(w, v, gq, codes);
    for (std::size_t i = 0; i < w.size(); ++i) codes[i] = static_cast<std::uint8_t>(code_of(w[i], v[i], gq));
  }

  /// Straight-through backward of one super-group: `w`, `v`, `grad_out`, `grad_v` span its groups
  /// (consecutive, group_size() each); writes dL/dv and each group's dL/dmin_scale, dL/dmax_scale.
  void backward(std::span<const float> w, std::span<const float> v, std::span<const GroupRange> ranges,
                std::span<const float> min_scale, std::span<const float> max_scale, std::span<const GroupQuant> quants,
                std::span<const float> grad_out, std::span<float> grad_v, std::span<ScaleGrad> out) const {
    if (!double_quantized()) {
      out[0] = plain_.backward(w, v, ranges[0], min_scale[0], max_scale[0], quants[0], grad_out, grad_v);
      return;
    }
    const std::size_t n = ranges.size(), gs = static_cast<std::size_t>(group_size());
    // 1. per group: dL/d(group scale s'_j) and dL/d(group min m'_j), and dL/dv
    double d_scale[max_groups] = {}, d_min[max_groups] = {};
    for (std::size_t j = 0; j < n; ++j) {
      const GroupQuant gq = quants[j];
      const float maxc = static_cast<float>(max_code());
      const bool asym = symmetry() == Asymmetric;
      const float inv = detail::reciprocal(gq.scale);
      for (std::size_t i = j * gs; i < (j + 1) * gs; ++i) {
        const float u = asym ? detail::round_half_even((w[i] + gq.min) / gq.scale + v[i])
                             : detail::round_half_even(w[i] * inv + v[i]) + gq.zero;
        const bool inside = u >= 0.0f && u <= maxc;
        const double g = grad_out[i], code = std::clamp(u, 0.0f, maxc);
        grad_v[i] = inside ? static_cast<float>(g * gq.scale) : 0.0f;
        if (asym) {
          // out = s' * code - m';  code = round((w + m') / s' + v) when inside
          d_scale[j] += g * (code - (inside ? (static_cast<double>(w[i]) + gq.min) / gq.scale : 0.0));
          if (!inside) d_min[j] -= g;  // inside, m' cancels: s' * (1 / s') - 1
        } else {
          // out = s' * (code - zero);  code = round(w * (1 / s') + v) + zero when inside
          d_scale[j] += g * ((code - gq.zero) - (inside && inv != 0.0f ? static_cast<double>(w[i]) / gq.scale : 0.0));
        }
      }
    }
    // 2. through the double quantization to each group's clipping scales
    if (symmetry() == Asymmetric) {
      const Level s = asym_level(ranges, min_scale, max_scale, false);
      const Level m = asym_level(ranges, min_scale, max_scale, true);
      for (std::size_t j = 0; j < n; ++j)  // the final clamp of s' at 1e-5
        if (!(s.quantized(j) >= asym_threshold)) d_scale[j] = 0.0;
      double d_raw_scale[max_groups], d_raw_min[max_groups];
      s.backward(d_scale, d_raw_scale);
      m.backward(d_min, d_raw_min);
      const double maxq = max_code();
      for (std::size_t j = 0; j < n; ++j) {
        // s_j = max(fp16((wmax - wmin) / maxq), 1e-5): passes where the fp16 value reached the
        // threshold; autograd carries this gradient through the fp16 tensor, so it is rounded to fp16
        const double d_range = s.pass[j] ? round_to_half(static_cast<float>(d_raw_scale[j])) / maxq : 0.0;
        const double d_wmax = d_range, d_wmin = -d_range - d_raw_min[j];  // m_j = -wmin_j
        out[j] = {static_cast<float>(d_wmin * ranges[j].wmin), static_cast<float>(d_wmax * ranges[j].wmax)};
      }
      return;
    }
    const SymLevel s = sym_level(ranges, min_scale, max_scale);
    double d_raw[max_groups];
    s.backward(d_scale, d_raw);
    const double maxq = static_cast<double>(1 << (bits() - 1));
    for (std::size_t j = 0; j < n; ++j) {
      const float a = -(ranges[j].wmin * min_scale[j]), b = ranges[j].wmax * max_scale[j];
      // S_j = fp16(signed max / maxq): autograd rounds the gradient to fp16 on its way through
      const double d_signed_max = round_to_half(static_cast<float>(d_raw[j])) / maxq, sign = b < a ? 1.0 : -1.0;
      const double share_a = a > b ? 1.0 : (a == b ? 0.5 : 0.0);  // torch.maximum splits ties
      const double d_a = d_signed_max * sign * share_a, d_b = d_signed_max * sign * (1.0 - share_a);
      out[j] = {static_cast<float>(d_a * -ranges[j].wmin), static_cast<float>(d_b * ranges[j].wmax)};
    }
  }

  static constexpr std::size_t max_groups = max_super_group;

 private:
  static constexpr float asym_threshold = 1e-5f;  // the float32 clamps after the double quantization

  static constexpr Symmetry fixed_symmetry() {
    if constexpr (static_symmetry) return static_cast<Symmetry>(Sym); else return Asymmetric;
  }

  float code_of(float w, float v, GroupQuant gq) const {
    const float maxc = static_cast<float>(max_code());
    if (symmetry() == Asymmetric) return std::clamp(detail::round_half_even((w + gq.min) / gq.scale + v), 0.0f, maxc);
    return std::clamp(detail::round_half_even(w * detail::reciprocal(gq.scale) + v) + gq.zero, 0.0f, maxc);
  }

  /// One asymmetric second level (of the scales, or of the mins): x'_j = min(round(x_j * inv), top) * d.
  struct Level {
    float x[max_groups] = {};   // the first-level values (fp16 scales clamped at 1e-5, or -wmin)
    bool pass[max_groups] = {}; // scales: whether the fp16 value reached the 1e-5 clamp (gradient passes)
    float round[max_groups] = {};
    std::size_t n = 0, argmax = 0;
    float max = 0, d = 0, inv = 0, top = 0;
    float quantized(std::size_t j) const { return std::min(round[j], top) * d; }
    /// dL/dx_j from dL/dx'_j: direct path, and through max(x) in both d and inv.
    void backward(const double* d_out, double* d_x) const {
      double d_d = 0, d_inv = 0;
      for (std::size_t j = 0; j < n; ++j) {
        const double pass = round[j] <= top ? 1.0 : 0.0;
        d_d += d_out[j] * std::min(round[j], top);
        d_inv += d_out[j] * d * pass * x[j];
        d_x[j] = d_out[j] * d * pass * inv;
      }
      // d = max / top; inv = top * (1 / max), whose gradient is 0 where max was too small to invert
      const double d_recip = detail::reciprocal(max) != 0.0f ? -1.0 / (static_cast<double>(max) * max) : 0.0;
      d_x[argmax] += d_d / top + d_inv * top * d_recip;
    }
  };

  Level asym_level(std::span<const GroupRange> ranges, std::span<const float> min_scale, std::span<const float> max_scale,
                   bool mins) const {
    Level l;
    l.n = ranges.size();
    l.top = static_cast<float>((1 << super_bits()) - 1);
    const float maxq = static_cast<float>(max_code());
    for (std::size_t j = 0; j < l.n; ++j) {
      const float wmin = ranges[j].wmin * min_scale[j], wmax = ranges[j].wmax * max_scale[j];
      if (mins) {
        l.x[j] = -wmin;
      } else {
        const float raw = round_to_half((wmax - wmin) / maxq);
        l.pass[j] = raw >= detail::scale_threshold;
        l.x[j] = std::max(raw, detail::scale_threshold);
      }
      if (l.x[j] > l.max) { l.max = l.x[j]; l.argmax = j; }  // max(x) clamped at 0; first on ties
    }
    l.d = l.max / l.top;
    l.inv = std::max(l.top * detail::reciprocal(l.max), 0.0f);
    for (std::size_t j = 0; j < l.n; ++j) l.round[j] = detail::round_half_even(l.x[j] * l.inv);
    return l;
  }

  /// The symmetric second level: d = S_k / -half for the largest |S_k|; s'_j = clamp(round(S_j / d)) * d.
  struct SymLevel {
    float x[max_groups] = {};
    float round[max_groups] = {};
    std::size_t n = 0, argmax = 0;
    float d = 0, inv = 0, half = 0;
    float quantized(std::size_t j) const { return std::clamp(round[j], -half, half - 1.0f) * d; }
    void backward(const double* d_out, double* d_x) const {
      double d_d = 0, d_inv = 0;
      for (std::size_t j = 0; j < n; ++j) {
        const double pass = round[j] >= -half && round[j] <= half - 1.0f ? 1.0 : 0.0;
        d_d += d_out[j] * std::clamp(round[j], -half, half - 1.0f);
        d_inv += d_out[j] * d * pass * x[j];
        d_x[j] = d_out[j] * d * pass * inv;
      }
      if (inv != 0.0f) d_d += d_inv * (-1.0 / (static_cast<double>(d) * d));
      d_x[argmax] += d_d / -half;
    }
  };

  SymLevel sym_level(std::span<const GroupRange> ranges, std::span<const float> min_scale,
                     std::span<const float> max_scale) const {
    SymLevel l;
    l.n = ranges.size();
    l.half = static_cast<float>(1 << (super_bits() - 1));
    const float maxq = static_cast<float>(1 << (bits() - 1));
    float amax = -1.0f;
    for (std::size_t j = 0; j < l.n; ++j) {
      const float a = -(ranges[j].wmin * min_scale[j]), b = ranges[j].wmax * max_scale[j];
      l.x[j] = round_to_half((b < a ? 1.0f : -1.0f) * std::max(b, a) / maxq);
      if (std::fabs(l.x[j]) > amax) { amax = std::fabs(l.x[j]); l.argmax = j; }
    }
    l.d = l.x[l.argmax] / -l.half;
    l.inv = detail::reciprocal(l.d);
    for (std::size_t j = 0; j < l.n; ++j) l.round[j] = detail::round_half_even(l.x[j] * l.inv);
    return l;
  }

  QuantSpec spec_;
  DynamicIntQuantizer plain_{QuantSpec{}};  // the quantizer when there is no second level
};

/// The reference's GGUF k-quant schemes (auto_round/schemes.py GGUF_SCHEME_FACTS).
using Q2KQuantizer = DoubleQuantizer<2, 16, Asymmetric, 16, 4>;
using Q3KQuantizer = DoubleQuantizer<3, 16, Symmetric, 16, 6>;
using Q4KQuantizer = DoubleQuantizer<4, 32, Asymmetric, 8, 6>;
using Q5KQuantizer = DoubleQuantizer<5, 32, Asymmetric, 8, 6>;
using Q6KQuantizer = DoubleQuantizer<6, 16, Symmetric, 16, 8>;
/// Configured at run time; super_group_size 0 makes it a plain IntQuantizer.
using DynamicDoubleQuantizer = DoubleQuantizer<Dynamic, Dynamic, Dynamic, Dynamic, Dynamic>;

}  // namespace autoround
