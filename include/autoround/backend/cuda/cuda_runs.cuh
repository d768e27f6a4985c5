#pragma once
// The CUDA backend as a policy of the shared tuning templates: LayerTuningRun and BlockTuningRun
// with B = Cuda (and O = SignSGD<LinearDecay>, the reference's optimizer) are these partial
// specializations, with the host runs' constructors and members (step, running, stats, result,
// evaluate), so LayerTuner<Q, SignSGD<>, Cuda> and quantize_model<SignSGD<>, Cuda> run
// unchanged on the GPU. The work is done by cuda::LayerTuningRun and cuda::BlockTuningRun.
// Include from a translation unit compiled by nvcc.
#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../../tune/block_tuning_run.hpp"
#include "../../tune/layer_tuning_run.hpp"
#include "../../tune/model_quantizer.hpp"
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
  BlockTuningRun(const TuneOptions& options, const LayerQuantizers& quantizers, const SignSGD<LinearDecay>&, const Cuda& backend,
                 const LlamaBlock& block, const LlamaConfig& config, const cuda::DeviceCalibration& calibration, const std::string& name)
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

namespace detail {

/// Device memory quantize_model's per-block run needs besides the streams (an estimate, on the
/// high side): the block's weights with their tuning state (about 6 floats per weight), and one
/// minibatch's activations and gradients, the largest the attention probabilities and their
/// gradient (float32 and bf16 each). Llama-3-8B at 8 × 2048: ~30 GB (measured ~22 GB).
inline std::size_t block_run_bytes(const LlamaConfig& c, long batch, long seqlen) {
  const auto weights = static_cast<std::size_t>(c.hidden) *
                       static_cast<std::size_t>(2 * c.heads * c.head_dim + 2 * c.kv_heads * c.head_dim + 3 * c.intermediate);
  const auto rows = static_cast<std::size_t>(batch * seqlen);
  const auto scores = static_cast<std::size_t>(batch * c.heads) * static_cast<std::size_t>(seqlen * seqlen);
  return weights * 6 * sizeof(float) + rows * static_cast<std::size_t>(12 * c.hidden + 8 * c.intermediate + 6 * c.heads * c.head_dim) * sizeof(float) +
         scores * 2 * (sizeof(float) + 2);
}

/// quantize_model's block loop with the Cuda policy. The activation streams stay in device
/// memory from block to block (StreamPlacement::Device, or Auto when they fit): each block's
/// run reads them in place, its computed targets become the next full-precision stream
/// (take_targets) and its forward with the kept parameters the next quantized stream
/// (forward_quantized), so nothing crosses the bus but the block's weights. Device memory:
/// the streams (float32), while a block runs three sets at most (both streams and the new one),
/// and the run itself. StreamPlacement::Host (or Auto when that does not fit at the first
/// block): HostBlockByBlock, streams on the host, uploaded per block. Both give the same
/// results (tests/cuda/test_cuda_block_run.cpp).
template <WeightQuantizer Q>
class BlockByBlock<Q, SignSGD<LinearDecay>, Cuda> {
 public:
  BlockByBlock(std::vector<RowMatrix> fp, std::span<const TokenSequence> samples, const ModelQuantOptions& options,
               SignSGD<LinearDecay>, Cuda backend)
      : options_(options), backend_(backend), samples_(samples), pending_(std::move(fp)) {
    if (backend.streams == StreamPlacement::Host) place(false);
    else if (backend.streams == StreamPlacement::Device) place(true);
    // Auto: decided at the first block, whose shape says how much the run needs
  }

  /// Where the streams live: true on the device (known once the first block has run, for Auto).
  bool streams_on_device() const { return placed_ && !host_.has_value(); }

  LayerResults<Q> run(LlamaBlock& block, const LlamaConfig& config, Index b, Index blocks, const BlockProgress& on_block,
                      const StepProgress& on_step) {
    if (!placed_) {
      const std::size_t stream_bytes = pending_.size() * static_cast<std::size_t>(pending_.empty() ? 0 : pending_[0].size()) * sizeof(float);
      std::size_t free = 0, total = 0;
      cuda::check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
      // while a block runs: three stream sets (both streams and the new one) and the run itself
      const std::size_t need = 3 * stream_bytes + block_run_bytes(config, std::min<long>(options_.tune.batch_size, count()), sequence_length()) +
                               (std::size_t{1} << 30);
      place(need <= free);
    }
    if (host_) return host_->run(block, config, b, blocks, on_block, on_step);
    const auto start = std::chrono::steady_clock::now();
    BlockReport report;
    const auto quantizers = block_quantizers<Q>(options_, block, b, report);
    cuda::DeviceCalibration calibration{fp_.data(), nullptr, count(), seqlen_, masks_, &random_};
    if (options_.streams == ActivationStreams::Two) calibration.inputs = quantized_.data(), calibration.target_inputs = fp_.data();
    LayerResults<Q> results;
    {
      const auto setup = std::chrono::steady_clock::now();
      BlockTuningRun<Q, SignSGD<LinearDecay>, Cuda> run(options_.tune, quantizers, SignSGD<LinearDecay>{}, backend_, block, config,
                                                        calibration, "model.layers." + std::to_string(b));
      report.setup_seconds = seconds_since(setup);
      results = tune_block(run, options_, b, on_step, report);
      switch (options_.streams) {
        case ActivationStreams::Two:  // targets: the fp block on the fp stream; the quantized block on the quantized stream
          fp_ = run.take_targets();
          quantized_ = run.forward_quantized();
          break;
        case ActivationStreams::FullPrecision: fp_ = run.take_targets(); break;
        case ActivationStreams::Quantized: fp_ = run.forward_quantized(); break;
      }
    }
    dequantize_into(block, results);
    report.seconds = seconds_since(start);
    if (on_block) on_block(report, blocks);
    return results;
  }

 private:
  long count() const { return static_cast<long>(samples_.size()); }
  long sequence_length() const { return pending_.empty() ? seqlen_ : static_cast<long>(pending_[0].rows()); }

  void place(bool on_device) {
    placed_ = true;
    if (!on_device) {
      host_.emplace(std::move(pending_), samples_, options_, SignSGD<LinearDecay>{}, backend_);
      return;
    }
    seqlen_ = sequence_length();
    const long floats = pending_.empty() ? 0 : static_cast<long>(pending_[0].size());
    masks_ = options_.mask_loss ? loss_masks(samples_, options_.pad_token) : std::vector<LossMask>{};
    fp_ = cuda::DeviceBuffer<float>(pending_.size() * static_cast<std::size_t>(floats));
    for (std::size_t s = 0; s < pending_.size(); ++s) {  // released sample by sample as it goes up
      cuda::check(cudaMemcpy(fp_.data() + static_cast<long>(s) * floats, pending_[s].data(),
                             static_cast<std::size_t>(floats) * sizeof(float), cudaMemcpyHostToDevice),
                  "copy the calibration samples to the device");
      pending_[s] = RowMatrix();
    }
    pending_.clear();
    if (options_.streams == ActivationStreams::Two) {
      quantized_ = cuda::DeviceBuffer<float>(fp_.size());
      cuda::check(cudaMemcpy(quantized_.data(), fp_.data(), fp_.size() * sizeof(float), cudaMemcpyDeviceToDevice), "copy the stream");
    }
  }

  const ModelQuantOptions& options_;
  Cuda backend_;
  std::span<const TokenSequence> samples_;  // quantize_model's, alive for the whole loop
  std::vector<RowMatrix> pending_;          // the embedded samples until placed
  bool placed_ = false;
  std::optional<HostBlockByBlock<Q, SignSGD<LinearDecay>, Cuda>> host_;
  long seqlen_ = 0;
  cuda::DeviceBuffer<float> fp_, quantized_;  // the full-precision and the quantized stream, sample after sample
  std::vector<LossMask> masks_;
  PythonRandom random_{options_.tune.seed};  // the minibatch order continues from block to block
};

}  // namespace detail

}  // namespace autoround
