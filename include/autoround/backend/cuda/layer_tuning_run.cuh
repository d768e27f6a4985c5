#pragma once
// Layer-wise AutoRound on the GPU: the device implementation behind LayerTuningRun<Q,
// SignSGD<LinearDecay>, Cuda> (cuda_runs.cuh). The algorithm of LayerTuningRun (the same IndexSampler
// minibatches, the same LinearDecay schedule, the same best-step rule, TuneOptions and
// QuantizedWeight), with the weight, the calibration inputs and every tunable parameter in device
// memory: per step, the minibatch is gathered on the device, the qdq forward / STE backward /
// SignSGD kernels are bit-identical to the CPU's, and the two GEMMs run in cuBLAS float32. Loss
// and weight gradient therefore differ from the CPU's only by GEMM summation order
// (tests/cuda/test_cuda_layer_run.cpp measures how far the chosen codes drift).
//
// GEMM precision: float32 (the CPU's numerics) or bfloat16 operands with float32 accumulation
// (GemmPrecision::BFloat16: what the reference's default amp autocast gives its GEMMs on CUDA;
// the GEMM operands are the inputs and Wq - W (or, with separate full-precision inputs, Wq and
// W), resp. the scaled output difference, rounded to bf16; loss, gradients and every parameter
// stay float32). SignSGD with LinearDecay only (the reference default).
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "../../core/matrix.hpp"
#include "../../optimizer/sign_sgd.hpp"
#include "../../quantizer/int_quantizer.hpp"
#include "../../quantizer/quantized_weight.hpp"
#include "../../tune/best_step.hpp"
#include "../../tune/calibration_inputs.hpp"
#include "../../tune/index_sampler.hpp"
#include "../../tune/tune_options.hpp"
#include "../cuda.hpp"
#include "blas.hpp"
#include "qdq_layer.cuh"

namespace autoround::cuda {

template <class Q = DynamicIntQuantizer>
class LayerTuningRun {
 public:
  /// `fp_inputs` (may be null): the full-precision layer's inputs when they differ from the
  /// quantized layer's `inputs` (the reference's fp_inputs / q_inputs).
  LayerTuningRun(const TuneOptions& options, const Q& quantizer, MatrixView weight, MatrixView inputs,
                 const MatrixView* fp_inputs = nullptr, const std::string& name = "layer",
                 GemmPrecision precision = GemmPrecision::Float32)
      : options_(options), quantizer_(quantizer), bf16_(precision == GemmPrecision::BFloat16), separate_fp_(fp_inputs != nullptr),
        rows_(weight.rows()), cols_(weight.cols()),
        seqlen_(detail::check_calibration_inputs(options, weight, inputs, fp_inputs, name)),
        layer_(quantizer.spec(), weight.rows(), weight.cols(), host_copy(weight), stream_.get()),
        inputs_(host_copy(inputs)), fp_inputs_(separate_fp_ ? host_copy(*fp_inputs) : std::vector<float>{}),
        sampler_(inputs.rows() / seqlen_, std::min(options.batch_size, inputs.rows() / seqlen_), options.seed),
        tracker_(options) {
    quantizer_ = set_up_for_weight(quantizer, weight);
    if constexpr (FloatCodeQuantizer<Q>) layer_.set_global_scale(quantizer_.global_scale());
    batch_rows_ = std::min(options.batch_size, inputs.rows() / seqlen_) * seqlen_;
    const auto n = static_cast<std::size_t>(rows_ * cols_), groups = static_cast<std::size_t>(layer_.shape().groups());
    batch_ = DeviceBuffer<float>(bf16_ ? 0 : static_cast<std::size_t>(batch_rows_ * cols_));
    if (separate_fp_ && !bf16_) fp_batch_ = DeviceBuffer<float>(batch_.size());
    qweight_ = DeviceBuffer<float>(n);
    grad_ = DeviceBuffer<float>(n);
    diff_ = DeviceBuffer<float>(static_cast<std::size_t>(batch_rows_ * rows_));
    grad_min_ = DeviceBuffer<float>(groups);
    grad_max_ = DeviceBuffer<float>(groups);
    best_rounding_ = DeviceBuffer<float>(n);
    best_min_ = DeviceBuffer<float>(groups);
    best_max_ = DeviceBuffer<float>(groups);
    if (bf16_) {
      const long in_n = static_cast<long>(inputs_.size());
      inputs_bf16_ = DeviceBuffer<__nv_bfloat16>(inputs_.size());
      to_bf16_kernel<><<<blocks_for(in_n, 256), 256, 0, stream()>>>(inputs_.data(), 1.0f, nullptr, inputs_bf16_.data(), in_n);
      inputs_ = DeviceBuffer<float>();  // only the bf16 copy is read from here on
      batch_bf16_ = DeviceBuffer<__nv_bfloat16>(static_cast<std::size_t>(batch_rows_ * cols_));
      delta_bf16_ = DeviceBuffer<__nv_bfloat16>(n);
      if (separate_fp_) {
        fp_inputs_bf16_ = DeviceBuffer<__nv_bfloat16>(fp_inputs_.size());
        to_bf16_kernel<><<<blocks_for(in_n, 256), 256, 0, stream()>>>(fp_inputs_.data(), 1.0f, nullptr, fp_inputs_bf16_.data(), in_n);
        fp_inputs_ = DeviceBuffer<float>();
        fp_batch_bf16_ = DeviceBuffer<__nv_bfloat16>(batch_bf16_.size());
        weight_bf16_ = DeviceBuffer<__nv_bfloat16>(n);
        to_bf16_kernel<><<<blocks_for(static_cast<long>(n), 256), 256, 0, stream()>>>(layer_.weight().data(), 1.0f, nullptr, weight_bf16_.data(),
                                                                         static_cast<long>(n));
      }
      diff_bf16_ = DeviceBuffer<__nv_bfloat16>(diff_.size());
    }
    lr_ = options.rounding_lr(quantizer.bits());
    minmax_lr_ = options.clipping_lr(quantizer.bits());
    snapshot();
  }

  double step() {
    const int step = tracker_.next_step();
    const auto samples = sampler_.next_batch();
    const std::size_t sample_floats = static_cast<std::size_t>(seqlen_ * cols_);
    for (std::size_t i = 0; i < samples.size(); ++i) {
      const std::size_t from = static_cast<std::size_t>(samples[i]) * sample_floats, to = i * sample_floats;
      if (bf16_) {
        gather(batch_bf16_.data() + to, inputs_bf16_.data() + from, sample_floats);
        if (separate_fp_) gather(fp_batch_bf16_.data() + to, fp_inputs_bf16_.data() + from, sample_floats);
      } else {
        gather(batch_.data() + to, inputs_.data() + from, sample_floats);
        if (separate_fp_) gather(fp_batch_.data() + to, fp_inputs_.data() + from, sample_floats);
      }
    }
    const long n = rows_ * cols_, diff_n = batch_rows_ * rows_;
    const float two_over_n = static_cast<float>(options_.loss_scale * 2.0 / static_cast<double>(diff_n));  // × loss_scale as the CPU
    layer_.forward(qweight_.data());
    if (separate_fp_) {  // diff = X Wq^T - X_fp W^T: two GEMMs, the second subtracting in place
      if (bf16_) {
        to_bf16_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(qweight_.data(), 1.0f, nullptr, delta_bf16_.data(), n);
        blas_.gemm<__nv_bfloat16>(false, true, batch_rows_, rows_, cols_, 1.0f, batch_bf16_.data(), cols_, delta_bf16_.data(), cols_,
                                  0.0f, diff_.data(), rows_);
        blas_.gemm<__nv_bfloat16>(false, true, batch_rows_, rows_, cols_, -1.0f, fp_batch_bf16_.data(), cols_, weight_bf16_.data(),
                                  cols_, 1.0f, diff_.data(), rows_);
      } else {
        blas_.gemm<float>(false, true, batch_rows_, rows_, cols_, 1.0f, batch_.data(), cols_, qweight_.data(), cols_, 0.0f,
                          diff_.data(), rows_);
        blas_.gemm<float>(false, true, batch_rows_, rows_, cols_, -1.0f, fp_batch_.data(), cols_, layer_.weight().data(), cols_,
                          1.0f, diff_.data(), rows_);
      }
    } else if (bf16_) {
      to_bf16_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(qweight_.data(), 1.0f, layer_.weight().data(), delta_bf16_.data(), n);
      blas_.matmul_nt(batch_bf16_.data(), delta_bf16_.data(), diff_.data(), batch_rows_, rows_, cols_);
    } else {
      subtract_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(qweight_.data(), layer_.weight().data(), n);  // Wq - W
      blas_.matmul_nt(batch_.data(), qweight_.data(), diff_.data(), batch_rows_, rows_, cols_);   // X (Wq - W)^T
    }
    const double loss = squared_error(diff_.data(), nullptr, diff_n, stream()) / static_cast<double>(diff_n);
    if (tracker_.record(loss)) snapshot();
    if (bf16_) {
      to_bf16_kernel<><<<blocks_for(diff_n, 256), 256, 0, stream()>>>(diff_.data(), two_over_n, nullptr, diff_bf16_.data(), diff_n);
      blas_.matmul_tn(diff_bf16_.data(), batch_bf16_.data(), grad_.data(), batch_rows_, rows_, cols_);
    } else {
      scale_kernel<><<<blocks_for(diff_n, 256), 256, 0, stream()>>>(diff_.data(), two_over_n, diff_n);
      blas_.matmul_tn(diff_.data(), batch_.data(), grad_.data(), batch_rows_, rows_, cols_);  // dL/dWq
    }
    layer_.backward(grad_.data(), grad_min_.data(), grad_max_.data());                         // grad_ = dL/dv
    const SignSGD<LinearDecay> sign_sgd_rule;
    sign_sgd(layer_.rounding(), grad_.data(), sign_sgd_rule.rate(lr_, step, options_.iters), stream());
    if (options_.enable_minmax_tuning) {
      sign_sgd(layer_.min_scale(), grad_min_.data(), sign_sgd_rule.rate(minmax_lr_, step, options_.iters), stream());
      sign_sgd(layer_.max_scale(), grad_max_.data(), sign_sgd_rule.rate(minmax_lr_, step, options_.iters), stream());
    }
    return loss;
  }

  bool running() const { return tracker_.running(); }
  const TuningStats& stats() const { return tracker_.stats(); }

  /// Encode the kept (best) parameters, on the device, and bring the result to the host.
  QuantizedWeight<Q> result() {
    copy(best_rounding_, layer_.rounding());
    copy(best_min_, layer_.min_scale());
    copy(best_max_, layer_.max_scale());
    return layer_.result(quantizer_, tracker_.stats());
  }

 private:
  static std::vector<float> host_copy(MatrixView m) {
    std::vector<float> v(static_cast<std::size_t>(m.size()));
    Eigen::Map<RowMatrix>(v.data(), m.rows(), m.cols()) = m;
    return v;
  }
  cudaStream_t stream() const { return stream_.get(); }
  template <class T>
  void gather(T* to, const T* from, std::size_t count) const {
    check(cudaMemcpyAsync(to, from, count * sizeof(T), cudaMemcpyDeviceToDevice, stream()), "gather minibatch");
  }
  void copy(const DeviceBuffer<float>& from, DeviceBuffer<float>& to) const {
    check(cudaMemcpyAsync(to.data(), from.data(), from.size() * sizeof(float), cudaMemcpyDeviceToDevice, stream()),
          "copy parameters");
  }
  void snapshot() {
    copy(layer_.rounding(), best_rounding_);
    copy(layer_.min_scale(), best_min_);
    copy(layer_.max_scale(), best_max_);
  }

  Stream stream_;  // first: everything below queues its work on it
  TuneOptions options_;
  Q quantizer_;
  bool bf16_, separate_fp_;
  Index rows_, cols_, seqlen_, batch_rows_ = 0;
  QdqLayer layer_;
  DeviceBuffer<float> inputs_, fp_inputs_, batch_, fp_batch_, qweight_, grad_, diff_, grad_min_, grad_max_;
  DeviceBuffer<float> best_rounding_, best_min_, best_max_;
  DeviceBuffer<__nv_bfloat16> inputs_bf16_, fp_inputs_bf16_, batch_bf16_, fp_batch_bf16_, delta_bf16_, diff_bf16_, weight_bf16_;
  IndexSampler sampler_;
  BestStepTracker tracker_;
  Blas blas_{stream_.get()};
  float lr_ = 0, minmax_lr_ = 0;
};

}  // namespace autoround::cuda
