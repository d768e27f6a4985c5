#pragma once
// Block-wise AutoRound (sign_round/quantizer.py, quantize_block): tune the rounding offsets and
// clipping scales of all quantized linear layers of one transformer block together, so the
// quantized block reproduces the full-precision block's output on the calibration samples.
//
// step(): draw batch_size samples, fake-quantize every tuned layer, run the block forward on
// the samples' inputs (the quantized stream) stacked as one batch (every linear layer one GEMM
// over all the minibatch's rows; attention per sequence), loss = mean((mask · (block_q(x_q) − target))²)
// over the batch (target: the full-precision block on the full-precision stream, see
// block_calibration.hpp; the mean divides by every position, masked or not, as the
// reference's; with TuneOptions::outlier_fraction, the minibatch's largest errors are left out
// first, tune/outlier_loss.hpp), backward (of loss_scale × loss, as the reference) through the
// block to every tuned weight, straight-through backward to v / min_scale / max_scale, one
// optimizer step per layer (each with the learning rate for its own bit width). The parameters
// of the lowest-loss step are kept.
//
// The layers are the block's linear slots (model/linear_slots.hpp). A mixture-of-experts block
// tunes its attention's four and every expert's three together in the one block loss, as the
// reference does: routing is live (recomputed every forward from the fake-quantized attention's
// output, router in full precision), each expert runs on, and gets its gradient from, the tokens
// routed to it in that step; an expert no token reaches in a step gets a zero gradient, which
// SignSGD leaves where it is (the reference skips parameters without a gradient), so an expert
// never reached keeps its start. expert_tokens() counts each expert's tokens over the steps.
#include <array>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../backend/backend.hpp"
#include "../model/linear_slots.hpp"
#include "../model/llama_block.hpp"
#include "../optimizer/optimizer.hpp"
#include "../quantizer/quantized_weight.hpp"
#include "../quantizer/quantizer.hpp"
#include "best_step.hpp"
#include "block_calibration.hpp"
#include "clip_search.hpp"
#include "index_sampler.hpp"
#include "outlier_loss.hpp"
#include "tunable_weight.hpp"
#include "tune_options.hpp"

namespace autoround {

template <WeightQuantizer Q, Optimizer O, Backend B>
class BlockTuningRun {
 public:
  static_assert(HostBackend<B>, "a device backend (Cuda) runs its own specialization of this template: include "
                                "autoround/backend/cuda/cuda_runs.cuh from a file nvcc compiles (SignSGD<LinearDecay> only)");
  /// Per slot of the block (linear_slots(block)); nullopt: the layer stays in full precision.
  using LayerQuantizers = std::vector<std::optional<Q>>;
  using LayerResults = std::vector<std::optional<QuantizedWeight<Q>>>;

  /// `inputs`: one [seqlen, hidden] matrix per calibration sample (what this block receives);
  /// the targets are the full-precision block's outputs on those same inputs. `block` and
  /// `inputs` must outlive the run.
  BlockTuningRun(const TuneOptions& options, const LayerQuantizers& quantizers, const O& optimizer, const B& backend,
                 const LlamaBlock& block, const LlamaConfig& config, std::span<const RowMatrix> inputs,
                 const std::string& name)
      : BlockTuningRun(options, quantizers, optimizer, backend, block, config, BlockCalibration{inputs}, name) {}

  /// Inputs, targets (the two streams) and loss masks as `calibration` says (all must outlive the run).
  BlockTuningRun(const TuneOptions& options, const LayerQuantizers& quantizers, const O& optimizer, const B& backend,
                 const LlamaBlock& block, const LlamaConfig& config, const BlockCalibration& calibration,
                 const std::string& name)
      : options_(options), optimizer_(optimizer), backend_(backend), block_(block), config_(config), slots_(linear_slots(block)),
        inputs_(calibration.inputs), masks_(calibration.masks), side_(calibration.side),
        sampler_(make_sampler(options, calibration)),
        tracker_(options) {
    detail::check_block_calibration(calibration, config.hidden, name);
    detail::require(quantizers.size() == slots_.size(), name + ": " + std::to_string(quantizers.size()) + " quantizers for " +
                                                            std::to_string(slots_.size()) + " linear layers (linear_slots)");
    if (block.moe) {  // the experts the forward computes with: fake-quantized in place, the others as they are
      moe_ = *block.moe;
      expert_grads_.resize(moe_->weights.experts.size() + (moe_->weights.shared ? 1 : 0));
      expert_tokens_.assign(moe_->weights.experts.size(), 0);
    }
    if (calibration.targets.empty()) {
      own_targets_.assign(inputs_.begin(), inputs_.end());
      if (side_.empty()) block_forward(BlockWeights::of(block), config, std::span<RowMatrix>(own_targets_), options.batch_size);
      else block_forward(BlockWeights::of(block), config, std::span<RowMatrix>(own_targets_), side_, {});
      targets_ = own_targets_;
    } else {
      targets_ = calibration.targets;
    }
    // the clipping search is for integer grids: floating-point formats start at max_scale = 1, as the reference
    constexpr bool float_codes = FloatCodeQuantizer<Q>;
    const bool search = options.clip_init == ClipInit::WeightedSearch && !float_codes;
    bool measure_inputs = false;  // NVFP4 and FP8_STATIC checkpoints store each layer's input scale
    if constexpr (float_codes)
      for (const auto& q : quantizers) measure_inputs = measure_inputs || (q && q->static_input_scale());
    InputImportance importance;
    if (search || measure_inputs) importance = input_importance(block, config, inputs_, measure_inputs ? &input_absmax_ : nullptr, side_);
    if constexpr (float_codes) {  // W4A4 / W8A8 schemes: the layers' inputs are quantized in the tuned forward, as the reference's
      InputMaxima maxima;
      const std::size_t routed = block.moe ? block.moe->weights.experts.size() : 0;
      if (block.moe) maxima.experts(routed + (block.moe->weights.shared ? 1 : 0));
      for (std::size_t i = 0; i < slots_.size(); ++i)
        if (quantizers[i]) add_slot_maxima(maxima, quantizers[i]->spec(), slots_[i], routed, i < input_absmax_.size() ? input_absmax_[i] : 0.0f);
      act_ = maxima.activation_quant();
    }
    layers_.resize(slots_.size());
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (!quantizers[i]) continue;
      const RowMatrix& weight = slot_weight(block, slots_[i]);
      Layer layer(TunableWeight<Q>(*quantizers[i], view(weight), name + "." + hf_name(slots_[i], config.model_type)));
      if constexpr (!float_codes) {
        if (search && scale_grid_searched(*quantizers[i], options.clip_search))
          layer.tunable.set_ceiling(options.clip_search.ceiling);
        if (search)
          search_clip_scales(*quantizers[i], view(weight), importance[i],
                             [&](Index n, auto&& f) { backend_.parallel_for(n, f); }, layer.tunable.min_scale,
                             layer.tunable.max_scale, options.clip_search);
      }
      if (!slots_[i].of_expert()) layer.qweight.resize(weight.rows(), weight.cols());
      layer.rounding_state = optimizer_.make_state(layer.tunable.rounding.size());
      layer.min_state = optimizer_.make_state(layer.tunable.min_scale.size());
      layer.max_state = optimizer_.make_state(layer.tunable.max_scale.size());
      layer.lr = options.rounding_lr(quantizers[i]->bits());
      layer.minmax_lr = options.clipping_lr(quantizers[i]->bits());
      layers_[i].emplace(std::move(layer));
    }
    snapshot();
  }

  double step() {
    const int step = tracker_.next_step();
    const auto samples = sampler_.next_batch();
    BlockWeights weights = quantized_weights();
    std::array<RowMatrix, 7>& grads = grads_;
    for (Linear l : all_linears) grads[static_cast<std::size_t>(l)].setZero(block_[l].rows(), block_[l].cols());
    if (block_.mla) query_a_grad_.setZero(block_.mla->query_a.rows(), block_.mla->query_a.cols());
    if (block_.per_layer) {
      per_layer_grads_[0].setZero(block_.per_layer->gate.rows(), block_.per_layer->gate.cols());
      per_layer_grads_[1].setZero(block_.per_layer->projection.rows(), block_.per_layer->projection.cols());
    }
    BlockSideInputs side;  // the minibatch's per-layer inputs and donor keys, stacked as its samples (Gemma 4 E2B / E4B)
    if (!side_.empty()) side = stack_side_inputs(samples, side_), weights.side = &side;
    if (moe_)
      for (std::size_t i = 0; i < slots_.size(); ++i)
        if (slots_[i].of_expert()) {
          const RowMatrix& w = slot_weight(block_, slots_[i]);
          gradient(i).setZero(w.rows(), w.cols());
        }
    const Index seqlen = inputs_[0].rows();
    const double count = static_cast<double>(samples.size()) * static_cast<double>(inputs_[0].size());
    // the minibatch as one stack of sequences: each linear layer runs once over all its rows
    RowMatrix out = stack(samples, inputs_);
    block_forward(weights, config_, out, &cache_, seqlen);
    for (std::size_t i = 0; i < samples.size(); ++i) {
      auto diff = out.middleRows(static_cast<Index>(i) * seqlen, seqlen);
      diff -= targets_[static_cast<std::size_t>(samples[i])];
      apply_mask(samples[i], diff);
    }
    if (options_.outlier_fraction > 0.0)  // the whole minibatch's largest errors, as the reference
      drop_largest_errors(std::span<float>(out.data(), static_cast<std::size_t>(out.size())), options_.outlier_fraction, outlier_scratch_);
    double loss = 0;
    for (std::size_t i = 0; i < samples.size(); ++i)
      loss += static_cast<double>(out.middleRows(static_cast<Index>(i) * seqlen, seqlen).squaredNorm());
    out *= static_cast<float>(options_.loss_scale * 2.0 / count);  // d (loss_scale · mean(diff^2)) / d out
    if (moe_) {
      block_backward(weights, config_, cache_, out, grads, expert_grads_, &scratch_, &query_a_grad_);
      for (std::size_t e = 0; e < expert_tokens_.size(); ++e) expert_tokens_[e] += cache_.moe.tokens[e];
    } else {
      block_backward(weights, config_, cache_, out, grads, &scratch_, &query_a_grad_, &per_layer_grads_);
    }
    loss /= count;
    if (tracker_.record(loss, detail::unmasked_positions(masks_, samples))) snapshot();

    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (!layers_[i]) continue;
      Layer& layer = *layers_[i];
      RowMatrix& g = gradient(i);
      layer.tunable.backward(backend_, mutable_view(g), layer.grad_min, layer.grad_max);
      optimizer_.update(layer.tunable.rounding, std::span<const float>(g.data(), static_cast<std::size_t>(g.size())),
                        optimizer_.rate(layer.lr, step, options_.iters), layer.rounding_state);
      if (options_.enable_minmax_tuning) {
        optimizer_.update(layer.tunable.min_scale, layer.grad_min, optimizer_.rate(layer.minmax_lr, step, options_.iters), layer.min_state);
        optimizer_.update(layer.tunable.max_scale, layer.grad_max, optimizer_.rate(layer.minmax_lr, step, options_.iters), layer.max_state);
      }
    }
    return loss;
  }

  /// Loss over every calibration sample under the current parameters (no update): the block
  /// error a round-to-nearest run (iters = 0) reports.
  double evaluate() {
    BlockWeights weights = quantized_weights();
    const Index seqlen = inputs_[0].rows(), batch = std::max<Index>(options_.batch_size, 1);
    double loss = 0;
    std::vector<Index> chunk;
    for (Index first = 0; first < static_cast<Index>(inputs_.size()); first += batch) {
      chunk.clear();
      for (Index s = first; s < std::min<Index>(first + batch, static_cast<Index>(inputs_.size())); ++s) chunk.push_back(s);
      RowMatrix out = stack(chunk, inputs_);
      BlockSideInputs side;
      if (!side_.empty()) side = stack_side_inputs(chunk, side_), weights.side = &side;
      block_forward(weights, config_, out, nullptr, seqlen);
      for (std::size_t i = 0; i < chunk.size(); ++i) {
        auto diff = out.middleRows(static_cast<Index>(i) * seqlen, seqlen);
        diff -= targets_[static_cast<std::size_t>(chunk[i])];
        apply_mask(chunk[i], diff);
        loss += static_cast<double>(diff.squaredNorm());
      }
    }
    return loss / (static_cast<double>(inputs_.size()) * static_cast<double>(inputs_[0].size()));
  }

  bool running() const { return tracker_.running(); }

  const TuningStats& stats() const { return tracker_.stats(); }

  /// The block's linear slots, in the order of the quantizers and the results.
  const std::vector<LinearSlot>& slots() const { return slots_; }

  /// A mixture-of-experts block: per routed expert, the tokens routed to it summed over the steps
  /// run (0: never reached, left at its start); empty for a dense block.
  const std::vector<Index>& expert_tokens() const { return expert_tokens_; }

  /// Encode every tuned layer with the kept (best) parameters.
  LayerResults result() {
    LayerResults results(layers_.size());
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      if (!layers_[i]) continue;
      Layer& layer = *layers_[i];
      layer.tunable.rounding = layer.best_rounding;
      layer.tunable.min_scale = layer.best_min;
      layer.tunable.max_scale = layer.best_max;
      results[i] = layer.tunable.encode();
      results[i]->stats = tracker_.stats();
      if (i < input_absmax_.size()) results[i]->input_absmax = input_absmax_[i];
    }
    return results;
  }

 private:
  struct Layer {
    explicit Layer(TunableWeight<Q> t) : tunable(std::move(t)) {}
    TunableWeight<Q> tunable;
    RowMatrix qweight;
    std::vector<float> grad_min, grad_max;
    typename O::State rounding_state, min_state, max_state;
    float lr = 0, minmax_lr = 0;
    std::vector<float> best_rounding, best_min, best_max;
  };

  // Fake-quantize every tuned layer under the current parameters; the others stay as they are.
  BlockWeights quantized_weights() {
    BlockWeights weights = BlockWeights::of(block_);
    if (act_) weights.act = &*act_;
    if (moe_) weights.moe = &*moe_;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      if (!layers_[i]) continue;
      if (slots_[i].of_expert()) {  // into the experts' working copy
        layers_[i]->tunable.forward(backend_, mutable_view(expert_weight(*moe_, slots_[i])));
        continue;
      }
      layers_[i]->tunable.forward(backend_, mutable_view(layers_[i]->qweight));
      if (slots_[i].expert == LinearSlot::latent) weights.query_a = &layers_[i]->qweight;
      else if (slots_[i].expert == LinearSlot::per_layer)
        (slots_[i].role == Linear::Gate ? weights.per_layer_gate : weights.per_layer_projection) = &layers_[i]->qweight;
      else weights.linear[static_cast<std::size_t>(slots_[i].role)] = &layers_[i]->qweight;
    }
    return weights;
  }

  // slot i's weight gradient of the current step
  RowMatrix& gradient(std::size_t i) {
    const LinearSlot& s = slots_[i];
    if (s.expert == LinearSlot::own) return grads_[static_cast<std::size_t>(s.role)];
    if (s.expert == LinearSlot::latent) return query_a_grad_;
    if (s.expert == LinearSlot::per_layer) return per_layer_grads_[s.role == Linear::Gate ? 0 : 1];
    auto& triple = s.expert == LinearSlot::shared ? expert_grads_.back() : expert_grads_[static_cast<std::size_t>(s.expert)];
    return triple[projection_index(s.role)];
  }

  static IndexSampler make_sampler(const TuneOptions& options, const BlockCalibration& c) {
    const auto n = static_cast<Index>(c.inputs.size());
    const Index batch = std::min<Index>(options.batch_size, n);
    return c.random ? IndexSampler(n, batch, *c.random) : IndexSampler(n, batch, options.seed);
  }

  // The samples' matrices one under another ([samples · seqlen, hidden]).
  static RowMatrix stack(std::span<const Index> samples, std::span<const RowMatrix> from) {
    const Index seqlen = from[0].rows();
    RowMatrix out(static_cast<Index>(samples.size()) * seqlen, from[0].cols());
    for (std::size_t i = 0; i < samples.size(); ++i)
      out.middleRows(static_cast<Index>(i) * seqlen, seqlen) = from[static_cast<std::size_t>(samples[i])];
    return out;
  }

  // Zero the masked positions (rows) of one sample's output difference.
  template <class Rows>
  void apply_mask(Index sample, Rows&& diff) const {
    if (masks_.empty()) return;
    const LossMask& mask = masks_[static_cast<std::size_t>(sample)];
    for (Index t = 0; t < diff.rows(); ++t)
      if (mask[static_cast<std::size_t>(t)] == 0.0f) diff.row(t).setZero();
  }

  void snapshot() {
    for (auto& layer : layers_)
      if (layer) {
        layer->best_rounding = layer->tunable.rounding;
        layer->best_min = layer->tunable.min_scale;
        layer->best_max = layer->tunable.max_scale;
      }
  }

  TuneOptions options_;
  O optimizer_;
  B backend_;
  const LlamaBlock& block_;
  LlamaConfig config_;
  std::vector<LinearSlot> slots_;
  std::optional<MoeFeedForward> moe_;  // a mixture-of-experts block's experts as the forward computes with them
  std::span<const RowMatrix> inputs_, targets_;
  std::span<const LossMask> masks_;
  std::span<const BlockSideInputs> side_;  // per sample (Gemma 4 E2B / E4B); empty: none
  std::vector<RowMatrix> own_targets_;  // when the caller gives none
  IndexSampler sampler_;
  std::vector<std::optional<Layer>> layers_;  // per slot
  // a step's intermediates and gradients, kept for their memory from step to step
  BlockCache cache_;
  BlockBackwardScratch scratch_;
  std::vector<float> outlier_scratch_;  // drop_largest_errors' magnitudes
  std::array<RowMatrix, 7> grads_;                       // the block's own layers'
  RowMatrix query_a_grad_;                               // a latent attention's q_a_proj
  std::array<RowMatrix, 2> per_layer_grads_;             // the per-layer branch's gate and projection
  std::vector<std::array<RowMatrix, 3>> expert_grads_;  // per routed expert (the shared one last): gate, up, down
  std::vector<Index> expert_tokens_;
  std::vector<float> input_absmax_;  // per slot, where measured (NVFP4)
  std::optional<ActivationQuant> act_;  // the tuned forward's activation quantization (W4A4 schemes)
  BestStepTracker tracker_;
};

/// Replace each sample by the block's output on it (the quantized block feeding the next, in
/// quantize_model). Device backends overload this.
template <HostBackend B>
void forward_block(const B&, const LlamaBlock& block, const LlamaConfig& config, std::span<RowMatrix> hidden) {
  block_forward(BlockWeights::of(block), config, hidden);
}
/// As above, each sample with its side inputs (Gemma 4 E2B / E4B), a donor's keys and values kept in `donate`.
template <HostBackend B>
void forward_block(const B&, const LlamaBlock& block, const LlamaConfig& config, std::span<RowMatrix> hidden,
                   std::span<const BlockSideInputs> side, std::span<BlockSideInputs> donate) {
  block_forward(BlockWeights::of(block), config, hidden, side, donate);
}

}  // namespace autoround
