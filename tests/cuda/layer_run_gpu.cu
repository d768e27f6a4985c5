#include <autoround/backend/cuda/layer_tuning_run.cuh>

#include "layer_run_gpu.hpp"

using namespace autoround;

GpuLayerRun run_layer_on_gpu(const TuneOptions& options, QuantSpec spec, MatrixView weight, MatrixView inputs, bool bf16_gemms) {
  cuda::LayerTuningRun<DynamicIntQuantizer> run(options, DynamicIntQuantizer(spec), weight, inputs, "gpu",
                                                bf16_gemms ? cuda::GemmPrecision::BFloat16 : cuda::GemmPrecision::Float32);
  std::vector<double> losses;
  while (run.running()) losses.push_back(run.step());
  return {run.result(), losses};
}
