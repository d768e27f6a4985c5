#include <autoround/backend/cuda/cuda_runs.cuh>
#include <autoround/tune/model_quantizer.hpp>

#include "block_run_gpu.hpp"
#include "support/memory_source.hpp"

using namespace autoround;

GpuBlockRun run_block_on_gpu(const TuneOptions& options, const std::vector<std::optional<DynamicIntQuantizer>>& quantizers,
                             const LlamaBlock& block, const LlamaConfig& config, std::span<const RowMatrix> inputs,
                             bool bf16_gemms, BlockMemoryPlan plan) {
  // the shared template with the Cuda policy: the same class the CPU side instantiates with Cpu
  Cuda backend{bf16_gemms ? GemmPrecision::BFloat16 : GemmPrecision::Float32};
  backend.plan = plan;
  BlockTuningRun<DynamicIntQuantizer, SignSGD<>, Cuda> run(options, quantizers, SignSGD<>{}, backend, block, config, inputs, "gpu");
  std::vector<double> losses;
  while (run.running()) losses.push_back(run.step());
  GpuBlockRun out{run.result(), losses, run.evaluate(), run.expert_tokens()};
  return out;
}

GpuFloatBlockRun run_float_block_on_gpu(const TuneOptions& options, const std::vector<std::optional<DynamicFloatQuantizer>>& quantizers,
                                        const LlamaBlock& block, const LlamaConfig& config, std::span<const RowMatrix> inputs, bool bf16_gemms) {
  Cuda backend{bf16_gemms ? GemmPrecision::BFloat16 : GemmPrecision::Float32};
  BlockTuningRun<DynamicFloatQuantizer, SignSGD<>, Cuda> run(options, quantizers, SignSGD<>{}, backend, block, config, inputs, "gpu");
  GpuFloatBlockRun out;
  while (run.running()) out.losses.push_back(run.step());
  out.result = run.result();
  out.expert_tokens = run.expert_tokens();
  return out;
}

ModelResults quantize_model_on_gpu(LlamaModel& model, std::span<const std::int32_t> calibration, const ModelQuantOptions& options,
                                   std::vector<BlockReport>& reports, StreamPlacement streams) {
  return quantize_model<SignSGD<>, Cuda>(
      model, calibration, options, [&](const BlockReport& r, Index) { reports.push_back(r); }, {}, SignSGD<>{},
      Cuda{GemmPrecision::Float32, streams});
}

std::vector<LayerResults<DynamicDoubleQuantizer>> quantize_kquant_model_on_gpu(LlamaModel& model, std::span<const std::int32_t> calibration,
                                                                              const ModelQuantOptions& options,
                                                                              std::vector<BlockReport>& reports) {
  return quantize_model<SignSGD<>, Cuda, DynamicDoubleQuantizer>(
      model, calibration, options, [&](const BlockReport& r, Index) { reports.push_back(r); }, {}, SignSGD<>{}, Cuda{});
}

std::vector<LayerResults<DynamicFloatQuantizer>> quantize_float_model_on_gpu(LlamaModel& model, std::span<const std::int32_t> calibration,
                                                                             const ModelQuantOptions& options,
                                                                             std::vector<BlockReport>& reports) {
  return quantize_model<SignSGD<>, Cuda, DynamicFloatQuantizer>(
      model, calibration, options, [&](const BlockReport& r, Index) { reports.push_back(r); }, {}, SignSGD<>{}, Cuda{});
}

ModelResults quantize_model_with(LlamaModel& model, std::span<const std::int32_t> calibration, const ModelQuantOptions& options,
                                 std::vector<BlockReport>& reports, const Cuda& backend) {
  return quantize_model<SignSGD<>, Cuda>(
      model, calibration, options, [&](const BlockReport& r, Index) { reports.push_back(r); }, {}, SignSGD<>{}, backend);
}

std::size_t gpu_memory_now() { return cuda::DeviceMemory::current(); }
std::size_t gpu_memory_peak() { return cuda::DeviceMemory::peak(); }
void gpu_memory_reset_peak() { cuda::DeviceMemory::reset_peak(); }
std::size_t gpu_memory_free() {
  std::size_t free = 0, total = 0;
  cuda::check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return free;
}
std::size_t block_state_bytes(const LlamaConfig& c, long seqlen, GemmPrecision precision, long group_size) {
  return cuda::BlockTuningRun<DynamicIntQuantizer>::state_bytes(c, seqlen, precision, group_size);
}
std::size_t block_workspace_bytes(const LlamaConfig& c, long batch, long seqlen, GemmPrecision precision, BlockMemoryPlan plan) {
  return cuda::BlockTuningRun<DynamicIntQuantizer>::workspace_bytes(c, batch, seqlen, precision, plan);
}
std::size_t block_state_bytes(const LlamaBlock& block, const LlamaConfig& c, long seqlen, GemmPrecision precision, long group_size) {
  return cuda::BlockTuningRun<DynamicIntQuantizer>::state_bytes(block, c, seqlen, precision, group_size);
}
std::size_t block_workspace_bytes(const LlamaBlock& block, const LlamaConfig& c, long batch, long seqlen, GemmPrecision precision,
                                  BlockMemoryPlan plan) {
  return cuda::BlockTuningRun<DynamicIntQuantizer>::workspace_bytes(c, batch, seqlen, precision, plan, false, cuda::BlockShape::of(block));
}

ModelResults quantize_streaming_on_gpu(const LlamaModel& model, std::span<const TokenSequence> samples, const ModelQuantOptions& options,
                                       std::vector<BlockReport>& reports, const std::string& checkpoint_dir, Index stop_after,
                                       std::vector<Index>& tuned) {
  ModelResults results;
  const test_models::MemorySource source{&model};
  auto sink = [&](Index, const LlamaBlock&, const LayerResults<DynamicIntQuantizer>& r) { results.push_back(r); };
  auto on_block = [&](const BlockReport& r, Index) {
    reports.push_back(r);
    if (r.block == stop_after) throw std::runtime_error("interrupted");
  };
  auto on_step = [&](Index b, int, double) {
    if (tuned.empty() || tuned.back() != b) tuned.push_back(b);
  };
  if (checkpoint_dir.empty())
    quantize_model_streaming<SignSGD<>, Cuda, DynamicIntQuantizer>(source, samples, options, sink, on_block, on_step, SignSGD<>{},
                                                                   Cuda{GemmPrecision::Float32});
  else
    quantize_model_streaming<SignSGD<>, Cuda, DynamicIntQuantizer>(
        source, samples, options, sink, on_block, on_step, SignSGD<>{}, Cuda{GemmPrecision::Float32},
        RunCheckpoint<DynamicIntQuantizer>(checkpoint_dir, "gpu test run\n", model.config.layers));
  return results;
}
