#pragma once
// The GPU half of the autoround program: quantize_model with the Cuda policy, compiled by nvcc
// into a shared library whose symbols are hidden except these two. Eigen compiles without
// SIMD under nvcc; keeping that build's inline code inside the library lets the program itself
// (loading, perplexity, packing) use vectorized Eigen (see autoround::cuda in CMakeLists.txt).
#include <autoround/backend/cuda.hpp>
#include <autoround/tune/model_quantizer.hpp>

namespace autoround_cli {

using ModelResults = std::vector<std::array<std::optional<autoround::QuantizedWeight<autoround::DynamicIntQuantizer>>, 7>>;

[[gnu::visibility("default")]] ModelResults quantize_model_on_cuda(autoround::LlamaModel& model,
                                                                   std::span<const autoround::TokenSequence> samples,
                                                                   const autoround::ModelQuantOptions& options,
                                                                   const autoround::BlockProgress& on_block,
                                                                   const autoround::StepProgress& on_step,
                                                                   autoround::GemmPrecision precision);

/// The same with every layer's spec read into a DynamicDoubleQuantizer (GGUF k-quant schemes).
using KQuantModelResults = std::vector<autoround::LayerResults<autoround::DynamicDoubleQuantizer>>;
[[gnu::visibility("default")]] KQuantModelResults quantize_kquant_model_on_cuda(autoround::LlamaModel& model,
                                                                                std::span<const autoround::TokenSequence> samples,
                                                                                const autoround::ModelQuantOptions& options,
                                                                                const autoround::BlockProgress& on_block,
                                                                                const autoround::StepProgress& on_step,
                                                                                autoround::GemmPrecision precision);

[[gnu::visibility("default")]] int cuda_device_count();

}  // namespace autoround_cli
