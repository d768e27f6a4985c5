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
//   FP8_BLOCK (fp, group_size (128, 128): quant_block_fp_sym): FP8's formula with one scale per
//     128 x 128 tile of the weight; its inputs dynamically, one scale per token and 128 features.
//     The reference's tuning fails on a dimension that is not a multiple of 128 (its max_scale
//     has floor(dim / 128) entries per dimension, its scales ceil); ours tunes any shape, the last
//     tiles shorter, as its round-to-nearest does.
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
// The arithmetic itself is in float_formulas.hpp, which the CUDA kernels compile too.
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
#include "float_formulas.hpp"
#include "minifloat.hpp"
#include "quantizer.hpp"

namespace autoround {

/// The QuantSpec of a format (bits, group size, symmetric, data type), and back.
constexpr QuantSpec float_spec(FloatFormat f) {
  switch (f) {
    case FloatFormat::MxFp4: return {4, 32, Symmetric, 0, 0, DataType::MxFp, 4};
    case FloatFormat::MxFp8: return {8, 32, Symmetric, 0, 0, DataType::MxFp, 8};
    case FloatFormat::NvFp4: return {4, 16, Symmetric, 0, 0, DataType::NvFp, 4};
    case FloatFormat::Fp8: return {8, PerChannel, Symmetric, 0, 0, DataType::Fp, 8};  // FP8_STATIC
    case FloatFormat::Fp8Block: return {8, 128, Symmetric, 0, 0, DataType::Fp, 8, false, 128};
  }
  return {};
}
inline FloatFormat float_format(const QuantSpec& spec) {
  const auto bad = [&](const std::string& why) {
    return Error("data_type " + std::string(spec.data_type == DataType::MxFp ? "mx_fp" : spec.data_type == DataType::NvFp ? "nv_fp" : spec.data_type == DataType::Fp ? "fp" : "int") +
                 ", bits = " + std::to_string(spec.bits) + ", group_size = " +
                 (spec.group_rows > 1 ? "(" + std::to_string(spec.group_rows) + ", " : "") + std::to_string(spec.group_size) +
                 (spec.group_rows > 1 ? ")" : "") + ": " + why);
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
      f = spec.group_rows > 1 ? FloatFormat::Fp8Block : FloatFormat::Fp8;
      break;
    default: throw bad("an integer scheme needs an IntQuantizer");
  }
  if (spec.group_size != float_spec(f).group_size || spec.group_rows != float_spec(f).group_rows)
    throw bad("the format's group size is " + std::to_string(float_spec(f).group_size) +
              (f == FloatFormat::Fp8 ? " (one per output channel)" : f == FloatFormat::Fp8Block ? " x 128 rows (FP8_BLOCK's tiles)" : ""));
  if (spec.act_rceil && (spec.data_type != DataType::MxFp || spec.act_bits > 8))
    throw bad("act_rceil (mx_fp_rceil) rounds MX activations' shared exponent: an MXFP4 / MXFP8 scheme with its activations quantized");
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
  explicit FloatQuantizer(QuantSpec spec) : format_(float_format(spec)), act_bits_(spec.act_bits), act_rceil_(spec.act_rceil) {
    if constexpr (static_format)
      detail::require(format_ == static_cast<FloatFormat>(Format), "data_type/bits do not match the compile-time Format");
  }

  FloatFormat format() const { return format_; }
  int bits() const { return float_spec(format_).bits; }
  int group_size() const { return float_spec(format_).group_size; }
  int group_rows() const { return float_spec(format_).group_rows; }  ///< 128: FP8_BLOCK's tiles
  Symmetry symmetry() const { return Symmetric; }
  QuantSpec spec() const {
    QuantSpec s = float_spec(format_);
    s.act_bits = act_bits_;
    s.act_rceil = act_rceil_;
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

  GroupQuant group_quant(GroupRange range, float /*min_scale*/, float max_scale) const { return params().group_quant(range, max_scale); }

  void fake_quantize(std::span<const float> w, std::span<const float> v, GroupQuant gq, std::span<float> out) const {
    const float_formulas::FloatParams p = params();
    for (std::size_t i = 0; i < w.size(); ++i) out[i] = p.fake_quantize(w[i], v[i], gq);
  }

  /// The element codes: E2M1 (sign << 3 | index) for the 4-bit formats, the E4M3 byte for the 8-bit ones.
  void encode(std::span<const float> w, std::span<const float> v, GroupQuant gq, std::span<std::uint8_t> codes) const {
    const float_formulas::FloatParams p = params();
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float q = p.element(w[i], v[i], gq);
      codes[i] = bits() == 4 ? minifloat::e2m1_code(q) : minifloat::e4m3_code(q);
    }
  }

  /// A code's value times its group's stored scale: the dequantized weight, the tuned forward's value.
  float dequantize_code(std::uint8_t code, float scale) const {
    const float q = bits() == 4 ? minifloat::e2m1_value(code) : minifloat::e4m3_value(code);
    if (format_ != FloatFormat::NvFp4) return q * scale;
    const float_formulas::FloatParams p = params();
    return q * p.dequant_multiplier(GroupQuant{scale, 0.0f, 0.0f, p.nv_inverse(scale)});
  }

  /// Autograd's backward of the group (dL/dv into grad_v; dL/dmax_scale returned; dL/dmin_scale
  /// is 0). The max_scale gradient's element terms are summed in double, in element order.
  ScaleGrad backward(std::span<const float> w, std::span<const float> v, GroupRange range, float /*min_scale*/,
                     float max_scale, GroupQuant gq, std::span<const float> grad_out, std::span<float> grad_v) const {
    const float_formulas::FloatParams p = params();
    double sum_a = 0.0, sum_b = 0.0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      const auto e = p.element_backward(w[i], v[i], gq, grad_out[i]);
      grad_v[i] = e.grad_v;
      sum_a += e.a;
      sum_b += e.b;
    }
    return {0.0f, p.max_scale_grad(range, max_scale, gq, sum_a, sum_b)};
  }

  /// The format and global scale as the shared host/device formulas take them (float_formulas.hpp).
  float_formulas::FloatParams params() const { return {format_, global_scale_}; }
  /// The same for quantizing this scheme's activations (the _RCEIL presets round their MX exponent up).
  float_formulas::FloatParams activation_params() const { return {format_, global_scale_, act_rceil_}; }

 private:
  FloatFormat format_;
  int act_bits_ = 16;  // the preset's (W4A4 / W8A8) or 16: weight-only
  bool act_rceil_ = false;
  float global_scale_ = 0.0f;
};

/// The compile-time formats, and the run-time one for tools that read the scheme from a file.
using MxFp4Quantizer = FloatQuantizer<FloatFormat::MxFp4>;
using MxFp8Quantizer = FloatQuantizer<FloatFormat::MxFp8>;
using NvFp4Quantizer = FloatQuantizer<FloatFormat::NvFp4>;
using Fp8Quantizer = FloatQuantizer<FloatFormat::Fp8>;
using Fp8BlockQuantizer = FloatQuantizer<FloatFormat::Fp8Block>;
using DynamicFloatQuantizer = FloatQuantizer<Dynamic>;

static_assert(Quantizer<DynamicFloatQuantizer> && Quantizer<MxFp4Quantizer>);

}  // namespace autoround
