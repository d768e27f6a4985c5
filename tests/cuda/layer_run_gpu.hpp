#pragma once
// The GPU half of test_cuda_layer_run (compiled by nvcc in layer_run_gpu.cu).
#include <vector>

#include <autoround/core/matrix.hpp>
#include <autoround/quantizer/double_quantizer.hpp>
#include <autoround/quantizer/int_quantizer.hpp>
#include <autoround/quantizer/quantized_weight.hpp>
#include <autoround/tune/tune_options.hpp>

struct GpuLayerRun {
  autoround::QuantizedWeight<autoround::DynamicIntQuantizer> result;
  std::vector<double> losses;
};

GpuLayerRun run_layer_on_gpu(const autoround::TuneOptions& options, autoround::QuantSpec spec, autoround::MatrixView weight,
                             autoround::MatrixView inputs, bool bf16_gemms = false);

/// LayerTuner<DynamicIntQuantizer, SignSGD<>, Cuda> with separate full-precision inputs.
autoround::QuantizedWeight<autoround::DynamicIntQuantizer> tune_layer_on_gpu(const autoround::TuneOptions& options,
                                                                             autoround::QuantSpec spec, autoround::MatrixView weight,
                                                                             autoround::MatrixView inputs,
                                                                             autoround::MatrixView fp_inputs);

/// LayerTuner<DynamicDoubleQuantizer, SignSGD<>, Cuda>: a GGUF k-quant scheme tuned on the GPU.
autoround::QuantizedWeight<autoround::DynamicDoubleQuantizer> tune_kquant_layer_on_gpu(const autoround::TuneOptions& options,
                                                                                       autoround::QuantSpec spec,
                                                                                       autoround::MatrixView weight,
                                                                                       autoround::MatrixView inputs,
                                                                                       autoround::MatrixView fp_inputs);
