#pragma once
// Whole-model AutoRound for LLaMA-family decoders, block by block, as the reference runs it
// (compressors/orchestrator.py, algorithms/composer.py `compress_block`):
//   1. the calibration samples (calibration_samples / consecutive_windows) are embedded; this
//      starts two activation streams, the full-precision one (the unquantized model's own
//      activations) and the quantized one (what the already quantized blocks compute);
//   2. for each block: the targets are the full-precision block on the fp stream (they become
//      the next block's fp inputs); its linear layers are tuned together on the quantized stream
//      (BlockTuningRun, loss masked as loss_masks says) or rounded (iters = 0); the block's
//      weights are replaced by their dequantized values and the quantized stream goes through
//      the quantized block.
// Memory: two activation sets (nsamples × seqlen × hidden floats each) on the host, as the
// reference holds them (it frees a block's fp inputs once their targets exist; we compute the
// targets in place); with the Cuda policy on the device when they fit (StreamPlacement).
// ActivationStreams selects the reference's other mode and our old one.
// Embeddings, norms and the LM head stay in full precision, as do layers whose shape is not a
// multiple of 32 (the reference's rule), and a mixture of experts' router and shared-expert gate.
// A block's layers are its linear slots (model/linear_slots.hpp): the seven of a dense block, or
// the attention's four and every expert's three (tuned together, on the CPU or with the Cuda policy).
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <functional>
#include <future>
#include <optional>
#include <map>
#include <regex>
#include <span>
#include <string>
#include <vector>

#include "../backend/cpu.hpp"
#include "../model/calibration_samples.hpp"
#include "../model/linear_slots.hpp"
#include "../model/llama_forward.hpp"
#include "../model/per_layer_input.hpp"
#include "../model/model_source.hpp"
#include "../optimizer/sign_sgd.hpp"
#include "../quantizer/double_quantizer.hpp"
#include "../quantizer/float_quantizer.hpp"
#include "../quantizer/int_quantizer.hpp"
#include "block_tuning_run.hpp"
#include "python_random.hpp"

namespace autoround {

/// A per-layer override: layers whose name ("model.layers.3.mlp.down_proj") matches `pattern`
/// get `spec`, or stay in full precision when `spec` is empty (mixed precision).
struct LayerOverride {
  std::string pattern;
  std::optional<QuantSpec> spec;
};

/// Which activations a block is tuned on and against.
enum class ActivationStreams {
  /// The reference's default (enable_quanted_input=True): quantized block on the quantized
  /// stream against the full-precision block on the full-precision stream.
  Two,
  /// The reference's enable_quanted_input=False: both sides on the full-precision stream.
  FullPrecision,
  /// Quantized block and full-precision block both on the quantized stream (what autoround-cpp
  /// did before it carried two streams; one activation set less).
  Quantized,
};

struct ModelQuantOptions {
  QuantSpec spec{4, 128, Asymmetric};
  TuneOptions tune{};               ///< iters, lr, batch_size, seed, ...
  Index nsamples = 128;             ///< calibration samples
  Index seqlen = 2048;              ///< tokens per sample
  std::vector<LayerOverride> overrides;
  ActivationStreams streams = ActivationStreams::Two;
  bool mask_loss = true;                    ///< skip the last position and padding (loss_masks)
  std::optional<std::int32_t> pad_token;    ///< the tokenizer's pad id, if it has one
};

struct BlockReport {
  Index block = 0;
  TuningStats stats;  ///< loss of the block output: step 0 (RTN) and best
  int quantized_layers = 0;
  double seconds = 0;        ///< the whole block: setup + steps + finish
  double setup_seconds = 0;  ///< weights to the tuning state, targets, clipping search
  double steps_seconds = 0;  ///< the optimizer steps (or the RTN evaluation) and the encode
  Index experts = 0;               ///< a mixture-of-experts block: routed experts
  Index experts_unreached = 0;     ///< of them, those no calibration token reached in any step (left at their start)
  Index fewest_expert_tokens = 0;  ///< the fewest tokens (summed over the steps) any reached expert got
};

/// Called after each block, e.g. to print progress.
using BlockProgress = std::function<void(const BlockReport&, Index blocks)>;
/// Called after each tuning step: block, step, loss (for progress bars). Either callback may throw
/// to stop the run (the model is then left partly quantized; autoround does so on SIGINT).
using StepProgress = std::function<void(Index block, int step, double loss)>;

inline std::string layer_name(Index block, Linear l) { return "model.layers." + std::to_string(block) + "." + hf_name(l); }
/// A slot's full Hugging Face name ("model.layers.3.mlp.experts.7.down_proj"): what --layer patterns match.
inline std::string layer_name(Index block, const LinearSlot& s, const std::string& model_type = {}) {
  return "model.layers." + std::to_string(block) + "." + hf_name(s, model_type);
}

/// The quantizer a layer gets, or nullopt to leave it in full precision. `Q` is constructed from
/// the layer's QuantSpec: DynamicIntQuantizer, or DynamicDoubleQuantizer for GGUF k-quant schemes.
inline std::optional<QuantSpec> spec_for(const ModelQuantOptions& options, const std::string& name, Index rows, Index cols) {
  std::optional<QuantSpec> spec = options.spec;
  for (const LayerOverride& o : options.overrides)
    if (std::regex_search(name, std::regex(o.pattern))) spec = o.spec;
  if (!spec || rows % 32 != 0 || cols % 32 != 0) return std::nullopt;
  return spec;
}
template <WeightQuantizer Q = DynamicIntQuantizer>
std::optional<Q> quantizer_for(const ModelQuantOptions& options, const std::string& name, Index rows, Index cols) {
  const std::optional<QuantSpec> spec = spec_for(options, name, rows, cols);
  if (!spec) return std::nullopt;
  return Q(*spec);
}
template <WeightQuantizer Q = DynamicIntQuantizer>
std::optional<Q> quantizer_for(const ModelQuantOptions& options, const std::string& name, const RowMatrix& weight) {
  return quantizer_for<Q>(options, name, weight.rows(), weight.cols());
}

/// Per block, per linear slot (linear_slots(block): for a dense block slot i is Linear i): the
/// quantized weights, or nullopt where a layer stayed in full precision.
template <WeightQuantizer Q = DynamicIntQuantizer>
using LayerResults = std::vector<std::optional<QuantizedWeight<Q>>>;

/// results[slot], or nullopt past its end (a block no run gave results for).
template <WeightQuantizer Q>
const std::optional<QuantizedWeight<Q>>& result_at(const LayerResults<Q>& results, std::size_t slot) {
  static const std::optional<QuantizedWeight<Q>> none;
  return slot < results.size() ? results[slot] : none;
}

/// What a finished block leaves: its layers' results, its report, and the sampler's random
/// state after it (the next block's minibatches continue from there).
template <WeightQuantizer Q = DynamicIntQuantizer>
struct FinishedBlock {
  LayerResults<Q> results;
  BlockReport report;
  std::array<std::uint32_t, PythonRandom::state_words> random{};
};

/// Where quantize_model_streaming keeps each finished block so that an interrupted run can
/// continue after the last one (tune/run_checkpoint.hpp's RunCheckpoint): `finished()` blocks
/// 0 .. n-1 are kept, `load(b)` gives one back, `save(b, block)` keeps one.
template <class C, class Q>
concept BlockCheckpoint = requires(const C& c, Index b, const FinishedBlock<Q>& block) {
  { c.finished() } -> std::convertible_to<Index>;
  c.save(b, block);
  { c.load(b) } -> std::same_as<FinishedBlock<Q>>;
};

/// No checkpoint: every block is tuned.
template <WeightQuantizer Q>
struct NoCheckpoint {
  Index finished() const { return 0; }
  void save(Index, const FinishedBlock<Q>&) const {}
  FinishedBlock<Q> load(Index) const { throw Error("NoCheckpoint: no block is kept"); }
};

namespace detail {

/// NVFP4's per-tensor global scales, as the reference sets them before tuning a block
/// (data_type/utils.py update_fused_layer_global_scales): each layer's from its own weight, then
/// the smallest of q/k/v, and of gate/up (per expert), shared, so that inference engines that
/// fuse those layers see one scale. Quantizers without a global scale are left alone.
template <WeightQuantizer Q>
void share_global_scales(std::vector<std::optional<Q>>& quantizers, const LlamaBlock& block, const std::vector<LinearSlot>& slots) {
  if constexpr (requires(const Q& q) { q.for_weight(MatrixView(nullptr, 0, 0)); q.with_global_scale(1.0f); }) {
    std::map<std::pair<Index, int>, float> smallest;  // (expert, 0 = q/k/v, 1 = gate/up) -> scale
    const auto fused = [](Linear l) { return l == Linear::Query || l == Linear::Key || l == Linear::Value ? 0 : l == Linear::Gate || l == Linear::Up ? 1 : -1; };
    for (std::size_t i = 0; i < slots.size(); ++i) {
      if (!quantizers[i] || !quantizers[i]->has_global_scale()) continue;
      quantizers[i] = quantizers[i]->for_weight(view(slot_weight(block, slots[i])));
      if (const int f = fused(slots[i].role); f >= 0) {
        const auto key = std::pair<Index, int>(slots[i].expert, f);
        const auto it = smallest.find(key);
        smallest[key] = it == smallest.end() ? quantizers[i]->global_scale() : std::min(it->second, quantizers[i]->global_scale());
      }
    }
    for (std::size_t i = 0; i < slots.size(); ++i)
      if (quantizers[i] && quantizers[i]->has_global_scale())
        if (const int f = fused(slots[i].role); f >= 0) quantizers[i] = quantizers[i]->with_global_scale(smallest[std::pair<Index, int>(slots[i].expert, f)]);
  }
}

/// The quantizers of block b's layers, per linear slot (quantizer_for), counted into `report`.
template <WeightQuantizer Q>
std::vector<std::optional<Q>> block_quantizers(const ModelQuantOptions& options, const LlamaBlock& block, Index b, BlockReport& report,
                                               const std::string& model_type = {}) {
  const std::vector<LinearSlot> slots = linear_slots(block);
  std::vector<std::optional<Q>> quantizers(slots.size());
  report.block = b;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    quantizers[i] = quantizer_for<Q>(options, layer_name(b, slots[i], model_type), slot_weight(block, slots[i]));
    report.quantized_layers += quantizers[i].has_value();
  }
  share_global_scales(quantizers, block, slots);
  return quantizers;
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Step a block's tuning run to the end (on_step after each step); its statistics go into
/// `report` (iters = 0: the round-to-nearest block error as both losses). Returns its results.
template <class Run>
auto tune_block(Run& run, const ModelQuantOptions& options, Index b, const StepProgress& on_step, BlockReport& report) {
  const auto start = std::chrono::steady_clock::now();
  while (run.running()) {
    const double loss = run.step();
    if (on_step) on_step(b, run.stats().steps_run - 1, loss);
  }
  if (options.tune.iters == 0) report.stats.rtn_loss = report.stats.best_loss = run.evaluate();
  else report.stats = run.stats();
  if constexpr (requires { run.expert_tokens(); }) {
    const std::vector<Index>& tokens = run.expert_tokens();
    report.experts = static_cast<Index>(tokens.size());
    report.experts_unreached = static_cast<Index>(std::count(tokens.begin(), tokens.end(), Index{0}));
    Index fewest = 0;
    for (Index n : tokens)
      if (n > 0 && (fewest == 0 || n < fewest)) fewest = n;
    report.fewest_expert_tokens = fewest;
  }
  auto results = run.result();
  report.steps_seconds = seconds_since(start);
  return results;
}

/// The activation quantization a block's results call for (the W4A4 / W8A8 schemes: set on the
/// block with its dequantized weights, so the quantized stream and --eval compute as the
/// checkpoint's runtime does), from its layers' measured inputs.
template <WeightQuantizer Q>
std::optional<ActivationQuant> activation_quant_of(const LlamaBlock& block, const LayerResults<Q>& results) {
  if constexpr (FloatCodeQuantizer<Q>) {
    const std::vector<LinearSlot> slots = linear_slots(block);
    InputMaxima maxima;
    const std::size_t routed = block.moe ? block.moe->weights.experts.size() : 0;
    if (block.moe) maxima.experts(routed + (block.moe->weights.shared ? 1 : 0));
    for (std::size_t i = 0; i < slots.size(); ++i)
      if (const auto& q = result_at(results, i)) add_slot_maxima(maxima, q->quantizer.spec(), slots[i], routed, q->input_absmax);
    return maxima.activation_quant();
  }
  return std::nullopt;
}

/// block[l] = its dequantized result for every quantized layer, the layers side by side (a
/// Llama-3-8B block holds 218M weights; this is host work the GPU otherwise waits for).
template <WeightQuantizer Q>
void dequantize_into(LlamaBlock& block, const LayerResults<Q>& results) {
  const std::vector<LinearSlot> slots = linear_slots(block);
  std::vector<std::future<void>> layers;
  for (std::size_t i = 0; i < slots.size(); ++i)
    if (const auto& q = result_at(results, i))
      layers.push_back(std::async(std::launch::async, [&block, &q, s = slots[i]] { slot_weight(block, s) = q->dequantize(); }));
  for (auto& layer : layers) layer.get();
  if (auto act = activation_quant_of(block, results)) block.act_quant = std::move(act);
}

/// Free the weights of block's quantized layers (`results` holds them; QuantizedWeight::dequantize
/// gives their values back): a streaming run holds one block's float32 weights at a time.
template <WeightQuantizer Q>
void release_quantized(LlamaBlock& block, const LayerResults<Q>& results) {
  const std::vector<LinearSlot> slots = linear_slots(block);
  for (std::size_t i = 0; i < slots.size(); ++i)
    if (result_at(results, i)) slot_weight(block, slots[i]) = RowMatrix();
}

/// block[l] = its dequantized result for every quantized layer a run released (a device run
/// frees the host copy once the device holds it): quantize_model leaves the model dequantized.
template <WeightQuantizer Q>
void dequantize_released(LlamaBlock& block, const LayerResults<Q>& results) {
  const std::vector<LinearSlot> slots = linear_slots(block);
  std::vector<std::future<void>> layers;
  for (std::size_t i = 0; i < slots.size(); ++i)
    if (const auto& q = result_at(results, i); q && slot_weight(block, slots[i]).size() == 0)
      layers.push_back(std::async(std::launch::async, [&block, &q, s = slots[i]] { slot_weight(block, s) = q->dequantize(); }));
  for (auto& layer : layers) layer.get();
  if (auto act = activation_quant_of(block, results)) block.act_quant = std::move(act);
}

/// What a block loop's run() calls once it no longer reads the block's host weights (the Cuda
/// loop: as soon as they are on the device), so that the caller may start reading the next one.
using WeightsReleased = std::function<void()>;

/// A calibration sample's embedding rows, [seqlen, hidden]: the start of the full-precision
/// stream. The block loops call it once per sample, when they need it (the Cuda loop uploads
/// each sample as it is embedded, so the host never holds them all).
using Embedder = std::function<RowMatrix(const TokenSequence&)>;

/// A calibration sample's per-layer inputs for one layer, [seqlen, P] (Gemma 4 E2B / E4B:
/// model/per_layer_input.hpp); empty for a model without them.
using PerLayerInputs = std::function<RowMatrix(const TokenSequence&, Index layer)>;

/// Give the memory freed so far back to the operating system where the allocator keeps it
/// (glibc: malloc_trim; a block's many mid-sized allocations otherwise stay on its heap, in the
/// RSS). A no-op elsewhere.
inline void return_free_memory() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

/// The state that runs from block to block with both activation streams in host memory: the
/// streams, the loss masks and the sampler's random stream. The CPU's BlockByBlock (the Cuda
/// policy has its own, with cuda::ActivationStreams: backend/cuda/cuda_runs.cuh).
template <WeightQuantizer Q, Optimizer O, Backend B>
class HostBlockByBlock {
 public:
  /// `embed` gives a sample's embedding rows ([seqlen, hidden]); every sample is embedded here.
  HostBlockByBlock(const Embedder& embed, std::span<const TokenSequence> samples, const ModelQuantOptions& options, O optimizer,
                   B backend)
      : options_(options), optimizer_(std::move(optimizer)), backend_(std::move(backend)), fp_(embed_all(embed, samples)), samples_(samples),
        masks_(options.mask_loss ? loss_masks(samples, options.pad_token) : std::vector<LossMask>{}), random_(options.tune.seed) {
    // the quantized stream (ActivationStreams::Two) starts as a copy; the one-stream modes use `fp_` alone
    if (options.streams == ActivationStreams::Two) quantized_ = fp_;
  }

  /// Gemma 4 E2B / E4B: what makes each layer's per-layer inputs (the samples are kept to make them).
  void per_layer_inputs(PerLayerInputs f) { per_layer_ = std::move(f); }

  /// Tune block b (its linear weights become their dequantized values) and move both streams past
  /// it; `released` is called at the end (the host run reads the block's weights throughout).
  FinishedBlock<Q> run(LlamaBlock& block, const LlamaConfig& config, Index b, const StepProgress& on_step,
                       const WeightsReleased& released = {}) {
    const auto start = std::chrono::steady_clock::now();
    BlockReport report;
    const auto quantizers = block_quantizers<Q>(options_, block, b, report, config.model_type);
    next_block_ = b + 1;
    prepare_side(config, b);
    BlockCalibration calibration{std::span<const RowMatrix>(fp_), {}, masks_, &random_};
    calibration.side = fp_side_;
    if (options_.streams == ActivationStreams::Two) {
      forward_stream(block, config, b, fp_, fp_side_, fp_donors_);  // fp_ now holds the targets
      calibration.inputs = quantized_;
      calibration.targets = fp_;
      calibration.side = quantized_side_;
    }
    LayerResults<Q> results;
    {
      const auto setup = std::chrono::steady_clock::now();
      BlockTuningRun<Q, O, B> run(options_.tune, quantizers, optimizer_, backend_, block, config, calibration,
                                  "model.layers." + std::to_string(b));
      report.setup_seconds = seconds_since(setup);
      results = tune_block(run, options_, b, on_step, report);
    }
    advance(block, config, b, results);
    report.seconds = seconds_since(start);
    if (released) released();
    return {std::move(results), report, random_.state()};
  }

  /// Block b as a run that finished it left it (its linear weights become the dequantized
  /// `finished` results; both streams move past it, the same calls as run() makes, so the same
  /// floats): how a resumed run skips the blocks it kept.
  void replay(LlamaBlock& block, const LlamaConfig& config, const FinishedBlock<Q>& finished) {
    const Index b = next_block_++;  // (blocks come in order: this one follows the last run or replayed)
    prepare_side(config, b);
    if (options_.streams == ActivationStreams::Two) forward_stream(block, config, b, fp_, fp_side_, fp_donors_);  // the targets
    advance(block, config, b, finished.results);
    random_.set_state(finished.random);
  }

 private:
  // after the tuning: the streams move past the block, whose weights become the results
  void advance(LlamaBlock& block, const LlamaConfig& config, Index b, const LayerResults<Q>& results) {
    if (options_.streams == ActivationStreams::FullPrecision)  // the fp block feeds the next
      forward_stream(block, config, b, fp_, fp_side_, fp_donors_);
    dequantize_into(block, results);
    if (options_.streams == ActivationStreams::Two)  // the quantized block feeds the next
      forward_stream(block, config, b, quantized_, quantized_side_, quantized_donors_);
    else if (options_.streams == ActivationStreams::Quantized)
      forward_stream(block, config, b, fp_, fp_side_, fp_donors_);
  }

  // One stream past block b: with its side inputs where the model has them (Gemma 4 E2B / E4B),
  // keeping a donor layer's keys and values for the layers that share them.
  void forward_stream(const LlamaBlock& block, const LlamaConfig& config, Index b, std::vector<RowMatrix>& stream,
                      const std::vector<BlockSideInputs>& side, std::array<std::vector<BlockSideInputs>, 2>& donors) {
    if (side.empty()) return forward_block(backend_, block, config, std::span<RowMatrix>(stream));
    std::vector<BlockSideInputs>& kept = donors[config.is_sliding(b) ? 0 : 1];
    if (config.kv_donates(b)) kept.resize(stream.size());
    forward_block(backend_, block, config, std::span<RowMatrix>(stream), std::span<const BlockSideInputs>(side),
                  config.kv_donates(b) ? std::span<BlockSideInputs>(kept) : std::span<BlockSideInputs>());
  }

  // Block b's side inputs on both streams: its per-layer inputs (the same on both), a kv-shared
  // layer's donor's keys and values (each stream its own donor's).
  void prepare_side(const LlamaConfig& config, Index b) {
    fp_side_.clear(), quantized_side_.clear();
    if (config.per_layer_input == 0 && config.kv_shared_layers == 0) return;
    require(config.per_layer_input == 0 || static_cast<bool>(per_layer_), "a model with per-layer inputs, but no per-layer embedding given to the run");
    const bool two = options_.streams == ActivationStreams::Two;
    fp_side_.resize(fp_.size());
    if (two) quantized_side_.resize(fp_.size());
    const std::size_t kind = config.is_sliding(b) ? 0 : 1;
    for (std::size_t s = 0; s < fp_.size(); ++s) {
      if (config.per_layer_input > 0) fp_side_[s].per_layer = per_layer_(samples_[s], b);
      if (config.kv_shared(b)) {
        require(fp_donors_[kind].size() == fp_.size(), "layer " + std::to_string(b) + ": its donor layer's keys and values were not kept");
        fp_side_[s].keys = fp_donors_[kind][s].keys, fp_side_[s].values = fp_donors_[kind][s].values;
      }
      if (two) {
        quantized_side_[s].per_layer = fp_side_[s].per_layer;
        if (config.kv_shared(b))
          quantized_side_[s].keys = quantized_donors_[kind][s].keys, quantized_side_[s].values = quantized_donors_[kind][s].values;
      }
    }
  }

  static std::vector<RowMatrix> embed_all(const Embedder& embed, std::span<const TokenSequence> samples) {
    std::vector<RowMatrix> fp;
    for (const TokenSequence& sample : samples) fp.push_back(embed(sample));
    return fp;
  }

  const ModelQuantOptions& options_;
  O optimizer_;
  B backend_;
  std::vector<RowMatrix> fp_, quantized_;  // the full-precision and the quantized stream
  std::span<const TokenSequence> samples_;
  PerLayerInputs per_layer_;
  Index next_block_ = 0;
  // Gemma 4 E2B / E4B: the block's side inputs per stream and sample, and the donor layers' keys
  // and values per stream ([0] the sliding layers', [1] the full ones'), per sample
  std::vector<BlockSideInputs> fp_side_, quantized_side_;
  std::array<std::vector<BlockSideInputs>, 2> fp_donors_, quantized_donors_;
  std::vector<LossMask> masks_;
  PythonRandom random_;  // the minibatch order continues from block to block
};

/// Whether quantize_model_streaming reads and writes blocks beside the tuning: for a device
/// backend, whose host thread mostly waits for the device. A customization point: specialize it
/// true for a host backend that leaves cores free (tests/test_streaming.cpp does).
template <class B>
inline constexpr bool overlap_host_work = DeviceBackend<B>;

/// quantize_model's block loop. A backend may specialize it (the Cuda policy does).
template <WeightQuantizer Q, Optimizer O, Backend B>
class BlockByBlock : public HostBlockByBlock<Q, O, B> {
 public:
  using HostBlockByBlock<Q, O, B>::HostBlockByBlock;
};

inline void check_samples(std::span<const TokenSequence> samples) {
  require(!samples.empty(), "calibration: no samples");
  for (const TokenSequence& sample : samples)
    require(sample.size() == samples[0].size() && !sample.empty(), "calibration: samples must all have one length");
}

}  // namespace detail

/// Quantize every block of `model` in place (its linear weights become their dequantized
/// values, ready for evaluation); returns the quantized weights, per block and layer.
/// `samples`: the calibration sequences (calibration_samples, consecutive_windows), all of one length.
/// `Q`: the quantizer type every layer's spec is read into (DynamicDoubleQuantizer for GGUF k-quants).
template <Optimizer O = SignSGD<LinearDecay>, Backend B = Cpu, WeightQuantizer Q = DynamicIntQuantizer>
std::vector<LayerResults<Q>> quantize_model(LlamaModel& model, std::span<const TokenSequence> samples,
                                            const ModelQuantOptions& options, const BlockProgress& on_block = {},
                                            const StepProgress& on_step = {}, O optimizer = O{}, B backend = B{}) {
  detail::check_samples(samples);
  detail::BlockByBlock<Q, O, B> run([&model](const TokenSequence& sample) { return embed(model, sample); }, samples, options,
                                    std::move(optimizer), std::move(backend));
  if (model.config.per_layer_input > 0) {  // Gemma 4 E2B / E4B
    detail::require(model.per_layer.has_value(), "quantize_model: a model with per-layer inputs without its per-layer embedding");
    if constexpr (requires { run.per_layer_inputs(detail::PerLayerInputs{}); })
      run.per_layer_inputs([&model](const TokenSequence& sample, Index b) {
        return per_layer_input(embed(model, sample), per_layer_table_rows(*model.per_layer, model.config, sample, b), *model.per_layer,
                               model.config, b);
      });
  }
  std::vector<LayerResults<Q>> all;
  const Index blocks = static_cast<Index>(model.blocks.size());
  for (Index b = 0; b < blocks; ++b) {
    LlamaBlock& block = model.blocks[static_cast<std::size_t>(b)];
    FinishedBlock<Q> finished = run.run(block, model.config, b, on_step);
    detail::dequantize_released(block, finished.results);
    all.push_back(std::move(finished.results));
    if (on_block) on_block(finished.report, blocks);
  }
  return all;
}

/// What quantize_model_streaming calls as each block finishes: sink(b, block, results), with the
/// block (its norms, biases and full-precision layers; the weights of its quantized layers are
/// released, empty matrices: results[i], i the layer's linear slot (linear_slots(block)), holds
/// them and results[i]->dequantize() gives their values) and its quantized layers. Both are freed when the call returns; a sink writes what it
/// needs (HfShardWriter::add_block, a GgufStreamWriter).
template <class F, class Q>
concept BlockSink = std::invocable<F&, Index, const LlamaBlock&, const LayerResults<Q>&>;

/// quantize_model over a model read block by block (model/model_source.hpp): host memory is one
/// block in float32, its tuning state and the two activation streams, whatever the number of
/// layers. The same results as quantize_model on the loaded model (tests/test_streaming.cpp).
/// With a device backend (Cuda) the host work around a block runs on other threads while the
/// block tunes, so the GPU waits for neither: the next block is read (and converted to float32)
/// once the tuning block's weights are on the device and released from the host
/// (WeightsReleased), and the sink writes the previous one (its results; the sink's blocks hold
/// no quantized weights, see BlockSink): one block's float32 weights are held at a time. On the
/// CPU the tuning has the cores and the loop reads, tunes and writes in turn. The sink is called
/// in block order, one call at a time; an exception from the source or the sink stops the run
/// where the loop next looks.
/// `checkpoint` (tune/run_checkpoint.hpp) keeps each block as it finishes, before on_block and
/// the sink see it; the blocks it already holds are not tuned again but replayed (their results
/// loaded, both streams moved past them, the sink fed), so a run interrupted anywhere continues
/// after its last finished block with the results an uninterrupted run gives.
template <Optimizer O = SignSGD<LinearDecay>, Backend B = Cpu, WeightQuantizer Q = DynamicIntQuantizer, ModelSource S,
          BlockSink<Q> Sink, BlockCheckpoint<Q> C = NoCheckpoint<Q>>
void quantize_model_streaming(const S& source, std::span<const TokenSequence> samples, const ModelQuantOptions& options, Sink&& sink,
                              const BlockProgress& on_block = {}, const StepProgress& on_step = {}, O optimizer = O{},
                              B backend = B{}, const C& checkpoint = C{}) {
  detail::check_samples(samples);
  detail::BlockByBlock<Q, O, B> run(
      [&source](const TokenSequence& sample) {
        RowMatrix rows = source.embedding_rows(sample);
        scale_embeddings(rows, source.config());
        return rows;
      },
      samples, options,
                                    std::move(optimizer), std::move(backend));
  const LlamaConfig& config = source.config();
  if (config.per_layer_input > 0) {  // Gemma 4 E2B / E4B: each layer's inputs from the tokens, the table read a slice at a time
    if constexpr (PerLayerEmbeddingSource<S> && requires { run.per_layer_inputs(detail::PerLayerInputs{}); }) {
      auto projection = std::make_shared<PerLayerEmbedding>();
      projection->projection = source.per_layer_projection();
      projection->norm = source.per_layer_norm();
      run.per_layer_inputs([&source, projection](const TokenSequence& sample, Index b) {
        RowMatrix x0 = source.embedding_rows(sample);
        scale_embeddings(x0, source.config());
        return per_layer_input(x0, source.per_layer_rows(sample, b), *projection, source.config(), b);
      });
    } else if constexpr (!PerLayerEmbeddingSource<S>) {
      throw Error(source.name() + ": per-layer embeddings (Gemma 4 E2B / E4B) are not read from this source");
    } else {
      throw Error(source.name() + ": per-layer embeddings (Gemma 4 E2B / E4B): the GPU does not tune them yet (issue #25); run with --device cpu");
    }
  }
  const Index kept = std::min<Index>(checkpoint.finished(), config.layers);
  // block b: replayed from the checkpoint, or tuned and kept there; then reported; its
  // quantized weights released (`released` is called once the run no longer reads them)
  auto finish = [&](LlamaBlock& block, Index b, const detail::WeightsReleased& released) {
    LayerResults<Q> results;
    if (b < kept) {
      FinishedBlock<Q> done = checkpoint.load(b);
      run.replay(block, config, done);
      if (released) released();
      results = std::move(done.results);
      if (on_block) on_block(done.report, config.layers);
    } else {
      FinishedBlock<Q> done = run.run(block, config, b, on_step, released);
      checkpoint.save(b, done);
      results = std::move(done.results);
      if (on_block) on_block(done.report, config.layers);
    }
    detail::release_quantized(block, results);
    return results;
  };
  if constexpr (!detail::overlap_host_work<B>) {
    for (Index b = 0; b < config.layers; ++b) {
      LlamaBlock block = source.block(b);
      const LayerResults<Q> results = finish(block, b, {});
      sink(b, block, results);
    }
    return;
  }
  const auto read = [&source](Index b) { return std::async(std::launch::async, [&source, b] { return source.block(b); }); };
  std::future<LlamaBlock> next = read(0);
  std::future<void> writing;  // the sink on the previous block
  // a future left running when the loop throws is waited for by its destructor: nothing outlives the call
  for (Index b = 0; b < config.layers; ++b) {
    LlamaBlock block = next.get();
    const auto read_next = [&, b] {
      if (b + 1 < config.layers && !next.valid()) next = read(b + 1);
    };
    LayerResults<Q> results = finish(block, b, read_next);
    read_next();  // when the run did not call it
    if (writing.valid()) writing.get();
    writing = std::async(std::launch::async, [&sink, b, block = std::move(block), results = std::move(results)]() mutable {
      sink(b, block, results);
      block = LlamaBlock();  // freed here, then handed back to the system: a block's results are many mid-sized
      results = {};          // allocations that glibc would keep on its heap (0.7 GB after 4 blocks at 8B)
      detail::return_free_memory();
    });
  }
  if (writing.valid()) writing.get();
}

/// As above, on options.nsamples consecutive windows of options.seqlen tokens of one stream.
template <Optimizer O = SignSGD<LinearDecay>, Backend B = Cpu, WeightQuantizer Q = DynamicIntQuantizer>
std::vector<LayerResults<Q>> quantize_model(LlamaModel& model, std::span<const std::int32_t> calibration,
                                            const ModelQuantOptions& options, const BlockProgress& on_block = {},
                                            const StepProgress& on_step = {}, O optimizer = O{}, B backend = B{}) {
  const std::vector<TokenSequence> samples = consecutive_windows(calibration, options.nsamples, options.seqlen);
  return quantize_model<O, B, Q>(model, std::span<const TokenSequence>(samples), options, on_block, on_step, optimizer, backend);
}

}  // namespace autoround
