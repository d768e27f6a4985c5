#pragma once
// Layer-wise AutoRound: tune one linear layer's rounding offsets and clipping scales so that its
// quantized output reproduces the full-precision output on calibration inputs
// (sign_round/quantizer.py, quantize_layer_outside_block).
//
// LayerTuner holds the policies and options; each tune() call is one LayerTuningRun (see there
// for what a step does). A bias adds the same vector to both outputs, so it cancels in the loss
// and the tuner never needs it.
#include <algorithm>
#include <chrono>
#include <utility>
#include <string>
#include <vector>

#include "../backend/backend.hpp"
#include "../backend/cpu.hpp"
#include "../core/matrix.hpp"
#include "../optimizer/optimizer.hpp"
#include "../optimizer/sign_sgd.hpp"
#include "../quantizer/quantized_weight.hpp"
#include "../quantizer/quantizer.hpp"
#include "layer_tuning_run.hpp"
#include "tunable_weight.hpp"
#include "tune_options.hpp"

namespace autoround {

template <WeightQuantizer Q, Optimizer O = SignSGD<LinearDecay>, Backend B = Cpu>
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
    LayerTuningRun<Q, O, B> run(options_, quantizer_, optimizer_, backend_, weight, inputs, fp_inputs, name);
    while (run.running()) run.step();  // iters = 0: no step, plain round-to-nearest
    QuantizedWeight<Q> result = run.result();
    result.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
  }

  TuneOptions options_;
  Q quantizer_;
  O optimizer_;
  B backend_;
};

/// Plain round-to-nearest with the reference's formulas (AutoRound with iters = 0).
template <WeightQuantizer Q>
QuantizedWeight<Q> quantize_rtn(const Q& quantizer, MatrixView weight, const std::string& name = "weight") {
  TunableWeight<Q> state(quantizer, weight, name);
  return state.encode();
}

/// Mean squared difference between the outputs of the full-precision and the quantized layer.
template <WeightQuantizer Q>
double output_mse(MatrixView weight, const QuantizedWeight<Q>& quantized, MatrixView inputs) {
  const RowMatrix delta = quantized.dequantize() - weight;
  const RowMatrix diff = inputs * delta.transpose();
  return static_cast<double>(diff.squaredNorm()) / static_cast<double>(diff.size());
}

}  // namespace autoround
