#pragma once
// One quantized linear layer's tunable state on the GPU (the device twin of TunableWeight):
// weights, rounding offsets v, clipping scales, group ranges and cached (scale, zero) live in
// device memory; forward / backward / SignSGD step / encode run as the kernels of
// qdq_kernels.cuh, or, for a double-quantized spec (GGUF k-quants, super_group_size > 0), of
// double_quant_kernels.cuh, or, for a floating-point spec (MXFP4, MXFP8, NVFP4, FP8), of
// float_qdq_kernels.cuh. Bit-identical to TunableWeight on the CPU (tests/cuda/test_cuda_qdq.cpp).
#include <cstdint>
#include <span>
#include <vector>

#include "../../core/fp16.hpp"
#include "../../quantizer/double_quantizer.hpp"
#include "../../quantizer/float_quantizer.hpp"
#include "../../quantizer/int_quantizer.hpp"
#include "../../quantizer/quantized_weight.hpp"
#include "../../tune/tune_options.hpp"
#include "device_buffer.hpp"
#include "double_quant_kernels.cuh"
#include "float_qdq_kernels.cuh"
#include "qdq_kernels.cuh"

namespace autoround::cuda {

inline unsigned blocks_for(long n, unsigned threads = 128) { return static_cast<unsigned>((n + threads - 1) / threads); }

class QdqLayer {
 public:
  /// `weight` is [rows, cols] row-major float32 on the host; kernels are queued on `stream`.
  QdqLayer(QuantSpec spec, long rows, long cols, std::span<const float> weight, cudaStream_t stream = nullptr)
      : QdqLayer(spec, rows, cols, DeviceBuffer<float>(weight), stream) {}
  /// The same with the weight already on the device (taken over).
  QdqLayer(QuantSpec spec, long rows, long cols, DeviceBuffer<float> weight, cudaStream_t stream = nullptr)
      : weight_(std::move(weight)), stream_(stream) {
    detail::require(static_cast<long>(weight_.size()) == rows * cols, "QdqLayer: the weight must hold rows x cols values");
    floating_ = spec.data_type != DataType::Int;
    if (floating_) {
      float_.format = float_format(spec);  // validates the floating-point spec
      shape_.group_rows = spec.group_rows;  // FP8_BLOCK's tiles
    } else {
      const DynamicDoubleQuantizer validated(spec);  // validates bits / group size / super-groups
      (void)validated;
    }
    if (spec.super_group_size > 0)
      detail::require(cols % (static_cast<long>(spec.group_size) * spec.super_group_size) == 0,
                      "in_features = " + std::to_string(cols) + " is not a multiple of the super-group (" +
                          std::to_string(spec.super_group_size) + " groups of " + std::to_string(spec.group_size) + ")");
    shape_.super_group = spec.super_group_size;
    shape_.super_bits = spec.super_bits;
    shape_.rows = rows;
    shape_.cols = cols;
    shape_.group_size = spec.group_size == PerChannel || spec.group_size > cols ? cols : spec.group_size;
    shape_.groups_per_row = (cols + shape_.group_size - 1) / shape_.group_size;
    shape_.bits = spec.bits;
    shape_.symmetric = spec.symmetry == Symmetric;
    shape_.scale_threshold = detail::scale_threshold;
    const auto groups = static_cast<std::size_t>(shape_.groups());
    rounding_ = DeviceBuffer<float>(weight_.size());  // v = 0: round to nearest
    check(cudaMemsetAsync(rounding_.data(), 0, weight_.size() * sizeof(float), stream_), "zero the rounding offsets");
    min_scale_ = DeviceBuffer<float>(std::vector<float>(groups, 1.0f));
    max_scale_ = DeviceBuffer<float>(std::vector<float>(groups, 1.0f));
    ranges_ = DeviceBuffer<GroupRange>(groups);
    quants_ = DeviceBuffer<GroupQuant>(groups);
    if (double_quantized()) {
      supers_ = DeviceBuffer<SuperQuant>(static_cast<std::size_t>(shape_.supers()));
      group_grads_ = DeviceBuffer<GroupQuantGrad>(groups);
    }
    group_range_kernel<><<<blocks_for(shape_.groups()), 128, 0, stream_>>>(shape_, weight_.data(), ranges_.data());
    check(cudaGetLastError(), "group_range_kernel");
  }

  const QdqShape& shape() const { return shape_; }
  DeviceBuffer<float>& rounding() { return rounding_; }
  DeviceBuffer<float>& min_scale() { return min_scale_; }
  DeviceBuffer<float>& max_scale() { return max_scale_; }
  const DeviceBuffer<float>& weight() const { return weight_; }

  bool double_quantized() const { return shape_.super_group > 0; }
  bool floating() const { return floating_; }
  /// NVFP4's per-tensor global scale (FloatQuantizer::global_scale: 2688 / max|W|, or shared by
  /// fused layers); the other formats have none.
  void set_global_scale(float gs) { float_.global_scale = gs; }
  /// Clamp the clipping scales to [0, ceiling] from now on (ClipSearch::ceiling; 1 by default).
  void set_ceiling(float ceiling) {
    detail::require(ceiling >= 1.0f, "ClipSearch::ceiling must be at least 1");
    shape_.ceiling = ceiling;
  }

  /// out (device, rows x cols) = fake-quantized weight.
  void forward(float* out) {
    if (double_quantized()) return dq_forward(out, nullptr);
    if (floating_) return float_forward(out, nullptr);
    qdq_forward_kernel<><<<warp_blocks(), 32 * kWarpsPerBlock, 0, stream_>>>(shape_, weight_.data(), rounding_.data(), ranges_.data(),
                                                             min_scale_.data(), max_scale_.data(), quants_.data(), out,
                                                             nullptr);
    check(cudaGetLastError(), "qdq_forward_kernel");
  }
  /// grad (device): dL/d(fake-quantized weight) in, dL/dv out; scale gradients into the buffers.
  void backward(float* grad, float* grad_min, float* grad_max) const {
    if (floating_) {
      float_qdq_backward_kernel<><<<warp_blocks(), 32 * kWarpsPerBlock, 0, stream_>>>(
          shape_, float_, weight_.data(), rounding_.data(), ranges_.data(), max_scale_.data(), quants_.data(), grad, grad_min, grad_max);
      check(cudaGetLastError(), "float_qdq_backward_kernel");
      return;
    }
    if (double_quantized()) {
      dq_backward_kernel<><<<warp_blocks(), 32 * kWarpsPerBlock, 0, stream_>>>(shape_, weight_.data(), rounding_.data(),
                                                                             quants_.data(), grad, group_grads_.data());
      check(cudaGetLastError(), "dq_backward_kernel");
      super_backward_kernel<><<<blocks_for(shape_.supers(), 64), 64, 0, stream_>>>(
          shape_, ranges_.data(), min_scale_.data(), max_scale_.data(), group_grads_.data(), grad_min, grad_max);
      check(cudaGetLastError(), "super_backward_kernel");
      return;
    }
    qdq_backward_kernel<><<<warp_blocks(), 32 * kWarpsPerBlock, 0, stream_>>>(shape_, weight_.data(), rounding_.data(), ranges_.data(),
                                                              min_scale_.data(), max_scale_.data(), quants_.data(), grad,
                                                              grad_min, grad_max);
    check(cudaGetLastError(), "qdq_backward_kernel");
  }
  /// min_scale / max_scale = each group's searched clipping (ClipInit::WeightedSearch) under
  /// `importance` (device, one per input column): integer quantizers only (clip_search_kernel).
  void search_clipping(const float* importance, const ClipSearch& search = {}) {
    detail::require(!floating_, "QdqLayer::search_clipping: the floating-point formats start at max_scale = 1, as the reference's");
    detail::require(!double_quantized() && search.symmetric == SymmetricSearch::ClippingGrid,
                    "QdqLayer::search_clipping: double-quantized layers and SymmetricSearch::ScaleGrid / DivisorGrid are searched on the host");
    clip_search_kernel<><<<warp_blocks(), 32 * kWarpsPerBlock, 0, stream_>>>(shape_, weight_.data(), ranges_.data(), importance,
                                                                             search.lowest, search.steps, search.magnitude_weighted,
                                                                             search.refits, min_scale_.data(), max_scale_.data());
    check(cudaGetLastError(), "clip_search_kernel");
  }
  /// Final codes (device, rows x cols) under the current parameters.
  void encode(std::uint8_t* codes) {
    if (double_quantized()) return dq_forward(nullptr, codes);
    if (floating_) return float_forward(nullptr, codes);
    qdq_forward_kernel<><<<warp_blocks(), 32 * kWarpsPerBlock, 0, stream_>>>(shape_, weight_.data(), rounding_.data(), ranges_.data(),
                                                             min_scale_.data(), max_scale_.data(), quants_.data(), nullptr,
                                                             codes);
    check(cudaGetLastError(), "qdq_forward_kernel (encode)");
  }
  std::vector<GroupQuant> quants() const { return quants_.download(); }

  /// The final codes and per-group (scale, zero) under the current parameters, on the host.
  template <class Q>
  QuantizedWeight<Q> result(const Q& quantizer, const TuningStats& stats) {
    DeviceBuffer<std::uint8_t> codes(static_cast<std::size_t>(shape_.rows * shape_.cols));
    encode(codes.data());
    QuantizedWeight<Q> q{quantizer, group_layout_for(quantizer, shape_.rows, shape_.cols), codes.download(), {}, {}, stats,
                         {}, {}, {}};
    for (const GroupQuant& gq : quants()) {
      q.scales.push_back(gq.scale);
      q.zeros.push_back(static_cast<std::int32_t>(gq.zero));
      if (double_quantized()) q.mins.push_back(gq.min);
    }
    if (double_quantized())
      for (const SuperQuant& sq : supers_.download()) {
        q.super_scales.push_back(sq.scale);
        q.super_mins.push_back(sq.min);
      }
    return q;
  }

 private:
  void float_forward(float* out, std::uint8_t* codes) {
    float_qdq_forward_kernel<><<<warp_blocks(), 32 * kWarpsPerBlock, 0, stream_>>>(shape_, float_, weight_.data(), rounding_.data(),
                                                                                 ranges_.data(), min_scale_.data(), max_scale_.data(),
                                                                                 quants_.data(), out, codes);
    check(cudaGetLastError(), "float_qdq_forward_kernel");
  }
  void dq_forward(float* out, std::uint8_t* codes) {
    super_quant_kernel<><<<blocks_for(shape_.supers(), 64), 64, 0, stream_>>>(shape_, ranges_.data(), min_scale_.data(),
                                                                            max_scale_.data(), quants_.data(), supers_.data());
    check(cudaGetLastError(), "super_quant_kernel");
    dq_forward_kernel<><<<warp_blocks(), 32 * kWarpsPerBlock, 0, stream_>>>(shape_, weight_.data(), rounding_.data(),
                                                                          quants_.data(), out, codes);
    check(cudaGetLastError(), "dq_forward_kernel");
  }

  unsigned warp_blocks() const { return blocks_for(shape_.groups(), kWarpsPerBlock); }

  QdqShape shape_;
  bool floating_ = false;
  float_formulas::FloatParams float_;  // floating-point formats only
  DeviceBuffer<float> weight_;
  DeviceBuffer<float> rounding_, min_scale_, max_scale_;
  DeviceBuffer<GroupRange> ranges_;
  DeviceBuffer<GroupQuant> quants_;
  DeviceBuffer<SuperQuant> supers_;          // double quantization only
  mutable DeviceBuffer<GroupQuantGrad> group_grads_;  // double quantization only (backward scratch)
  cudaStream_t stream_;
};

inline void sign_sgd(DeviceBuffer<float>& params, const float* grads, float lr, cudaStream_t stream = nullptr) {
  const long n = static_cast<long>(params.size());
  sign_sgd_kernel<><<<blocks_for(n, 256), 256, 0, stream>>>(params.data(), grads, lr, n);
  check(cudaGetLastError(), "sign_sgd_kernel");
}

/// sum((a - b)^2) over n elements, in double, deterministically (fixed grid, fixed tree).
inline double squared_error(const float* a, const float* b, long n, cudaStream_t stream = nullptr) {
  constexpr unsigned grid = 120;
  DeviceBuffer<double> partial(grid);
  squared_error_kernel<><<<grid, 256, 0, stream>>>(a, b, n, partial.data());
  check(cudaGetLastError(), "squared_error_kernel");
  double sum = 0.0;
  for (double p : partial.download()) sum += p;
  return sum;
}

}  // namespace autoround::cuda
