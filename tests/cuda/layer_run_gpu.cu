#include <autoround/backend/cuda/cuda_runs.cuh>
#include <autoround/tune/layer_tuner.hpp>

#include "layer_run_gpu.hpp"

using namespace autoround;

GpuLayerRun run_layer_on_gpu(const TuneOptions& options, QuantSpec spec, MatrixView weight, MatrixView inputs, bool bf16_gemms) {
  // the shared template with the Cuda policy: the same class the CPU test instantiates with Cpu
  LayerTuningRun<DynamicIntQuantizer, SignSGD<>, Cuda> run(options, DynamicIntQuantizer(spec), SignSGD<>{},
                                                           Cuda{bf16_gemms ? GemmPrecision::BFloat16 : GemmPrecision::Float32}, weight,
                                                           inputs, nullptr, "gpu");
  std::vector<double> losses;
  while (run.running()) losses.push_back(run.step());
  return {run.result(), losses};
}

QuantizedWeight<DynamicIntQuantizer> tune_layer_on_gpu(const TuneOptions& options, QuantSpec spec, MatrixView weight,
                                                       MatrixView inputs, MatrixView fp_inputs) {
  return LayerTuner<DynamicIntQuantizer, SignSGD<>, Cuda>(options, DynamicIntQuantizer(spec)).tune(weight, inputs, fp_inputs, "gpu");
}

QuantizedWeight<DynamicDoubleQuantizer> tune_kquant_layer_on_gpu(const TuneOptions& options, QuantSpec spec, MatrixView weight,
                                                                 MatrixView inputs, MatrixView fp_inputs) {
  return LayerTuner<DynamicDoubleQuantizer, SignSGD<>, Cuda>(options, DynamicDoubleQuantizer(spec))
      .tune(weight, inputs, fp_inputs, "gpu");
}
