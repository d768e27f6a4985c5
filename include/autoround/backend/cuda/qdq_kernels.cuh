#pragma once
// CUDA kernels of AutoRound's inner loop for integer quantizers: group ranges, the
// quantize-dequantize forward, its straight-through backward (dL/dv, dL/dmin_scale,
// dL/dmax_scale), the SignSGD update, and a deterministic squared-error sum.
//
// Each formula is IntQuantizer's (quantizer/int_quantizer.hpp), written with explicitly rounded
// operations (__fmul_rn, __fadd_rn, __fdiv_rn, rintf, __float2half_rn) so that no fused
// multiply-add changes a rounding: results are bit-identical to the CPU path. A warp owns a group;
// its double-precision scale-gradient sums take the terms in element order (the CPU's order). Reductions across threads (the loss) use a fixed tree: deterministic.
// The kernels are templates (launched as name<><<<...>>>) so that this header can be included by
// several translation units.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../../quantizer/quantizer.hpp"

namespace autoround::cuda {

/// What every kernel needs to know about the layer: [rows, cols] weights in groups of
/// group_size along a row (the last group of a row may be shorter).
struct QdqShape {
  long rows = 0, cols = 0, group_size = 0, groups_per_row = 0;
  int bits = 4;
  bool symmetric = false;
  float scale_threshold = 0;  ///< fp16(1e-5), as IntQuantizer
  int super_group = 0;        ///< DoubleQuantizer: groups per super-group (0: none)
  int super_bits = 0;         ///< DoubleQuantizer: bits of the scales' codes
  float ceiling = 1.0f;       ///< clipping scales are clamped to [0, ceiling] (ClipSearch::ceiling)
  long group_rows = 1;        ///< rows a group spans (FP8_BLOCK's tiles: 128; GroupLayout::group_rows)
  __host__ __device__ long groups() const { return (rows + group_rows - 1) / group_rows * groups_per_row; }
  __host__ __device__ long supers() const { return super_group > 0 ? groups() / super_group : 0; }
  /// Where group g's first row starts; a tile's next rows follow `cols` apart (rows_of(g) of them).
  __host__ __device__ long begin(long g) const { return (g / groups_per_row) * group_rows * cols + (g % groups_per_row) * group_size; }
  __host__ __device__ long rows_of(long g) const {
    const long left = rows - (g / groups_per_row) * group_rows;
    return left < group_rows ? left : group_rows;
  }
  __host__ __device__ long length(long g) const {
    const long start = (g % groups_per_row) * group_size;
    return cols - start < group_size ? cols - start : group_size;
  }
};

namespace device {

__device__ inline float round_to_half(float x) { return __half2float(__float2half_rn(x)); }
__device__ inline float clampf(float x, float lo, float hi) { return fminf(fmaxf(x, lo), hi); }
/// IntQuantizer's detail::fp16_sum: two fp16 gradients added as PyTorch adds fp16 tensors.
__device__ inline float fp16_sum(float a, float b) { return round_to_half(__fadd_rn(round_to_half(a), round_to_half(b))); }

/// IntQuantizer::group_quant
__device__ inline GroupQuant group_quant(const QdqShape& s, GroupRange r, float min_scale, float max_scale) {
  if (!s.symmetric) {
    const float maxq = static_cast<float>((1 << s.bits) - 1);
    const float wmin = __fmul_rn(r.wmin, min_scale), wmax = __fmul_rn(r.wmax, max_scale);
    const float scale = fmaxf(round_to_half(__fdiv_rn(__fsub_rn(wmax, wmin), maxq)), s.scale_threshold);
    return {scale, rintf(__fdiv_rn(-wmin, scale))};
  }
  const float maxq = static_cast<float>(1 << (s.bits - 1));
  const float a = -__fmul_rn(r.wmin, min_scale), b = __fmul_rn(r.wmax, max_scale);
  const float signed_max = (b < a ? 1.0f : -1.0f) * fmaxf(b, a);
  float scale = round_to_half(__fdiv_rn(signed_max, maxq));
  scale = scale < 0.0f ? fminf(scale, -s.scale_threshold) : fmaxf(scale, s.scale_threshold);
  return {scale, maxq};
}

}  // namespace device

/// ranges[g] = (min(min(w), 0), max(max(w), 0)) of group g.
template <int = 0>  // a template: header-defined kernels, one definition per program
__global__ void group_range_kernel(QdqShape s, const float* w, GroupRange* ranges) {
  const long g = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (g >= s.groups()) return;
  GroupRange r;
  for (long row = 0; row < s.rows_of(g); ++row) {  // one row but for FP8_BLOCK's tiles
    const float* x = w + s.begin(g) + row * s.cols;
    for (long i = 0; i < s.length(g); ++i) {
      r.wmin = fminf(r.wmin, x[i]);
      r.wmax = fmaxf(r.wmax, x[i]);
    }
  }
  ranges[g] = r;
}

/// One warp per group: its lanes read the group 32 consecutive weights at a time (coalesced).
constexpr int kWarpsPerBlock = 8;
__device__ inline long warp_group() { return blockIdx.x * static_cast<long>(kWarpsPerBlock) + threadIdx.x / 32; }

/// Clamp the clipping scales to [0, ceiling], cache each group's (scale, zero), write the
/// fake-quantized weight. Also the codes when `codes` is not null (the final encode).
template <int = 0>
__global__ void qdq_forward_kernel(QdqShape s, const float* w, const float* v, const GroupRange* ranges,
                                   float* min_scale, float* max_scale, GroupQuant* quants, float* out,
                                   std::uint8_t* codes) {
  const long g = warp_group();
  const int lane = threadIdx.x % 32;
  if (g >= s.groups()) return;
  const float lo = device::clampf(min_scale[g], 0.0f, s.ceiling), hi = device::clampf(max_scale[g], 0.0f, s.ceiling);
  const GroupQuant q = device::group_quant(s, ranges[g], lo, hi);
  if (lane == 0) {
    min_scale[g] = lo;
    max_scale[g] = hi;
    quants[g] = q;
  }
  const float maxc = static_cast<float>((1 << s.bits) - 1);
  const long at = s.begin(g), length = s.length(g);
  for (long i = lane; i < length; i += 32) {
    const float code = device::clampf(__fadd_rn(rintf(__fadd_rn(__fdiv_rn(w[at + i], q.scale), v[at + i])), q.zero), 0.0f, maxc);
    if (out) out[at + i] = __fmul_rn(q.scale, __fsub_rn(code, q.zero));
    if (codes) codes[at + i] = static_cast<std::uint8_t>(code);
  }
}

/// Straight-through backward (IntQuantizer::backward): `grad` holds dL/d(fake-quantized weight)
/// and is overwritten with dL/dv; grad_min / grad_max receive dL/dmin_scale, dL/dmax_scale.
/// Lanes compute their elements' terms in parallel; the four double sums then take them in
/// element order, which is the CPU's summation order: bit-identical results. Each 32 elements'
/// terms go through shared memory, where lanes 0-3 add one sum each (every lane adding all four
/// through shuffles was the step's slowest kernel: 32 × 4 shuffles and additions per 32 elements
/// on every lane).
template <int = 0>
__global__ void qdq_backward_kernel(QdqShape s, const float* w, const float* v, const GroupRange* ranges,
                                    const float* min_scale, const float* max_scale, const GroupQuant* quants,
                                    float* grad, float* grad_min, float* grad_max) {
  __shared__ double terms[kWarpsPerBlock][4][33];  // (33: lanes 0-3 read four rows without a bank conflict)
  const long g = warp_group();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (g >= s.groups()) return;
  const GroupRange range = ranges[g];
  const GroupQuant q = quants[g];
  const float maxc = static_cast<float>((1 << s.bits) - 1);
  const float wmin = __fmul_rn(range.wmin, min_scale[g]);
  // the three fp16 edges of autograd's scale gradient, as IntQuantizer::backward: lane k < 4 sums
  // the k-th of (product, division, zero_point, grad_zero_clipped)
  double own_sum = 0.0;
  const long at = s.begin(g), length = s.length(g);
  for (long base = 0; base < length; base += 32) {
    const long i = base + lane;
    double p = 0.0, d = 0.0, z = 0.0, clipped = 0.0;  // adding 0.0 leaves a sum's bits unchanged
    if (i < length) {
      const float u = __fadd_rn(rintf(__fadd_rn(__fdiv_rn(w[at + i], q.scale), v[at + i])), q.zero);
      const bool inside = u >= 0.0f && u <= maxc;
      const float code = device::clampf(u, 0.0f, maxc);
      const double gi = grad[at + i];
      grad[at + i] = inside ? static_cast<float>(__dmul_rn(gi, static_cast<double>(q.scale))) : 0.0f;
      p = __dmul_rn(gi, static_cast<double>(__fsub_rn(code, q.zero)));
      if (inside) {
        d = -__ddiv_rn(__dmul_rn(gi, static_cast<double>(w[at + i])), static_cast<double>(q.scale));
      } else if (!s.symmetric) {
        z = -__ddiv_rn(__dmul_rn(gi, static_cast<double>(wmin)), static_cast<double>(q.scale));
        clipped = gi;
      }
    }
    terms[warp][0][lane] = p;
    terms[warp][1][lane] = d;
    terms[warp][2][lane] = z;
    terms[warp][3][lane] = clipped;
    __syncwarp();
    const int count = length - base < 32 ? static_cast<int>(length - base) : 32;
    if (lane < 4)
      for (int k = 0; k < count; ++k) own_sum = __dadd_rn(own_sum, terms[warp][lane][k]);
    __syncwarp();
  }
  const double product = __shfl_sync(0xffffffffu, own_sum, 0), division = __shfl_sync(0xffffffffu, own_sum, 1),
               zero_point = __shfl_sync(0xffffffffu, own_sum, 2), grad_zero_clipped = __shfl_sync(0xffffffffu, own_sum, 3);
  if (lane != 0) return;
  float grad16 = device::fp16_sum(static_cast<float>(product), static_cast<float>(division));
  if (!s.symmetric) grad16 = device::fp16_sum(grad16, static_cast<float>(zero_point));
  const double grad_scale = grad16;
  if (!s.symmetric) {
    const float maxq = maxc;
    const float raw = device::round_to_half(__fdiv_rn(__fsub_rn(__fmul_rn(range.wmax, max_scale[g]), wmin), maxq));
    const double pass = raw >= s.scale_threshold ? 1.0 : 0.0;
    const double d_wmax = __ddiv_rn(__dmul_rn(grad_scale, pass), maxq);
    const double d_wmin = __dadd_rn(__ddiv_rn(__dmul_rn(-grad_scale, pass), maxq), grad_zero_clipped);
    grad_min[g] = static_cast<float>(__dmul_rn(d_wmin, range.wmin));
    grad_max[g] = static_cast<float>(__dmul_rn(d_wmax, range.wmax));
    return;
  }
  const float maxq = static_cast<float>(1 << (s.bits - 1));
  const float a = -__fmul_rn(range.wmin, min_scale[g]), b = __fmul_rn(range.wmax, max_scale[g]);
  const float signed_max = (b < a ? 1.0f : -1.0f) * fmaxf(b, a);
  const float raw = device::round_to_half(__fdiv_rn(signed_max, maxq));
  const bool pass = raw < 0.0f ? raw <= -s.scale_threshold : raw >= s.scale_threshold;
  const double d_signed_max = pass ? __ddiv_rn(grad_scale, maxq) : 0.0;
  const double sign = b < a ? 1.0 : -1.0;
  const double share_a = a > b ? 1.0 : (a == b ? 0.5 : 0.0);
  const double d_a = __dmul_rn(__dmul_rn(d_signed_max, sign), share_a);
  const double d_b = __dmul_rn(__dmul_rn(d_signed_max, sign), 1.0 - share_a);
  grad_min[g] = static_cast<float>(__dmul_rn(d_a, -static_cast<double>(range.wmin)));
  grad_max[g] = static_cast<float>(__dmul_rn(d_b, static_cast<double>(range.wmax)));
}

/// ClipInit::WeightedSearch for integer quantizers (search_clip_scales in tune/clip_search.hpp):
/// a warp per group computes the host's weights (a_j, or a_j·sqrt(σ² + w_j²) with σ² the row's
/// mean square), tries the host's grid in the host's order (one ratio for both ends, then
/// max_scale, then min_scale), keeps the candidate of least Σ_j ω_j (w_j − qdq(w_j))², codes
/// rounded to nearest, then makes the host's least-squares refits. Lanes compute the terms; lane 0
/// adds them in element order in double, as the host does, and broadcasts the totals: the same
/// choices as the host search, bit for bit. Cost of magnitude_weighted (off by default): each
/// warp sums its whole row for σ², cols serial additions per group, which is slow at 8B widths
/// (a per-row pass first would fix it, if the option earns a default).
template <int = 0>
__global__ void clip_search_kernel(QdqShape s, const float* w, const GroupRange* ranges, const float* importance, float lowest,
                                   int steps, bool magnitude_weighted, int refits, float* min_scale, float* max_scale) {
  const long g = warp_group();
  const int lane = threadIdx.x % 32;
  if (g >= s.groups()) return;
  const GroupRange range = ranges[g];
  const long at = s.begin(g), length = s.length(g), column = (g % s.groups_per_row) * s.group_size;
  const float maxc = static_cast<float>((1 << s.bits) - 1);
  // lane 0 adds the lanes' terms in element order; every lane gets the total
  auto ordered_sum = [&](long n, double term, double total) {
    for (int k = 0; k < n; ++k) {
      const double t = __shfl_sync(0xffffffffu, term, k);
      if (lane == 0) total = __dadd_rn(total, t);
    }
    return total;
  };
  double sigma2 = 0.0;
  if (magnitude_weighted) {
    const float* row = w + (g / s.groups_per_row) * s.cols;
    for (long base = 0; base < s.cols; base += 32) {
      const long i = base + lane;
      const double x = i < s.cols ? static_cast<double>(row[i]) : 0.0;
      sigma2 = ordered_sum(s.cols - base < 32 ? s.cols - base : 32, __dmul_rn(x, x), sigma2);
    }
    sigma2 = __ddiv_rn(__shfl_sync(0xffffffffu, sigma2, 0), static_cast<double>(s.cols));
  }
  auto weight_of = [&](long i) {
    const double a = importance[column + i];
    if (!magnitude_weighted) return static_cast<float>(a);
    const double x = w[at + i];
    return static_cast<float>(__dmul_rn(a, __dsqrt_rn(__dadd_rn(sigma2, __dmul_rn(x, x)))));
  };
  auto code_of = [&](float x, const GroupQuant& q) {
    return device::clampf(__fadd_rn(rintf(__fdiv_rn(x, q.scale)), q.zero), 0.0f, maxc);
  };
  auto error = [&](float lo, float hi) {
    const GroupQuant q = device::group_quant(s, range, lo, hi);
    double total = 0.0;
    for (long base = 0; base < length; base += 32) {
      const long i = base + lane;
      double term = 0.0;
      if (i < length) {
        const float x = w[at + i];
        const double d = __dsub_rn(static_cast<double>(x), static_cast<double>(__fmul_rn(q.scale, __fsub_rn(code_of(x, q), q.zero))));
        term = __dmul_rn(__dmul_rn(static_cast<double>(weight_of(i)), d), d);
      }
      total = ordered_sum(length - base < 32 ? length - base : 32, term, total);
    }
    return __shfl_sync(0xffffffffu, total, 0);
  };
  // detail::least_squares_clipping
  auto least_squares = [&](float& lo, float& hi) {
    const GroupQuant q = device::group_quant(s, range, lo, hi);
    const double zero = s.symmetric ? static_cast<double>(q.zero) : 0.0;
    double sums[5] = {0, 0, 0, 0, 0};  // Σa, Σac, Σac², Σax, Σacx
    for (long base = 0; base < length; base += 32) {
      const long i = base + lane;
      double a = 0, c = 0, x = 0;
      if (i < length) {
        x = w[at + i];
        a = weight_of(i);
        c = __dsub_rn(static_cast<double>(code_of(w[at + i], q)), zero);
      }
      const double ac = __dmul_rn(a, c);
      const double terms[5] = {a, ac, __dmul_rn(ac, c), __dmul_rn(a, x), __dmul_rn(ac, x)};
      const long n = length - base < 32 ? length - base : 32;
      for (int t = 0; t < 5; ++t) sums[t] = ordered_sum(n, terms[t], sums[t]);
    }
    for (double& v : sums) v = __shfl_sync(0xffffffffu, v, 0);
    const double sw = sums[0], sc = sums[1], scc = sums[2], sx = sums[3], scx = sums[4];
    if (s.symmetric) {
      if (scc <= 0 || q.scale == 0.0f) return false;
      const double f = fabs(__ddiv_rn(__ddiv_rn(scx, scc), static_cast<double>(q.scale)));
      lo = static_cast<float>(fmin(1.0, __dmul_rn(static_cast<double>(lo), f)));
      hi = static_cast<float>(fmin(1.0, __dmul_rn(static_cast<double>(hi), f)));
      return f > 0;
    }
    const double det = __dsub_rn(__dmul_rn(sw, scc), __dmul_rn(sc, sc));
    if (det <= 0 || range.wmin >= 0.0f || range.wmax <= 0.0f) return false;
    const double sl = __ddiv_rn(__dsub_rn(__dmul_rn(sw, scx), __dmul_rn(sc, sx)), det);
    const double m = __ddiv_rn(__dsub_rn(sx, __dmul_rn(sl, sc)), sw);
    if (!(sl > 0)) return false;
    lo = static_cast<float>(fmin(fmax(__ddiv_rn(m, static_cast<double>(range.wmin)), 0.0), 1.0));
    hi = static_cast<float>(fmin(fmax(__ddiv_rn(__dadd_rn(m, __dmul_rn(sl, static_cast<double>(maxc))), static_cast<double>(range.wmax)), 0.0), 1.0));
    return true;
  };
  auto ratio = [&](int i) {
    return __fsub_rn(1.0f, __fdiv_rn(__fmul_rn(__fsub_rn(1.0f, lowest), static_cast<float>(i)), static_cast<float>(steps)));
  };
  float lo = 1.0f, hi = 1.0f;
  double best = error(lo, hi);
  auto consider = [&](float l, float h) {
    const double e = error(l, h);
    if (e < best) best = e, lo = l, hi = h;
  };
  for (int i = 1; i <= steps; ++i) consider(ratio(i), ratio(i));
  const float joint = lo;
  for (int i = 0; i <= steps; ++i) consider(joint, ratio(i));
  const float top = hi;
  for (int i = 0; i <= steps; ++i) consider(ratio(i), top);
  for (int k = 0; k < refits; ++k) {
    float l = lo, h = hi;
    if (!least_squares(l, h)) break;
    const double before = best;
    consider(l, h);
    if (!(best < before)) break;
  }
  if (lane == 0) {
    min_scale[g] = lo;
    max_scale[g] = hi;
  }
}

/// SignSGD: p -= lr * sign(g), sign(0) = 0.
template <int = 0>  // a template: header-defined kernels, one definition per program
__global__ void sign_sgd_kernel(float* params, const float* grads, float lr, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float g = grads[i];
  params[i] = __fsub_rn(params[i], g > 0.0f ? lr : (g < 0.0f ? -lr : 0.0f));
}

/// x[i] -= y[i] (the step's Wq - W), in float32 as the CPU.
template <int = 0>
__global__ void subtract_kernel(float* x, const float* y, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = __fsub_rn(x[i], y[i]);
}

/// x[i] *= a (the step's diff * 2/N), in float32 as the CPU.
template <int = 0>
__global__ void scale_kernel(float* x, float a, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = __fmul_rn(x[i], a);
}

/// out[i] = bf16(a * x[i] - (y ? y[i] : 0)), rounded to nearest even: the GEMM operands of a
/// bf16 step (Wq - W, and diff * 2/N).
template <int = 0>
__global__ void to_bf16_kernel(const float* x, float a, const float* y, __nv_bfloat16* out, long n) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(y ? __fsub_rn(x[i], y[i]) : __fmul_rn(x[i], a));
}

/// partial[block] = sum over the block's elements of (a - b)^2 in double (b may be null: 0), by a fixed tree.
template <int = 0>  // a template: header-defined kernels, one definition per program
__global__ void squared_error_kernel(const float* a, const float* b, long n, double* partial) {
  __shared__ double sums[256];
  double local = 0.0;
  for (long i = blockIdx.x * 256L + threadIdx.x; i < n; i += 256L * gridDim.x) {
    const double d = static_cast<double>(a[i]) - (b ? static_cast<double>(b[i]) : 0.0);
    local = __dadd_rn(local, __dmul_rn(d, d));
  }
  sums[threadIdx.x] = local;
  __syncthreads();
  for (int stride = 128; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) sums[threadIdx.x] = __dadd_rn(sums[threadIdx.x], sums[threadIdx.x + stride]);
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sums[0];
}

}  // namespace autoround::cuda
