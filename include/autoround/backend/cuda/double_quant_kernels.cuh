#pragma once
// CUDA kernels of DoubleQuantizer (quantizer/double_quantizer.hpp, GGUF k-quants): the
// super-group's second-level quantization of the group scales and mins, the element forward,
// the element backward (per-group dL/d scale and dL/d min, summed in element order), and the
// chain through the second level back to the clipping scales. Each line is the CPU's, in its
// order and its precision (float32 / double), compiled with --fmad=false and with std::min /
// std::max / std::clamp spelled out as the CPU evaluates them: bit-identical results
// (tests/cuda/test_cuda_qdq.cpp). One thread per super-group for the second level (at most 32
// groups, a few hundred flops), one warp per group for the elements.
#include "qdq_kernels.cuh"

namespace autoround::cuda {

/// dL/d(group scale) and dL/d(group min) of one group, between the two backward kernels.
struct GroupQuantGrad {
  double scale = 0.0, min = 0.0;
};

namespace device {

constexpr int kMaxSuperGroup = static_cast<int>(max_super_group);

__device__ inline float std_min(float a, float b) { return b < a ? b : a; }
__device__ inline float std_max(float a, float b) { return a < b ? b : a; }
__device__ inline float std_clamp(float v, float lo, float hi) { return v < lo ? lo : (hi < v ? hi : v); }
/// detail::round_half_even, the CPU's rounding, operation for operation: unlike rintf it gives
/// +0 (not -0) for values in (-0.5, 0), which the double-quantized formulas let through.
__device__ inline float round_half_even(float x) {
  constexpr float magic = 12582912.0f;
  return fabsf(x) < 4194304.0f ? __fsub_rn(__fadd_rn(x, magic), magic) : x;
}
/// AutoRound's get_reciprocal for float32.
__device__ inline float reciprocal(float x) { return fabsf(x) >= 1e-30f ? 1.0f / x : 0.0f; }

/// DoubleQuantizer::Level (asymmetric second level of the scales, or of the mins).
struct AsymLevel {
  float x[kMaxSuperGroup];
  bool pass[kMaxSuperGroup];
  float round[kMaxSuperGroup];
  int n = 0, argmax = 0;
  float max = 0, d = 0, inv = 0, top = 0;
  __device__ float quantized(int j) const { return std_min(round[j], top) * d; }
  __device__ void backward(const double* d_out, double* d_x) const {
    double d_d = 0, d_inv = 0;
    for (int j = 0; j < n; ++j) {
      const double p = round[j] <= top ? 1.0 : 0.0;
      d_d += d_out[j] * std_min(round[j], top);
      d_inv += d_out[j] * d * p * x[j];
      d_x[j] = d_out[j] * d * p * inv;
    }
    const double d_recip = reciprocal(max) != 0.0f ? -1.0 / (static_cast<double>(max) * max) : 0.0;
    d_x[argmax] += d_d / top + d_inv * top * d_recip;
  }
};

__device__ inline void asym_level(const QdqShape& s, const GroupRange* r, const float* lo, const float* hi, bool mins,
                                  AsymLevel& l) {
  l.n = s.super_group;
  l.top = static_cast<float>((1 << s.super_bits) - 1);
  l.max = 0;
  l.argmax = 0;
  const float maxq = static_cast<float>((1 << s.bits) - 1);
  for (int j = 0; j < l.n; ++j) {
    const float wmin = r[j].wmin * lo[j], wmax = r[j].wmax * hi[j];
    l.pass[j] = true;
    if (mins) {
      l.x[j] = -wmin;
    } else {
      const float raw = round_to_half((wmax - wmin) / maxq);
      l.pass[j] = raw >= s.scale_threshold;
      l.x[j] = std_max(raw, s.scale_threshold);
    }
    if (l.x[j] > l.max) { l.max = l.x[j]; l.argmax = j; }
  }
  l.d = l.max / l.top;
  l.inv = std_max(l.top * reciprocal(l.max), 0.0f);
  for (int j = 0; j < l.n; ++j) l.round[j] = device::round_half_even(l.x[j] * l.inv);
}

/// DoubleQuantizer::SymLevel.
struct SymLevel {
  float x[kMaxSuperGroup];
  float round[kMaxSuperGroup];
  int n = 0, argmax = 0;
  float d = 0, inv = 0, half = 0;
  __device__ float quantized(int j) const { return std_clamp(round[j], -half, half - 1.0f) * d; }
  __device__ void backward(const double* d_out, double* d_x) const {
    double d_d = 0, d_inv = 0;
    for (int j = 0; j < n; ++j) {
      const double p = round[j] >= -half && round[j] <= half - 1.0f ? 1.0 : 0.0;
      d_d += d_out[j] * std_clamp(round[j], -half, half - 1.0f);
      d_inv += d_out[j] * d * p * x[j];
      d_x[j] = d_out[j] * d * p * inv;
    }
    if (inv != 0.0f) d_d += d_inv * (-1.0 / (static_cast<double>(d) * d));
    d_x[argmax] += d_d / -half;
  }
};

__device__ inline void sym_level(const QdqShape& s, const GroupRange* r, const float* lo, const float* hi, SymLevel& l) {
  l.n = s.super_group;
  l.half = static_cast<float>(1 << (s.super_bits - 1));
  l.argmax = 0;
  const float maxq = static_cast<float>(1 << (s.bits - 1));
  float amax = -1.0f;
  for (int j = 0; j < l.n; ++j) {
    const float a = -(r[j].wmin * lo[j]), b = r[j].wmax * hi[j];
    l.x[j] = round_to_half((b < a ? 1.0f : -1.0f) * std_max(b, a) / maxq);
    if (fabsf(l.x[j]) > amax) { amax = fabsf(l.x[j]); l.argmax = j; }
  }
  l.d = l.x[l.argmax] / -l.half;
  l.inv = reciprocal(l.d);
  for (int j = 0; j < l.n; ++j) l.round[j] = device::round_half_even(l.x[j] * l.inv);
}

}  // namespace device

/// One thread per super-group: clamp its clipping scales to [0, 1], and cache each group's
/// (scale, zero, min) and the super-group's (d, dmin), as DoubleQuantizer::quantize_super_group.
template <int = 0>
__global__ void super_quant_kernel(QdqShape s, const GroupRange* ranges, float* min_scale, float* max_scale,
                                   GroupQuant* quants, SuperQuant* supers) {
  const long sg = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (sg >= s.supers()) return;
  const long g0 = sg * s.super_group;
  float lo[device::kMaxSuperGroup], hi[device::kMaxSuperGroup];
  for (int j = 0; j < s.super_group; ++j) {
    lo[j] = min_scale[g0 + j] = device::clampf(min_scale[g0 + j], 0.0f, s.ceiling);
    hi[j] = max_scale[g0 + j] = device::clampf(max_scale[g0 + j], 0.0f, s.ceiling);
  }
  constexpr float threshold = 1e-5f;  // the float32 clamps after the double quantization
  if (!s.symmetric) {
    device::AsymLevel sc, mn;
    device::asym_level(s, ranges + g0, lo, hi, false, sc);
    device::asym_level(s, ranges + g0, lo, hi, true, mn);
    for (int j = 0; j < s.super_group; ++j) quants[g0 + j] = {device::std_max(sc.quantized(j), threshold), 0.0f, mn.quantized(j)};
    supers[sg] = {device::std_max(sc.d, threshold), device::std_max(mn.d, threshold)};
    return;
  }
  device::SymLevel sc;
  device::sym_level(s, ranges + g0, lo, hi, sc);
  const float zero = static_cast<float>(1 << (s.bits - 1));
  for (int j = 0; j < s.super_group; ++j) quants[g0 + j] = {sc.quantized(j), zero, 0.0f};
  supers[sg] = {sc.d, 0.0f};
}

namespace device {
/// DoubleQuantizer::code_of
__device__ inline float dq_code(const QdqShape& s, float w, float v, GroupQuant q) {
  const float maxc = static_cast<float>((1 << s.bits) - 1);
  if (!s.symmetric) return std_clamp(device::round_half_even((w + q.min) / q.scale + v), 0.0f, maxc);
  return std_clamp(device::round_half_even(w * reciprocal(q.scale) + v) + q.zero, 0.0f, maxc);
}
}  // namespace device

/// The element forward with the cached quants (super_quant_kernel first); codes when not null.
template <int = 0>
__global__ void dq_forward_kernel(QdqShape s, const float* w, const float* v, const GroupQuant* quants, float* out,
                                  std::uint8_t* codes) {
  const long g = warp_group();
  const int lane = threadIdx.x % 32;
  if (g >= s.groups()) return;
  const GroupQuant q = quants[g];
  const long at = s.begin(g), length = s.length(g);
  for (long i = lane; i < length; i += 32) {
    const float code = device::dq_code(s, w[at + i], v[at + i], q);
    if (out) out[at + i] = s.symmetric ? q.scale * (code - q.zero) : q.scale * code - q.min;
    if (codes) codes[at + i] = static_cast<std::uint8_t>(code);
  }
}

/// The element backward (DoubleQuantizer::backward, step 1): dL/dv into `grad`, and each
/// group's dL/d(scale), dL/d(min), summed in element order as the CPU.
template <int = 0>
__global__ void dq_backward_kernel(QdqShape s, const float* w, const float* v, const GroupQuant* quants, float* grad,
                                   GroupQuantGrad* group_grads) {
  const long g = warp_group();
  const int lane = threadIdx.x % 32;
  if (g >= s.groups()) return;
  const GroupQuant q = quants[g];
  const float maxc = static_cast<float>((1 << s.bits) - 1);
  const float inv = device::reciprocal(q.scale);
  double d_scale = 0.0, d_min = 0.0;
  const long at = s.begin(g), length = s.length(g);
  for (long base = 0; base < length; base += 32) {
    const long i = base + lane;
    double term = 0.0;
    int outside = 0;
    double gi = 0.0;
    if (i < length) {
      const float u = s.symmetric ? device::round_half_even(w[at + i] * inv + v[at + i]) + q.zero : device::round_half_even((w[at + i] + q.min) / q.scale + v[at + i]);
      const bool inside = u >= 0.0f && u <= maxc;
      gi = grad[at + i];
      const double code = device::std_clamp(u, 0.0f, maxc);
      grad[at + i] = inside ? static_cast<float>(gi * q.scale) : 0.0f;
      if (!s.symmetric) {
        term = gi * (code - (inside ? (static_cast<double>(w[at + i]) + q.min) / q.scale : 0.0));
        outside = inside ? 0 : 1;
      } else {
        term = gi * ((code - q.zero) - (inside && inv != 0.0f ? static_cast<double>(w[at + i]) / q.scale : 0.0));
      }
    }
    const int count = length - base < 32 ? static_cast<int>(length - base) : 32;
    for (int k = 0; k < count; ++k) {
      d_scale += __shfl_sync(0xffffffffu, term, k);
      const double gk = __shfl_sync(0xffffffffu, gi, k);
      if (__shfl_sync(0xffffffffu, outside, k)) d_min -= gk;
    }
  }
  if (lane == 0) group_grads[g] = {d_scale, d_min};
}

/// One thread per super-group: DoubleQuantizer::backward, step 2 (through the second level).
template <int = 0>
__global__ void super_backward_kernel(QdqShape s, const GroupRange* ranges, const float* min_scale, const float* max_scale,
                                      const GroupQuantGrad* group_grads, float* grad_min, float* grad_max) {
  const long sg = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (sg >= s.supers()) return;
  const long g0 = sg * s.super_group;
  const GroupRange* r = ranges + g0;
  const float* lo = min_scale + g0;
  const float* hi = max_scale + g0;
  double d_scale[device::kMaxSuperGroup], d_min[device::kMaxSuperGroup], d_raw[device::kMaxSuperGroup];
  for (int j = 0; j < s.super_group; ++j) {
    d_scale[j] = group_grads[g0 + j].scale;
    d_min[j] = group_grads[g0 + j].min;
  }
  if (!s.symmetric) {
    device::AsymLevel sc, mn;
    device::asym_level(s, r, lo, hi, false, sc);
    device::asym_level(s, r, lo, hi, true, mn);
    for (int j = 0; j < s.super_group; ++j)
      if (!(sc.quantized(j) >= 1e-5f)) d_scale[j] = 0.0;
    double d_raw_min[device::kMaxSuperGroup];
    sc.backward(d_scale, d_raw);
    mn.backward(d_min, d_raw_min);
    const double maxq = (1 << s.bits) - 1;
    for (int j = 0; j < s.super_group; ++j) {
      const double d_range = sc.pass[j] ? device::round_to_half(static_cast<float>(d_raw[j])) / maxq : 0.0;
      const double d_wmax = d_range, d_wmin = -d_range - d_raw_min[j];
      grad_min[g0 + j] = static_cast<float>(d_wmin * r[j].wmin);
      grad_max[g0 + j] = static_cast<float>(d_wmax * r[j].wmax);
    }
    return;
  }
  device::SymLevel sc;
  device::sym_level(s, r, lo, hi, sc);
  sc.backward(d_scale, d_raw);
  const double maxq = static_cast<double>(1 << (s.bits - 1));
  for (int j = 0; j < s.super_group; ++j) {
    const float a = -(r[j].wmin * lo[j]), b = r[j].wmax * hi[j];
    const double d_signed_max = device::round_to_half(static_cast<float>(d_raw[j])) / maxq, sign = b < a ? 1.0 : -1.0;
    const double share_a = a > b ? 1.0 : (a == b ? 0.5 : 0.0);
    const double d_a = d_signed_max * sign * share_a, d_b = d_signed_max * sign * (1.0 - share_a);
    grad_min[g0 + j] = static_cast<float>(d_a * -r[j].wmin);
    grad_max[g0 + j] = static_cast<float>(d_b * r[j].wmax);
  }
}

}  // namespace autoround::cuda
