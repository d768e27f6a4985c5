#pragma once
// CUDA kernels of AutoRound's inner loop for the floating-point formats (MXFP4, MXFP8, NVFP4,
// FP8 per channel and per 128 x 128 tile): the quantize-dequantize forward, autograd's backward to v and max_scale,
// and the activation quantization of the W4A4 / W8A8 schemes. Every formula is
// float_formulas.hpp's, the functions FloatQuantizer calls on the host, compiled here for the
// device: results are bit-identical to the CPU path. As qdq_kernels.cuh, a warp owns a group (an
// FP8_BLOCK tile: its rows one after the other) and its double sums take the elements' terms in
// element order (the CPU's order).
#include <cuda_runtime.h>

#include <cstdint>

#include "../../quantizer/float_formulas.hpp"
#include "../../quantizer/minifloat.hpp"
#include "qdq_kernels.cuh"

namespace autoround::cuda {

/// Clamp the clipping scales to [0, ceiling] (as TunableWeight::clamp_scales; min_scale is
/// unused by the formats), cache each group's GroupQuant, write the fake-quantized weight, and
/// the element codes when `codes` is not null (E2M1 code or E4M3 byte: the final encode).
template <int = 0>
__global__ void float_qdq_forward_kernel(QdqShape s, float_formulas::FloatParams p, const float* w, const float* v,
                                         const GroupRange* ranges, float* min_scale, float* max_scale, GroupQuant* quants,
                                         float* out, std::uint8_t* codes) {
  const long g = warp_group();
  const int lane = threadIdx.x % 32;
  if (g >= s.groups()) return;
  const float lo = device::clampf(min_scale[g], 0.0f, s.ceiling), hi = device::clampf(max_scale[g], 0.0f, s.ceiling);
  const GroupQuant q = p.group_quant(ranges[g], hi);
  if (lane == 0) {
    min_scale[g] = lo;
    max_scale[g] = hi;
    quants[g] = q;
  }
  const float multiplier = p.dequant_multiplier(q);
  const bool fp4 = p.format == FloatFormat::MxFp4 || p.format == FloatFormat::NvFp4;
  const long length = s.length(g);
  for (long row = 0; row < s.rows_of(g); ++row) {  // one row but for FP8_BLOCK's tiles
    const long at = s.begin(g) + row * s.cols;
    for (long i = lane; i < length; i += 32) {
      const float e = p.element(w[at + i], v[at + i], q);
      if (out) out[at + i] = e * multiplier;
      if (codes) codes[at + i] = fp4 ? minifloat::e2m1_code(e) : minifloat::e4m3_code(e);
    }
  }
}

/// Autograd's backward (FloatQuantizer::backward): `grad` holds dL/d(fake-quantized weight) and
/// is overwritten with dL/dv; grad_max receives dL/dmax_scale, grad_min 0.
template <int = 0>
__global__ void float_qdq_backward_kernel(QdqShape s, float_formulas::FloatParams p, const float* w, const float* v,
                                          const GroupRange* ranges, const float* max_scale, const GroupQuant* quants, float* grad,
                                          float* grad_min, float* grad_max) {
  const long g = warp_group();
  const int lane = threadIdx.x % 32;
  if (g >= s.groups()) return;
  const GroupQuant q = quants[g];
  double sum_a = 0.0, sum_b = 0.0;
  const long length = s.length(g);
  for (long row = 0; row < s.rows_of(g); ++row) {  // a tile's rows in order: the CPU's element order
    const long at = s.begin(g) + row * s.cols;
    for (long base = 0; base < length; base += 32) {
      const long i = base + lane;
      double a = 0.0, b = 0.0;
      if (i < length) {
        const auto e = p.element_backward(w[at + i], v[at + i], q, grad[at + i]);
        grad[at + i] = e.grad_v;
        a = e.a;
        b = e.b;
      }
      const int count = length - base < 32 ? static_cast<int>(length - base) : 32;
      for (int k = 0; k < count; ++k) {
        sum_a = __dadd_rn(sum_a, __shfl_sync(0xffffffffu, a, k));
        sum_b = __dadd_rn(sum_b, __shfl_sync(0xffffffffu, b, k));
      }
    }
  }
  if (lane != 0) return;
  grad_min[g] = 0.0f;
  grad_max[g] = p.max_scale_grad(ranges[g], max_scale[g], q, sum_a, sum_b);
}

/// Activation quantization of a [rows, cols] input in place (ActivationQuant::apply): dynamic
/// groups of `group` along each row under the weights' formula with v = 0 and max_scale = 1
/// (MX, NVFP4 with the input's static global scale), or, when `static_scale` > 0, FP8_STATIC's
/// one scale for the whole input. A thread per group. The bf16 copy, when given, receives the
/// quantized values rounded to bf16 (the GEMM operand).
template <int = 0>
__global__ void activation_qdq_kernel(float_formulas::FloatParams p, float static_scale, float* x, __nv_bfloat16* copy,
                                      long rows, long cols, long group, bool bf16_product = false) {
  const long per_row = (cols + group - 1) / group;
  const long k = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (k >= rows * per_row) return;
  float* row = x + (k / per_row) * cols;
  const long begin = (k % per_row) * group, end = begin + group < cols ? begin + group : cols;
  if (static_scale > 0.0f) {
    for (long c = begin; c < end; ++c) {
      row[c] = float_formulas::fp8_static_qdq(row[c], static_scale);
      if (bf16_product) row[c] = __bfloat162float(__float2bfloat16_rn(row[c]));  // (ActivationQuant::bf16_product)
    }
  } else {
    GroupRange r;
    for (long c = begin; c < end; ++c) {
      r.wmin = fminf(r.wmin, row[c]);
      r.wmax = fmaxf(r.wmax, row[c]);
    }
    const GroupQuant q = p.activation_group_quant(r);
    for (long c = begin; c < end; ++c) row[c] = p.fake_quantize(row[c], 0.0f, q);
  }
  if (copy)
    for (long c = begin; c < end; ++c) copy[(k / per_row) * cols + c] = __float2bfloat16_rn(row[c]);
}

/// The backward of activation_qdq_kernel (ActivationQuant::backward): `grad` holds dL/d q(x) of
/// the [rows, cols] input `x` (its values before the quantization) and receives dL/dx in place.
/// A thread per group, as the forward.
template <int = 0>
__global__ void activation_backward_kernel(float_formulas::FloatParams p, float static_scale, const float* x, float* grad,
                                           long rows, long cols, long group) {
  const long per_row = (cols + group - 1) / group;
  const long k = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (k >= rows * per_row) return;
  const long at = (k / per_row) * cols + (k % per_row) * group;
  const long n = (k % per_row) * group + group < cols ? group : cols - (k % per_row) * group;
  if (static_scale > 0.0f) {
    for (long c = 0; c < n; ++c) grad[at + c] = float_formulas::fp8_static_backward(x[at + c], static_scale, grad[at + c]);
    return;
  }
  p.activation_group_backward(x + at, grad + at, grad + at, static_cast<int>(n));
}

/// *absmax = max(*absmax, max |x_i|) over n values (float bits of non-negative values order as
/// integers, so an integer atomicMax is exact and order-free); *absmax starts at 0.
template <int = 0>
__global__ void absmax_kernel(const float* x, long n, unsigned* absmax) {
  float local = 0.0f;
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n; i += static_cast<long>(blockDim.x) * gridDim.x)
    local = fmaxf(local, fabsf(x[i]));
  for (int offset = 16; offset > 0; offset /= 2) local = fmaxf(local, __shfl_down_sync(0xffffffffu, local, offset));
  if (threadIdx.x % 32 == 0) atomicMax(absmax, __float_as_uint(local));
}

}  // namespace autoround::cuda
