#pragma once
// One layer-wise tuning run, step by step: what LayerTuner::tune loops over, exposed for
// benchmarks and for users who drive their own loop (logging, custom stopping).
//
// step(): draw a minibatch, fake-quantize the weight, loss = mean((X Wq^T - X_fp W^T)^2),
// straight-through backward, one optimizer step with the scheduled learning rate. The
// parameters that gave the lowest loss are kept (the reference's best-step rule).
#include <algorithm>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../backend/backend.hpp"
#include "../core/matrix.hpp"
#include "../optimizer/optimizer.hpp"
#include "../quantizer/quantized_weight.hpp"
#include "../quantizer/quantizer.hpp"
#include "best_step.hpp"
#include "calibration_inputs.hpp"
#include "index_sampler.hpp"
#include "tunable_weight.hpp"
#include "tune_options.hpp"

namespace autoround {

template <WeightQuantizer Q, Optimizer O, Backend B>
class LayerTuningRun {
 public:
  static_assert(HostBackend<B>, "a device backend (Cuda) runs its own specialization of this template: include "
                                "autoround/backend/cuda/cuda_runs.cuh from a file nvcc compiles (SignSGD<LinearDecay> only)");
  /// `fp_inputs` (may be null): the full-precision layer's inputs when they differ from the
  /// quantized layer's `inputs` (the reference's fp_inputs / q_inputs).
  LayerTuningRun(const TuneOptions& options, const Q& quantizer, const O& optimizer, const B& backend,
                 MatrixView weight, MatrixView inputs, const MatrixView* fp_inputs, const std::string& name)
      : options_(options), optimizer_(optimizer), backend_(backend), weight_(weight), inputs_(inputs),
        fp_inputs_(fp_inputs ? *fp_inputs : inputs), separate_fp_(fp_inputs != nullptr),
        state_(quantizer, weight, name + ".weight"),
        seqlen_(detail::check_calibration_inputs(options, weight, inputs, fp_inputs, name)),
        sampler_(inputs.rows() / seqlen_, std::min(options.batch_size, inputs.rows() / seqlen_), options.seed),
        tracker_(options) {
    const Index batch_rows = std::min(options.batch_size, inputs.rows() / seqlen_) * seqlen_;
    batch_.resize(batch_rows, weight.cols());
    if (separate_fp_) {
      fp_batch_.resize(batch_rows, weight.cols());
      fp_out_.resize(batch_rows, weight.rows());
    }
    qweight_.resize(weight.rows(), weight.cols());
    grad_.resize(weight.rows(), weight.cols());
    diff_.resize(batch_rows, weight.rows());
    rounding_state_ = optimizer_.make_state(state_.rounding.size());
    min_state_ = optimizer_.make_state(state_.min_scale.size());
    max_state_ = optimizer_.make_state(state_.max_scale.size());
    lr_ = options.rounding_lr(quantizer.bits());
    minmax_lr_ = options.clipping_lr(quantizer.bits());
    snapshot();
  }

  /// Run step `stats().steps_run`; returns its loss (measured before the update).
  double step() {
    const int step = tracker_.next_step();
    const auto samples = sampler_.next_batch();
    gather(inputs_, samples, batch_);
    state_.forward(backend_, mutable_view(qweight_));
    if (separate_fp_) {  // diff = batch Wq^T - fp_batch W^T
      gather(fp_inputs_, samples, fp_batch_);
      backend_.matmul_nt(view(batch_), view(qweight_), mutable_view(diff_));
      backend_.matmul_nt(view(fp_batch_), weight_, mutable_view(fp_out_));
      diff_ -= fp_out_;
    } else {  // same inputs: diff = batch (Wq - W)^T, one GEMM, no cancellation of large outputs
      qweight_ -= weight_;
      backend_.matmul_nt(view(batch_), view(qweight_), mutable_view(diff_));
    }
    const double loss = static_cast<double>(diff_.squaredNorm()) / static_cast<double>(diff_.size());
    if (tracker_.record(loss)) snapshot();

    // d (loss_scale · mean(diff^2)) / d diff: the reference backpropagates 1000 × the loss
    diff_ *= static_cast<float>(options_.loss_scale * 2.0 / static_cast<double>(diff_.size()));
    backend_.matmul_tn(view(diff_), view(batch_), mutable_view(grad_));    // dL/dWq = diff^T batch
    state_.backward(backend_, mutable_view(grad_), grad_min_, grad_max_);   // grad_ now holds dL/dv
    optimizer_.update(state_.rounding, std::span<const float>(grad_.data(), static_cast<std::size_t>(grad_.size())),
                      optimizer_.rate(lr_, step, options_.iters), rounding_state_);
    if (options_.enable_minmax_tuning) {
      optimizer_.update(state_.min_scale, grad_min_, optimizer_.rate(minmax_lr_, step, options_.iters), min_state_);
      optimizer_.update(state_.max_scale, grad_max_, optimizer_.rate(minmax_lr_, step, options_.iters), max_state_);
    }
    return loss;
  }

  /// Whether the loop should go on: iters not reached and, with dynamic_max_gap, not stalled.
  bool running() const { return tracker_.running(); }

  const TuningStats& stats() const { return tracker_.stats(); }

  /// Encode the kept (best) parameters.
  QuantizedWeight<Q> result() {
    state_.rounding = best_rounding_;
    state_.min_scale = best_min_;
    state_.max_scale = best_max_;
    QuantizedWeight<Q> q = state_.encode();
    q.stats = tracker_.stats();
    return q;
  }

 private:
  void snapshot() {
    best_rounding_ = state_.rounding;
    best_min_ = state_.min_scale;
    best_max_ = state_.max_scale;
  }

  // Copy the chosen samples (seqlen_ consecutive rows each) into one contiguous batch.
  void gather(MatrixView source, std::span<const Index> samples, RowMatrix& batch) const {
    for (std::size_t i = 0; i < samples.size(); ++i)
      batch.middleRows(static_cast<Index>(i) * seqlen_, seqlen_) = source.middleRows(samples[i] * seqlen_, seqlen_);
  }

  TuneOptions options_;
  O optimizer_;
  B backend_;
  MatrixView weight_, inputs_, fp_inputs_;
  bool separate_fp_;
  TunableWeight<Q> state_;
  Index seqlen_;
  IndexSampler sampler_;
  RowMatrix batch_, fp_batch_, fp_out_, qweight_, grad_, diff_;
  std::vector<float> grad_min_, grad_max_;
  typename O::State rounding_state_{}, min_state_{}, max_state_{};
  float lr_ = 0, minmax_lr_ = 0;
  std::vector<float> best_rounding_, best_min_, best_max_;
  BestStepTracker tracker_;
};

}  // namespace autoround
