#pragma once
// Block-wise AutoRound on the GPU: the device implementation behind BlockTuningRun<Q,
// SignSGD<LinearDecay>, Cuda> (cuda_runs.cuh). The algorithm of autoround::BlockTuningRun (the same
// IndexSampler minibatches, LinearDecay schedule, per-bit-width learning rates, best-step rule,
// TuneOptions and QuantizedWeight results) with the block's weights, the calibration inputs,
// their full-precision targets and every tunable parameter in device memory.
//
// One step: gather the minibatch (batch_size samples × seqlen tokens, processed together as one
// [batch·seqlen, hidden] matrix), fake-quantize the tuned layers (qdq kernels, bit-identical to
// the CPU's), the block forward (cuBLAS GEMMs for the projections and, per sample and head, the
// attention products; kernels of block_kernels.cuh for the rest), the mean squared error against
// the targets, the backward to the weights, the straight-through backward to v / min_scale /
// max_scale and SignSGD. Input gradients of the q/k/v projections are not computed: the block
// input is a constant of block-wise tuning.
//
// The layers are the block's linear slots (model/linear_slots.hpp), as on the CPU. The block is
// what LlamaBlock and LlamaConfig describe: LLaMA's, Qwen2's biases, Qwen3's q/k norms, Gemma 3's
// GeGLU, sandwich norms, attention scale, sliding windows and local RoPE base, Phi-3's partial
// rotary and LongRoPE, GPT-OSS's attention sinks and o_proj bias, and a mixture of experts with
// softmax routing, GPT-OSS's (top-k softmax, router and expert biases, clamped SwiGLU) or
// DeepSeek-V3's / GLM-4.5's (sigmoid scores, expert groups, a correction bias for the choice)
// (moe_forward / moe_backward with moe_kernels.cuh: every expert on its routed rows, one GEMM per
// expert and projection), and DeepSeek-V3's multi-head latent attention (latent_forward /
// latent_backward with latent_attention_kernels.cuh: q_a → RMSNorm → q_b, kv_a → RMSNorm of the
// latent → kv_b; its heads' keys [k_nope | one shared roped part] and values of their own width
// enter the same attention GEMMs, whose query/key and value widths differ).
// Gemma 4's dense blocks: each block's own geometry (config_ is layer_config's: a full layer's head
// size and KV heads), keys as values (no Value slot: V is k_proj's output, its gradient added to
// the keys'), v_norm (rms_norm_kernel with a unit weight), layer_scalar (the output scaled, the
// loss gradient × it). Gemma 4's 26B-A4B (beside_forward / beside_backward): GeGLU experts beside
// the dense MLP, on the residual stream normed their own way, the router on rms(h)·scale/√H, each
// routing weight × its expert's scale, both branches normed and added before the post-feedforward norm.
// Gemma 2's attention soft-capping: the softmax kernel caps the scores (cap · tanh(s / cap)) and
// keeps each row's log-sum-exp, from which the backward recovers tanh's derivative.
// Refused by name (backend/cuda_support.hpp and below): shared-expert biases, quantized activations in a latent attention.
//
// GEMM precision: float32 (the CPU backend's numerics; results differ from it only by
// summation order), or bf16 operands with float32 accumulation (GemmPrecision::BFloat16: the
// precision the reference's default amp autocast gives the block's matmuls on CUDA; attention
// probabilities and gradients are rounded to bf16 before their GEMMs, softmax, norms, loss,
// gradients and parameters stay float32). The targets are computed with the same precision.
//
// Inputs, targets and loss masks as BlockCalibration says (host matrices, copied up), or as
// DeviceCalibration says (activation streams read in place, the targets computed here from the
// full-precision stream and written over it: how quantize_model's Cuda loop keeps its streams);
// the loss is scaled by TuneOptions::loss_scale before the backward, as on the CPU.
//
// Memory (state_bytes + workspace_bytes; DeviceMemory counts it): the block's weights and tuning
// state (18 bytes per tuned weight with bf16 GEMMs, 20 with float32), the inputs and targets
// when they were uploaded here (BlockCalibration), and the workspace of one forward/backward.
// BlockMemoryPlan bounds the workspace: a minibatch runs as micro-batches of `micro_batch`
// samples whose weight gradients add up (beta = 1 GEMMs: only the summation order differs from
// one pass), and attention holds the [seqlen, seqlen] probabilities of `attention_pairs`
// (sample, head) pairs at a time; when that is fewer than a pass's pairs, the backward
// recomputes each chunk's probabilities (the same GEMM and softmax, so the same values) instead
// of keeping them, as flash attention does. The default plan (no split) is one pass per
// minibatch with every probability kept: the fastest, and the results of the unsplit code.
// Attention runs in causal tiles (backend/attention_tiles.hpp: query rows in tiles, each reading
// only the keys up to its last row and from its window's start): the GEMMs skip the masked part
// of each square, as flash attention does (44% of its products and bytes at 8 tiles); the
// squares keep their [seqlen, seqlen] layout, only the tiles' parts are written.
// TuneOptions::outlier_fraction selects each micro-batch's own largest errors
// (outlier_select.cuh): the minibatch's, as on the CPU, when it runs in one pass; split, the
// dropped elements are the largest of each part (an approximation of the minibatch's selection).
//
// Floating-point formats (Q = FloatQuantizer: MXFP4, MXFP8, NVFP4, FP8) use float_qdq_kernels.cuh
// and start at max_scale = 1 (no clipping search, as the reference). Their W4A4 / W8A8 presets
// quantize the four linear inputs in the tuned forward as ActivationQuant::apply does on the CPU
// (activation_qdq_kernel: the same formulas; in bf16 mode the quantized values are then rounded
// to bf16 for the GEMMs), and their backward as ActivationQuant::backward (activation_backward_kernel,
// from float32 copies of o_proj's, gate/up's and down_proj's inputs before quantization); NVFP4's and
// FP8_STATIC's static input scales come from the largest |input| over the calibration, measured
// on the block as given before tuning. The targets and a block that carries its own activation
// quantization (LlamaBlock::act_quant: a dequantized W4A4 block being replayed) use that one.
// In a mixture of experts, as on the CPU (moe_forward's `act`): the router and a shared expert's
// gate read yn_ in float; each expert's gate/up read its gathered rows quantized with its own
// scales (ActivationQuant::for_expert, a kernel per expert's rows), its down its quantized
// product; the shared expert its own quantized copy of yn_ (shared_in_); NVFP4 / FP8_STATIC's
// maxima are measured per expert on its routed rows.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <array>
#include <chrono>
#include <cmath>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../../core/matrix.hpp"
#include "../../model/activation_quant.hpp"
#include "../../model/linear_slots.hpp"
#include "../attention_tiles.hpp"
#include "../../model/llama_block.hpp"
#include "../../optimizer/sign_sgd.hpp"
#include "../../quantizer/float_quantizer.hpp"
#include "../../quantizer/int_quantizer.hpp"
#include "../../quantizer/quantized_weight.hpp"
#include "../../tune/best_step.hpp"
#include "../../tune/block_calibration.hpp"
#include "../../tune/clip_search.hpp"
#include "../../tune/index_sampler.hpp"
#include "../../tune/tune_options.hpp"
#include "../cpu.hpp"
#include "../cuda.hpp"
#include "../cuda_support.hpp"
#include "activation_stream.cuh"
#include "blas.hpp"
#include "block_kernels.cuh"
#include "latent_attention_kernels.cuh"
#include "layer_tuning_run.cuh"
#include "moe_kernels.cuh"
#include "outlier_select.cuh"
#include "qdq_layer.cuh"

namespace autoround::cuda {

/// A block's calibration as activation streams (device or pinned host memory, float32 or bf16),
/// read in place: they must outlive the run.
struct DeviceCalibration {
  const ActivationStream* inputs = nullptr;  ///< what the quantized block receives
  /// The full-precision block's inputs, replaced in place by its outputs, the targets (so the
  /// full-precision stream needs no second copy). Null: the targets are the full-precision block
  /// on `inputs`, into a stream of the run's own (take_targets).
  ActivationStream* targets = nullptr;
  std::span<const LossMask> masks = {};  ///< per-sample loss masks (host); empty: every position counts
  PythonRandom* random = nullptr;        ///< the sampler's stream (null: seeded with TuneOptions::seed)
};

/// What a block adds to a LLaMA block's workspace: a mixture of experts (its routed experts, the
/// experts per token, a routed expert's intermediate size and the shared expert's, 0: none; all 0:
/// a dense MLP) and Gemma's sandwich norms (the attention's and the MLP's outputs kept before
/// their norms).
struct BlockShape {
  long experts = 0, top_k = 0, intermediate = 0, shared_intermediate = 0;
  bool sandwich_norms = false;
  bool beside_mlp = false;  ///< the experts beside a dense MLP (Gemma 4's 26B-A4B: MoeFeedForward::beside_mlp)
  friend bool operator==(const BlockShape&, const BlockShape&) = default;
  static BlockShape of(const LlamaBlock& block) {
    BlockShape shape;
    shape.sandwich_norms = block.post_attn_norm.size() > 0 || block.post_ffn_norm.size() > 0;
    if (!block.moe || block.moe->weights.experts.empty()) return shape;
    const MoeWeights& w = block.moe->weights;
    shape.experts = static_cast<long>(w.experts.size());
    shape.top_k = static_cast<long>(block.moe->spec.top_k);
    shape.intermediate = static_cast<long>(w.experts[0].gate.rows());
    shape.shared_intermediate = w.shared ? static_cast<long>(w.shared->gate.rows()) : 0L;
    shape.beside_mlp = block.moe->beside_mlp.has_value();
    return shape;
  }
};

template <class Q = DynamicIntQuantizer>
class BlockTuningRun {
 public:
  /// Per linear slot (model/linear_slots.hpp; a dense block's slot i is Linear i); nullopt: the
  /// layer stays in full precision; empty: no layer is tuned (a forward-only run).
  using LayerQuantizers = std::vector<std::optional<Q>>;
  using LayerResults = std::vector<std::optional<QuantizedWeight<Q>>>;

  /// `inputs`: one [seqlen, hidden] matrix per calibration sample; copied to the device.
  BlockTuningRun(const TuneOptions& options, const LayerQuantizers& quantizers, const LlamaBlock& block,
                 const LlamaConfig& config, std::span<const RowMatrix> inputs, const std::string& name = "block",
                 GemmPrecision precision = GemmPrecision::Float32, BlockMemoryPlan plan = {})
      : BlockTuningRun(options, quantizers, block, config, BlockCalibration{inputs}, name, precision, plan) {}

  /// Inputs, targets and loss masks as `calibration` says; all are copied to the device.
  BlockTuningRun(const TuneOptions& options, const LayerQuantizers& quantizers, const LlamaBlock& block,
                 const LlamaConfig& config, const BlockCalibration& calibration, const std::string& name = "block",
                 GemmPrecision precision = GemmPrecision::Float32, BlockMemoryPlan plan = {})
      : BlockTuningRun(options, quantizers, block, config, checked_shape(calibration, config, name), calibration.random, name,
                       precision, plan) {
    upload_calibration(calibration);
    lap(times_.targets);
    finish_setup(block);
  }

  /// Calibration as activation streams (quantize_model's, kept from block to block): read in
  /// place, never copied. The targets are the full-precision block on `calibration.targets`,
  /// written over it (or on the inputs, into the run's own stream: take_targets()).
  BlockTuningRun(const TuneOptions& options, const LayerQuantizers& quantizers, const LlamaBlock& block,
                 const LlamaConfig& config, const DeviceCalibration& calibration, const std::string& name = "block",
                 GemmPrecision precision = GemmPrecision::Float32, BlockMemoryPlan plan = {})
      : BlockTuningRun(options, quantizers, block, config, checked_shape(calibration, config, name), calibration.random, name,
                       precision, plan) {
    in_ = calibration.inputs;
    upload_masks(calibration.masks);
    lap(times_.calibration);
    if (calibration.targets) {
      detail::require(calibration.targets->samples() == samples_ && calibration.targets->sample_values() == in_->sample_values(),
                      name + ": the full-precision stream and the inputs differ in shape");
      tgt_ = calibration.targets;
      forward_all(*tgt_, *tgt_);
    } else {
      targets_ = ActivationStream(samples_, in_->sample_values(), in_->dtype(), in_->on_host());
      tgt_ = &targets_;
      forward_all(*in_, targets_);
    }
    lap(times_.targets);
    finish_setup(block);
  }

  /// Run step `stats().steps_run`; returns its loss (measured before the update).
  double step() {
    const int step = tracker_.next_step();
    const auto samples = sampler_.next_batch();
    const long nb = static_cast<long>(samples.size()), hidden = config_.hidden;
    const long n = nb * seqlen_ * hidden;  // the loss is the mean over the whole minibatch
    // (× Gemma 4's layer_scalar: the gradient of the output before it)
    const float factor = static_cast<float>(options_.loss_scale * 2.0 / static_cast<double>(n)) * layer_scalar_;
    refresh_weights();
    for (std::size_t i = 4; moe_ && i < slots_.size(); ++i)  // routed experts add up from 0: one may see no token in a micro-batch
      if (layers_[i].qdq && slots_[i].routed()) check(cudaMemsetAsync(layers_[i].grad.data(), 0, layers_[i].grad.size() * sizeof(float), stream()), "zero a gradient");
    double sum = 0;
    for (long first = 0; first < nb; first += micro_) {  // micro-batches: gradients add up
      const long mb = std::min(micro_, nb - first), rows = mb * seqlen_, sample_floats = seqlen_ * hidden;
      for (long i = 0; i < mb; ++i) {
        const long s = samples[static_cast<std::size_t>(first + i)];
        in_->load(s, 1, x_.data() + i * sample_floats, stream());
        tgt_->load(s, 1, target_.data() + i * sample_floats, stream());
        if (!host_masks_.empty()) copy_floats(mask_.data() + i * seqlen_, masks_.data() + s * seqlen_, seqlen_);
      }
      if (bf16_) forward<__nv_bfloat16>(mb); else forward<float>(mb);
      for (std::size_t e = 0; e < expert_tokens_.size(); ++e) expert_tokens_[e] += counts_host_[e];
      if (!host_masks_.empty()) mask_rows(d_out_.f.data(), target_.data(), mask_.data(), rows * hidden);
      if (options_.outlier_fraction > 0.0)  // per micro-batch: the minibatch's own selection when micro_ = batch
        drop_largest_errors(d_out_.f.data(), target_.data(), rows * hidden, options_.outlier_fraction, outlier_histogram_, stream());
      sum += squared_error(d_out_.f.data(), target_.data(), rows * hidden, stream());
      scaled_difference_kernel<><<<blocks_for(rows * hidden, 256), 256, 0, stream()>>>(
          d_out_.f.data(), target_.data(), d_out_.f.data(), d_out_.bf16_out(), factor, rows * hidden);
      if (bf16_) backward<__nv_bfloat16>(mb, first > 0); else backward<float>(mb, first > 0);
    }
    const double loss = sum / static_cast<double>(n);
    if (tracker_.record(loss, detail::unmasked_positions(host_masks_, samples))) snapshot();  // before the update
    const SignSGD<LinearDecay> sign_sgd_rule;
    for (Layer& layer : layers_) {
      if (!layer.qdq) continue;
      layer.qdq->backward(layer.grad.data(), layer.grad_min.data(), layer.grad_max.data());
      sign_sgd(layer.qdq->rounding(), layer.grad.data(), sign_sgd_rule.rate(layer.lr, step, options_.iters), stream());
      if (options_.enable_minmax_tuning) {
        sign_sgd(layer.qdq->min_scale(), layer.grad_min.data(), sign_sgd_rule.rate(layer.minmax_lr, step, options_.iters), stream());
        sign_sgd(layer.qdq->max_scale(), layer.grad_max.data(), sign_sgd_rule.rate(layer.minmax_lr, step, options_.iters), stream());
      }
    }
    check(cudaGetLastError(), "block step");
    return loss;
  }

  bool running() const { return tracker_.running(); }
  const TuningStats& stats() const { return tracker_.stats(); }

  /// The block's linear slots, in the order of the quantizers and the results.
  const std::vector<LinearSlot>& slots() const { return slots_; }

  /// A mixture-of-experts block: per routed expert, the tokens routed to it summed over the steps
  /// run (0: never reached, left at its start, as on the CPU); empty for a dense block.
  const std::vector<Index>& expert_tokens() const { return expert_tokens_; }

  /// Loss over every calibration sample under the current parameters (no update): the block
  /// error a round-to-nearest run (iters = 0) reports.
  double evaluate() {
    refresh_weights();
    const long sample_floats = seqlen_ * config_.hidden;
    double sum = 0;
    for (long first = 0; first < samples_; first += micro_) {
      const long nb = std::min(micro_, samples_ - first);
      in_->load(first, nb, x_.data(), stream());
      tgt_->load(first, nb, target_.data(), stream());
      if (bf16_) forward<__nv_bfloat16>(nb); else forward<float>(nb);
      if (!host_masks_.empty()) mask_rows(d_out_.f.data(), target_.data(), masks_.data() + first * seqlen_, nb * sample_floats);
      sum += squared_error(d_out_.f.data(), target_.data(), nb * sample_floats, stream());
    }
    return sum / (static_cast<double>(samples_) * static_cast<double>(sample_floats));
  }

  /// The targets (the block as given, in full precision, on every sample) copied to `out`, one
  /// [seqlen, hidden] matrix per sample: a run without tuned layers is a batched block forward.
  void download_targets(std::span<RowMatrix> out) {
    detail::require(static_cast<long>(out.size()) == samples_, "download_targets: one matrix per calibration sample");
    for (long s = 0; s < samples_; ++s) tgt_->download(s, out[static_cast<std::size_t>(s)], seqlen_, x_, stream());
  }

  /// Encode every tuned layer with the kept (best) parameters.
  LayerResults result() {
    load_best();
    LayerResults results(layers_.size());
    for (std::size_t i = 0; i < layers_.size(); ++i)
      if (layers_[i].qdq) {
        results[i] = layers_[i].qdq->result(*layers_[i].quantizer, tracker_.stats());
        if (measure_inputs_ && i < input_absmax_.size()) results[i]->input_absmax = input_absmax_[i];
      }
    return results;
  }

  /// The targets, handed over (the run no longer has them): when the run computed them into its
  /// own stream, the full-precision block's outputs, i.e. the next block's full-precision stream.
  ActivationStream take_targets() {
    detail::require(tgt_ == &targets_ && targets_.samples() > 0, "take_targets: the run holds no targets of its own");
    tgt_ = nullptr;
    return std::move(targets_);
  }

  /// `out` = the block with the kept (best) parameters, i.e. the dequantized weights the results
  /// hold, on every input sample: the next block's quantized stream. `out` may be the inputs
  /// (written in place, batch by batch, after each batch is read).
  void forward_quantized(ActivationStream& out) {
    load_best();
    refresh_weights();
    forward_all(*in_, out);
  }

  /// Device memory of the block's weights and tuning state when every linear layer is tuned
  /// with `spec`'s group layout (fewer tuned layers need less).
  static std::size_t state_bytes(const LlamaConfig& c, long seqlen, GemmPrecision precision, long group_size) {
    std::vector<std::pair<Index, Index>> shapes;
    for (Linear l : all_linears) shapes.push_back(linear_shape(c, l));
    if (c.latent_attention() && c.q_lora_rank > 0) shapes.push_back({c.q_lora_rank, c.hidden});  // q_a_proj
    return state_bytes(shapes, c, seqlen, precision, group_size);
  }
  /// The same for `block` as it is (a mixture of experts: every expert's layers, and the router).
  static std::size_t state_bytes(const LlamaBlock& block, const LlamaConfig& c, long seqlen, GemmPrecision precision, long group_size) {
    std::vector<std::pair<Index, Index>> shapes;
    const LlamaConfig layer = layer_config(c, block.sliding);  // (Gemma 4's full layers: their own head size)
    for (const LinearSlot& s : linear_slots(block)) {
      const RowMatrix& w = slot_weight(block, s);
      shapes.push_back(w.size() > 0 ? std::pair<Index, Index>{w.rows(), w.cols()} : linear_shape(layer, s.role));
    }
    const std::size_t router = block.moe ? static_cast<std::size_t>(block.moe->weights.router.size()) * 6 : 0;
    return state_bytes(shapes, c, seqlen, precision, group_size) + router;
  }
  static std::size_t state_bytes(std::span<const std::pair<Index, Index>> shapes, const LlamaConfig& c, long seqlen, GemmPrecision precision,
                                 long group_size) {
    const bool bf16 = precision == GemmPrecision::BFloat16;
    std::size_t total = 0, largest = 0;
    for (const auto& [out, in] : shapes) {
      const auto n = static_cast<std::size_t>(out * in);
      const auto groups = n / static_cast<std::size_t>(group_size > 0 ? group_size : in) + 1;
      largest = std::max(largest, n);
      // weight operand (bf16 or float32), unquantized copy, v, its gradient, the best v; per
      // group the scales, their gradients and best values, ranges and quantized parameters
      total += n * (bf16 ? 2 : 4) + 4 * n * sizeof(float) + groups * (6 * sizeof(float) + 64);
    }
    total += bf16 ? largest * sizeof(float) : 0;  // the qdq output before its bf16 copy
    total += static_cast<std::size_t>(seqlen * c.head_dim / 2) * sizeof(float2) + static_cast<std::size_t>(8 * c.hidden) * sizeof(float);
    return total;
  }

  /// Device memory of one forward/backward's workspace under `plan` (minibatch `batch`);
  /// `quantized_inputs`: the linear inputs are quantized (W4A4 / W8A8), which keeps three of them
  /// also before quantization (for the backward) and, in bf16 mode, float32 values of three.
  static std::size_t workspace_bytes(const LlamaConfig& c, long batch, long seqlen, GemmPrecision precision, BlockMemoryPlan plan,
                                     bool quantized_inputs = false, const BlockShape& shape = {}) {
    const bool bf16 = precision == GemmPrecision::BFloat16;
    const long micro = plan.micro_batch > 0 ? std::min(plan.micro_batch, batch) : batch;
    const long pairs = plan.attention_pairs > 0 ? std::min(plan.attention_pairs, micro * c.heads) : micro * c.heads;
    const auto rows = static_cast<std::size_t>(micro * seqlen), hidden = static_cast<std::size_t>(c.hidden),
               inter = static_cast<std::size_t>(shape.experts > 0 && !shape.beside_mlp ? shape.shared_intermediate : c.intermediate),
               head = static_cast<std::size_t>(std::max(query_key_dim(c), value_dim(c))),  // the wider of a head's two widths
               q = static_cast<std::size_t>(c.heads) * head, kv = static_cast<std::size_t>(key_heads(c)) * head;
    const std::size_t both = bf16 ? 6 : 4, operand = bf16 ? 2 : 4;  // float32 + bf16 copy; GEMM operand only
    std::size_t per_row = 5 * 4 * hidden + 3 * 4 * inter + 2 * 4 * q + 2 * 4;  // x, target, h, d_yn, d_out; gate, up, d_act; dk/dv per head; 1/rms
    per_row += (bf16 ? 2 : 0) * hidden + 3 * operand * hidden + 4 * both * q + 4 * both * kv + 3 * operand * inter + 4;
    per_row += 4 * (2 * q + kv + static_cast<std::size_t>(c.heads + c.kv_heads));  // QK-norm scratch (counted whether used or not)
    if (c.value_norm) per_row += 4 * (kv + static_cast<std::size_t>(c.kv_heads));  // Gemma 4's v before v_norm, its 1/rms
    if (bf16 && quantized_inputs) per_row += 4 * (2 * hidden + inter);
    if (quantized_inputs) per_row += 4 * (q + hidden + inter);
    if (shape.experts > 0) {  // per token: its top_k routed rows, the router's scores, the shared expert's output
      const auto k = static_cast<std::size_t>(shape.top_k), e = static_cast<std::size_t>(shape.experts),
                 expert_inter = static_cast<std::size_t>(shape.intermediate);
      per_row += k * (hidden * (2 * operand + 4) + expert_inter * (12 + 3 * operand) + 4 * 5) + e * (4 + both);
      if (shape.shared_intermediate > 0) per_row += hidden * (4 + operand) + 8;
      if (quantized_inputs) {  // the rows and products before quantization (and float32 values of both in bf16 mode); the shared expert's input
        per_row += k * (hidden + expert_inter) * (bf16 ? 8 : 4);
        if (shape.shared_intermediate > 0) per_row += hidden * (both + 4);
      }
    }
    if (shape.sandwich_norms) per_row += hidden * (16 + 2 * operand) + 8;  // both outputs, a normed scratch, their gradients, d_h
    // beside a dense MLP: the experts' and the router's inputs, both branches' outputs, a second
    // normed scratch, the experts' output gradient, both inputs' gradients, a chain scratch, the
    // MLP's output gradient (float32 and its copy), d_mlp in float32 too, two 1/rms
    if (shape.beside_mlp) per_row += hidden * (2 * both + 4 * 4 + 3 * 4 + both + 4) + 8;
    if (c.latent_attention()) {  // latent_forward / latent_backward's buffers
      const auto query_rank = static_cast<std::size_t>(c.q_lora_rank), rank = static_cast<std::size_t>(c.kv_lora_rank),
                 rope = static_cast<std::size_t>(c.head_dim), kv_b = static_cast<std::size_t>(c.heads * (c.qk_nope_dim + c.v_head_dim));
      per_row += query_rank * (8 + 2 * both) + (rank + rope) * (4 + both) + rank * (12 + both) + rope * 8 + kv_b * (4 + both) + 8;
    }
    const auto square = static_cast<std::size_t>(pairs) * static_cast<std::size_t>(seqlen * seqlen);
    // each tile's six GEMMs: 3 pointers per pair (the tile count does not depend on a window)
    const std::size_t tiles = attention_tiles(seqlen, attention_tile_rows(seqlen, plan.attention_tile), 0).size();
    const std::size_t lse = c.attention_softcap > 0 ? static_cast<std::size_t>(pairs * seqlen) * 4 : 0;  // soft-capping's row sums
    return rows * per_row + square * (operand + both) + lse + static_cast<std::size_t>(micro * c.heads) * 18 * tiles * sizeof(void*) + (1u << 20);
  }

  /// A head's query/key and value widths, and the key/value heads the attention GEMMs read: a
  /// latent attention's heads each have a key and value of their own (made from the shared latent).
  static long query_key_dim(const LlamaConfig& c) { return c.latent_attention() ? c.qk_head_dim() : c.head_dim; }
  static long value_dim(const LlamaConfig& c) { return c.latent_attention() ? c.v_head_dim : c.head_dim; }
  static long key_heads(const LlamaConfig& c) { return c.latent_attention() ? c.heads : c.kv_heads; }

  /// The plan with the most samples per pass (then the most attention pairs) whose workspace
  /// fits in `bytes`; nullopt when not even one sample and one pair fit. The whole minibatch with
  /// every probability kept (the default plan) when that fits. Chunks of fewer than 8 pairs are
  /// the last resort: their attention GEMMs are too small to fill the GPU (at seqlen 2048 one
  /// pair's product is ~5 µs of an H200), a smaller micro-batch costs less.
  static std::optional<BlockMemoryPlan> plan_for(const LlamaConfig& c, long batch, long seqlen, GemmPrecision precision,
                                                 std::size_t bytes, bool quantized_inputs = false, const BlockShape& shape = {}) {
    if (workspace_bytes(c, batch, seqlen, precision, {}, quantized_inputs, shape) <= bytes) return BlockMemoryPlan{};
    for (const long smallest : {8L, 1L})
      for (long micro = batch; micro >= 1; --micro)
        for (long pairs = std::min(micro * c.heads, static_cast<long>(c.heads)); pairs >= std::min(smallest, micro * c.heads); pairs /= 2)
          if (workspace_bytes(c, batch, seqlen, precision, {micro, pairs}, quantized_inputs, shape) <= bytes) return BlockMemoryPlan{micro, pairs};
    return std::nullopt;
  }

  /// Where the setup's time went, in seconds (the device synchronised at each boundary): the
  /// weights and tuning state to the device, the calibration (uploads, masks), the targets'
  /// forwards (with the uploads of a BlockCalibration), the importance forwards and the clipping
  /// search (ClipInit::WeightedSearch).
  struct SetupTimes {
    double weights = 0, calibration = 0, targets = 0, importance = 0, search = 0;
  };
  const SetupTimes& setup_times() const { return times_; }

 private:
  struct Shape {
    long samples = 0, seqlen = 0;
  };
  static Shape checked_shape(const BlockCalibration& c, const LlamaConfig& config, const std::string& name) {
    detail::check_block_calibration(c, config.hidden, name);
    return {static_cast<long>(c.inputs.size()), c.inputs[0].rows()};
  }
  static Shape checked_shape(const DeviceCalibration& c, const LlamaConfig& config, const std::string& name) {
    detail::require(c.inputs != nullptr && c.inputs->samples() > 0, name + ": no calibration samples");
    detail::require(c.inputs->sample_values() % config.hidden == 0, name + ": the activation stream's samples are not [seqlen, hidden]");
    const Shape shape{c.inputs->samples(), c.inputs->sample_values() / config.hidden};
    detail::require(c.masks.empty() || static_cast<long>(c.masks.size()) == shape.samples,
                    name + ": one loss mask per calibration sample");
    for (const LossMask& m : c.masks)
      detail::require(static_cast<long>(m.size()) == shape.seqlen, name + ": a loss mask must have one entry per position (seqlen)");
    return shape;
  }

  // What both public constructors share: the block's constants and weights on the device, the
  // tuned layers' parameters, the minibatch workspace.
  BlockTuningRun(const TuneOptions& options, const LayerQuantizers& quantizers, const LlamaBlock& block, const LlamaConfig& config,
                 Shape shape, PythonRandom* random, const std::string& name, GemmPrecision precision, BlockMemoryPlan plan)
      : options_(options), config_(layer_config(config, block.sliding)), bf16_(precision == GemmPrecision::BFloat16), samples_(shape.samples),
        seqlen_(shape.seqlen), batch_(std::min<long>(options.batch_size, shape.samples)),
        micro_(plan.micro_batch > 0 ? std::min(plan.micro_batch, batch_) : batch_),
        pairs_(plan.attention_pairs > 0 ? std::min(plan.attention_pairs, micro_ * config.heads) : micro_ * config.heads),
        tile_(attention_tile_rows(shape.seqlen, plan.attention_tile)),
        sampler_(random ? IndexSampler(samples_, batch_, *random) : IndexSampler(samples_, batch_, options.seed)),
        tracker_(options), slots_(linear_slots(block)), shape_(BlockShape::of(block)) {
    detail::require(config_.heads > 0 && config_.kv_heads > 0 && config_.heads % config_.kv_heads == 0 && config_.head_dim % 2 == 0,
                    name + ": heads must be a multiple of kv_heads and head_dim even");
    detail::require(quantizers.empty() || quantizers.size() == slots_.size(),
                    name + ": " + std::to_string(quantizers.size()) + " quantizers for " + std::to_string(slots_.size()) +
                        " linear layers (linear_slots)");
    if (const std::string reason = cuda_unsupported(config); !reason.empty()) throw Error(cuda_refusal(name, reason));
    if (block.moe) check_moe(block, name);
    values_from_keys_ = block.values_from_keys;  // Gemma 4's full layers: no v_proj slot
    layer_scalar_ = block.layer_scalar;
    attention_slots_ = values_from_keys_ ? 3 : 4;
    beside_ = moe_ && shape_.beside_mlp;  // Gemma 4: the dense MLP's slots first, the experts' after them
    first_expert_ = first_expert_slot(values_from_keys_, beside_);
    mlp_base_ = moe_ && !beside_ ? attention_slots_ + 3 * static_cast<std::size_t>(shape_.experts) : attention_slots_;
    mlp_inter_ = moe_ && !beside_ ? shape_.shared_intermediate : config.intermediate;
    std::size_t largest = 0;
    for (const LinearSlot& s : slots_) {
      const RowMatrix& w = slot_weight(block, s);
      auto [out, in] = linear_shape(config_, s.role);
      if (s.expert == LinearSlot::latent) out = config.q_lora_rank, in = config.hidden;  // q_a_proj
      if (s.of_expert()) {  // an expert's: [its intermediate, hidden] or the transpose
        const long inter = s.routed() ? shape_.intermediate : shape_.shared_intermediate;
        out = s.role == Linear::Down ? config.hidden : inter;
        in = s.role == Linear::Down ? inter : config.hidden;
      }
      detail::require(w.rows() == out && w.cols() == in, name + "." + hf_name(s, config.model_type) + ": weight shape does not match the configuration");
      largest = std::max(largest, static_cast<std::size_t>(w.size()));
    }
    upload_constants(block);
    if (bf16_) weight_scratch_ = DeviceBuffer<float>(largest);  // a weight's float32 values (qdq output, or the upload) before their bf16 copy
    target_input_quant_ = block.act_quant;
    input_quant_ = target_input_quant_ ? &*target_input_quant_ : nullptr;
    input_floats_ = target_input_quant_.has_value();
    if constexpr (FloatCodeQuantizer<Q>)
      for (const auto& q : quantizers)
        if (q) {
          input_floats_ = input_floats_ || q->spec().act_bits <= 8;
          measure_inputs_ = measure_inputs_ || q->static_input_scale();
        }
    if (mla_ && input_floats_)
      throw Error(name + ": latent attention (DeepSeek-V3) with quantized activations is not supported; run a weight-only scheme");
    input_absmax_.assign(slots_.size(), 0.0f);
    nonfinite_ = DeviceBuffer<int>(std::vector<int>(slots_.size(), 0));
    layers_.resize(slots_.size());
    for (std::size_t i = 0; i < slots_.size(); ++i)
      setup_layer(i, slot_weight(block, slots_[i]), quantizers.empty() ? std::optional<Q>{} : quantizers[i], name);
    const std::vector<int> nonfinite = nonfinite_.download();  // checked on the device: a host pass over 218 M weights took 1.9 s
    for (std::size_t i = 0; i < slots_.size(); ++i)
      detail::require(nonfinite[i] == 0, name + "." + hf_name(slots_[i], config.model_type) + ": weight has NaN or Inf values");
    allocate();
    build_attention_batches();
    lap(times_.weights);
  }

  // adds the time since the last lap to `part` (after the queued work is done)
  void lap(double& part) {
    stream_.synchronize();
    const auto now = std::chrono::steady_clock::now();
    part += std::chrono::duration<double>(now - lap_).count();
    lap_ = now;
  }

  void finish_setup(const LlamaBlock& block) {
    if constexpr (FloatCodeQuantizer<Q>) {  // as the CPU run: inputs measured on the block as given, then the tuned act quant
      if (measure_inputs_) {
        if (bf16_) measure_inputs<__nv_bfloat16>(); else measure_inputs<float>();
      }
      InputMaxima maxima;
      const std::size_t routed = moe_ ? static_cast<std::size_t>(shape_.experts) : 0;
      if (moe_) maxima.experts(routed + (shape_.shared_intermediate > 0 ? 1 : 0));
      for (std::size_t i = 0; i < slots_.size(); ++i)
        if (layers_[i].quantizer) add_slot_maxima(maxima, layers_[i].quantizer->spec(), slots_[i], routed, input_absmax_[i]);
      tuned_input_quant_ = maxima.activation_quant();
      if (tuned_input_quant_) input_quant_ = &*tuned_input_quant_;
    } else if (options_.clip_init == ClipInit::WeightedSearch) {
      search_clipping(block);
    }
    snapshot();
  }

  // input_absmax_[i] = the largest |input| of linear slot i over every calibration sample, the
  // block computing as given (what the static input scales are made from): the block's four
  // inputs, and each routed expert's rows of its gate/up input and of its product (a shared
  // expert reads the block's MLP input and the MLP product buffer)
  template <class T>
  void measure_inputs() {
    const long experts = moe_ ? shape_.experts : 0, hidden = config_.hidden, inter = shape_.intermediate;
    DeviceBuffer<unsigned> absmax(std::vector<unsigned>(static_cast<std::size_t>(4 + 2 * experts), 0u));
    Tensor* inputs[4] = {&xn_, &attention_, &yn_, &act_};
    const long cols[4] = {hidden, config_.heads * value_dim(config_), hidden, mlp_inter_};
    for (long first = 0; first < samples_; first += micro_) {
      const long nb = std::min(micro_, samples_ - first);
      in_->load(first, nb, x_.data(), stream());
      forward<T>(nb);
      for (int j = 0; j < 4; ++j)
        if (cols[j] > 0) absmax_kernel<><<<256, 256, 0, stream()>>>(inputs[j]->f.data(), nb * seqlen_ * cols[j], absmax.data() + j);
      if (moe_) {  // (for_each_expert: the counts of this forward, on the host)
        const float* product = input_quant_ ? eact_float_.data() : eact_.f.data();
        for_each_expert([&](std::size_t e, long at, long count) {
          absmax_kernel<><<<256, 256, 0, stream()>>>(xe_float_.data() + at * hidden, count * hidden, absmax.data() + 4 + 2 * e);
          absmax_kernel<><<<256, 256, 0, stream()>>>(product + at * inter, count * inter, absmax.data() + 5 + 2 * e);
        });
      }
    }
    check(cudaGetLastError(), "input absmax");
    const std::vector<unsigned> bits = absmax.download();
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      const LinearSlot& s = slots_[i];
      const std::size_t k = s.role == Linear::Down ? 1 : 0;
      std::size_t at;
      if (s.expert == LinearSlot::own || s.expert == LinearSlot::shared) at = static_cast<std::size_t>(linear_input(s.role));
      else if (s.routed()) at = 4 + 2 * static_cast<std::size_t>(s.expert) + k;
      else continue;  // (latent attention: refused with quantized inputs)
      std::memcpy(&input_absmax_[i], &bits[at], sizeof(float));
    }
    lap(times_.importance);
  }

  // A row-major device matrix: float32, and in bf16 mode a bf16 copy (the GEMM operand). A
  // matrix that is only ever a GEMM operand has no float32 values in bf16 mode (float_too false).
  struct Tensor {
    DeviceBuffer<float> f;
    DeviceBuffer<__nv_bfloat16> h;
    void allocate(long n, bool bf16, bool float_too = true) {
      if (float_too || !bf16) f = DeviceBuffer<float>(static_cast<std::size_t>(n));
      if (bf16) h = DeviceBuffer<__nv_bfloat16>(static_cast<std::size_t>(n));
    }
    float* float_out() { return f.size() ? f.data() : nullptr; }
    __nv_bfloat16* bf16_out() { return h.size() ? h.data() : nullptr; }
    void refresh(cudaStream_t stream, long n = -1) {  // bf16 copy of the first n values (all by default)
      if (h.size() == 0) return;
      if (n < 0) n = static_cast<long>(f.size());
      to_bf16_kernel<><<<blocks_for(n, 256), 256, 0, stream>>>(f.data(), 1.0f, nullptr, h.data(), n);
    }
    template <class T>
    const T* as() const {
      if constexpr (std::is_same_v<T, float>) return f.data(); else return h.data();
    }
    template <class T>
    T* as() {
      if constexpr (std::is_same_v<T, float>) return f.data(); else return h.data();
    }
  };

  struct Layer {
    long rows = 0, cols = 0;
    Tensor weight;                // what the block computes with: full precision, or fake-quantized
    std::optional<Q> quantizer;   // tuned layers only
    std::optional<QdqLayer> qdq;
    DeviceBuffer<float> grad, grad_min, grad_max, best_rounding, best_min, best_max;
    float lr = 0, minmax_lr = 0;
  };

  // ActivationQuant::apply on the device: rows x cols float32 values at f quantized in place by
  // `q` (an input it keeps in float stays), their bf16 copy at h (bf16 mode) refreshed from them
  void quantize_rows(const ActivationQuant& q, LinearInput input, float* f, __nv_bfloat16* h, long rows, long cols) {
    if (q.float_input[static_cast<std::size_t>(input)]) {
      if (h) to_bf16(f, h, rows * cols);
      return;
    }
    const float fixed = q.static_scale(input);  // FP8_STATIC: one scale, any grouping
    const long group = input_group(q, fixed), n = rows * ((cols + group - 1) / group);
    activation_qdq_kernel<><<<blocks_for(n, 128), 128, 0, stream()>>>(q.params(input), fixed, f, h, rows, cols, group, q.bf16_product);
  }
  // the block's own input t (its first rows x cols values)
  void quantize_input(Tensor& t, LinearInput input, long rows, long cols) {
    quantize_rows(*input_quant_, input, t.f.data(), t.bf16_out(), rows, cols);
  }

  // ActivationQuant::backward on the device: dL/d q(x) in `grad` becomes dL/dx (x: before quantization)
  void rows_backward(const ActivationQuant& q, LinearInput input, const float* x, float* grad, long rows, long cols) {
    if (q.float_input[static_cast<std::size_t>(input)]) return;
    const float fixed = q.static_scale(input);
    const long group = input_group(q, fixed), n = rows * ((cols + group - 1) / group);
    activation_backward_kernel<><<<blocks_for(n, 128), 128, 0, stream()>>>(q.params(input), fixed, x, grad, rows, cols, group);
  }
  void input_backward(const float* x, float* grad, LinearInput input, long rows, long cols) {
    rows_backward(*input_quant_, input, x, grad, rows, cols);
  }

  // the kernels' thread per group: the format's groups, or runs of 32 under FP8_STATIC's one scale
  static long input_group(const ActivationQuant& q, float static_scale) { return static_scale > 0.0f ? 32 : q.quantizer.group_size(); }

  // Device pointer arrays of one batched attention GEMM (per sample and query head).
  struct Batched {
    DeviceBuffer<const void*> a, b;
    DeviceBuffer<float*> c;
  };

  cudaStream_t stream() const { return stream_.get(); }
  void to_bf16(const float* from, __nv_bfloat16* to, long n) const {
    to_bf16_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(from, 1.0f, nullptr, to, n);
  }
  // every tuned layer's GEMM operand = its fake-quantized weight under the current parameters
  void refresh_weights() {
    for (Layer& layer : layers_) {
      if (!layer.qdq) continue;
      if (!bf16_) {
        layer.qdq->forward(layer.weight.f.data());
        continue;
      }
      layer.qdq->forward(weight_scratch_.data());
      to_bf16(weight_scratch_.data(), layer.weight.h.data(), layer.rows * layer.cols);
    }
  }
  void copy_floats(float* to, const float* from, long n) const {
    check(cudaMemcpyAsync(to, from, static_cast<std::size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice, stream()), "device copy");
  }
  static DeviceBuffer<float> upload(const Eigen::VectorXf& v) {
    return DeviceBuffer<float>(std::span<const float>(v.data(), static_cast<std::size_t>(v.size())));
  }

  void upload_constants(const LlamaBlock& block) {
    attn_norm_ = upload(block.attn_norm);
    ffn_norm_ = upload(block.ffn_norm);
    for (std::size_t j = 0; j < 3; ++j) bias_[j] = upload(block.qkv_bias[j]);
    if (block.output_bias.size() > 0) o_bias_ = upload(block.output_bias);
    if (block.sinks.size() > 0) sinks_ = upload(block.sinks);
    if (block.mla) {  // DeepSeek-V3: the latents' norms; q_a_proj is the last slot (linear_slots)
      mla_ = true;
      kv_a_norm_ = upload(block.mla->kv_a_norm);
      if (block.mla->query_a_norm.size() > 0) {
        q_a_norm_ = upload(block.mla->query_a_norm);
        latent_slot_ = slots_.size() - 1;
      }
    }
    qk_norm_ = block.q_norm.size() > 0;
    if (qk_norm_) {
      q_norm_ = upload(block.q_norm);
      k_norm_ = upload(block.k_norm);
    }
    // RoPE (cos, sin) per position and pair, computed as the CPU does (double angle, float result):
    // a sliding layer's own base (Gemma), LongRoPE's divisors for this length and its factor (Phi-3)
    LlamaConfig local;
    const LlamaConfig& rc = detail::attention_config(config_, block.sliding, local);
    const long half = config_.rotary() / 2;
    const float factor = config_.rope_attention_factor;
    std::vector<float2> table(static_cast<std::size_t>(seqlen_ * half));
    for (long i = 0; i < half; ++i) {
      const double frequency = detail::rope_frequency(rc, i, seqlen_);
      for (long t = 0; t < seqlen_; ++t) {
        const double angle = static_cast<double>(t) * frequency;
        float2 cs{static_cast<float>(std::cos(angle)), static_cast<float>(std::sin(angle))};
        if (factor != 1.0f) cs.x *= factor, cs.y *= factor;
        table[static_cast<std::size_t>(t * half + i)] = cs;
      }
    }
    rope_ = DeviceBuffer<float2>(std::span<const float2>(table));
    window_ = block.sliding ? config_.sliding_window : 0;
    if (block.post_attn_norm.size() > 0) post_attn_norm_ = upload(block.post_attn_norm);
    if (block.post_ffn_norm.size() > 0) post_ffn_norm_ = upload(block.post_ffn_norm);
    if (!moe_) return;
    const MoeWeights& w = block.moe->weights;
    router_ = operand(w.router.data(), w.router.size());  // full precision (never tuned), in the GEMM precision
    if (w.shared_gate.size() > 0) {
      shared_gate_ = upload(w.shared_gate);
      shared_gate_operand_ = operand(w.shared_gate.data(), w.shared_gate.size());
    }
    normalize_ = block.moe->spec.normalize;
    topk_softmax_ = block.moe->spec.scoring == RouterScoring::TopKSoftmax;
    grouped_ = block.moe->spec.scoring == RouterScoring::SigmoidGrouped;
    groups_ = static_cast<int>(block.moe->spec.groups), top_groups_ = static_cast<int>(block.moe->spec.top_groups);
    route_scale_ = block.moe->spec.scale;
    if (w.correction_bias.size() > 0) correction_bias_ = upload(w.correction_bias);
    clamped_ = block.moe->spec.activation == ExpertActivation::ClampedSwiGlu;
    experts_geglu_ = block.moe->spec.activation == ExpertActivation::GeGlu;
    if (w.expert_scale.size() > 0) expert_scale_ = upload(w.expert_scale);
    if (beside_) {  // Gemma 4: the experts' input norm, the two branches' output norms, the router's input as one norm
      const ExpertsBesideMlp& beside = *block.moe->beside_mlp;
      experts_input_norm_ = upload(beside.input_norm);
      mlp_branch_norm_ = upload(beside.mlp_norm);
      experts_branch_norm_ = upload(beside.experts_norm);
      router_input_norm_ = upload(beside.router_norm());
    }
    limit_ = block.moe->spec.limit, alpha_ = block.moe->spec.alpha;
    if (w.router_bias.size() > 0) router_bias_ = upload(w.router_bias);
    if (!w.experts.empty() && w.experts[0].gate_bias.size() > 0) {  // every expert's (check_moe), stacked
      const long experts = shape_.experts, inter = shape_.intermediate, hidden = config_.hidden;
      Eigen::VectorXf gate(experts * inter), up(experts * inter), down(experts * hidden);
      for (long e = 0; e < experts; ++e) {
        const ExpertWeights& ex = w.experts[static_cast<std::size_t>(e)];
        gate.segment(e * inter, inter) = ex.gate_bias;
        up.segment(e * inter, inter) = ex.up_bias;
        down.segment(e * hidden, hidden) = ex.down_bias;
      }
      expert_bias_ = {upload(gate), upload(up), upload(down)};
    }
  }

  // a constant GEMM operand: float32, or its bf16 copy in bf16 mode
  Tensor operand(const float* host, long n) {
    Tensor t;
    t.allocate(n, bf16_, false);
    const std::span<const float> values(host, static_cast<std::size_t>(n));
    if (!bf16_) {
      t.f.upload(values);
      return t;
    }
    const DeviceBuffer<float> scratch(values);
    to_bf16(scratch.data(), t.h.data(), n);
    stream_.synchronize();
    return t;
  }

  // What the device's mixture of experts computes (moe_kernels.cuh): softmax top-k routing over
  // SwiGLU experts of one intermediate size, or GPT-OSS's (top-k softmax with a router bias,
  // clamped SwiGLU experts with biases), DeepSeek-V3's / GLM's grouped sigmoid routing, Gemma 4's
  // experts beside the MLP; integer and floating-point schemes. The rest is refused by name: it
  // tunes on the CPU.
  void check_moe(const LlamaBlock& block, const std::string& name) {
    const MoeFeedForward& m = *block.moe;
    const MoeWeights& w = m.weights;
    auto refuse = [&](const std::string& what) {
      throw Error(name + ": a mixture of experts with " + what + ": the GPU does not tune it yet (issue #25); run with --device cpu");
    };
    const bool grouped = m.spec.scoring == RouterScoring::SigmoidGrouped;
    if (grouped && (m.spec.groups < 1 || m.spec.groups > 64 || shape_.experts % m.spec.groups != 0 || m.spec.top_groups < 1 ||
                    m.spec.top_groups > m.spec.groups || shape_.top_k > m.spec.top_groups * (shape_.experts / m.spec.groups)))
      refuse("expert groups that do not divide the experts (at most 64 groups) or kept groups that hold fewer than top_k experts");
    if (w.correction_bias.size() > 0 && (!grouped || w.correction_bias.size() != shape_.experts))
      refuse("a router correction bias without sigmoid grouped routing or of another size than the expert count");
    auto biased = [](const ExpertWeights& e) { return e.gate_bias.size() > 0 || e.up_bias.size() > 0 || e.down_bias.size() > 0; };
    const bool any_bias = !w.experts.empty() && biased(w.experts[0]);
    for (const ExpertWeights& e : w.experts) {
      detail::require(e.gate.rows() == shape_.intermediate, name + ": routed experts of different intermediate sizes");
      if (biased(e) != any_bias || (any_bias && (e.gate_bias.size() != shape_.intermediate || e.up_bias.size() != shape_.intermediate ||
                                                 e.down_bias.size() != config_.hidden)))
        refuse("biases on some experts only, or of other sizes");
    }
    if (w.router_bias.size() > 0 && w.router_bias.size() != shape_.experts) refuse("a router bias of another size than the expert count");
    if (w.shared && biased(*w.shared)) refuse("shared expert biases");
    if (w.shared && m.spec.activation != ExpertActivation::SwiGlu) refuse("a shared expert beside clamped SwiGLU experts");
    if (w.expert_scale.size() > 0 && (m.spec.scoring != RouterScoring::Softmax || w.expert_scale.size() != shape_.experts))
      refuse("per-expert scales of the routing weights beside other than softmax routing, or of another size than the expert count");
    if (shape_.sandwich_norms && !m.beside_mlp) refuse("sandwich norms (other than Gemma 4's experts beside the MLP)");
    if (m.beside_mlp && block.post_ffn_norm.size() == 0) refuse("experts beside the MLP without the post-feedforward norm");
    detail::require(shape_.experts > 0 && shape_.top_k >= 1 && shape_.top_k <= shape_.experts &&
                        w.router.rows() == shape_.experts && w.router.cols() == config_.hidden,
                    name + ": the router is not [experts, hidden] or top_k is not between 1 and the expert count");
    moe_ = true;
    expert_tokens_.assign(static_cast<std::size_t>(shape_.experts), 0);
    counts_host_.assign(static_cast<std::size_t>(shape_.experts), 0);
  }

  void setup_layer(std::size_t l, const RowMatrix& w, const std::optional<Q>& quantizer, const std::string& name) {
    Layer& layer = layers_[l];
    layer.rows = w.rows();
    layer.cols = w.cols();
    const std::span<const float> host(w.data(), static_cast<std::size_t>(w.size()));
    layer.weight.allocate(w.size(), bf16_, false);  // bf16 mode: the GEMM operand only
    if (!quantizer) {
      if (!bf16_) return layer.weight.f.upload(host);
      check(cudaMemcpy(weight_scratch_.data(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), "copy a weight to the device");
      return to_bf16(weight_scratch_.data(), layer.weight.h.data(), w.size());
    }
    layer.quantizer = set_up_for_weight(*quantizer, view(w));
    layer.qdq.emplace(quantizer->spec(), w.rows(), w.cols(), DeviceBuffer<float>(host), stream());  // the unquantized weight
    if constexpr (FloatCodeQuantizer<Q>) layer.qdq->set_global_scale(layer.quantizer->global_scale());
    nonfinite_kernel<><<<1024, 256, 0, stream()>>>(layer.qdq->weight().data(), w.size(), nonfinite_.data() + static_cast<long>(l));    // until the first step the block computes with the unquantized weight (targets, importance)
    if (bf16_) to_bf16(layer.qdq->weight().data(), layer.weight.h.data(), w.size());
    else copy_floats(layer.weight.f.data(), layer.qdq->weight().data(), w.size());
    const auto n = static_cast<std::size_t>(w.size()), groups = static_cast<std::size_t>(layer.qdq->shape().groups());
    layer.grad = DeviceBuffer<float>(n);
    layer.best_rounding = DeviceBuffer<float>(n);
    layer.grad_min = DeviceBuffer<float>(groups);
    layer.grad_max = DeviceBuffer<float>(groups);
    layer.best_min = DeviceBuffer<float>(groups);
    layer.best_max = DeviceBuffer<float>(groups);
    layer.lr = options_.rounding_lr(quantizer->bits());
    layer.minmax_lr = options_.clipping_lr(quantizer->bits());
  }

  void allocate() {
    const long rows = micro_ * seqlen_, hidden = config_.hidden, inter = mlp_inter_;
    const long q_cols = config_.heads * query_key_dim(config_), kv_cols = key_heads(config_) * query_key_dim(config_);
    const long o_cols = config_.heads * value_dim(config_), v_cols = key_heads(config_) * value_dim(config_);
    const long scores = pairs_ * seqlen_ * seqlen_;
    auto floats = [](long n) { return DeviceBuffer<float>(static_cast<std::size_t>(n)); };
    if (moe_) allocate_moe(rows);
    x_ = floats(rows * hidden);
    target_ = floats(rows * hidden);
    h_ = floats(rows * hidden);
    gate_ = floats(rows * inter);
    up_ = floats(rows * inter);
    d_act_ = floats(rows * inter);
    d_yn_ = floats(rows * hidden);
    dk_heads_ = floats(rows * q_cols);
    dv_heads_ = floats(rows * o_cols);
    inv_rms1_ = floats(rows);
    inv_rms2_ = floats(rows);
    if (qk_norm_) {
      q_projected_ = floats(rows * q_cols);
      k_projected_ = floats(rows * kv_cols);
      inv_rms_q_ = floats(rows * config_.heads);
      inv_rms_k_ = floats(rows * config_.kv_heads);
      norm_scratch_ = floats(rows * q_cols);
    }
    if (config_.value_norm) {
      v_projected_ = floats(rows * kv_cols);
      inv_rms_v_ = floats(rows * config_.kv_heads);
      ones_ = DeviceBuffer<float>(std::vector<float>(static_cast<std::size_t>(config_.head_dim), 1.0f));
      if (norm_scratch_.size() == 0) norm_scratch_ = floats(rows * q_cols);
    }
    d_out_.allocate(rows * hidden, bf16_);
    for (Tensor* t : {&xn_, &yn_}) t->allocate(rows * hidden, bf16_, input_floats_);  // quantized inputs: from float32 values
    d_h_.allocate(rows * hidden, bf16_, shape_.sandwich_norms);  // the post-attention norm's backward reads it in float32
    if (shape_.sandwich_norms) {
      normed_ = floats(rows * hidden);
      if (post_attn_norm_.size() > 0) {
        attention_out_ = floats(rows * hidden);
        inv_rms_post_attn_ = floats(rows);
        d_attention_out_.allocate(rows * hidden, bf16_, false);
      }
      if (post_ffn_norm_.size() > 0) {
        mlp_out_ = floats(rows * hidden);
        inv_rms_post_ffn_ = floats(rows);
        d_mlp_.allocate(rows * hidden, bf16_, beside_);  // (beside: both branches' norms read it in float32)
      }
    }
    if (beside_) {
      for (Tensor* t : {&experts_in_, &router_in_}) t->allocate(rows * hidden, bf16_);
      for (DeviceBuffer<float>* b : {&dense_out_, &experts_out_, &normed_branch_, &d_experts_out_, &d_experts_in_, &d_router_in_, &d_chain_})
        *b = floats(rows * hidden);
      inv_rms_dense_ = floats(rows);
      inv_rms_experts_ = floats(rows);
      d_dense_.allocate(rows * hidden, bf16_, false);
    }
    for (Tensor* t : {&q_, &dq_}) t->allocate(rows * q_cols, bf16_);
    for (Tensor* t : {&attention_, &d_attention_}) t->allocate(rows * o_cols, bf16_);
    for (Tensor* t : {&k_, &dk_}) t->allocate(rows * kv_cols, bf16_);
    for (Tensor* t : {&v_, &dv_}) t->allocate(rows * v_cols, bf16_);
    if (mla_) allocate_latent(rows);
    act_.allocate(rows * inter, bf16_, input_floats_);
    if (input_floats_) {  // the quantized inputs before quantization, for their backward
      attention_float_ = floats(rows * o_cols);
      yn_float_ = floats(rows * hidden);
      act_float_ = floats(rows * inter);
    }
    for (Tensor* t : {&d_gate_, &d_up_}) t->allocate(rows * inter, bf16_, false);
    // attention, pairs_ squares: float32 probabilities P and float32 dP → dS, in place; in bf16
    // mode the float32 square is only the GEMM output (S, then dP) and P, dS are kept in bf16
    p_.allocate(scores, bf16_, false);
    ds_.allocate(scores, bf16_);
    if (config_.attention_softcap > 0) lse_ = floats(pairs_ * seqlen_);  // each probability row's log-sum-exp
  }

  // a latent attention's workspace for `rows` tokens (latent_forward / latent_backward)
  void allocate_latent(long rows) {
    const long query_rank = config_.q_lora_rank, rank = config_.kv_lora_rank, rope = config_.head_dim;
    const long kv_b = config_.heads * (config_.qk_nope_dim + config_.v_head_dim);
    auto floats = [](long n) { return DeviceBuffer<float>(static_cast<std::size_t>(n)); };
    if (q_a_norm_.size() > 0) {
      query_a_out_ = floats(rows * query_rank);
      inv_rms_query_ = floats(rows);
      d_query_latent_ = floats(rows * query_rank);
      query_latent_.allocate(rows * query_rank, bf16_, false);  // GEMM operands only
      d_query_a_.allocate(rows * query_rank, bf16_, false);
    }
    kv_a_out_ = floats(rows * (rank + rope));
    latent_raw_ = floats(rows * rank);
    inv_rms_latent_ = floats(rows);
    d_latent_ = floats(rows * rank);
    d_latent_normed_ = floats(rows * rank);
    key_rope_ = floats(rows * rope);
    d_key_rope_ = floats(rows * rope);
    kv_b_out_ = floats(rows * kv_b);
    latent_.allocate(rows * rank, bf16_, false);
    d_kv_b_.allocate(rows * kv_b, bf16_, false);
    d_kv_a_.allocate(rows * (rank + rope), bf16_, false);
  }

  // a mixture of experts' workspace for `rows` tokens (moe_forward / moe_backward)
  void allocate_moe(long rows) {
    const long hidden = config_.hidden, experts = shape_.experts, n = rows * shape_.top_k, inter = shape_.intermediate;
    auto floats = [](long count) { return DeviceBuffer<float>(static_cast<std::size_t>(count)); };
    auto ints = [](long count) { return DeviceBuffer<int>(static_cast<std::size_t>(count)); };
    probabilities_ = floats(rows * experts);
    d_logits_.allocate(rows * experts, bf16_);
    chosen_ = ints(n);
    order_ = ints(n);
    position_ = ints(n);
    counts_ = ints(experts);
    offsets_ = ints(experts + 1);
    route_weight_ = floats(n);
    d_weight_ = floats(n);
    if (expert_scale_.size() > 0) scaled_weight_ = floats(n);
    xe_.allocate(n * hidden, bf16_, input_floats_);  // GEMM operands only, or quantized from float32 values
    dye_.allocate(n * hidden, bf16_, false);
    eact_.allocate(n * inter, bf16_, input_floats_);
    if (input_floats_) {  // the experts' inputs before quantization
      xe_float_ = floats(n * hidden);
      eact_float_ = floats(n * inter);
    }
    d_eg_.allocate(n * inter, bf16_, false);
    d_eu_.allocate(n * inter, bf16_, false);
    expert_out_ = floats(n * hidden);
    eg_ = floats(n * inter);
    eu_ = floats(n * inter);
    d_eact_ = floats(n * inter);
    if (shape_.shared_intermediate > 0) {
      shared_out_ = floats(rows * hidden);
      d_shared_.allocate(rows * hidden, bf16_, false);
      if (input_floats_) {  // its own quantized input, and the gradient there
        shared_in_.allocate(rows * hidden, bf16_);
        d_shared_in_ = floats(rows * hidden);
      }
      if (shared_gate_.size() > 0) {
        shared_weight_ = floats(rows);
        d_shared_gate_ = floats(rows);
      }
    }
  }

  // The six attention GEMMs of one causal tile, as pointer arrays with one entry per (sample,
  // query head) of a pass, sample-major so that a smaller final batch uses a prefix; pair i's
  // square is slot i % pairs_, so a chunk of pairs_ consecutive pairs uses each slot once.
  struct TileGemms {
    AttentionTile tile;
    Batched scores, context, d_scores, d_query, d_key, d_value;
  };
  void build_attention_batches() {
    if (bf16_) build_attention_batches<__nv_bfloat16>(); else build_attention_batches<float>();
  }
  template <class T>
  void build_attention_batches() {
    const long d = query_key_dim(config_), dv = value_dim(config_), group = config_.heads / key_heads(config_);
    const long ldq = config_.heads * d, ldk = key_heads(config_) * d, ldo = config_.heads * dv, ldv = key_heads(config_) * dv;
    const long square = seqlen_ * seqlen_;
    const auto count = static_cast<std::size_t>(micro_ * config_.heads);
    auto make = [&](auto a_of, auto b_of, auto c_of) {
      std::vector<const void*> a(count), b(count);
      std::vector<float*> c(count);
      for (long s = 0; s < micro_; ++s)
        for (long h = 0; h < config_.heads; ++h) {
          const auto i = static_cast<std::size_t>(s * config_.heads + h);
          a[i] = a_of(s, h, h / group);
          b[i] = b_of(s, h, h / group);
          c[i] = c_of(s, h, h / group);
        }
      Batched batched;
      batched.a = DeviceBuffer<const void*>(std::span<const void* const>(a));
      batched.b = DeviceBuffer<const void*>(std::span<const void* const>(b));
      batched.c = DeviceBuffer<float*>(std::span<float* const>(c));
      return batched;
    };
    // a head's columns in a [tokens, heads·width] matrix from row r: queries / keys (width d),
    // the attention's output and values (width dv; a latent attention's differ from d)
    auto q_at = [&](Tensor& t, long s, long h, long r) { return t.template as<T>() + (s * seqlen_ + r) * ldq + h * d; };
    auto k_at = [&](Tensor& t, long s, long kv, long r) { return t.template as<T>() + (s * seqlen_ + r) * ldk + kv * d; };
    auto v_at = [&](Tensor& t, long s, long kv, long r) { return t.template as<T>() + (s * seqlen_ + r) * ldv + kv * dv; };
    auto o_at = [&](Tensor& t, long s, long h, long r) { return t.template as<T>() + (s * seqlen_ + r) * ldo + h * dv; };
    // a square's entry (r, c)
    auto slot = [&](long s, long h, long r, long c) { return (s * config_.heads + h) % pairs_ * square + r * seqlen_ + c; };
    auto square_at = [&](Tensor& t, long s, long h, long r, long c) { return t.template as<T>() + slot(s, h, r, c); };
    auto q_float = [&](float* base, long s, long h, long r) { return base + (s * seqlen_ + r) * ldq + h * d; };
    auto o_float = [&](float* base, long s, long h, long r) { return base + (s * seqlen_ + r) * ldo + h * dv; };
    float* scores_out = bf16_ ? ds_.f.data() : p_.f.data();
    tiles_.clear();
    for (const AttentionTile& t : attention_tiles(seqlen_, tile_, window_)) {
      TileGemms g{t};
      const long r0 = t.r0, lo = t.lo;
      // query tile: rows r0.., keys lo..
      g.scores = make([&](long s, long h, long) { return q_at(q_, s, h, r0); }, [&](long s, long, long kv) { return k_at(k_, s, kv, lo); },
                      [&](long s, long h, long) { return scores_out + slot(s, h, r0, lo); });
      g.context = make([&](long s, long h, long) { return square_at(p_, s, h, r0, lo); },
                       [&](long s, long, long kv) { return v_at(v_, s, kv, lo); },
                       [&](long s, long h, long) { return o_float(attention_.f.data(), s, h, r0); });
      g.d_scores = make([&](long s, long h, long) { return o_at(d_attention_, s, h, r0); },
                        [&](long s, long, long kv) { return v_at(v_, s, kv, lo); },
                        [&](long s, long h, long) { return ds_.f.data() + slot(s, h, r0, lo); });
      g.d_query = make([&](long s, long h, long) { return square_at(ds_, s, h, r0, lo); },
                       [&](long s, long, long kv) { return k_at(k_, s, kv, lo); },
                       [&](long s, long h, long) { return q_float(dq_.f.data(), s, h, r0); });
      // key tile: keys r0.., query rows r0..q_end
      g.d_key = make([&](long s, long h, long) { return square_at(ds_, s, h, r0, r0); }, [&](long s, long h, long) { return q_at(q_, s, h, r0); },
                     [&](long s, long h, long) { return q_float(dk_heads_.data(), s, h, r0); });
      g.d_value = make([&](long s, long h, long) { return square_at(p_, s, h, r0, r0); },
                       [&](long s, long h, long) { return o_at(d_attention_, s, h, r0); },
                       [&](long s, long h, long) { return o_float(dv_heads_.data(), s, h, r0); });
      tiles_.push_back(std::move(g));
    }
  }

  // pairs [first, first + count) of a batched attention GEMM
  template <class T>
  void batched(const Batched& g, bool trans_a, bool trans_b, long m, long n, long k, float alpha, long lda, long ldb, long ldc,
               long first, long count) {
    blas_.gemm_batched<T>(trans_a, trans_b, m, n, k, alpha, reinterpret_cast<const T* const*>(g.a.data()) + first, lda,
                          reinterpret_cast<const T* const*>(g.b.data()) + first, ldb, 0.0f, g.c.data() + first, ldc, count);
  }

  // the slot of the attention's layers and of the MLP's (a dense block's, or the shared expert's)
  std::size_t slot(Linear l) const {
    if (l < Linear::Gate) return *own_slot_index(l, values_from_keys_);  // (never Value without v_proj)
    return mlp_base_ + projection_index(l);
  }

  // y [rows, out] (= or +=) x [rows, in] · W^T, for the layer in slot(l) or slot `i`
  template <class T>
  void project(Linear l, long rows, const Tensor& x, float* y, float beta = 0.0f) { project_slot<T>(slot(l), rows, x, y, beta); }
  template <class T>
  void project_slot(std::size_t i, long rows, const Tensor& x, float* y, float beta = 0.0f) {
    const Layer& layer = layers_[i];
    blas_.gemm<T>(false, true, rows, layer.rows, layer.cols, 1.0f, x.template as<T>(), layer.cols, layer.weight.template as<T>(),
                  layer.cols, beta, y, layer.rows);
  }
  // dx [rows, in] (= or +=) dy [rows, out] · W
  template <class T>
  void project_back(Linear l, long rows, const Tensor& dy, float* dx, float beta = 0.0f) {
    const Layer& layer = layers_[slot(l)];
    blas_.gemm<T>(false, false, rows, layer.cols, layer.rows, 1.0f, dy.template as<T>(), layer.rows,
                  layer.weight.template as<T>(), layer.cols, beta, dx, layer.cols);
  }
  // dW [out, in] (= or, for a later micro-batch, +=) dy^T · x, for tuned layers only
  template <class T>
  void weight_gradient(Linear l, long rows, const Tensor& dy, const Tensor& x, bool accumulate) {
    weight_gradient_slot<T>(slot(l), rows, dy, x, accumulate);
  }
  template <class T>
  void weight_gradient_slot(std::size_t i, long rows, const Tensor& dy, const Tensor& x, bool accumulate) {
    Layer& layer = layers_[i];
    if (!layer.qdq) return;
    blas_.gemm<T>(true, false, layer.rows, layer.cols, rows, 1.0f, dy.template as<T>(), layer.rows, x.template as<T>(), layer.cols,
                  accumulate ? 1.0f : 0.0f, layer.grad.data(), layer.cols);
  }

  // RoPE on t's first rows (heads per row), its bf16 copy refreshed when `copy` (partial rotary:
  // the whole copy, the pass-through dimensions too)
  void rope(Tensor& t, bool copy, long rows, long heads, float direction) {
    const long rotary = config_.rotary(), n = rows * heads * (rotary / 2);
    const bool partial = rotary < config_.head_dim;
    rope_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(t.f.data(), copy && !partial ? t.bf16_out() : nullptr, rope_.data(), rows, heads,
                                                           config_.head_dim, seqlen_, config_.rope_style == RopeStyle::AdjacentPairs,
                                                           direction, rotary);
    if (copy && partial) t.refresh(stream(), rows * heads * config_.head_dim);
  }

  // Block forward on the first nb samples of x_: output into d_out_.f, intermediates kept.
  template <class T>
  void forward(long nb) {
    const long rows = nb * seqlen_, hidden = config_.hidden, heads = config_.heads;
    const long o_cols = heads * value_dim(config_), v_cols = key_heads(config_) * value_dim(config_);
    rms_norm_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(x_.data(), attn_norm_.data(), xn_.float_out(), xn_.bf16_out(),
                                                                   inv_rms1_.data(), hidden, config_.rms_eps);
    if (input_quant_) quantize_input(xn_, LinearInput::Attention, rows, hidden);  // kept quantized: dW = dY^T q(x)
    if (mla_) latent_forward<T>(rows);
    else project_queries_keys_values<T>(rows);
    for (long first = 0; first < nb * heads; first += pairs_) {
      const long count = std::min(pairs_, nb * heads - first);
      probabilities<T>(first, count);
      for (const TileGemms& g : tiles_) {  // O = P V
        const AttentionTile& t = g.tile;
        batched<T>(g.context, false, false, t.r1 - t.r0, value_dim(config_), t.r1 - t.lo, 1.0f, seqlen_, v_cols, o_cols, first, count);
      }
    }
    if (input_quant_) {
      copy_floats(attention_float_.data(), attention_.f.data(), rows * o_cols);
      quantize_input(attention_, LinearInput::AttentionOutput, rows, o_cols);
    } else {
      attention_.refresh(stream(), rows * o_cols);
    }
    forward_after_attention<T>(rows);
    if (layer_scalar_ != 1.0f)  // Gemma 4: the whole output, residual included
      scale_kernel<><<<blocks_for(rows * hidden, 256), 256, 0, stream()>>>(d_out_.f.data(), layer_scalar_, rows * hidden);
  }

  // q_, k_, v_ (their bf16 copies too) from xn_: the three projections (+ biases), Qwen3's
  // per-head norms, RoPE
  template <class T>
  void project_queries_keys_values(long rows) {
    const long d = config_.head_dim, heads = config_.heads, kv_heads = config_.kv_heads, q_cols = heads * d, kv_cols = kv_heads * d;
    Tensor* qkv[3] = {&q_, &k_, &v_};
    for (std::size_t j = 0; j < 3; ++j) {
      const Linear l = all_linears[j];
      if (l == Linear::Value && values_from_keys_) break;
      project<T>(l, rows, xn_, qkv[j]->f.data());
      if (bias_[j].size() > 0) {
        const long cols = layers_[slot(l)].rows;
        add_bias_kernel<><<<blocks_for(rows * cols, 256), 256, 0, stream()>>>(qkv[j]->f.data(), bias_[j].data(), rows, cols);
      }
    }
    if (values_from_keys_) copy_floats(v_.f.data(), k_.f.data(), rows * kv_cols);  // Gemma 4's full layers: k_proj's output, before k_norm and RoPE
    if (config_.value_norm) {  // Gemma 4: RMSNorm of each value head without a weight
      copy_floats(v_projected_.data(), v_.f.data(), rows * kv_cols);
      rms_norm_kernel<><<<static_cast<unsigned>(rows * kv_heads), kRowThreads, 0, stream()>>>(v_projected_.data(), ones_.data(), v_.f.data(),
                                                                                nullptr, inv_rms_v_.data(), d, config_.rms_eps);
    }
    if (qk_norm_) {  // Qwen3: RMSNorm over each head of q and k, before RoPE
      copy_floats(q_projected_.data(), q_.f.data(), rows * q_cols);
      copy_floats(k_projected_.data(), k_.f.data(), rows * kv_cols);
      rms_norm_kernel<><<<static_cast<unsigned>(rows * heads), kRowThreads, 0, stream()>>>(q_projected_.data(), q_norm_.data(), q_.f.data(),
                                                                             nullptr, inv_rms_q_.data(), d, config_.rms_eps);
      rms_norm_kernel<><<<static_cast<unsigned>(rows * kv_heads), kRowThreads, 0, stream()>>>(k_projected_.data(), k_norm_.data(), k_.f.data(),
                                                                                nullptr, inv_rms_k_.data(), d, config_.rms_eps);
    }
    rope(q_, true, rows, heads, 1.0f);
    rope(k_, true, rows, kv_heads, 1.0f);
    v_.refresh(stream(), rows * kv_cols);
  }

  // DeepSeek-V3's latent attention from xn_ (model/latent_attention.hpp): the query through q_a,
  // its norm and q_b (or q_proj alone); kv_a's [latent | key part], the latent's norm, kv_b; RoPE
  // on each head's last head_dim query columns and on the one shared key part; then each head's
  // key [k_nope | roped part] and value into k_ and v_ (bf16 copies of q_, k_, v_ refreshed)
  template <class T>
  void latent_forward(long rows) {
    const long heads = config_.heads, nope = config_.qk_nope_dim, rope = config_.head_dim, value = config_.v_head_dim;
    const long d = nope + rope, query_rank = config_.q_lora_rank, rank = config_.kv_lora_rank;
    const bool adjacent = config_.rope_style == RopeStyle::AdjacentPairs;
    const auto grid = [](long n) { return blocks_for(n, 256); };
    if (q_a_norm_.size() > 0) {
      project_slot<T>(latent_slot_, rows, xn_, query_a_out_.data());
      rms_norm_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(query_a_out_.data(), q_a_norm_.data(), query_latent_.float_out(),
                                                                                  query_latent_.bf16_out(), inv_rms_query_.data(), query_rank,
                                                                                  config_.latent_norm_eps);
      project<T>(Linear::Query, rows, query_latent_, q_.f.data());
    } else {
      project<T>(Linear::Query, rows, xn_, q_.f.data());
    }
    project<T>(Linear::Key, rows, xn_, kv_a_out_.data());
    split_columns_kernel<><<<grid(rows * (rank + rope)), 256, 0, stream()>>>(kv_a_out_.data(), rows, rank, rope, latent_raw_.data(),
                                                                           key_rope_.data());
    rms_norm_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(latent_raw_.data(), kv_a_norm_.data(), latent_.float_out(),
                                                                                latent_.bf16_out(), inv_rms_latent_.data(), rank,
                                                                                config_.latent_norm_eps);
    project<T>(Linear::Value, rows, latent_, kv_b_out_.data());
    rope_kernel<><<<grid(rows * heads * (rope / 2)), 256, 0, stream()>>>(q_.f.data() + nope, nullptr, rope_.data(), rows, heads, d, seqlen_,
                                                                        adjacent, 1.0f, rope);
    rope_kernel<><<<grid(rows * (rope / 2)), 256, 0, stream()>>>(key_rope_.data(), nullptr, rope_.data(), rows, 1, rope, seqlen_, adjacent,
                                                                1.0f, rope);
    latent_keys_values_kernel<><<<grid(rows * heads * (d + value)), 256, 0, stream()>>>(kv_b_out_.data(), key_rope_.data(), rows, heads,
                                                                                       nope, rope, value, k_.f.data(), v_.f.data());
    q_.refresh(stream(), rows * heads * d);
    k_.refresh(stream(), rows * heads * d);
    v_.refresh(stream(), rows * heads * value);
  }

  // From the attention's output (attention_, quantized where the scheme quantizes inputs): o_proj
  // and the residual, the MLP's norm and the MLP (dense or a mixture of experts) into d_out_.f
  template <class T>
  void forward_after_attention(long rows) {
    const long hidden = config_.hidden, inter = mlp_inter_;
    if (post_attn_norm_.size() > 0) {  // Gemma: h = x + rms(attention Wo^T) · g
      project<T>(Linear::Output, rows, attention_, attention_out_.data());
      if (o_bias_.size() > 0) add_bias_kernel<><<<blocks_for(rows * hidden, 256), 256, 0, stream()>>>(attention_out_.data(), o_bias_.data(), rows, hidden);
      add_normed(attention_out_.data(), post_attn_norm_.data(), inv_rms_post_attn_.data(), x_.data(), h_.data(), rows);
    } else {
      copy_floats(h_.data(), x_.data(), rows * hidden);
      project<T>(Linear::Output, rows, attention_, h_.data(), 1.0f);  // h = x + attention Wo^T
      if (o_bias_.size() > 0) add_bias_kernel<><<<blocks_for(rows * hidden, 256), 256, 0, stream()>>>(h_.data(), o_bias_.data(), rows, hidden);
    }
    rms_norm_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(h_.data(), ffn_norm_.data(), yn_.float_out(), yn_.bf16_out(),
                                                                   inv_rms2_.data(), hidden, config_.rms_eps);
    if (moe_ && !beside_) return moe_forward<T>(rows, yn_, yn_, h_.data(), d_out_.f.data());  // (each expert quantizes its own rows)
    if (input_quant_) {
      copy_floats(yn_float_.data(), yn_.f.data(), rows * hidden);
      quantize_input(yn_, LinearInput::Mlp, rows, hidden);
    }
    project<T>(Linear::Gate, rows, yn_, gate_.data());
    project<T>(Linear::Up, rows, yn_, up_.data());
    gated_activation(rows * inter);
    if (input_quant_) {
      copy_floats(act_float_.data(), act_.f.data(), rows * inter);
      quantize_input(act_, LinearInput::MlpProduct, rows, inter);
    }
    if (beside_) return beside_forward<T>(rows);
    if (post_ffn_norm_.size() > 0) {  // Gemma: out = h + rms(act Wd^T) · g
      project<T>(Linear::Down, rows, act_, mlp_out_.data());
      add_normed(mlp_out_.data(), post_ffn_norm_.data(), inv_rms_post_ffn_.data(), h_.data(), d_out_.f.data(), rows);
      return;
    }
    copy_floats(d_out_.f.data(), h_.data(), rows * hidden);
    project<T>(Linear::Down, rows, act_, d_out_.f.data(), 1.0f);  // out = h + act Wd^T
  }

  // Gemma 4's experts beside the dense MLP (whose gate/up activation is in act_): out = h +
  // rms(rms(act Wd^T)·g1 + rms(experts(rms(h)·g_in))·g2)·g_post, the router on rms(h)·scale/√H.
  // The three norms of h share h's 1/rms (inv_rms2_, the ffn norm's: the same row, the same eps).
  template <class T>
  void beside_forward(long rows) {
    const long hidden = config_.hidden, n = rows * hidden;
    project<T>(Linear::Down, rows, act_, dense_out_.data());
    rms_norm_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(h_.data(), experts_input_norm_.data(), experts_in_.float_out(),
                                                                                experts_in_.bf16_out(), inv_rms2_.data(), hidden, config_.rms_eps);
    rms_norm_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(h_.data(), router_input_norm_.data(), router_in_.float_out(),
                                                                                router_in_.bf16_out(), inv_rms2_.data(), hidden, config_.rms_eps);
    moe_forward<T>(rows, experts_in_, router_in_, nullptr, experts_out_.data());
    rms_norm_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(dense_out_.data(), mlp_branch_norm_.data(), normed_branch_.data(),
                                                                                nullptr, inv_rms_dense_.data(), hidden, config_.rms_eps);
    rms_norm_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(experts_out_.data(), experts_branch_norm_.data(), normed_.data(),
                                                                                nullptr, inv_rms_experts_.data(), hidden, config_.rms_eps);
    add_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(normed_branch_.data(), normed_.data(), mlp_out_.data(), n);
    add_normed(mlp_out_.data(), post_ffn_norm_.data(), inv_rms_post_ffn_.data(), h_.data(), d_out_.f.data(), rows);
  }

  // beside_forward's backward from dL/d(out) in d_out_: both branches' gradients through their
  // norms, the experts' (into d_experts_in_ and the router's d_router_in_) and the dense MLP's
  // (into d_yn_), then the three norms of h chained into d_chain_ = d_out + the experts' input's
  // and the router's input's shares (the ffn norm's is added by backward(), from d_chain_).
  template <class T>
  void beside_backward(long rows, bool accumulate) {
    const long hidden = config_.hidden;
    const auto row_blocks = static_cast<unsigned>(rows);
    rms_norm_backward_kernel<><<<row_blocks, kRowThreads, 0, stream()>>>(mlp_out_.data(), post_ffn_norm_.data(), inv_rms_post_ffn_.data(),
                                                                        d_out_.f.data(), nullptr, d_mlp_.float_out(), nullptr, hidden);
    rms_norm_backward_kernel<><<<row_blocks, kRowThreads, 0, stream()>>>(dense_out_.data(), mlp_branch_norm_.data(), inv_rms_dense_.data(),
                                                                        d_mlp_.f.data(), nullptr, d_dense_.float_out(), d_dense_.bf16_out(), hidden);
    rms_norm_backward_kernel<><<<row_blocks, kRowThreads, 0, stream()>>>(experts_out_.data(), experts_branch_norm_.data(), inv_rms_experts_.data(),
                                                                        d_mlp_.f.data(), nullptr, d_experts_out_.data(), nullptr, hidden);
    moe_backward<T>(rows, accumulate, d_experts_out_.data(), d_experts_in_.data(), d_router_in_.data(), 0.0f);
    mlp_backward<T>(rows, d_dense_, accumulate);
    if (input_quant_) input_backward(yn_float_.data(), d_yn_.data(), LinearInput::Mlp, rows, hidden);
    rms_norm_backward_kernel<><<<row_blocks, kRowThreads, 0, stream()>>>(h_.data(), experts_input_norm_.data(), inv_rms2_.data(),
                                                                        d_experts_in_.data(), d_out_.f.data(), d_chain_.data(), nullptr, hidden);
    rms_norm_backward_kernel<><<<row_blocks, kRowThreads, 0, stream()>>>(h_.data(), router_input_norm_.data(), inv_rms2_.data(),
                                                                        d_router_in_.data(), d_chain_.data(), d_chain_.data(), nullptr, hidden);
  }

  // out = residual + rms(x) · g (a sandwich norm; x kept for the backward, 1/rms into inv_rms)
  void add_normed(const float* x, const float* g, float* inv_rms, const float* residual, float* out, long rows) {
    const long n = rows * config_.hidden;
    rms_norm_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(x, g, normed_.data(), nullptr, inv_rms, config_.hidden,
                                                                                config_.rms_eps);
    add_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(residual, normed_.data(), out, n);
  }

  // the MLP's gated activation of gate_ and up_ into act_: SwiGLU, or GeGLU (Gemma, also the dense
  // MLP beside Gemma 4's experts); a mixture of experts' shared expert is SwiGLU
  void gated_activation(long n) {
    if (config_.activation == MlpActivation::GeluTanh && (!moe_ || beside_))
      geglu_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(gate_.data(), up_.data(), act_.float_out(), act_.bf16_out(), n);
    else
      swiglu_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(gate_.data(), up_.data(), act_.float_out(), act_.bf16_out(), n);
  }
  void gated_activation_backward(long n) {
    if (config_.activation == MlpActivation::GeluTanh && (!moe_ || beside_))
      geglu_backward_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(gate_.data(), up_.data(), d_act_.data(), d_gate_.float_out(),
                                                                       d_up_.float_out(), d_gate_.bf16_out(), d_up_.bf16_out(), n);
    else
      swiglu_backward_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(gate_.data(), up_.data(), d_act_.data(), d_gate_.float_out(),
                                                                        d_up_.float_out(), d_gate_.bf16_out(), d_up_.bf16_out(), n);
  }

  // P = causal softmax(Q K^T / sqrt(d)) of pairs [first, first + count) into their slots
  template <class T>
  void probabilities(long first, long count) {
    const long d = query_key_dim(config_), q_cols = config_.heads * d, kv_cols = key_heads(config_) * d;
    for (const TileGemms& g : tiles_) {  // S = Q K^T, the tile's part
      const AttentionTile& t = g.tile;
      batched<T>(g.scores, false, true, t.r1 - t.r0, t.r1 - t.lo, d, detail::attention_scale(config_), q_cols, kv_cols, seqlen_, first, count);
    }
    const float* sinks = sinks_.size() > 0 ? sinks_.data() : nullptr;
    const auto rows = static_cast<unsigned>(count * seqlen_);
    float* lse = lse_.size() > 0 ? lse_.data() : nullptr;  // (soft-capping only)
    if (bf16_)
      causal_softmax_kernel<><<<rows, kRowThreads, 0, stream()>>>(ds_.f.data(), false, p_.h.data(), seqlen_, tile_, window_, sinks,
                                                                  config_.heads, first, config_.attention_softcap, lse);
    else
      causal_softmax_kernel<><<<rows, kRowThreads, 0, stream()>>>(p_.f.data(), true, nullptr, seqlen_, tile_, window_, sinks, config_.heads,
                                                                  first, config_.attention_softcap, lse);
  }

  // The gated MLP's backward (a dense block's, or the shared expert's) from dL/d(its output) `dy`:
  // its weight gradients, and dL/d(its input) into d_yn_ (= or, when `add`, +=). A shared expert
  // under quantized inputs: its input `x` (its own quantization of yn_), its quantization `quant`
  // (of the product; the block's by default), dL/d x into `d_x`.
  template <class T>
  void mlp_backward(long rows, const Tensor& dy, bool accumulate, bool add = false, const Tensor* x = nullptr,
                    const ActivationQuant* quant = nullptr, float* d_x = nullptr) {
    const long inter = mlp_inter_;
    const Tensor& in = x ? *x : yn_;
    float* d_in = d_x ? d_x : d_yn_.data();
    weight_gradient<T>(Linear::Down, rows, dy, act_, accumulate);
    project_back<T>(Linear::Down, rows, dy, d_act_.data());
    if (const ActivationQuant* q = quant ? quant : input_quant_) rows_backward(*q, LinearInput::MlpProduct, act_float_.data(), d_act_.data(), rows, inter);
    gated_activation_backward(rows * inter);
    weight_gradient<T>(Linear::Gate, rows, d_gate_, in, accumulate);
    weight_gradient<T>(Linear::Up, rows, d_up_, in, accumulate);
    project_back<T>(Linear::Gate, rows, d_gate_, d_in, add ? 1.0f : 0.0f);
    project_back<T>(Linear::Up, rows, d_up_, d_in, 1.0f);
  }

  // f(expert, first sorted row, rows) for every expert the last forward routed a token to
  template <class F>
  void for_each_expert(F&& f) {
    long first = 0;
    for (std::size_t e = 0; e < counts_host_.size(); ++e) {
      const long count = counts_host_[e];
      if (count > 0) f(e, first, count);
      first += count;
    }
  }
  const Layer& expert_layer(std::size_t e, Linear role) const { return layers_[expert_slot_index(static_cast<Index>(e), role, first_expert_)]; }
  Layer& expert_layer(std::size_t e, Linear role) { return layers_[expert_slot_index(static_cast<Index>(e), role, first_expert_)]; }

  // The mixture of experts on `x` (rows tokens; the router reads `router_x`: yn_ both, or Gemma 4's
  // own inputs): the router and its softmax top-k, the tokens' rows sorted by expert and
  // gathered, each expert's three GEMMs over its rows, the shared expert on every row, and out =
  // residual (null: none) + the weighted sum. Each expert's row count sizes its GEMMs: the counts
  // come to the host, the one synchronisation of a step.
  template <class T>
  void moe_forward(long rows, const Tensor& x_in, const Tensor& router_x, const float* residual, float* out) {
    const long hidden = config_.hidden, experts = shape_.experts, k = shape_.top_k, n = rows * k, inter = shape_.intermediate;
    // the router's logits in the GEMM precision (the reference's autocast computes its router in bf16)
    blas_.gemm<T>(false, true, rows, experts, hidden, 1.0f, router_x.template as<T>(), hidden, router_.template as<T>(), hidden, 0.0f,
                  probabilities_.data(), experts);
    if (router_bias_.size() > 0)
      add_bias_kernel<><<<blocks_for(rows * experts, 256), 256, 0, stream()>>>(probabilities_.data(), router_bias_.data(), rows, experts);
    if (topk_softmax_)  // GPT-OSS: the logits stay; the softmax is over the chosen
      topk_softmax_route_kernel<><<<blocks_for(rows, 128), 128, 0, stream()>>>(probabilities_.data(), rows, static_cast<int>(experts),
                                                                              static_cast<int>(k), chosen_.data(), route_weight_.data());
    else if (grouped_)  // DeepSeek-V3, GLM-4.5: sigmoid scores, the choice among the best groups on the corrected scores
      sigmoid_grouped_route_kernel<><<<blocks_for(rows, 128), 128, 0, stream()>>>(
          probabilities_.data(), correction_bias_.size() > 0 ? correction_bias_.data() : nullptr, rows, static_cast<int>(experts), groups_,
          top_groups_, static_cast<int>(k), normalize_, route_scale_, chosen_.data(), route_weight_.data());
    else
      softmax_route_kernel<><<<blocks_for(rows, 128), 128, 0, stream()>>>(probabilities_.data(), rows, static_cast<int>(experts),
                                                                         static_cast<int>(k), normalize_, chosen_.data(), route_weight_.data());
    check(cudaMemsetAsync(counts_.data(), 0, counts_.size() * sizeof(int), stream()), "zero the expert counts");
    count_assignments_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(chosen_.data(), n, counts_.data());
    expert_offsets_kernel<><<<1, 1, 0, stream()>>>(counts_.data(), static_cast<int>(experts), offsets_.data());
    expert_rows_kernel<><<<static_cast<unsigned>(experts), kRowThreads, 0, stream()>>>(chosen_.data(), n, offsets_.data(), order_.data(),
                                                                                     position_.data());
    if (expert_scale_.size() > 0)  // Gemma 4: each chosen weight × its expert's scale, after the normalization
      expert_scale_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(route_weight_.data(), chosen_.data(), expert_scale_.data(), n,
                                                                     scaled_weight_.data());
    gather_routed_rows_kernel<T><<<blocks_for(n * hidden, 256), 256, 0, stream()>>>(x_in.template as<T>(), order_.data(), static_cast<int>(k),
                                                                                    n, hidden, xe_.template as<T>());
    if (input_floats_)  // the rows before quantization (the backward's, and measure_inputs')
      gather_routed_rows_kernel<float><<<blocks_for(n * hidden, 256), 256, 0, stream()>>>(x_in.f.data(), order_.data(), static_cast<int>(k), n,
                                                                                          hidden, xe_float_.data());
    const std::vector<int> counts = counts_.download();  // waits for the queue (Stream: blocking)
    counts_host_.assign(counts.begin(), counts.end());
    const bool quant = input_quant_ != nullptr;
    if (quant)  // each expert's rows quantized as its wrapped gate / up Linears quantize them (their own static scales)
      for_each_expert([&](std::size_t e, long first, long count) {
        const ActivationQuant q = input_quant_->for_expert(e);
        if (q.float_input[static_cast<std::size_t>(LinearInput::Mlp)]) return;  // its layers stay float: the gathered rows stand
        float* rows_f = xe_.f.data() + first * hidden;
        copy_floats(rows_f, xe_float_.data() + first * hidden, count * hidden);
        quantize_rows(q, LinearInput::Mlp, rows_f, xe_.bf16_out() ? xe_.bf16_out() + first * hidden : nullptr, count, hidden);
      });
    for_each_expert([&](std::size_t e, long first, long count) {
      const T* x = xe_.template as<T>() + first * hidden;
      blas_.gemm<T>(false, true, count, inter, hidden, 1.0f, x, hidden, expert_layer(e, Linear::Gate).weight.template as<T>(), hidden, 0.0f,
                    eg_.data() + first * inter, inter);
      blas_.gemm<T>(false, true, count, inter, hidden, 1.0f, x, hidden, expert_layer(e, Linear::Up).weight.template as<T>(), hidden, 0.0f,
                    eu_.data() + first * inter, inter);
    });
    const bool biased = expert_bias_[0].size() > 0;
    if (biased) {  // GPT-OSS: each row its expert's biases
      add_expert_bias_kernel<><<<blocks_for(n * inter, 256), 256, 0, stream()>>>(eg_.data(), expert_bias_[0].data(), chosen_.data(),
                                                                                order_.data(), n, inter);
      add_expert_bias_kernel<><<<blocks_for(n * inter, 256), 256, 0, stream()>>>(eu_.data(), expert_bias_[1].data(), chosen_.data(),
                                                                                order_.data(), n, inter);
    }
    if (clamped_)
      clamped_swiglu_kernel<><<<blocks_for(n * inter, 256), 256, 0, stream()>>>(eg_.data(), eu_.data(), eact_.float_out(), eact_.bf16_out(),
                                                                               n * inter, limit_, alpha_);
    else if (experts_geglu_)
      geglu_kernel<><<<blocks_for(n * inter, 256), 256, 0, stream()>>>(eg_.data(), eu_.data(), eact_.float_out(), eact_.bf16_out(), n * inter);
    else
      swiglu_kernel<><<<blocks_for(n * inter, 256), 256, 0, stream()>>>(eg_.data(), eu_.data(), eact_.float_out(), eact_.bf16_out(), n * inter);
    if (quant) {  // each down projection reads its expert's quantized product
      copy_floats(eact_float_.data(), eact_.f.data(), n * inter);
      for_each_expert([&](std::size_t e, long first, long count) {
        quantize_rows(input_quant_->for_expert(e), LinearInput::MlpProduct, eact_.f.data() + first * inter,
                      eact_.bf16_out() ? eact_.bf16_out() + first * inter : nullptr, count, inter);
      });
    }
    for_each_expert([&](std::size_t e, long first, long count) {
      blas_.gemm<T>(false, true, count, hidden, inter, 1.0f, eact_.template as<T>() + first * inter, inter,
                    expert_layer(e, Linear::Down).weight.template as<T>(), inter, 0.0f, expert_out_.data() + first * hidden, hidden);
    });
    if (biased)
      add_expert_bias_kernel<><<<blocks_for(n * hidden, 256), 256, 0, stream()>>>(expert_out_.data(), expert_bias_[2].data(), chosen_.data(),
                                                                                 order_.data(), n, hidden);
    const bool shared = shape_.shared_intermediate > 0, gated = shared_gate_.size() > 0;
    if (shared) {  // the shared expert on every token (the MLP's slots are its), and its gate (on float yn_)
      const Tensor* shared_x = &yn_;
      std::optional<ActivationQuant> q;
      if (quant) {  // its own quantization of yn_, and of its product
        q = input_quant_->for_expert(static_cast<std::size_t>(experts));
        copy_floats(shared_in_.f.data(), yn_.f.data(), rows * hidden);
        quantize_rows(*q, LinearInput::Mlp, shared_in_.f.data(), shared_in_.bf16_out(), rows, hidden);
        shared_x = &shared_in_;
      }
      project<T>(Linear::Gate, rows, *shared_x, gate_.data());
      project<T>(Linear::Up, rows, *shared_x, up_.data());
      swiglu_kernel<><<<blocks_for(rows * mlp_inter_, 256), 256, 0, stream()>>>(gate_.data(), up_.data(), act_.float_out(), act_.bf16_out(),
                                                                                rows * mlp_inter_);
      if (quant) {
        copy_floats(act_float_.data(), act_.f.data(), rows * mlp_inter_);
        quantize_rows(*q, LinearInput::MlpProduct, act_.f.data(), act_.bf16_out(), rows, mlp_inter_);
      }
      project<T>(Linear::Down, rows, act_, shared_out_.data());
      if (gated) {
        blas_.gemm<T>(false, true, rows, 1, hidden, 1.0f, yn_.template as<T>(), hidden, shared_gate_operand_.template as<T>(), hidden, 0.0f,
                      shared_weight_.data(), 1);
        sigmoid_kernel<><<<blocks_for(rows, 256), 256, 0, stream()>>>(shared_weight_.data(), rows);
      }
    }
    moe_combine_kernel<><<<blocks_for(rows * hidden, 256), 256, 0, stream()>>>(
        residual, expert_out_.data(), chosen_.data(), used_weights(), position_.data(), static_cast<int>(k),
        shared ? shared_out_.data() : nullptr, gated ? shared_weight_.data() : nullptr, rows, hidden, out);
  }
  // the routing weights the experts' outputs are summed with: × each expert's scale (Gemma 4), or as routed
  const float* used_weights() const { return expert_scale_.size() > 0 ? scaled_weight_.data() : route_weight_.data(); }

  // The mixture of experts' backward from dL/d(its output) `d_moe` (d_out_: the residual passes it
  // to the MLP's output unchanged): every tuned expert's weight gradients (routed experts' add up
  // from 0: step() zeroes them) and dL/d(its input) into `d_x` (d_yn_; the shared expert and its
  // gate add theirs there too), the router's (full precision, not tuned) added to `d_router_x`
  // × router_beta (d_yn_ with 1; Gemma 4's own router input with 0).
  template <class T>
  void moe_backward(long rows, bool accumulate, const float* d_moe, float* d_x, float* d_router_x, float router_beta) {
    const long hidden = config_.hidden, experts = shape_.experts, k = shape_.top_k, n = rows * k, inter = shape_.intermediate;
    moe_output_grad_kernel<><<<static_cast<unsigned>(n), kRowThreads, 0, stream()>>>(d_moe, expert_out_.data(), order_.data(),
                                                                                    used_weights(), static_cast<int>(k), hidden,
                                                                                    d_weight_.data(), dye_.float_out(), dye_.bf16_out());
    for_each_expert([&](std::size_t e, long first, long count) {
      Layer& down = expert_layer(e, Linear::Down);
      const T* dy = dye_.template as<T>() + first * hidden;
      if (down.qdq)
        blas_.gemm<T>(true, false, hidden, inter, count, 1.0f, dy, hidden, eact_.template as<T>() + first * inter, inter, 1.0f,
                      down.grad.data(), inter);
      blas_.gemm<T>(false, false, count, inter, hidden, 1.0f, dy, hidden, down.weight.template as<T>(), inter, 0.0f,
                    d_eact_.data() + first * inter, inter);
      if (input_quant_)  // through the expert's quantization of its product
        rows_backward(input_quant_->for_expert(e), LinearInput::MlpProduct, eact_float_.data() + first * inter, d_eact_.data() + first * inter,
                      count, inter);
    });
    if (clamped_)
      clamped_swiglu_backward_kernel<><<<blocks_for(n * inter, 256), 256, 0, stream()>>>(
          eg_.data(), eu_.data(), d_eact_.data(), d_eg_.float_out(), d_eu_.float_out(), d_eg_.bf16_out(), d_eu_.bf16_out(), n * inter, limit_,
          alpha_);
    else if (experts_geglu_)
      geglu_backward_kernel<><<<blocks_for(n * inter, 256), 256, 0, stream()>>>(eg_.data(), eu_.data(), d_eact_.data(), d_eg_.float_out(),
                                                                               d_eu_.float_out(), d_eg_.bf16_out(), d_eu_.bf16_out(), n * inter);
    else
      swiglu_backward_kernel<><<<blocks_for(n * inter, 256), 256, 0, stream()>>>(eg_.data(), eu_.data(), d_eact_.data(), d_eg_.float_out(),
                                                                                d_eu_.float_out(), d_eg_.bf16_out(), d_eu_.bf16_out(), n * inter);
    float* dx = expert_out_.data();  // the experts' outputs are spent (read above): their input gradients go there
    for_each_expert([&](std::size_t e, long first, long count) {
      Layer& gate = expert_layer(e, Linear::Gate);
      Layer& up = expert_layer(e, Linear::Up);
      const T* x = xe_.template as<T>() + first * hidden;
      const T* dg = d_eg_.template as<T>() + first * inter;
      const T* du = d_eu_.template as<T>() + first * inter;
      if (gate.qdq) blas_.gemm<T>(true, false, inter, hidden, count, 1.0f, dg, inter, x, hidden, 1.0f, gate.grad.data(), hidden);
      if (up.qdq) blas_.gemm<T>(true, false, inter, hidden, count, 1.0f, du, inter, x, hidden, 1.0f, up.grad.data(), hidden);
      blas_.gemm<T>(false, false, count, hidden, inter, 1.0f, dg, inter, gate.weight.template as<T>(), hidden, 0.0f, dx + first * hidden, hidden);
      blas_.gemm<T>(false, false, count, hidden, inter, 1.0f, du, inter, up.weight.template as<T>(), hidden, 1.0f, dx + first * hidden, hidden);
      if (input_quant_)  // through the expert's quantization of its rows
        rows_backward(input_quant_->for_expert(e), LinearInput::Mlp, xe_float_.data() + first * hidden, dx + first * hidden, count, hidden);
    });
    moe_scatter_grad_kernel<><<<blocks_for(rows * hidden, 256), 256, 0, stream()>>>(dx, chosen_.data(), position_.data(), static_cast<int>(k),
                                                                                   rows, hidden, false, d_x);
    if (shape_.shared_intermediate > 0) {
      const bool gated = shared_gate_.size() > 0;
      shared_expert_grad_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(
          d_moe, shared_out_.data(), gated ? shared_weight_.data() : nullptr, hidden, d_shared_.float_out(), d_shared_.bf16_out(),
          d_shared_gate_.data());
      if (input_quant_) {  // through its own quantization of yn_: dL/d q(yn) into d_shared_in_, then to yn_
        const ActivationQuant q = input_quant_->for_expert(static_cast<std::size_t>(experts));
        mlp_backward<T>(rows, d_shared_, accumulate, false, &shared_in_, &q, d_shared_in_.data());
        rows_backward(q, LinearInput::Mlp, yn_.f.data(), d_shared_in_.data(), rows, hidden);
        add_kernel<><<<blocks_for(rows * hidden, 256), 256, 0, stream()>>>(d_x, d_shared_in_.data(), d_x, rows * hidden);
      } else {
        mlp_backward<T>(rows, d_shared_, accumulate, true);
      }
      if (gated)
        add_outer_kernel<><<<blocks_for(rows * hidden, 256), 256, 0, stream()>>>(d_x, d_shared_gate_.data(), shared_gate_.data(), rows, hidden);
    }
    if (expert_scale_.size() > 0)  // dL/d(the weight before its expert's scale) = scale · dL/d(the weight)
      expert_scale_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(d_weight_.data(), chosen_.data(), expert_scale_.data(), n, d_weight_.data());
    if (topk_softmax_)
      topk_softmax_route_backward_kernel<><<<blocks_for(rows, 128), 128, 0, stream()>>>(
          chosen_.data(), route_weight_.data(), d_weight_.data(), rows, static_cast<int>(experts), static_cast<int>(k), d_logits_.float_out(),
          d_logits_.bf16_out());
    else if (grouped_)
      sigmoid_grouped_route_backward_kernel<><<<blocks_for(rows, 128), 128, 0, stream()>>>(
          probabilities_.data(), chosen_.data(), route_weight_.data(), d_weight_.data(), rows, static_cast<int>(experts), static_cast<int>(k),
          normalize_, route_scale_, d_logits_.float_out(), d_logits_.bf16_out());
    else
      softmax_route_backward_kernel<><<<blocks_for(rows, 128), 128, 0, stream()>>>(
          probabilities_.data(), chosen_.data(), route_weight_.data(), d_weight_.data(), rows, static_cast<int>(experts), static_cast<int>(k),
          normalize_, d_logits_.float_out(), d_logits_.bf16_out());
    blas_.gemm<T>(false, false, rows, hidden, experts, 1.0f, d_logits_.template as<T>(), experts, router_.template as<T>(), hidden,
                  router_beta, d_router_x, hidden);
  }

  // Block backward from dL/d(out) in d_out_ to the tuned layers' weight gradients (added to
  // them when `accumulate`: a later micro-batch of the minibatch).
  template <class T>
  void backward(long nb, bool accumulate) {
    const long rows = nb * seqlen_, hidden = config_.hidden, d = query_key_dim(config_), dv = value_dim(config_);
    const long heads = config_.heads, kv_heads = key_heads(config_), q_cols = heads * d, kv_cols = kv_heads * d;
    const long o_cols = heads * dv, v_cols = kv_heads * dv;
    if (beside_) {
      beside_backward<T>(rows, accumulate);
    } else if (moe_) {
      moe_backward<T>(rows, accumulate, d_out_.f.data(), d_yn_.data(), d_yn_.data(), 1.0f);
    } else if (post_ffn_norm_.size() > 0) {  // through Gemma's norm of the MLP's output first
      rms_norm_backward_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(
          mlp_out_.data(), post_ffn_norm_.data(), inv_rms_post_ffn_.data(), d_out_.f.data(), nullptr, d_mlp_.float_out(), d_mlp_.bf16_out(),
          hidden);
      mlp_backward<T>(rows, d_mlp_, accumulate);
      if (input_quant_) input_backward(yn_float_.data(), d_yn_.data(), LinearInput::Mlp, rows, hidden);
    } else {
      mlp_backward<T>(rows, d_out_, accumulate);
      if (input_quant_) input_backward(yn_float_.data(), d_yn_.data(), LinearInput::Mlp, rows, hidden);
    }
    rms_norm_backward_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(
        h_.data(), ffn_norm_.data(), inv_rms2_.data(), d_yn_.data(), beside_ ? d_chain_.data() : d_out_.f.data(), d_h_.float_out(),
        d_h_.bf16_out(), hidden);
    const Tensor* d_o = &d_h_;
    if (post_attn_norm_.size() > 0) {  // through Gemma's norm of the attention's output first
      rms_norm_backward_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(
          attention_out_.data(), post_attn_norm_.data(), inv_rms_post_attn_.data(), d_h_.f.data(), nullptr, d_attention_out_.float_out(),
          d_attention_out_.bf16_out(), hidden);
      d_o = &d_attention_out_;
    }
    weight_gradient<T>(Linear::Output, rows, *d_o, attention_, accumulate);
    project_back<T>(Linear::Output, rows, *d_o, d_attention_.f.data());
    if (input_quant_) input_backward(attention_float_.data(), d_attention_.f.data(), LinearInput::AttentionOutput, rows, o_cols);
    d_attention_.refresh(stream(), rows * o_cols);
    const float scale = detail::attention_scale(config_);
    const bool recompute = pairs_ < nb * heads;  // the forward's last chunk overwrote the others' probabilities
    for (long first = 0; first < nb * heads; first += pairs_) {
      const long count = std::min(pairs_, nb * heads - first);
      if (recompute) probabilities<T>(first, count);
      for (const TileGemms& g : tiles_) {  // dP = dO V^T
        const AttentionTile& t = g.tile;
        batched<T>(g.d_scores, false, true, t.r1 - t.r0, t.r1 - t.lo, dv, 1.0f, o_cols, v_cols, seqlen_, first, count);
      }
      const auto rows_of_pairs = static_cast<unsigned>(count * seqlen_);
      const float* lse = lse_.size() > 0 ? lse_.data() : nullptr;
      if (bf16_)
        softmax_backward_kernel<<<rows_of_pairs, kRowThreads, 0, stream()>>>(p_.h.data(), ds_.f.data(), false, ds_.h.data(), seqlen_, tile_,
                                                                             window_, scale, config_.attention_softcap, lse);
      else
        softmax_backward_kernel<<<rows_of_pairs, kRowThreads, 0, stream()>>>(p_.f.data(), ds_.f.data(), true, nullptr, seqlen_, tile_,
                                                                             window_, scale, config_.attention_softcap, lse);
      for (const TileGemms& g : tiles_) {
        const AttentionTile& t = g.tile;
        const long rows_in = t.r1 - t.r0, keys = t.r1 - t.lo, queries = t.q_end - t.r0;
        batched<T>(g.d_query, false, false, rows_in, d, keys, 1.0f, seqlen_, kv_cols, q_cols, first, count);       // dQ = dS K
        batched<T>(g.d_key, true, false, rows_in, d, queries, 1.0f, seqlen_, q_cols, q_cols, first, count);         // dK_h = dS^T Q
        batched<T>(g.d_value, true, false, rows_in, dv, queries, 1.0f, seqlen_, o_cols, o_cols, first, count);      // dV_h = P^T dO
      }
    }
    const long group = heads / kv_heads;
    sum_head_groups_kernel<><<<blocks_for(rows * kv_cols, 256), 256, 0, stream()>>>(dk_heads_.data(), dk_.f.data(), rows, kv_heads, group, d);
    sum_head_groups_kernel<><<<blocks_for(rows * v_cols, 256), 256, 0, stream()>>>(dv_heads_.data(), dv_.f.data(), rows, kv_heads, group, dv);
    if (mla_) return latent_backward<T>(rows, accumulate);
    rope(dq_, !qk_norm_, rows, heads, -1.0f);
    rope(dk_, !qk_norm_, rows, kv_heads, -1.0f);
    if (qk_norm_) {  // the norms' backward, into scratch (float32 mode: copied back) or the bf16 operand
      rms_norm_backward_kernel<><<<static_cast<unsigned>(rows * heads), kRowThreads, 0, stream()>>>(
          q_projected_.data(), q_norm_.data(), inv_rms_q_.data(), dq_.f.data(), nullptr, norm_scratch_.data(), dq_.bf16_out(), d);
      copy_floats(dq_.f.data(), norm_scratch_.data(), rows * q_cols);
      rms_norm_backward_kernel<><<<static_cast<unsigned>(rows * kv_heads), kRowThreads, 0, stream()>>>(
          k_projected_.data(), k_norm_.data(), inv_rms_k_.data(), dk_.f.data(), nullptr, norm_scratch_.data(), dk_.bf16_out(), d);
      copy_floats(dk_.f.data(), norm_scratch_.data(), rows * kv_cols);
    }
    if (config_.value_norm) {  // Gemma 4's v_norm (weight 1)
      rms_norm_backward_kernel<><<<static_cast<unsigned>(rows * kv_heads), kRowThreads, 0, stream()>>>(
          v_projected_.data(), ones_.data(), inv_rms_v_.data(), dv_.f.data(), nullptr, norm_scratch_.data(), nullptr, d);
      copy_floats(dv_.f.data(), norm_scratch_.data(), rows * kv_cols);
    }
    if (values_from_keys_) {  // k_proj's output was the keys and the values: both gradients into k_proj's
      add_kernel<><<<blocks_for(rows * kv_cols, 256), 256, 0, stream()>>>(dk_.f.data(), dv_.f.data(), dk_.f.data(), rows * kv_cols);
      dk_.refresh(stream(), rows * kv_cols);
    } else {
      dv_.refresh(stream(), rows * kv_cols);
    }
    weight_gradient<T>(Linear::Query, rows, dq_, xn_, accumulate);
    weight_gradient<T>(Linear::Key, rows, dk_, xn_, accumulate);
    if (!values_from_keys_) weight_gradient<T>(Linear::Value, rows, dv_, xn_, accumulate);
  }

  // latent_forward's backward from dq_, dk_ (per head [k_nope | roped part]) and dv_ (float32):
  // RoPE undone on the queries' and the shared key part's gradients (every head's share added up
  // first), kv_b's gradient, through the latent's norm into kv_a's (the key part's beside it),
  // and q_b's, through q_a's norm into q_a's. Input gradients of xn are not needed.
  template <class T>
  void latent_backward(long rows, bool accumulate) {
    const long heads = config_.heads, nope = config_.qk_nope_dim, rope = config_.head_dim, value = config_.v_head_dim;
    const long d = nope + rope, query_rank = config_.q_lora_rank, rank = config_.kv_lora_rank;
    const bool adjacent = config_.rope_style == RopeStyle::AdjacentPairs;
    const auto grid = [](long n) { return blocks_for(n, 256); };
    rope_kernel<><<<grid(rows * heads * (rope / 2)), 256, 0, stream()>>>(dq_.f.data() + nope, nullptr, rope_.data(), rows, heads, d, seqlen_,
                                                                        adjacent, -1.0f, rope);
    dq_.refresh(stream(), rows * heads * d);
    latent_kv_gradient_kernel<><<<grid(rows * heads * (nope + value)), 256, 0, stream()>>>(dk_.f.data(), dv_.f.data(), rows, heads, nope, rope,
                                                                                          value, d_kv_b_.float_out(), d_kv_b_.bf16_out());
    latent_key_rope_gradient_kernel<><<<grid(rows * rope), 256, 0, stream()>>>(dk_.f.data(), rows, heads, nope, rope, d_key_rope_.data());
    rope_kernel<><<<grid(rows * (rope / 2)), 256, 0, stream()>>>(d_key_rope_.data(), nullptr, rope_.data(), rows, 1, rope, seqlen_, adjacent,
                                                                -1.0f, rope);
    weight_gradient<T>(Linear::Value, rows, d_kv_b_, latent_, accumulate);
    project_back<T>(Linear::Value, rows, d_kv_b_, d_latent_.data());
    rms_norm_backward_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(latent_raw_.data(), kv_a_norm_.data(),
                                                                                         inv_rms_latent_.data(), d_latent_.data(), nullptr,
                                                                                         d_latent_normed_.data(), nullptr, rank);
    join_columns_kernel<><<<grid(rows * (rank + rope)), 256, 0, stream()>>>(d_latent_normed_.data(), d_key_rope_.data(), rows, rank, rope,
                                                                           d_kv_a_.float_out(), d_kv_a_.bf16_out());
    weight_gradient<T>(Linear::Key, rows, d_kv_a_, xn_, accumulate);
    if (q_a_norm_.size() == 0) return weight_gradient<T>(Linear::Query, rows, dq_, xn_, accumulate);
    weight_gradient<T>(Linear::Query, rows, dq_, query_latent_, accumulate);
    if (!layers_[latent_slot_].qdq) return;
    project_back<T>(Linear::Query, rows, dq_, d_query_latent_.data());
    rms_norm_backward_kernel<><<<static_cast<unsigned>(rows), kRowThreads, 0, stream()>>>(query_a_out_.data(), q_a_norm_.data(),
                                                                                         inv_rms_query_.data(), d_query_latent_.data(), nullptr,
                                                                                         d_query_a_.float_out(), d_query_a_.bf16_out(),
                                                                                         query_rank);
    weight_gradient_slot<T>(latent_slot_, rows, d_query_a_, xn_, accumulate);
  }

  // Inputs, masks and targets on the device; targets not given are the full-precision block's
  // outputs on every sample, batch by batch.
  // ClipInit::WeightedSearch: the full-precision block (the layers hold their unquantized weights
  // until the first step) runs over every calibration input to collect each linear's input
  // importance; the search runs on the device for integer quantizers (clip_search_kernel: the
  // host's choices), on the host for double-quantized ones and SymmetricSearch::ScaleGrid /
  // DivisorGrid; its scales are where tuning starts.
  void search_clipping(const LlamaBlock& block) {
    if (bf16_) search_clipping<__nv_bfloat16>(block); else search_clipping<float>(block);
  }
  template <class T>
  void search_clipping(const LlamaBlock& block) {
    const long hidden = config_.hidden, o_cols = config_.heads * value_dim(config_), inter = mlp_inter_;
    const long experts = shape_.experts, expert_inter = shape_.intermediate;
    const long query_rank = q_a_norm_.size() > 0 ? config_.q_lora_rank : 0, rank = mla_ ? config_.kv_lora_rank : 0;
    auto zeros = [](long n) { return DeviceBuffer<float>(std::vector<float>(static_cast<std::size_t>(n), 0.0f)); };
    // the block's four linear inputs (a mixture of experts: the shared expert's), a latent
    // attention's two latents (q_b's and kv_b's inputs; width 0: none), each expert's two
    constexpr int kInputs = 6;
    DeviceBuffer<float> sums[kInputs] = {zeros(hidden), zeros(o_cols), zeros(hidden), zeros(inter), zeros(query_rank), zeros(rank)};
    const Tensor* inputs[kInputs] = {&xn_, &attention_, &yn_, &act_, &query_latent_, &latent_};
    const long cols[kInputs] = {hidden, o_cols, hidden, inter, query_rank, rank};
    DeviceBuffer<float> expert_in = zeros(experts * hidden), expert_act = zeros(experts * expert_inter);
    std::vector<long> expert_rows(static_cast<std::size_t>(experts), 0);
    const long widest = std::max({hidden, o_cols, inter, expert_inter, query_rank, rank});
    // (a pass's chunk sums, 3.7 MB at the 8B shape; an expert has at most a row per token)
    DeviceBuffer<float> chunk_sums(static_cast<std::size_t>((micro_ * seqlen_ + kColumnChunkRows - 1) / kColumnChunkRows * widest));
    for (long first = 0; first < samples_; first += micro_) {
      const long nb = std::min(micro_, samples_ - first);
      in_->load(first, nb, x_.data(), stream());
      forward<T>(nb);
      for (int j = 0; j < kInputs; ++j)
        if (cols[j] > 0 && (j != 3 || !moe_ || beside_ || shape_.shared_intermediate > 0))
          column_square_sum(inputs[j]->template as<T>(), nb * seqlen_, cols[j], sums[j].data(), chunk_sums.data(), stream());
      for_each_expert([&](std::size_t e, long from, long count) {  // an expert's inputs: the tokens routed to it
        column_square_sum(xe_.template as<T>() + from * hidden, count, hidden, expert_in.data() + static_cast<long>(e) * hidden,
                          chunk_sums.data(), stream());
        column_square_sum(eact_.template as<T>() + from * expert_inter, count, expert_inter,
                          expert_act.data() + static_cast<long>(e) * expert_inter, chunk_sums.data(), stream());
        expert_rows[e] += count;
      });
    }
    check(cudaGetLastError(), "input importance");
    const float tokens = static_cast<float>(samples_ * seqlen_);
    lap(times_.importance);
    std::vector<float> mean[kInputs];
    for (int j = 0; j < kInputs; ++j) {
      mean[j] = sums[j].download();
      for (float& m : mean[j]) m /= tokens;
    }
    const std::vector<float> expert_in_sums = expert_in.download(), expert_act_sums = expert_act.download();
    const Cpu host;
    std::array<DeviceBuffer<float>, kInputs> importance;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      Layer& layer = layers_[i];
      if (!layer.qdq) continue;
      const LinearSlot& s = slots_[i];
      const Linear l = s.role;
      int input = l == Linear::Output ? 1 : l == Linear::Gate || l == Linear::Up ? 2 : l == Linear::Down ? 3 : 0;
      if (mla_ && s.expert == LinearSlot::own && l == Linear::Query && query_rank > 0) input = 4;  // q_b reads the query latent
      if (mla_ && s.expert == LinearSlot::own && l == Linear::Value) input = 5;                     // kv_b the normed latent
      std::vector<float> expert_mean;  // a routed expert's, over its tokens; empty when none reached it (every channel weighs 1, as on the CPU)
      if (s.routed()) {
        const auto e = static_cast<std::size_t>(s.expert);
        const long width = l == Linear::Down ? expert_inter : hidden;
        const std::vector<float>& all = l == Linear::Down ? expert_act_sums : expert_in_sums;
        if (expert_rows[e] > 0)
          for (long c = 0; c < width; ++c)
            expert_mean.push_back(all[e * static_cast<std::size_t>(width) + static_cast<std::size_t>(c)] / static_cast<float>(expert_rows[e]));
      }
      const std::vector<float>& weights = s.routed() ? expert_mean : mean[input];
      const bool scale_grid = scale_grid_searched(*layer.quantizer, options_.clip_search);
      if (scale_grid) layer.qdq->set_ceiling(options_.clip_search.ceiling);
      if (!SuperGroupQuantizer<Q> && !scale_grid) {  // integer quantizers' grid: on the device, the host's arithmetic
        if (s.routed()) {
          const DeviceBuffer<float> own(weights.empty() ? std::vector<float>(static_cast<std::size_t>(layer.cols), 1.0f) : weights);
          layer.qdq->search_clipping(own.data(), options_.clip_search);
          stream_.synchronize();  // before `own` goes
          continue;
        }
        if (importance[input].size() == 0) importance[input] = DeviceBuffer<float>(std::span<const float>(mean[input]));
        layer.qdq->search_clipping(importance[input].data(), options_.clip_search);
      } else {  // double quantization and the scale grid: searched on the host (k-quants a group at a time)
        std::vector<float> lo(layer.qdq->min_scale().size()), hi(lo.size());
        search_clip_scales(*layer.quantizer, view(slot_weight(block, s)), weights, [&](Index n, auto&& f) { host.parallel_for(n, f); }, lo, hi,
                           options_.clip_search);
        layer.qdq->min_scale().upload(lo);
        layer.qdq->max_scale().upload(hi);
      }
    }
    lap(times_.search);
  }

  void upload_calibration(const BlockCalibration& calibration) {
    auto upload_samples = [&](std::span<const RowMatrix> from, ActivationStream& to) {
      to = ActivationStream(samples_, seqlen_ * config_.hidden, StreamDtype::Float32, false);
      for (long s = 0; s < samples_; ++s) to.upload(s, from[static_cast<std::size_t>(s)], x_, stream());
    };
    upload_samples(calibration.inputs, inputs_);
    in_ = &inputs_;
    upload_masks(calibration.masks);
    if (!calibration.targets.empty()) {
      upload_samples(calibration.targets, targets_);
      tgt_ = &targets_;
      return;
    }
    targets_ = ActivationStream(samples_, seqlen_ * config_.hidden, StreamDtype::Float32, false);
    tgt_ = &targets_;
    forward_all(*in_, targets_);
  }

  void upload_masks(std::span<const LossMask> masks) {
    if (masks.empty()) return;
    host_masks_.assign(masks.begin(), masks.end());
    std::vector<float> flat;
    for (const LossMask& m : host_masks_) flat.insert(flat.end(), m.begin(), m.end());
    masks_ = DeviceBuffer<float>(std::span<const float>(flat));
    mask_ = DeviceBuffer<float>(static_cast<std::size_t>(micro_ * seqlen_));
  }

  // out = the block with the layers' current weights on every sample of `from`, pass by pass (a
  // pass's samples are read before its outputs are written, so `out` may be `from`). Before the
  // first step the layers hold their unquantized weights: the full-precision block (targets).
  void forward_all(const ActivationStream& from, ActivationStream& out) {
    for (long first = 0; first < samples_; first += micro_) {
      const long nb = std::min(micro_, samples_ - first);
      from.load(first, nb, x_.data(), stream());
      if (bf16_) forward<__nv_bfloat16>(nb); else forward<float>(nb);
      out.store(d_out_.f.data(), first, nb, stream());
    }
    stream_.synchronize();
  }

  void mask_rows(float* a, float* b, const float* mask, long n) {
    mask_rows_kernel<><<<blocks_for(n, 256), 256, 0, stream()>>>(a, b, mask, static_cast<long>(config_.hidden), n);
  }

  // the kept parameters back into the tuned ones
  void load_best() {
    for (Layer& layer : layers_) {
      if (!layer.qdq) continue;
      copy_floats(layer.qdq->rounding().data(), layer.best_rounding.data(), static_cast<long>(layer.best_rounding.size()));
      copy_floats(layer.qdq->min_scale().data(), layer.best_min.data(), static_cast<long>(layer.best_min.size()));
      copy_floats(layer.qdq->max_scale().data(), layer.best_max.data(), static_cast<long>(layer.best_max.size()));
    }
  }

  void snapshot() {
    for (Layer& layer : layers_)
      if (layer.qdq) {
        copy_floats(layer.best_rounding.data(), layer.qdq->rounding().data(), static_cast<long>(layer.best_rounding.size()));
        copy_floats(layer.best_min.data(), layer.qdq->min_scale().data(), static_cast<long>(layer.best_min.size()));
        copy_floats(layer.best_max.data(), layer.qdq->max_scale().data(), static_cast<long>(layer.best_max.size()));
      }
  }

  Stream stream_;  // first: everything below queues its work on it
  TuneOptions options_;
  LlamaConfig config_;
  bool bf16_;
  long samples_, seqlen_, batch_;
  long micro_, pairs_;  // samples per forward/backward, attention pairs held at once (BlockMemoryPlan)
  long tile_;           // query rows per causal attention tile (attention_tile_rows)
  std::chrono::steady_clock::time_point lap_ = std::chrono::steady_clock::now();
  SetupTimes times_;
  IndexSampler sampler_;
  BestStepTracker tracker_;
  std::vector<LinearSlot> slots_;  // the block's linear layers (linear_slots), and layers_'s order
  BlockShape shape_;
  bool moe_ = false;               // the MLP is a mixture of experts
  std::size_t mlp_base_ = 4;       // the slot of the MLP's gate: a dense block's (Gemma 4's beside its experts), or the shared expert's
  long mlp_inter_ = 0;             // that MLP's intermediate size (0: a mixture of experts without a shared expert)
  Blas blas_{stream_.get()};
  std::vector<Layer> layers_;
  DeviceBuffer<float> attn_norm_, ffn_norm_, q_norm_, k_norm_;
  std::array<DeviceBuffer<float>, 3> bias_;
  DeviceBuffer<float> o_bias_, sinks_;  // GPT-OSS: o_proj's bias [hidden], the attention sinks [heads] (empty: none)
  DeviceBuffer<float> lse_;  // Gemma 2's soft-capping: the log-sum-exp of each probability row of pairs_ squares (empty: none)
  bool qk_norm_ = false;
  bool values_from_keys_ = false;  // Gemma 4's full layers: V is k_proj's output (no Value slot)
  float layer_scalar_ = 1.0f;      // Gemma 4: the block's output × this
  std::size_t attention_slots_ = 4;
  DeviceBuffer<float> v_projected_, inv_rms_v_, ones_;  // Gemma 4's v_norm: v before it, 1/rms per head, its unit weight
  DeviceBuffer<float2> rope_;
  ActivationStream inputs_, targets_;   // all samples, when uploaded or computed here
  DeviceBuffer<float> masks_;
  DeviceBuffer<float> weight_scratch_;
  DeviceBuffer<unsigned> outlier_histogram_;  // drop_largest_errors' 256 bins
  DeviceBuffer<int> nonfinite_;  // per layer: its weight holds a NaN or an infinity  // bf16 mode: a weight's float32 values before their bf16 copy
  const ActivationStream* in_ = nullptr;  // the inputs: inputs_, or the caller's stream
  ActivationStream* tgt_ = nullptr;       // the targets: targets_, or the caller's full-precision stream
  std::vector<LossMask> host_masks_;
  DeviceBuffer<float> mask_;  // one minibatch's masks
  // one minibatch
  DeviceBuffer<float> x_, target_, h_, gate_, up_, d_act_, d_yn_, dk_heads_, dv_heads_, inv_rms1_, inv_rms2_;
  DeviceBuffer<float> attention_float_, yn_float_, act_float_;  // o / gate-up / down inputs before quantization (W4A4)
  DeviceBuffer<float> q_projected_, k_projected_, inv_rms_q_, inv_rms_k_, norm_scratch_;
  // the linear inputs' quantization (W4A4 / W8A8): the block's own (targets), the tuned one, the one in use
  std::optional<ActivationQuant> target_input_quant_, tuned_input_quant_;
  const ActivationQuant* input_quant_ = nullptr;
  bool input_floats_ = false;                 // xn_, yn_, act_ keep float32 values in bf16 mode (quantized inputs)
  bool measure_inputs_ = false;               // NVFP4 / FP8_STATIC: input_absmax_ measured before tuning
  std::vector<float> input_absmax_;           // per linear slot
  Tensor xn_, q_, k_, v_, p_, attention_, yn_, act_, d_out_, d_gate_, d_up_, d_h_, d_attention_, ds_, dq_, dk_, dv_;
  // Gemma: sliding-window attention (0: causal only), and the sandwich norms (post_attn_norm_,
  // post_ffn_norm_): the attention's and the MLP's outputs before them, 1/rms, their gradients
  long window_ = 0;
  DeviceBuffer<float> post_attn_norm_, post_ffn_norm_, attention_out_, mlp_out_, normed_, inv_rms_post_attn_, inv_rms_post_ffn_;
  Tensor d_attention_out_, d_mlp_;
  // a mixture of experts (moe_forward): the router, its probabilities [rows, experts] and choices
  // [rows, top_k], the choices sorted by expert (order_: assignment at each sorted row, position_:
  // the inverse), the experts' rows (xe_: inputs, eg_/eu_: gate/up, eact_: activation, expert_out_:
  // outputs, then input gradients), and the shared expert's output and gate
  Tensor router_, shared_gate_operand_, d_logits_, xe_, dye_, eact_, d_eg_, d_eu_, d_shared_;
  DeviceBuffer<float> shared_gate_, probabilities_, route_weight_, d_weight_, expert_out_, eg_, eu_, d_eact_, shared_out_, shared_weight_,
      d_shared_gate_;
  // quantized inputs (W4A4 / W8A8): the experts' rows and products before quantization, the
  // shared expert's quantized input and dL/d(it)
  DeviceBuffer<float> xe_float_, eact_float_, d_shared_in_;
  Tensor shared_in_;
  DeviceBuffer<int> chosen_, order_, position_, counts_, offsets_;
  bool normalize_ = true;          // the chosen weights divided by their sum
  // Gemma 4's 26B-A4B: GeGLU experts, each chosen weight × its expert's scale (scaled_weight_:
  // the weights the outputs are summed with); beside_: the experts run beside the dense MLP (its
  // slots first, the experts' from first_expert_), on their own normed input (experts_in_) with
  // the router on its own (router_in_), both branches' outputs (dense_out_, experts_out_) normed
  // and added; their backward's buffers (beside_backward)
  bool experts_geglu_ = false, beside_ = false;
  std::size_t first_expert_ = 4;
  DeviceBuffer<float> expert_scale_, scaled_weight_;
  DeviceBuffer<float> experts_input_norm_, router_input_norm_, mlp_branch_norm_, experts_branch_norm_;
  Tensor experts_in_, router_in_, d_dense_;
  DeviceBuffer<float> dense_out_, experts_out_, normed_branch_, inv_rms_dense_, inv_rms_experts_, d_experts_out_, d_experts_in_,
      d_router_in_, d_chain_;
  // GPT-OSS: softmax over the top-k logits (router_bias_ added), clamped SwiGLU experts with
  // biases ([experts, intermediate] gate / up, [experts, hidden] down; empty: none)
  bool topk_softmax_ = false, clamped_ = false;
  float limit_ = 7.0f, alpha_ = 1.702f;
  DeviceBuffer<float> router_bias_;
  // DeepSeek-V3, GLM-4.5: sigmoid scores, `groups_` expert groups of which the best `top_groups_`
  // are kept, the choice on score + correction_bias_ (empty: none), weights × route_scale_
  bool grouped_ = false;
  int groups_ = 1, top_groups_ = 1;
  float route_scale_ = 1.0f;
  DeviceBuffer<float> correction_bias_;
  std::array<DeviceBuffer<float>, 3> expert_bias_;
  std::vector<long> counts_host_;  // per expert: its rows in the last forward
  std::vector<Index> expert_tokens_;  // per expert: its rows summed over the steps
  std::vector<TileGemms> tiles_;  // the attention GEMMs, tile by tile
  // DeepSeek-V3's latent attention (latent_forward): q_a's output, 1/rms and normed latent (q_b's
  // input; empty without query compression), kv_a's output split into the latent (before and after
  // its norm: kv_b's input) and the shared key part, kv_b's output; their gradients. q_a_proj is
  // slot latent_slot_ (the last).
  bool mla_ = false;
  std::size_t latent_slot_ = 0;
  DeviceBuffer<float> q_a_norm_, kv_a_norm_, query_a_out_, inv_rms_query_, d_query_latent_, kv_a_out_, latent_raw_, inv_rms_latent_, d_latent_,
      d_latent_normed_, key_rope_, d_key_rope_, kv_b_out_;
  Tensor query_latent_, d_query_a_, latent_, d_kv_b_, d_kv_a_;
};

}  // namespace autoround::cuda
