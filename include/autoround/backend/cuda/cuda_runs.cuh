#pragma once
// The CUDA backend as a policy of the shared tuning templates: LayerTuningRun and BlockTuningRun
// with B = Cuda (and O = SignSGD<LinearDecay>, the reference's optimizer) are these partial
// specializations, with the host runs' constructors and members (step, running, stats, result,
// evaluate), so LayerTuner<Q, SignSGD<>, Cuda> and quantize_model<SignSGD<>, Cuda> run
// unchanged on the GPU. The work is done by cuda::LayerTuningRun and cuda::BlockTuningRun.
// Include from a translation unit compiled by nvcc.
#include <span>
#include <string>
#include <vector>

#include "../../tune/block_tuning_run.hpp"
#include "../../tune/layer_tuning_run.hpp"
#include "../cuda.hpp"
#include "block_tuning_run.cuh"
#include "layer_tuning_run.cuh"

namespace autoround {

template <WeightQuantizer Q>
class LayerTuningRun<Q, SignSGD<LinearDecay>, Cuda> : public cuda::LayerTuningRun<Q> {
 public:
  LayerTuningRun(const TuneOptions& options, const Q& quantizer, const SignSGD<LinearDecay>&, const Cuda& backend, MatrixView weight,
                 MatrixView inputs, const MatrixView* fp_inputs, const std::string& name)
      : cuda::LayerTuningRun<Q>(options, quantizer, weight, inputs, fp_inputs, name, backend.precision) {}
};

template <WeightQuantizer Q>
class BlockTuningRun<Q, SignSGD<LinearDecay>, Cuda> : public cuda::BlockTuningRun<Q> {
 public:
  using LayerQuantizers = typename cuda::BlockTuningRun<Q>::LayerQuantizers;
  using LayerResults = typename cuda::BlockTuningRun<Q>::LayerResults;

  BlockTuningRun(const TuneOptions& options, const LayerQuantizers& quantizers, const SignSGD<LinearDecay>&, const Cuda& backend,
                 const LlamaBlock& block, const LlamaConfig& config, std::span<const RowMatrix> inputs, const std::string& name)
      : cuda::BlockTuningRun<Q>(options, quantizers, block, config, inputs, name, backend.precision) {}
  BlockTuningRun(const TuneOptions& options, const LayerQuantizers& quantizers, const SignSGD<LinearDecay>&, const Cuda& backend,
                 const LlamaBlock& block, const LlamaConfig& config, const BlockCalibration& calibration, const std::string& name)
      : cuda::BlockTuningRun<Q>(options, quantizers, block, config, calibration, name, backend.precision) {}
};

/// The block's outputs replace `hidden` (the quantized block feeding the next, in
/// quantize_model), computed on the GPU batch by batch.
inline void forward_block(const Cuda& backend, const LlamaBlock& block, const LlamaConfig& config, std::span<RowMatrix> hidden) {
  if (hidden.empty()) return;
  TuneOptions options;
  options.iters = 0;
  const cuda::BlockTuningRun<DynamicIntQuantizer> run(options, {}, block, config, std::span<const RowMatrix>(hidden.data(), hidden.size()),
                                                      "forward", backend.precision);
  run.download_targets(hidden);
}

}  // namespace autoround
