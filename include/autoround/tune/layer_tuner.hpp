#pragma once
// Layer-wise AutoRound: tune one linear layer's rounding offsets and clipping scales so that its
// quantized output reproduces the full-precision output on calibration inputs
// (sign_round/quantizer.py, quantize_layer_outside_block).
//
// Each step: draw batch_size samples (IndexSampler), fake-quantize the weight, loss = mean
// squared error between quantized and full-precision outputs, straight-through backward,
// one optimizer step with the scheduled learning rate. The parameters of the lowest-loss step
// are the result. A bias adds the same vector to both outputs, so it cancels in the loss and
// the tuner never needs it.
#include <algorithm>
#include <chrono>
#include <utility>
#include <limits>
#include <string>
#include <vector>

#include "../backend/backend.hpp"
#include "../backend/cpu.hpp"
#include "../core/matrix.hpp"
#include "../optimizer/optimizer.hpp"
#include "../optimizer/sign_sgd.hpp"
#include "../quantizer/quantized_weight.hpp"
#include "../quantizer/quantizer.hpp"
#include "index_sampler.hpp"
#include "tunable_weight.hpp"
#include "tune_options.hpp"

namespace autoround {

template <Quantizer Q, Optimizer O = SignSGD<LinearDecay>, Backend B = Cpu>
class LayerTuner {
 public:
  explicit LayerTuner(TuneOptions options = {})
    requires std::default_initializable<Q>
      : LayerTuner(options, Q{}) {}
  LayerTuner(TuneOptions options, Q quantizer, O optimizer = O{}, B backend = B{})
      : options_(options), quantizer_(quantizer), optimizer_(optimizer), backend_(backend) {
    detail::require(options.iters >= 0, "iters = " + std::to_string(options.iters) + ": must be >= 0");
    detail::require(options.batch_size > 0, "batch_size = " + std::to_string(options.batch_size) + ": must be > 0");
    detail::require(options.seqlen >= 0, "seqlen = " + std::to_string(options.seqlen) + ": must be >= 0");
  }

  const TuneOptions& options() const { return options_; }

  /// weight [out, in]; inputs [tokens, in] = nsamples samples of seqlen rows each.
  QuantizedWeight<Q> tune(MatrixView weight, MatrixView inputs, const std::string& name = "layer") const {
    return run(weight, inputs, nullptr, name);
  }
  /// As above, but the quantized layer sees `inputs` (e.g. from already-quantized layers) while
  /// the target is the full-precision layer on `fp_inputs` (the reference's q_inputs/fp_inputs).
  QuantizedWeight<Q> tune(MatrixView weight, MatrixView inputs, MatrixView fp_inputs,
                          const std::string& name = "layer") const {
    return run(weight, inputs, &fp_inputs, name);
  }
  /// Eigen matrices of any layout and xtensor arrays (viewed in place when row-major).
  template <class W, class X>
    requires(!std::is_same_v<W, MatrixView> || !std::is_same_v<X, MatrixView>)
  QuantizedWeight<Q> tune(const W& weight, const X& inputs, const std::string& name = "layer") const {
    RowMatrix weight_copy, input_copy;
    return tune(as_view(weight, weight_copy), as_view(inputs, input_copy), name);
  }

 private:
  template <class T>
  static MatrixView as_view(const T& x, RowMatrix& storage) {
    if constexpr (std::is_base_of_v<Eigen::MatrixBase<T>, T>) return view(x, storage);
    else return view(x);
  }

  QuantizedWeight<Q> run(MatrixView weight, MatrixView inputs, const MatrixView* fp_inputs,
                         const std::string& name) const {
    const auto start = std::chrono::steady_clock::now();
    TunableWeight<Q> state(quantizer_, weight, name + ".weight");
    detail::require(inputs.cols() == weight.cols(),
                    name + ": calibration inputs have " + std::to_string(inputs.cols()) +
                        " features but the weight has " + std::to_string(weight.cols()) + " input features");
    detail::require(inputs.rows() > 0, name + ": no calibration inputs");
    detail::require_finite(inputs, name + ".inputs");
    if (fp_inputs) {
      detail::require(fp_inputs->rows() == inputs.rows() && fp_inputs->cols() == inputs.cols(),
                      name + ": full-precision inputs must have the shape of the quantized-layer inputs");
      detail::require_finite(*fp_inputs, name + ".fp_inputs");
    }
    const Index seqlen = options_.seqlen > 0 ? options_.seqlen : inputs.rows();
    detail::require(inputs.rows() % seqlen == 0,
                    name + ": " + std::to_string(inputs.rows()) + " input rows are not a whole number of samples of seqlen = " +
                        std::to_string(seqlen));
    if (options_.iters == 0) return state.encode();  // RTN

    const Index nsamples = inputs.rows() / seqlen;
    const Index batch_samples = std::min(options_.batch_size, nsamples);
    const Index batch_rows = batch_samples * seqlen;
    const Index rows = weight.rows(), cols = weight.cols();
    IndexSampler sampler(nsamples, batch_samples, options_.seed);

    RowMatrix batch(batch_rows, cols), fp_batch(fp_inputs ? batch_rows : 0, cols);
    RowMatrix qweight(rows, cols), grad(rows, cols), diff(batch_rows, rows), fp_out(fp_inputs ? batch_rows : 0, rows);
    std::vector<float> grad_min, grad_max;
    auto rounding_state = optimizer_.make_state(state.rounding.size());
    auto min_state = optimizer_.make_state(state.min_scale.size());
    auto max_state = optimizer_.make_state(state.max_scale.size());
    const int bits = quantizer_.bits();
    const float lr = options_.rounding_lr(bits), minmax_lr = options_.clipping_lr(bits);

    TuningStats stats;
    double best = std::numeric_limits<double>::max();
    std::vector<float> best_rounding = state.rounding, best_min = state.min_scale, best_max = state.max_scale;
    const auto snapshot = [&] {
      best_rounding = state.rounding;
      best_min = state.min_scale;
      best_max = state.max_scale;
    };
    for (int step = 0; step < options_.iters; ++step) {
      const auto samples = sampler.next_batch();
      gather(inputs, samples, seqlen, batch);
      state.forward(backend_, mutable_view(qweight));
      if (fp_inputs) {  // diff = batch Wq^T - fp_batch W^T
        gather(*fp_inputs, samples, seqlen, fp_batch);
        backend_.matmul_nt(view(batch), view(qweight), mutable_view(diff));
        backend_.matmul_nt(view(fp_batch), weight, mutable_view(fp_out));
        diff -= fp_out;
      } else {  // same inputs: diff = batch (Wq - W)^T, one GEMM and no cancellation of large outputs
        qweight -= weight;
        backend_.matmul_nt(view(batch), view(qweight), mutable_view(diff));
      }
      const double loss = static_cast<double>(diff.squaredNorm()) / static_cast<double>(diff.size());
      if (step == 0) stats.rtn_loss = loss;
      stats.steps_run = step + 1;
      if (loss < best) {
        best = loss;
        stats.best_step = step;
        if (options_.use_best) snapshot();
      }
      if (!options_.use_best && step == options_.iters - 1)  // reference: parameters before the last update
        snapshot();
      if (options_.use_best && options_.dynamic_max_gap > 0 && step - stats.best_step >= options_.dynamic_max_gap) break;

      diff *= static_cast<float>(2.0 / static_cast<double>(diff.size()));  // d mean(diff^2) / d diff
      backend_.matmul_tn(view(diff), view(batch), mutable_view(grad));                            // dL/dWq = diff^T batch
      state.backward(backend_, mutable_view(grad), grad_min, grad_max);                // grad now holds dL/dv
      const float factor = optimizer_.rate_factor(step, options_.iters);
      optimizer_.update(state.rounding, std::span<const float>(grad.data(), static_cast<std::size_t>(grad.size())),
                        lr * factor, rounding_state);
      if (options_.enable_minmax_tuning) {
        optimizer_.update(state.min_scale, grad_min, minmax_lr * factor, min_state);
        optimizer_.update(state.max_scale, grad_max, minmax_lr * factor, max_state);
      }
    }
    stats.best_loss = best;
    state.rounding = std::move(best_rounding);
    state.min_scale = std::move(best_min);
    state.max_scale = std::move(best_max);
    QuantizedWeight<Q> result = state.encode();
    stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.stats = stats;
    return result;
  }

  // Copy the chosen samples (seqlen consecutive rows each) into one contiguous batch.
  static void gather(MatrixView inputs, std::span<const Index> samples, Index seqlen, RowMatrix& batch) {
    for (std::size_t i = 0; i < samples.size(); ++i)
      batch.middleRows(static_cast<Index>(i) * seqlen, seqlen) = inputs.middleRows(samples[i] * seqlen, seqlen);
  }

  TuneOptions options_;
  Q quantizer_;
  O optimizer_;
  B backend_;
};

/// Plain round-to-nearest with the reference's formulas (AutoRound with iters = 0).
template <Quantizer Q>
QuantizedWeight<Q> quantize_rtn(const Q& quantizer, MatrixView weight, const std::string& name = "weight") {
  TunableWeight<Q> state(quantizer, weight, name);
  return state.encode();
}

/// Mean squared difference between the outputs of the full-precision and the quantized layer.
template <Quantizer Q>
double output_mse(MatrixView weight, const QuantizedWeight<Q>& quantized, MatrixView inputs) {
  const RowMatrix delta = quantized.dequantize() - weight;
  const RowMatrix diff = inputs * delta.transpose();
  return static_cast<double>(diff.squaredNorm()) / static_cast<double>(diff.size());
}

}  // namespace autoround
