#include <autoround/backend/cuda/cuda_runs.cuh>
#include <autoround/tune/model_quantizer.hpp>

#include "block_run_gpu.hpp"

using namespace autoround;

GpuBlockRun run_block_on_gpu(const TuneOptions& options, const std::array<std::optional<DynamicIntQuantizer>, 7>& quantizers,
                             const LlamaBlock& block, const LlamaConfig& config, std::span<const RowMatrix> inputs,
                             bool bf16_gemms) {
  // the shared template with the Cuda policy: the same class the CPU side instantiates with Cpu
  BlockTuningRun<DynamicIntQuantizer, SignSGD<>, Cuda> run(options, quantizers, SignSGD<>{},
                                                           Cuda{bf16_gemms ? GemmPrecision::BFloat16 : GemmPrecision::Float32}, block,
                                                           config, inputs, "gpu");
  std::vector<double> losses;
  while (run.running()) losses.push_back(run.step());
  GpuBlockRun out{run.result(), losses, run.evaluate()};
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
