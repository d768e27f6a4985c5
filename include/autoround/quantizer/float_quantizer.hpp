#pragma once
// FloatQuantizer: AutoRound's floating-point weight formats, as auto-round 0.16.1 tunes them
// (auto_round/data_type/mxfp.py quant_mx, nvfp.py nv_fp4, fp8.py quant_fp8_sym):
//
//   MXFP4 / MXFP8 (mx_fp, groups of 32): a shared power-of-two scale S = 2^E per group,
//     E = clamp(floor(log2(max|w| · max_scale)) − emax, −127, 127)  (emax 2 for E2M1, 8 for E4M3),
//     each element  q = round_even_on_grid(clamp(w / S + v, ±max)),  w_qdq = q · S;
//     files store E + 127 (E8M0) and the element codes.
//   NVFP4 (nv_fp, groups of 16): a per-tensor global scale gs = 2688 / max|W| (448 · 6), a
//     per-group E4M3 scale s = e4m3(clamp(gs · max|w| · max_scale · (1/6), ±448)), each element
//     q = fp4(clamp(w · os + v, ±6)) with os = 1 / (s / gs),  w_qdq = q · (1 / os);
//     files store s (E4M3), gs (float32) and the codes.
//   FP8 (fp, per output channel): sc = max(max|w| · max_scale / 448, 1 / (448 · 512)),
//     q = e4m3(clamp(w / sc + v, ±448)),  w_qdq = q · sc.
//
// v is added in the code domain (units of the scale), as the reference adds it. min_scale is
// unused by every floating-point format (its gradient is 0: SignSGD leaves it at 1, as the
// reference, whose min_scale never receives a gradient).
//
// The backward is autograd's on those formulas (floor/round/cast straight through), checked
// value for value against the package (tests/test_float_quantizer.cpp, fixtures from
// scripts/make_fp_fixtures.py). Two things about it are the reference's and not plain STE:
//   - MX: the element's own exponent floor(log2|c|) is straight-through too, so above the
//     format's smallest exponent dL/dv = G · S · q / c (the rounded value over its input);
//   - clamps pass gradient only strictly inside their bounds (torch 2.15): an element that
//     rounds to ±6 (FP4) or ±448 (MX FP8) gets none.
// Two deliberate differences: the group sums of the scale gradients are taken in double (the
// reference sums float32 in torch's order: the values differ in the last bits, their signs,
// all SignSGD uses, agree), and a group that is all zeros gets a max_scale gradient of 0 where
// the reference's is NaN (which then turns that layer's outputs to NaN for the rest of its run).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "int_quantizer.hpp"
#include "minifloat.hpp"
#include "quantizer.hpp"

namespace autoround {

/// The formats FloatQuantizer implements, by the reference's scheme names.
enum class FloatFormat : int {
  MxFp4 = 0,  ///< MXFP4: E2M1 elements, E8M0 scale per 32
  MxFp8 = 1,  ///< MXFP8: E4M3 elements, E8M0 scale per 32
  NvFp4 = 2,  ///< NVFP4: E2M1 elements, E4M3 scale per 16, float32 global scale per tensor
  Fp8 = 3,    ///< FP8 per output channel (FP8_STATIC's weights): E4M3 elements, float32 scale per row
};

/// The QuantSpec of a format (bits, group size, symmetric, data type), and back.
constexpr QuantSpec float_spec(FloatFormat f) {
  switch (f) {
    case FloatFormat::MxFp4: return {4, 32, Symmetric, 0, 0, DataType::MxFp, 4};
    case FloatFormat::MxFp8: return {8, 32, Symmetric, 0, 0, DataType::MxFp, 8};
    case FloatFormat::NvFp4: return {4, 16, Symmetric, 0, 0, DataType::NvFp, 4};
    case FloatFormat::Fp8: return {8, PerChannel, Symmetric, 0, 0, DataType::Fp, 8};  // FP8_STATIC
  }
  return {};
}
inline FloatFormat float_format(const QuantSpec& spec) {
  const auto bad = [&](const std::string& why) {
    return Error("data_type " + std::string(spec.data_type == DataType::MxFp ? "mx_fp" : spec.data_type == DataType::NvFp ? "nv_fp" : spec.data_type == DataType::Fp ? "fp" : "int") +
                 ", bits = " + std::to_string(spec.bits) + ", group_size = " + std::to_string(spec.group_size) + ": " + why);
  };
  if (spec.super_group_size != 0 || spec.super_bits != 0) throw bad("floating-point formats have no second level");
  FloatFormat f;
  switch (spec.data_type) {
    case DataType::MxFp:
      if (spec.bits != 4 && spec.bits != 8) throw bad("mx_fp has 4 (MXFP4) or 8 (MXFP8) bits");
      f = spec.bits == 4 ? FloatFormat::MxFp4 : FloatFormat::MxFp8;
      break;
    case DataType::NvFp:
      if (spec.bits != 4) throw bad("nv_fp has 4 bits (NVFP4)");
      f = FloatFormat::NvFp4;
      break;
    case DataType::Fp:
      if (spec.bits != 8) throw bad("fp has 8 bits (FP8 E4M3)");
      f = FloatFormat::Fp8;
      break;
    default: throw bad("an integer scheme needs an IntQuantizer");
  }
  if (spec.group_size != float_spec(f).group_size)
    throw bad("the format's group size is " + std::to_string(float_spec(f).group_size) +
              (f == FloatFormat::Fp8 ? " (one per output channel)" : ""));
  if (spec.act_bits != 16 && spec.act_bits != float_spec(f).act_bits)
    throw bad("act_bits = " + std::to_string(spec.act_bits) + ": the activations are quantized as the preset does (act_bits = " +
              std::to_string(float_spec(f).act_bits) + ") or not at all (16)");
  return f;
}

/// FP8_STATIC's scale of a layer input whose largest calibration magnitude is `absmax`
/// (quant_fp8_sym with tensor_max: max(absmax / 448, 1 / (448 · 512))).
inline float fp8_input_scale(float absmax) { return std::max(absmax * 1.0f / 448.0f, 1.0f / (448.0f * 512.0f)); }

/// The same scheme with its layers' inputs left unquantized (act_bits 16): what a runtime that
/// keeps activations in high precision computes (llama.cpp's MXFP4, which pairs them with Q8_0).
inline QuantSpec weight_only(QuantSpec spec) {
  spec.act_bits = 16;
  return spec;
}

namespace detail {
inline constexpr float ln2 = 0.6931471805599453f;  // torch's LN2 in log2 / pow backward
inline float sign_of(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }
inline bool strictly_inside(float x, float bound) { return -bound < x && x < bound; }
inline float group_absmax(GroupRange r) { return std::max(r.wmax, -r.wmin); }

/// mx quant_element: round c to the element grid (ebits/mbits as mxfp.py counts them), ties to
/// even, with subnormals below 2^min_exp; keeps what the backward needs.
struct MxElement {
  float u, pe_raw, P, y, r, z, q;
};
inline MxElement mx_element(float c, float K, float min_exp, float max_norm) {
  MxElement e;
  e.u = std::fabs(c) + (c == 0.0f ? 1.0f : 0.0f);
  e.pe_raw = std::floor(std::log2(e.u));
  const float pe = std::max(e.pe_raw, min_exp);
  e.P = std::ldexp(1.0f, static_cast<int>(pe));
  e.y = (c / e.P) * K;
  const float ay = std::fabs(e.y);
  const float mask = std::fmod(ay - 0.5f, 2.0f) == 0.0f ? 1.0f : 0.0f;  // a tie at an even value: round down
  e.r = sign_of(e.y) * (std::floor(ay + 0.5f) - mask);
  e.z = (e.r / K) * e.P;
  e.q = std::clamp(e.z, -max_norm, max_norm);
  return e;
}

/// nvfp.py cast_to_fp4: E2M1's grid (0.5 below 2, 1 below 4, 2 above), ties to even.
inline float nv_cast_fp4(float cx, float* Q) {
  const float x = std::fabs(cx);
  const float q = x < 2.0f ? std::nearbyint(2.0f * x) / 2.0f : (x < 4.0f ? std::nearbyint(x) : 2.0f * std::nearbyint(x / 2.0f));
  *Q = q;
  return std::clamp(q, -6.0f, 6.0f) * sign_of(cx);
}
}  // namespace detail

template <auto Format>
class FloatQuantizer {
  static constexpr bool static_format = std::is_same_v<decltype(Format), FloatFormat>;
  static constexpr bool valid_format() {
    if constexpr (static_format) return true;
    else if constexpr (std::is_same_v<decltype(Format), int>) return Format == Dynamic;
    else return false;
  }
  static_assert(valid_format(), "FloatQuantizer<Format>: Format must be a FloatFormat or Dynamic");

 public:
  static constexpr bool is_dynamic = !static_format;

  constexpr FloatQuantizer()
    requires(static_format)
      : format_(static_cast<FloatFormat>(Format)), act_bits_(float_spec(static_cast<FloatFormat>(Format)).act_bits) {}

  /// Run-time configuration (a QuantSpec with a floating-point data_type).
  explicit FloatQuantizer(QuantSpec spec) : format_(float_format(spec)), act_bits_(spec.act_bits) {
    if constexpr (static_format)
      detail::require(format_ == static_cast<FloatFormat>(Format), "data_type/bits do not match the compile-time Format");
  }

  FloatFormat format() const { return format_; }
  int bits() const { return float_spec(format_).bits; }
  int group_size() const { return float_spec(format_).group_size; }
  Symmetry symmetry() const { return Symmetric; }
  QuantSpec spec() const {
    QuantSpec s = float_spec(format_);
    s.act_bits = act_bits_;
    return s;
  }
  bool has_global_scale() const { return format_ == FloatFormat::NvFp4; }
  /// Whether the layer's input is quantized with a scale fixed from calibration (NVFP4's global
  /// input scale, FP8_STATIC's per-tensor scale): its largest |input| is measured before tuning.
  bool static_input_scale() const { return act_bits_ <= 8 && (format_ == FloatFormat::NvFp4 || format_ == FloatFormat::Fp8); }
  /// NVFP4's per-tensor scale (into the code domain: 2688 / max|W|); 0 until for_weight().
  float global_scale() const { return global_scale_; }

  /// This quantizer set up for one weight: NVFP4 takes its global scale from the weight's largest
  /// magnitude (calculate_gparam: 2688 · (1 / amax); an all-zero weight gets 1). Others: a copy.
  FloatQuantizer for_weight(MatrixView weight) const {
    FloatQuantizer q = *this;
    if (format_ == FloatFormat::NvFp4) {
      const float amax = weight.size() ? weight.cwiseAbs().maxCoeff() : 0.0f;
      q.global_scale_ = amax > 0.0f ? 2688.0f * (1.0f / amax) : 1.0f;
    }
    return q;
  }
  /// The same with a given global scale (shared by fused layers, or read back from a file).
  FloatQuantizer with_global_scale(float gs) const {
    FloatQuantizer q = *this;
    q.global_scale_ = gs;
    return q;
  }

  GroupQuant group_quant(GroupRange range, float /*min_scale*/, float max_scale) const {
    const float m = detail::group_absmax(range);
    switch (format_) {
      case FloatFormat::MxFp4:
      case FloatFormat::MxFp8: {
        const float E = std::clamp(mx_exponent(m * max_scale), -127.0f, 127.0f);
        return {std::ldexp(1.0f, static_cast<int>(E)), 0.0f, 0.0f, 0.0f};
      }
      case FloatFormat::NvFp4: {
        const NvScale s = nv_scale(m, max_scale);
        return {s.s3, 0.0f, 0.0f, s.os};
      }
      case FloatFormat::Fp8: return {std::max(m * max_scale / 448.0f, fp8_min_scale), 0.0f, 0.0f, 0.0f};
    }
    return {};
  }

  void fake_quantize(std::span<const float> w, std::span<const float> v, GroupQuant gq, std::span<float> out) const {
    for (std::size_t i = 0; i < w.size(); ++i) out[i] = element(w[i], v[i], gq) * dequant_multiplier(gq);
  }

  /// The element codes: E2M1 (sign << 3 | index) for the 4-bit formats, the E4M3 byte for the 8-bit ones.
  void encode(std::span<const float> w, std::span<const float> v, GroupQuant gq, std::span<std::uint8_t> codes) const {
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float q = element(w[i], v[i], gq);
      codes[i] = bits() == 4 ? minifloat::e2m1_code(q) : minifloat::e4m3_code(q);
    }
  }

  /// A code's value times its group's stored scale: the dequantized weight, the tuned forward's value.
  float dequantize_code(std::uint8_t code, float scale) const {
    const float q = bits() == 4 ? minifloat::e2m1_value(code) : minifloat::e4m3_value(code);
    if (format_ != FloatFormat::NvFp4) return q * scale;
    return q * dequant_multiplier(GroupQuant{scale, 0.0f, 0.0f, nv_inverse(scale)});
  }

  ScaleGrad backward(std::span<const float> w, std::span<const float> v, GroupRange range, float /*min_scale*/,
                     float max_scale, GroupQuant gq, std::span<const float> grad_out, std::span<float> grad_v) const {
    switch (format_) {
      case FloatFormat::MxFp4:
      case FloatFormat::MxFp8: return {0.0f, mx_backward(w, v, range, max_scale, gq, grad_out, grad_v)};
      case FloatFormat::NvFp4: return {0.0f, nv_backward(w, v, range, max_scale, gq, grad_out, grad_v)};
      case FloatFormat::Fp8: return {0.0f, fp8_backward(w, v, range, max_scale, gq, grad_out, grad_v)};
    }
    return {};
  }

 private:
  static constexpr float fp8_min_scale = 1.0f / (448.0f * 512.0f);  // fp8.py's clip of the scale
  static constexpr float one_sixth = 1.0f / 6.0f;                    // nvfp.py multiplies by float(1/6)

  struct MxParams {
    float K, min_exp, max_norm, emax;
  };
  MxParams mx() const {
    if (format_ == FloatFormat::MxFp4) return {2.0f, 0.0f, minifloat::e2m1_max, 2.0f};
    return {8.0f, -6.0f, minifloat::e4m3_max, 8.0f};
  }
  // floor(log2 M) − emax, unclamped; M = 0 takes log2 = 1, as the reference
  float mx_exponent(float M) const { return std::floor(M == 0.0f ? 1.0f : std::log2(M)) - mx().emax; }

  struct NvScale {
    float s1, s3, d, os;
  };
  NvScale nv_scale(float m, float max_scale) const {
    const float gs = global_scale_;
    NvScale s;
    s.s1 = gs * ((m * max_scale) * one_sixth);
    s.s3 = minifloat::e4m3_round(std::clamp(s.s1, -448.0f, 448.0f));
    s.os = nv_inverse(s.s3);
    s.d = s.s3 * (gs == 0.0f ? 0.0f : 1.0f / gs);
    return s;
  }
  float nv_inverse(float s3) const {
    const float d = s3 * (global_scale_ == 0.0f ? 0.0f : 1.0f / global_scale_);
    return d == 0.0f ? 0.0f : 1.0f / d;
  }

  // the rounded element in the code domain (before the multiplier)
  float element(float w, float v, GroupQuant gq) const {
    switch (format_) {
      case FloatFormat::MxFp4:
      case FloatFormat::MxFp8: {
        const MxParams p = mx();
        const float c = std::clamp(w / gq.scale + v, -p.max_norm, p.max_norm);
        return detail::mx_element(c, p.K, p.min_exp, p.max_norm).q;
      }
      case FloatFormat::NvFp4: {
        float Q;
        return detail::nv_cast_fp4(std::clamp(w * gq.inverse + v, -6.0f, 6.0f), &Q);
      }
      case FloatFormat::Fp8: return minifloat::e4m3_round(std::clamp(w / gq.scale + v, -448.0f, 448.0f));
    }
    return 0.0f;
  }
  float dequant_multiplier(GroupQuant gq) const {
    if (format_ == FloatFormat::NvFp4) return gq.inverse == 0.0f ? 0.0f : 1.0f / gq.inverse;  // 1/(1/d), not d
    return gq.scale;
  }

  float mx_backward(std::span<const float> w, std::span<const float> v, GroupRange range, float max_scale, GroupQuant gq,
                    std::span<const float> grad_out, std::span<float> grad_v) const {
    const MxParams p = mx();
    const float S = gq.scale;
    double sum_gq = 0.0, sum_scale = 0.0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float G = grad_out[i];
      const float a = w[i] / S + v[i];
      const float c = std::clamp(a, -p.max_norm, p.max_norm);
      const detail::MxElement e = detail::mx_element(c, p.K, p.min_exp, p.max_norm);
      const float gz = detail::strictly_inside(e.z, p.max_norm) ? G * S : 0.0f;
      const float gPu = gz * (e.r / p.K);
      const float gr = (gz * e.P) / p.K;
      const float sy = detail::sign_of(e.y);
      const float gy1 = ((gr * sy) * sy) * p.K;
      float gc = gy1 / e.P;
      const float gPs = -gy1 * ((c / e.P) / e.P);
      float gpe = gPu * (e.P * detail::ln2) + gPs * (e.P * detail::ln2);
      if (!(e.pe_raw > p.min_exp)) gpe = 0.0f;
      gc = gc + (gpe / (e.u * detail::ln2)) * detail::sign_of(c);
      const float ga = detail::strictly_inside(a, p.max_norm) ? gc : 0.0f;
      grad_v[i] = ga;
      sum_gq += static_cast<double>(G) * e.q;
      sum_scale += static_cast<double>(-ga) * ((w[i] / S) / S);
    }
    const float m = detail::group_absmax(range), M = m * max_scale;
    if (M == 0.0f) return 0.0f;  // the reference: NaN
    const float Er = mx_exponent(M);
    const float gS = static_cast<float>(sum_gq) + static_cast<float>(sum_scale);
    const float gE = gS * (S * detail::ln2);
    const float gEr = (-127.0f < Er && Er < 127.0f) ? gE : 0.0f;
    const float gM = gEr / (M * detail::ln2);
    return gM * m;
  }

  float nv_backward(std::span<const float> w, std::span<const float> v, GroupRange range, float max_scale, GroupQuant gq,
                    std::span<const float> grad_out, std::span<float> grad_v) const {
    const float os = gq.inverse, ro = dequant_multiplier(gq);
    double sum_ro = 0.0, sum_os = 0.0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float G = grad_out[i];
      const float sx = w[i] * os + v[i];
      const float cx = std::clamp(sx, -6.0f, 6.0f);
      float Q;
      const float q = detail::nv_cast_fp4(cx, &Q);
      const float s = detail::sign_of(cx);
      const float gQ = Q < 6.0f ? (G * ro) * s : 0.0f;
      const float gsx = detail::strictly_inside(sx, 6.0f) ? gQ * s : 0.0f;
      grad_v[i] = gsx;
      sum_ro += static_cast<double>(G) * q;
      sum_os += static_cast<double>(gsx) * w[i];
    }
    const float m = detail::group_absmax(range);
    const NvScale s = nv_scale(m, max_scale);
    if (s.os == 0.0f || s.d == 0.0f) return 0.0f;  // an all-zero (or underflowed) group; the reference: NaN
    const float rec_os = 1.0f / s.os, rec_d = 1.0f / s.d;
    const float g_os = static_cast<float>(sum_os) + (-static_cast<float>(sum_ro)) * (rec_os * rec_os);
    const float g_d = -g_os * (rec_d * rec_d);
    const float igs = global_scale_ == 0.0f ? 0.0f : 1.0f / global_scale_;
    const float g_s1 = detail::strictly_inside(s.s1, 448.0f) ? g_d * igs : 0.0f;
    return ((g_s1 * global_scale_) * one_sixth) * m;
  }

  float fp8_backward(std::span<const float> w, std::span<const float> v, GroupRange range, float max_scale, GroupQuant gq,
                     std::span<const float> grad_out, std::span<float> grad_v) const {
    const float sc = gq.scale;
    double sum_f = 0.0, sum_scale = 0.0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float G = grad_out[i];
      const float r = w[i] / sc + v[i];
      const float f = minifloat::e4m3_round(std::clamp(r, -448.0f, 448.0f));
      const float gr = detail::strictly_inside(r, 448.0f) ? G * sc : 0.0f;
      grad_v[i] = gr;
      sum_f += static_cast<double>(G) * f;
      sum_scale += static_cast<double>(-gr) * ((w[i] / sc) / sc);
    }
    const float amax = detail::group_absmax(range);
    const float sc0 = amax * max_scale / 448.0f;
    if (!(sc0 > fp8_min_scale)) return 0.0f;
    const float g_sc = static_cast<float>(sum_f) + static_cast<float>(sum_scale);
    return (g_sc / 448.0f) * amax;
  }

  FloatFormat format_;
  int act_bits_ = 16;  // the preset's (W4A4 / W8A8) or 16: weight-only
  float global_scale_ = 0.0f;
};

/// The compile-time formats, and the run-time one for tools that read the scheme from a file.
using MxFp4Quantizer = FloatQuantizer<FloatFormat::MxFp4>;
using MxFp8Quantizer = FloatQuantizer<FloatFormat::MxFp8>;
using NvFp4Quantizer = FloatQuantizer<FloatFormat::NvFp4>;
using Fp8Quantizer = FloatQuantizer<FloatFormat::Fp8>;
using DynamicFloatQuantizer = FloatQuantizer<Dynamic>;

static_assert(Quantizer<DynamicFloatQuantizer> && Quantizer<MxFp4Quantizer>);

}  // namespace autoround
