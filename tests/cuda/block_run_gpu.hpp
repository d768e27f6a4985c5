#pragma once
// The GPU half of test_cuda_block_run (compiled by nvcc in block_run_gpu.cu).
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include <autoround/backend/cuda.hpp>
#include <autoround/core/matrix.hpp>
#include <autoround/model/llama_model.hpp>
#include <autoround/quantizer/int_quantizer.hpp>
#include <autoround/quantizer/quantized_weight.hpp>
#include <autoround/tune/model_quantizer.hpp>
#include <autoround/tune/model_quantizer.hpp>
#include <autoround/tune/tune_options.hpp>
#include <string>

using ModelResults = std::vector<autoround::LayerResults<autoround::DynamicIntQuantizer>>;  // per block, per linear slot

struct GpuBlockRun {
  autoround::LayerResults<autoround::DynamicIntQuantizer> result;  ///< per linear slot
  std::vector<double> losses;
  double final_loss = 0;  ///< evaluate() after result(): all samples, kept parameters
  std::vector<autoround::Index> expert_tokens;  ///< a mixture of experts: tokens per routed expert over the steps
};

/// BlockTuningRun<DynamicIntQuantizer, SignSGD<>, Cuda> run to the end, its step split as `plan`
/// says; one quantizer per linear slot (linear_slots).
GpuBlockRun run_block_on_gpu(const autoround::TuneOptions& options, const std::vector<std::optional<autoround::DynamicIntQuantizer>>& quantizers,
                             const autoround::LlamaBlock& block, const autoround::LlamaConfig& config,
                             std::span<const autoround::RowMatrix> inputs, bool bf16_gemms, autoround::BlockMemoryPlan plan = {});
/// The same for a dense block's seven.
inline GpuBlockRun run_block_on_gpu(const autoround::TuneOptions& options,
                                    const std::array<std::optional<autoround::DynamicIntQuantizer>, 7>& quantizers,
                                    const autoround::LlamaBlock& block, const autoround::LlamaConfig& config,
                                    std::span<const autoround::RowMatrix> inputs, bool bf16_gemms, autoround::BlockMemoryPlan plan = {}) {
  return run_block_on_gpu(options, std::vector<std::optional<autoround::DynamicIntQuantizer>>(quantizers.begin(), quantizers.end()), block,
                          config, inputs, bf16_gemms, plan);
}

/// The same with floating-point schemes (BlockTuningRun<DynamicFloatQuantizer, SignSGD<>, Cuda>):
/// MXFP4 / NVFP4 / FP8 weights, their presets' activation quantization inside the tuned forward.
struct GpuFloatBlockRun {
  autoround::LayerResults<autoround::DynamicFloatQuantizer> result;  ///< per linear slot
  std::vector<double> losses;
  std::vector<autoround::Index> expert_tokens;
};
GpuFloatBlockRun run_float_block_on_gpu(const autoround::TuneOptions& options,
                                        const std::vector<std::optional<autoround::DynamicFloatQuantizer>>& quantizers,
                                        const autoround::LlamaBlock& block, const autoround::LlamaConfig& config,
                                        std::span<const autoround::RowMatrix> inputs, bool bf16_gemms);

/// quantize_model<SignSGD<>, Cuda> with the policy as given.
ModelResults quantize_model_with(autoround::LlamaModel& model, std::span<const std::int32_t> calibration,
                                 const autoround::ModelQuantOptions& options, std::vector<autoround::BlockReport>& reports,
                                 const autoround::Cuda& backend);

/// quantize_model_streaming<SignSGD<>, Cuda> (float32 GEMMs) over `model` in memory, keeping its
/// blocks in `checkpoint_dir` (empty: no checkpoint); stops with std::runtime_error("interrupted")
/// once block `stop_after` is kept (-1: never).
ModelResults quantize_streaming_on_gpu(const autoround::LlamaModel& model, std::span<const autoround::TokenSequence> samples,
                                       const autoround::ModelQuantOptions& options, std::vector<autoround::BlockReport>& reports,
                                       const std::string& checkpoint_dir, autoround::Index stop_after, std::vector<autoround::Index>& tuned);

/// The device memory counter (cuda::DeviceMemory): bytes held now, the peak since the last reset.
std::size_t gpu_memory_now();
std::size_t gpu_memory_peak();
void gpu_memory_reset_peak();
/// cudaMemGetInfo's free bytes.
std::size_t gpu_memory_free();
/// cuda::BlockTuningRun's estimates: weights and tuning state (every layer tuned, groups of
/// `group_size`), and a step's workspace under `plan`.
std::size_t block_state_bytes(const autoround::LlamaConfig& c, long seqlen, autoround::GemmPrecision precision, long group_size);
std::size_t block_workspace_bytes(const autoround::LlamaConfig& c, long batch, long seqlen, autoround::GemmPrecision precision,
                                  autoround::BlockMemoryPlan plan);
/// The same for `block` itself (a mixture of experts: its experts' state and rows).
std::size_t block_state_bytes(const autoround::LlamaBlock& block, const autoround::LlamaConfig& c, long seqlen,
                              autoround::GemmPrecision precision, long group_size);
std::size_t block_workspace_bytes(const autoround::LlamaBlock& block, const autoround::LlamaConfig& c, long batch, long seqlen,
                                  autoround::GemmPrecision precision, autoround::BlockMemoryPlan plan);

/// quantize_model<SignSGD<>, Cuda> (float32 GEMMs), the activation streams placed as `streams` says.
ModelResults quantize_model_on_gpu(autoround::LlamaModel& model, std::span<const std::int32_t> calibration,
                                   const autoround::ModelQuantOptions& options, std::vector<autoround::BlockReport>& reports,
                                   autoround::StreamPlacement streams = autoround::StreamPlacement::Auto);

/// quantize_model<SignSGD<>, Cuda, DynamicFloatQuantizer>: MXFP4 / MXFP8 / NVFP4 / FP8_STATIC on the GPU.
std::vector<autoround::LayerResults<autoround::DynamicFloatQuantizer>> quantize_float_model_on_gpu(
    autoround::LlamaModel& model, std::span<const std::int32_t> calibration, const autoround::ModelQuantOptions& options,
    std::vector<autoround::BlockReport>& reports);

/// quantize_model<SignSGD<>, Cuda, DynamicDoubleQuantizer>: GGUF k-quant schemes on the GPU.
std::vector<autoround::LayerResults<autoround::DynamicDoubleQuantizer>> quantize_kquant_model_on_gpu(
    autoround::LlamaModel& model, std::span<const std::int32_t> calibration, const autoround::ModelQuantOptions& options,
    std::vector<autoround::BlockReport>& reports);
