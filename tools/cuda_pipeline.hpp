#pragma once
// The GPU half of the autoround program: quantize_model_streaming with the Cuda policy, compiled
// by nvcc into a shared library whose symbols are hidden except these. Eigen compiles without
// SIMD under nvcc; keeping that build's inline code inside the library lets the program itself
// (loading, perplexity, packing) use vectorized Eigen (see autoround::cuda in CMakeLists.txt).
// The source and the sink cross the boundary type-erased (AnyModelSource, std::function).
#include <functional>

#include <autoround/backend/cuda.hpp>
#include <autoround/model/model_source.hpp>
#include <autoround/tune/model_quantizer.hpp>
#include <autoround/tune/run_checkpoint.hpp>

namespace autoround_cli {

template <class Q>
using StreamSink = std::function<void(autoround::Index, const autoround::LlamaBlock&, const autoround::LayerResults<Q>&)>;

/// quantize_model_streaming with the Cuda policy, one overload per quantizer the program reads
/// from its options: DynamicIntQuantizer (integer schemes), DynamicDoubleQuantizer (GGUF
/// k-quants), DynamicFloatQuantizer (MXFP4, MXFP8, NVFP4, FP8_STATIC). Plain overloads, not a
/// template: an instantiation over the library's hidden types would be hidden too.
[[gnu::visibility("default")]] void quantize_streaming_on_cuda(
    const autoround::AnyModelSource& source, std::span<const autoround::TokenSequence> samples, const autoround::ModelQuantOptions& options,
    const StreamSink<autoround::DynamicIntQuantizer>& sink, const autoround::BlockProgress& on_block, const autoround::StepProgress& on_step,
    const autoround::Cuda& backend, const autoround::RunCheckpoint<autoround::DynamicIntQuantizer>& checkpoint);
[[gnu::visibility("default")]] void quantize_streaming_on_cuda(
    const autoround::AnyModelSource& source, std::span<const autoround::TokenSequence> samples, const autoround::ModelQuantOptions& options,
    const StreamSink<autoround::DynamicDoubleQuantizer>& sink, const autoround::BlockProgress& on_block, const autoround::StepProgress& on_step,
    const autoround::Cuda& backend, const autoround::RunCheckpoint<autoround::DynamicDoubleQuantizer>& checkpoint);
[[gnu::visibility("default")]] void quantize_streaming_on_cuda(
    const autoround::AnyModelSource& source, std::span<const autoround::TokenSequence> samples, const autoround::ModelQuantOptions& options,
    const StreamSink<autoround::DynamicFloatQuantizer>& sink, const autoround::BlockProgress& on_block, const autoround::StepProgress& on_step,
    const autoround::Cuda& backend, const autoround::RunCheckpoint<autoround::DynamicFloatQuantizer>& checkpoint);

[[gnu::visibility("default")]] int cuda_device_count();

}  // namespace autoround_cli
