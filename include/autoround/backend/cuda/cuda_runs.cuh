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
#include <utility>
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
      : cuda::BlockTuningRun<Q>(options, quantizers, block, config, inputs, name, backend.precision, backend.plan) {}
  BlockTuningRun(const TuneOptions& options, const LayerQuantizers& quantizers, const SignSGD<LinearDecay>&, const Cuda& backend,
                 const LlamaBlock& block, const LlamaConfig& config, const BlockCalibration& calibration, const std::string& name)
      : cuda::BlockTuningRun<Q>(options, quantizers, block, config, calibration, name, backend.precision, backend.plan) {}
  BlockTuningRun(const TuneOptions& options, const LayerQuantizers& quantizers, const SignSGD<LinearDecay>&, const Cuda& backend,
                 const LlamaBlock& block, const LlamaConfig& config, const cuda::DeviceCalibration& calibration, const std::string& name)
      : cuda::BlockTuningRun<Q>(options, quantizers, block, config, calibration, name, backend.precision, backend.plan) {}
};

/// The block's outputs replace `hidden`, computed on the GPU batch by batch.
inline void forward_block(const Cuda& backend, const LlamaBlock& block, const LlamaConfig& config, std::span<RowMatrix> hidden) {
  if (hidden.empty()) return;
  TuneOptions options;
  options.iters = 0;
  cuda::BlockTuningRun<DynamicIntQuantizer> run(options, {}, block, config, std::span<const RowMatrix>(hidden.data(), hidden.size()),
                                                "forward", backend.precision, backend.plan);
  run.download_targets(hidden);
}

namespace detail {

/// quantize_model's block loop with the Cuda policy. The two activation streams
/// (cuda::ActivationStream: float32 or bf16, Cuda::stream_dtype) live on the device when they fit
/// the memory budget beside a block's run, else in pinned host memory (Cuda::streams); each
/// block's run reads them in place, writes its full-precision targets over the fp stream (they
/// are the next block's fp inputs) and, once tuned, the quantized block's outputs over the
/// quantized stream. So the device holds two stream sets at most, nothing crosses the bus between
/// blocks but the blocks' weights (device streams), and the results do not depend on where the
/// streams live (tests/cuda/test_cuda_block_run.cpp).
///
/// The budget (Cuda::memory_budget, default: free memory less 512 MiB) is split at the first
/// block: streams (when on the device), the block's weights and tuning state
/// (BlockTuningRun::state_bytes), and the rest for the step's workspace, whose BlockMemoryPlan
/// (micro-batches, attention chunks) is the fastest that fits (BlockTuningRun::plan_for). Device
/// streams with a smaller plan are preferred over host streams with a larger one: a micro-batch
/// costs little, the bus a lot. A later block of another shape or size (dense blocks before
/// mixture-of-experts ones: DeepSeek-V3's first_k_dense_replace, Qwen's mlp_only_layers; Gemma's
/// two kinds of layer) gets the fastest plan that fits it beside the streams where they are.
template <WeightQuantizer Q>
class BlockByBlock<Q, SignSGD<LinearDecay>, Cuda> {
 public:
  using Run = cuda::BlockTuningRun<Q>;

  BlockByBlock(Embedder embed, std::span<const TokenSequence> samples, const ModelQuantOptions& options, SignSGD<LinearDecay>,
               Cuda backend)
      : options_(options), backend_(backend), samples_(samples), embed_(std::move(embed)) {}

  /// Tune block b on the device. Its quantized layers' host weights are freed as soon as the run
  /// holds them (then `released` is called); quantize_model dequantizes the results back.
  FinishedBlock<Q> run(LlamaBlock& block, const LlamaConfig& config, Index b, const StepProgress& on_step,
                       const WeightsReleased& released = {}) {
    if (!placed_) place(block, config);
    fit(block, config, b);
    const auto start = std::chrono::steady_clock::now();
    BlockReport report;
    const auto quantizers = block_quantizers<Q>(options_, block, b, report, config.model_type);  // per linear slot
    const std::vector<LinearSlot> slots = linear_slots(block);
    // Two: the quantized block on the quantized stream, the targets over the fp stream. The
    // one-stream modes: both on fp_, the targets into the run's own stream.
    const bool two = options_.streams == ActivationStreams::Two;
    cuda::DeviceCalibration calibration{two ? &quantized_ : &fp_, two ? &fp_ : nullptr, masks_, &random_};
    LayerResults<Q> results;
    {
      const auto setup = std::chrono::steady_clock::now();
      Run run(options_.tune, quantizers, block, config, calibration, "model.layers." + std::to_string(b), backend_.precision, plan_);
      report.setup_seconds = seconds_since(setup);
      for (std::size_t i = 0; i < slots.size(); ++i)
        if (quantizers[i]) slot_weight(block, slots[i]) = RowMatrix();
      if (released) released();
      auto tuned = tune_block(run, options_, b, on_step, report);
      results.assign(std::make_move_iterator(tuned.begin()), std::make_move_iterator(tuned.end()));
      switch (options_.streams) {
        case ActivationStreams::Two: run.forward_quantized(quantized_); break;  // over its own inputs
        case ActivationStreams::FullPrecision: fp_ = run.take_targets(); break;
        case ActivationStreams::Quantized: run.forward_quantized(fp_); break;
      }
    }
    report.seconds = seconds_since(start);
    return {std::move(results), report, random_.state()};
  }

  /// Block b as a run that finished it left it: its weights become the dequantized results and
  /// the streams move past it, each through a run without tuned layers (the full-precision block
  /// over the fp stream, in place, as a tuning run computes its targets; the dequantized block
  /// over the quantized stream, which equals the tuning run's forward with its kept parameters
  /// when the dequantized values are the qdq kernels' values).
  void replay(LlamaBlock& block, const LlamaConfig& config, const FinishedBlock<Q>& finished) {
    if (!placed_) place(block, config);
    fit(block, config, -1);
    TuneOptions forward_only = options_.tune;
    forward_only.iters = 0;
    forward_only.clip_init = ClipInit::Unit;
    const typename Run::LayerQuantizers none{};
    auto forward = [&](const LlamaBlock& weights, cuda::ActivationStream& stream, const cuda::ActivationStream* inputs) {
      const Run pass(forward_only, none, weights, config, cuda::DeviceCalibration{inputs, &stream, {}, nullptr}, "replay",
                     backend_.precision, plan_);
    };
    switch (options_.streams) {
      case ActivationStreams::Two:
        forward(block, fp_, &quantized_);  // the targets, over the fp stream
        dequantize_into(block, finished.results);
        forward(block, quantized_, &quantized_);
        break;
      case ActivationStreams::FullPrecision:
        forward(block, fp_, &fp_);
        dequantize_into(block, finished.results);
        break;
      case ActivationStreams::Quantized:
        dequantize_into(block, finished.results);
        forward(block, fp_, &fp_);
        break;
    }
    random_.set_state(finished.random);
  }

 private:
  long count() const { return static_cast<long>(samples_.size()); }

  // the first block's shape says what a run needs: choose the streams' place and the plan
  void place(const LlamaBlock& block, const LlamaConfig& config) {
    placed_ = true;
    const long seqlen = static_cast<long>(samples_[0].size()), values = seqlen * config.hidden;
    std::size_t budget = backend_.memory_budget;
    if (budget > 0) budget -= std::min(budget, cuda::DeviceMemory::current());  // what this process holds already
    else {
      std::size_t free = 0, total = 0;
      cuda::check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
      budget = free > (std::size_t{512} << 20) ? free - (std::size_t{512} << 20) : 0;
    }
    const long batch = std::min<long>(options_.tune.batch_size, count());
    const std::size_t streams = 2 * cuda::ActivationStream::bytes(count(), values, backend_.stream_dtype);
    const std::size_t state = Run::state_bytes(block, config, seqlen, backend_.precision, options_.spec.group_size);
    const cuda::BlockShape shape = cuda::BlockShape::of(block);  // the first block; fit() plans again for others
    const LlamaConfig layer = layer_config(config, block.sliding);  // its geometry (Gemma 4's full layers differ)
    const bool quantized_inputs = options_.spec.data_type != DataType::Int && options_.spec.act_bits <= 8;  // W4A4 / W8A8
    auto gib = [](std::size_t bytes) { return std::to_string(static_cast<double>(bytes) / static_cast<double>(1ull << 30)).substr(0, 5) + " GiB"; };
    auto plan_within = [&](std::size_t used) {
      return used < budget ? Run::plan_for(layer, batch, seqlen, backend_.precision, budget - used, quantized_inputs, shape) : std::nullopt;
    };
    std::optional<BlockMemoryPlan> plan;
    bool on_host = backend_.streams == StreamPlacement::Host;
    if (!on_host) plan = plan_within(state + streams);
    if (!plan && backend_.streams == StreamPlacement::Device)
      throw Error("--gpu-memory: " + gib(budget) + " cannot hold the activation streams on the device (" + gib(streams) +
                  ") beside a block's tuning (" + gib(state) + " of weights and tuning state and at least " +
                  gib(Run::workspace_bytes(layer, batch, seqlen, backend_.precision, {1, 1}, quantized_inputs, shape)) + " of workspace)");
    if (!plan) {
      on_host = true;
      plan = plan_within(state);
    }
    if (!plan)
      throw Error("--gpu-memory: " + gib(budget) + " cannot hold a block's tuning: " + gib(state) +
                  " of weights and tuning state and at least " + gib(Run::workspace_bytes(layer, batch, seqlen, backend_.precision, {1, 1}, quantized_inputs, shape)) +
                  " of workspace (one sample of " + std::to_string(seqlen) + " tokens, one attention head at a time)");
    plan_ = *plan;
    budget_ = budget;
    stream_bytes_ = on_host ? 0 : streams;
    quantized_inputs_ = quantized_inputs;
    planned_ = {state, shape};
    masks_ = options_.mask_loss ? loss_masks(samples_, options_.pad_token) : std::vector<LossMask>{};
    fp_ = cuda::ActivationStream(count(), values, backend_.stream_dtype, on_host);
    {
      cuda::Stream stream;
      cuda::DeviceBuffer<float> scratch(static_cast<std::size_t>(values));
      for (std::size_t s = 0; s < samples_.size(); ++s)  // embedded and uploaded a sample at a time
        fp_.upload(static_cast<long>(s), embed_(samples_[s]), scratch, stream.get());
      if (options_.streams == ActivationStreams::Two) {
        quantized_ = fp_.clone(stream.get());
        stream.synchronize();
      }
    }
  }

  // block b (-1: a replayed one) of another shape or size than the last one planned for: the
  // fastest plan that fits it beside the streams
  void fit(const LlamaBlock& block, const LlamaConfig& config, Index b) {
    const long seqlen = static_cast<long>(samples_[0].size()), batch = std::min<long>(options_.tune.batch_size, count());
    const std::size_t state = Run::state_bytes(block, config, seqlen, backend_.precision, options_.spec.group_size);
    const cuda::BlockShape shape = cuda::BlockShape::of(block);
    if (state == planned_.first && shape == planned_.second) return;
    planned_ = {state, shape};
    const std::size_t used = stream_bytes_ + state;
    const LlamaConfig layer = layer_config(config, block.sliding);  // its geometry (Gemma 4's full layers differ)
    const auto plan = used < budget_ ? Run::plan_for(layer, batch, seqlen, backend_.precision, budget_ - used, quantized_inputs_, shape)
                                     : std::nullopt;
    auto gib = [](std::size_t bytes) { return std::to_string(static_cast<double>(bytes) / static_cast<double>(1ull << 30)).substr(0, 5) + " GiB"; };
    if (!plan)
      throw Error("--gpu-memory: " + gib(budget_) + " cannot hold block " + (b >= 0 ? std::to_string(b) : std::string("(replayed)")) +
                  "'s tuning beside the streams placed for the first block (" + gib(stream_bytes_) + " on the device): " + gib(state) +
                  " of weights and tuning state and at least " +
                  gib(Run::workspace_bytes(layer, batch, seqlen, backend_.precision, {1, 1}, quantized_inputs_, shape)) + " of workspace");
    plan_ = *plan;
  }

  const ModelQuantOptions& options_;
  Cuda backend_;
  std::span<const TokenSequence> samples_;  // quantize_model's, alive for the whole loop
  Embedder embed_;                          // the fp stream's start, called sample by sample when placed
  bool placed_ = false;
  BlockMemoryPlan plan_;
  std::size_t budget_ = 0, stream_bytes_ = 0;       // the budget, and the streams' part of it (0: on the host)
  bool quantized_inputs_ = false;
  std::pair<std::size_t, cuda::BlockShape> planned_;  // the state bytes and shape plan_ was chosen for
  cuda::ActivationStream fp_, quantized_;  // the full-precision and the quantized stream
  std::vector<LossMask> masks_;
  PythonRandom random_{options_.tune.seed};  // the minibatch order continues from block to block
};

}  // namespace detail

}  // namespace autoround
