#pragma once
// FloatQuantizer's arithmetic on one group and one element, written once for the host and the
// GPU (AUTOROUND_HOST_DEVICE): the group scale from the group's largest magnitude and its
// max_scale, an element's quantize-dequantize, and autograd's backward through both. The CPU
// quantizer (float_quantizer.hpp) and the CUDA kernels (backend/cuda/float_qdq_kernels.cuh) call
// these same functions, and both sides compile without fused multiply-add (-ffp-contract=off,
// --fmad=false), so the two backends compute the same bits. The formulas themselves, with the
// reference's names, are described in float_quantizer.hpp.
//
// Only functions both sides provide with the same results are used: floorf, ceilf, rintf (ties to even
// in the default rounding mode, as nearbyint), ldexpf, frexpf, fmodf, fabsf, fminf, fmaxf,
// copysignf, all exact. log2 is not exact: the host calls log2f (glibc's, what torch's CPU log2
// calls), the device rounds a double-precision log2 to float; the two agree except within an
// ulp of the rounding boundary, which the tests' data never meets (floor(log2 x) only changes
// where log2 x rounds onto an integer).
#include <bit>
#include <cmath>
#include <cstdint>

#include "../core/config.hpp"
#include "minifloat.hpp"
#include "quantizer.hpp"

namespace autoround {

/// The formats FloatQuantizer implements, by the reference's scheme names.
enum class FloatFormat : int {
  MxFp4 = 0,  ///< MXFP4: E2M1 elements, E8M0 scale per 32
  MxFp8 = 1,  ///< MXFP8: E4M3 elements, E8M0 scale per 32
  NvFp4 = 2,  ///< NVFP4: E2M1 elements, E4M3 scale per 16, float32 global scale per tensor
  Fp8 = 3,    ///< FP8 per output channel (FP8_STATIC's weights): E4M3 elements, float32 scale per row
  Fp8Block = 4,  ///< FP8_BLOCK: FP8's formula per 128 x 128 weight tile; inputs per token per 128 features
};

namespace float_formulas {

inline constexpr float ln2 = 0.6931471805599453f;                  // torch's LN2 in log2 / pow backward
inline constexpr float fp8_min_scale = 1.0f / (448.0f * 512.0f);  // fp8.py's clip of the scale
inline constexpr float one_sixth = 1.0f / 6.0f;                   // nvfp.py multiplies by float(1/6)
using minifloat::e4m3_max;
using minifloat::e4m3_round;

/// fminf(fmaxf(x, lo), hi) for lo < hi (NaN gives lo); the host compares (fminf / fmaxf are
/// library calls there, in the per-element loops), with the same results.
AUTOROUND_HOST_DEVICE inline float clamp(float x, float lo, float hi) {
#if defined(__CUDA_ARCH__)
  return fminf(fmaxf(x, lo), hi);
#else
  return x != x ? lo : (x < lo ? lo : (hi < x ? hi : x));
#endif
}
AUTOROUND_HOST_DEVICE inline float sign_of(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }
AUTOROUND_HOST_DEVICE inline bool strictly_inside(float x, float bound) { return -bound < x && x < bound; }
AUTOROUND_HOST_DEVICE inline float group_absmax(GroupRange r) { return fmaxf(r.wmax, -r.wmin); }
AUTOROUND_HOST_DEVICE inline float log2_of(float x) {
#if defined(__CUDA_ARCH__)
  return static_cast<float>(log2(static_cast<double>(x)));
#else
  return log2f(x);
#endif
}
/// floorf(log2_of(u)) for u > 0. On the host, for a normal u not within 2^-11 (relative) below the
/// next power of two, that is u's exponent field: log2f is within an ulp (<= 2^-16 here) of the
/// true value, which lies in [k, k + 1 - 7e-4), so its floor is k. Elsewhere log2f itself decides
/// (it may round up onto k + 1 there, and the reference's floor follows it). Checked against
/// floorf(log2f(u)) on every positive float.
AUTOROUND_HOST_DEVICE inline float floor_log2(float u) {
#if !defined(__CUDA_ARCH__)
  const auto bits = std::bit_cast<std::uint32_t>(u);
  const std::uint32_t biased = bits >> 23, mantissa = bits & 0x7fffffu;
  if (biased != 0 && biased != 255 && mantissa < 0x7ff000u) return static_cast<float>(static_cast<int>(biased) - 127);
#endif
  return floorf(log2_of(u));
}
/// fmodf(t, 2) == 0 (t an even integer, or ±0) without the division: t / 2 is an integer and
/// exact (h + h == t excludes the smallest subnormals, whose half rounds to 0).
AUTOROUND_HOST_DEVICE inline bool even_integer(float t) {
  const float h = 0.5f * t;
  return t - t == 0.0f && h + h == t && floorf(h) == h;  // t - t: 0 unless t is infinite or NaN
}

/// mx quant_element: round c to the element grid (ebits/mbits as mxfp.py counts them), ties to
/// even, with subnormals below 2^min_exp; keeps what the backward needs.
struct MxElement {
  float u, pe_raw, P, y, r, z, q;
};
AUTOROUND_HOST_DEVICE inline MxElement mx_element(float c, float K, float min_exp, float max_norm) {
  MxElement e;
  e.u = fabsf(c) + (c == 0.0f ? 1.0f : 0.0f);
  e.pe_raw = floor_log2(e.u);
  const float pe = e.pe_raw > min_exp ? e.pe_raw : min_exp;  // fmaxf: neither is NaN; u <= max_norm: pe normal
  e.P = minifloat::pow2(static_cast<int>(pe));
  e.y = (c / e.P) * K;
  const float ay = fabsf(e.y);
  const float mask = even_integer(ay - 0.5f) ? 1.0f : 0.0f;  // a tie at an even value: round down
  e.r = sign_of(e.y) * (floorf(ay + 0.5f) - mask);
  e.z = (e.r / K) * e.P;
  e.q = clamp(e.z, -max_norm, max_norm);
  return e;
}

/// nvfp.py cast_to_fp4: E2M1's grid (0.5 below 2, 1 below 4, 2 above), ties to even; *Q is the
/// magnitude before the clamp to 6.
AUTOROUND_HOST_DEVICE inline float nv_cast_fp4(float cx, float* Q) {
  const float x = fabsf(cx);
  const float q = x < 2.0f ? rintf(2.0f * x) / 2.0f : (x < 4.0f ? rintf(x) : 2.0f * rintf(x / 2.0f));
  *Q = q;
  return clamp(q, -6.0f, 6.0f) * sign_of(cx);
}

/// The reference's FP8 straight-through cast, (e4m3(x) − x) + x, is e4m3(x) except that a
/// negative x that rounds to −0 comes out +0: so do ours (its files never hold the code 0x80).
AUTOROUND_HOST_DEVICE inline float fp8_ste(float q) { return q + 0.0f; }

/// A format with its tensor's global scale (NVFP4's 2688 / max|W|; unused by the others).
struct FloatParams {
  FloatFormat format = FloatFormat::MxFp4;
  float global_scale = 0.0f;
  bool rceil = false;  ///< activations of the _RCEIL presets: MX exponent rounded up (activation_group_quant)

  AUTOROUND_HOST_DEVICE bool mx() const { return format == FloatFormat::MxFp4 || format == FloatFormat::MxFp8; }
  // mx: element grid (K = 2^mbits), smallest normal exponent, largest magnitude, largest exponent
  AUTOROUND_HOST_DEVICE float mx_K() const { return format == FloatFormat::MxFp4 ? 2.0f : 8.0f; }
  AUTOROUND_HOST_DEVICE float mx_min_exp() const { return format == FloatFormat::MxFp4 ? 0.0f : -6.0f; }
  AUTOROUND_HOST_DEVICE float mx_max_norm() const { return format == FloatFormat::MxFp4 ? 6.0f : e4m3_max; }
  AUTOROUND_HOST_DEVICE float mx_emax() const { return format == FloatFormat::MxFp4 ? 2.0f : 8.0f; }
  // floor(log2 M) − emax, unclamped; M = 0 takes log2 = 1, as the reference
  AUTOROUND_HOST_DEVICE float mx_exponent(float M) const { return floorf(M == 0.0f ? 1.0f : log2_of(M)) - mx_emax(); }

  struct NvScale {
    float s1, s3, d, os;
  };
  AUTOROUND_HOST_DEVICE float nv_inverse(float s3) const {
    const float d = s3 * (global_scale == 0.0f ? 0.0f : 1.0f / global_scale);
    return d == 0.0f ? 0.0f : 1.0f / d;
  }
  AUTOROUND_HOST_DEVICE NvScale nv_scale(float m, float max_scale) const {
    const float gs = global_scale;
    NvScale s;
    s.s1 = gs * ((m * max_scale) * one_sixth);
    s.s3 = e4m3_round(clamp(s.s1, -e4m3_max, e4m3_max));
    s.os = nv_inverse(s.s3);
    s.d = s.s3 * (gs == 0.0f ? 0.0f : 1.0f / gs);
    return s;
  }

  /// A group's scale from its range and max_scale (min_scale is unused by every float format).
  AUTOROUND_HOST_DEVICE GroupQuant group_quant(GroupRange range, float max_scale) const {
    const float m = group_absmax(range);
    GroupQuant g;
    g.zero = 0.0f;
    if (mx()) {
      g.scale = ldexpf(1.0f, static_cast<int>(clamp(mx_exponent(m * max_scale), -127.0f, 127.0f)));
    } else if (format == FloatFormat::NvFp4) {
      const NvScale s = nv_scale(m, max_scale);
      g.scale = s.s3;
      g.inverse = s.os;
    } else {
      g.scale = fmaxf(m * max_scale / e4m3_max, fp8_min_scale);
    }
    return g;
  }

  /// An activation group's scale (v = 0, max_scale = 1): the weights' rule, or with `rceil`
  /// (quant_mx_rceil) 2^ceil(log2(M / max element)), M = 0 taking exponent 1, clamped to ±127.
  AUTOROUND_HOST_DEVICE GroupQuant activation_group_quant(GroupRange range) const {
    if (!(rceil && mx())) return group_quant(range, 1.0f);
    const float M = group_absmax(range);
    const float E = M == 0.0f ? 1.0f : ceilf(log2_of(M / mx_max_norm()));
    GroupQuant g;
    g.scale = ldexpf(1.0f, static_cast<int>(clamp(E, -127.0f, 127.0f)));
    g.zero = 0.0f;
    return g;
  }

  /// The rounded element in the code domain (before the multiplier).
  AUTOROUND_HOST_DEVICE float element(float w, float v, GroupQuant gq) const {
    if (mx()) {
      const float c = clamp(w / gq.scale + v, -mx_max_norm(), mx_max_norm());
      return mx_element(c, mx_K(), mx_min_exp(), mx_max_norm()).q;
    }
    if (format == FloatFormat::NvFp4) {
      float Q;
      return nv_cast_fp4(clamp(w * gq.inverse + v, -6.0f, 6.0f), &Q);
    }
    return fp8_ste(e4m3_round(clamp(w / gq.scale + v, -e4m3_max, e4m3_max)));
  }
  /// What an element is multiplied by to dequantize: the scale; NVFP4: 1/(1/d), not d.
  AUTOROUND_HOST_DEVICE float dequant_multiplier(GroupQuant gq) const {
    if (format == FloatFormat::NvFp4) return gq.inverse == 0.0f ? 0.0f : 1.0f / gq.inverse;
    return gq.scale;
  }
  AUTOROUND_HOST_DEVICE float fake_quantize(float w, float v, GroupQuant gq) const { return element(w, v, gq) * dequant_multiplier(gq); }

  /// One element's backward: dL/dv, and its two terms of the group's max_scale gradient (summed
  /// in double, in element order, by the caller).
  struct ElementGrad {
    float grad_v;
    double a, b;
  };
  AUTOROUND_HOST_DEVICE ElementGrad element_backward(float w, float v, GroupQuant gq, float G) const {
    if (mx()) {
      const float K = mx_K(), min_exp = mx_min_exp(), max_norm = mx_max_norm();
      const float S = gq.scale;
      const float a = w / S + v;
      const float c = clamp(a, -max_norm, max_norm);
      const MxElement e = mx_element(c, K, min_exp, max_norm);
      const float gz = strictly_inside(e.z, max_norm) ? G * S : 0.0f;
      const float gPu = gz * (e.r / K);
      const float gr = (gz * e.P) / K;
      const float sy = sign_of(e.y);
      const float gy1 = ((gr * sy) * sy) * K;
      float gc = gy1 / e.P;
      const float gPs = -gy1 * ((c / e.P) / e.P);
      float gpe = gPu * (e.P * ln2) + gPs * (e.P * ln2);
      if (!(e.pe_raw > min_exp)) gpe = 0.0f;
      gc = gc + (gpe / (e.u * ln2)) * sign_of(c);
      const float ga = strictly_inside(a, max_norm) ? gc : 0.0f;
      return {ga, static_cast<double>(G) * e.q, static_cast<double>(-ga) * ((w / S) / S)};
    }
    if (format == FloatFormat::NvFp4) {
      const float os = gq.inverse, ro = dequant_multiplier(gq);
      const float sx = w * os + v;
      const float cx = clamp(sx, -6.0f, 6.0f);
      float Q;
      const float q = nv_cast_fp4(cx, &Q);
      const float s = sign_of(cx);
      const float gQ = Q < 6.0f ? (G * ro) * s : 0.0f;
      const float gsx = strictly_inside(sx, 6.0f) ? gQ * s : 0.0f;
      return {gsx, static_cast<double>(G) * q, static_cast<double>(gsx) * w};
    }
    const float sc = gq.scale;
    const float r = w / sc + v;
    const float f = e4m3_round(clamp(r, -e4m3_max, e4m3_max));
    const float gr = strictly_inside(r, e4m3_max) ? G * sc : 0.0f;
    return {gr, static_cast<double>(G) * f, static_cast<double>(-gr) * ((w / sc) / sc)};
  }

  /// dL/dM, M = the group's largest magnitude times max_scale (the value the scale is computed
  /// from), from the sums of its elements' terms; 0 where the scale passes no gradient (an
  /// all-zero group: the reference's is NaN; a clamped exponent or E4M3 scale; FP8's floor).
  /// `rceil`: the activations' rounded-up MX exponent ceil(log2(M / max element)).
  AUTOROUND_HOST_DEVICE float absmax_grad(GroupRange range, float max_scale, GroupQuant gq, double sum_a, double sum_b,
                                          bool rceil_rule = false) const {
    const float m = group_absmax(range);
    if (mx()) {
      const float M = m * max_scale;
      if (M == 0.0f) return 0.0f;
      const float gS = static_cast<float>(sum_a) + static_cast<float>(sum_b);
      const float gE = gS * (gq.scale * ln2);
      if (rceil_rule) {  // log2's backward on M / max_norm, then the division's
        const float r = M / mx_max_norm(), E = ceilf(log2_of(r));
        const float gEc = (-127.0f < E && E < 127.0f) ? gE : 0.0f;
        return (gEc / (r * ln2)) / mx_max_norm();
      }
      const float Er = mx_exponent(M);
      const float gEr = (-127.0f < Er && Er < 127.0f) ? gE : 0.0f;
      return gEr / (M * ln2);
    }
    if (format == FloatFormat::NvFp4) {
      const NvScale s = nv_scale(m, max_scale);
      if (s.os == 0.0f || s.d == 0.0f) return 0.0f;  // an all-zero (or underflowed) group
      const float rec_os = 1.0f / s.os, rec_d = 1.0f / s.d;
      const float g_os = static_cast<float>(sum_b) + (-static_cast<float>(sum_a)) * (rec_os * rec_os);
      const float g_d = -g_os * (rec_d * rec_d);
      const float igs = global_scale == 0.0f ? 0.0f : 1.0f / global_scale;
      const float g_s1 = strictly_inside(s.s1, e4m3_max) ? g_d * igs : 0.0f;
      return (g_s1 * global_scale) * one_sixth;
    }
    const float sc0 = m * max_scale / e4m3_max;
    if (!(sc0 > fp8_min_scale)) return 0.0f;
    const float g_sc = static_cast<float>(sum_a) + static_cast<float>(sum_b);
    return g_sc / e4m3_max;
  }

  /// The group's dL/dmax_scale from the sums of its elements' terms (max_scale multiplies the
  /// group's largest magnitude m: dL/dmax_scale = dL/dM · m). An all-zero group gets +0 (its m
  /// may be −0 on one backend and +0 on the other: fmaxf of two zeros may return either).
  AUTOROUND_HOST_DEVICE float max_scale_grad(GroupRange range, float max_scale, GroupQuant gq, double sum_a, double sum_b) const {
    const float m = group_absmax(range);
    return m == 0.0f ? 0.0f : absmax_grad(range, max_scale, gq, sum_a, sum_b) * m;
  }

  /// Autograd's backward through one group of a dynamically quantized activation (MX, NVFP4
  /// under its static global scale: v = 0, max_scale = 1): dx from dL/d q(x) = g, both n long
  /// (dx may be g: each element's gradient is read before it is written).
  /// Each element's own path (dL/dv over the scale: MX divides by S, NVFP4 multiplies by 1/d),
  /// and the scale's share through the group's largest magnitude, which torch.max hands to the
  /// first element of that magnitude (times its sign: abs's backward). Approximation: that share's
  /// element terms are summed in double in element order (the package: float32 in torch's order),
  /// so the group maximum's gradient may differ from the package's in the last bits.
  AUTOROUND_HOST_DEVICE void activation_group_backward(const float* x, const float* g, float* dx, int n) const {
    GroupRange range;
    int arg = 0;
    float m = -1.0f;
    for (int i = 0; i < n; ++i) {
      range.wmin = fminf(range.wmin, x[i]);
      range.wmax = fmaxf(range.wmax, x[i]);
      if (fabsf(x[i]) > m) m = fabsf(x[i]), arg = i;
    }
    const GroupQuant gq = activation_group_quant(range);
    double sum_a = 0.0, sum_b = 0.0;
    for (int i = 0; i < n; ++i) {
      const ElementGrad e = element_backward(x[i], 0.0f, gq, g[i]);
      dx[i] = format == FloatFormat::NvFp4 ? e.grad_v * gq.inverse : e.grad_v / gq.scale;
      sum_a += e.a;
      sum_b += e.b;
    }
    dx[arg] = dx[arg] + absmax_grad(range, 1.0f, gq, sum_a, sum_b, rceil && mx()) * sign_of(x[arg]);
  }
};

/// FP8_STATIC's input backward under its static scale s: through the multiplication by s, the
/// clamp (gradient only strictly inside ±448), the straight-through E4M3 cast and the division.
AUTOROUND_HOST_DEVICE inline float fp8_static_backward(float x, float s, float g) {
  return strictly_inside(x / s, e4m3_max) ? (g * s) / s : 0.0f;
}

/// FP8_STATIC's quantize-dequantize of an input value under its static scale s.
AUTOROUND_HOST_DEVICE inline float fp8_static_qdq(float x, float s) { return fp8_ste(e4m3_round(clamp(x / s, -e4m3_max, e4m3_max))) * s; }

}  // namespace float_formulas
}  // namespace autoround
