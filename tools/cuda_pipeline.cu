#include <autoround/backend/cuda/cuda_runs.cuh>

#include "cuda_pipeline.hpp"

namespace autoround_cli {

namespace {
template <class Q>
void streaming_on_cuda(const autoround::AnyModelSource& source, std::span<const autoround::TokenSequence> samples,
                       const autoround::ModelQuantOptions& options, const StreamSink<Q>& sink, const autoround::BlockProgress& on_block,
                       const autoround::StepProgress& on_step, const autoround::Cuda& backend, const autoround::RunCheckpoint<Q>& checkpoint) {
  using namespace autoround;
  quantize_model_streaming<SignSGD<>, Cuda, Q>(source, samples, options, sink, on_block, on_step, SignSGD<>{}, backend, checkpoint);
}
}  // namespace

void quantize_streaming_on_cuda(const autoround::AnyModelSource& source, std::span<const autoround::TokenSequence> samples,
                                const autoround::ModelQuantOptions& options, const StreamSink<autoround::DynamicIntQuantizer>& sink,
                                const autoround::BlockProgress& on_block, const autoround::StepProgress& on_step,
                                const autoround::Cuda& backend, const autoround::RunCheckpoint<autoround::DynamicIntQuantizer>& checkpoint) {
  streaming_on_cuda(source, samples, options, sink, on_block, on_step, backend, checkpoint);
}

void quantize_streaming_on_cuda(const autoround::AnyModelSource& source, std::span<const autoround::TokenSequence> samples,
                                const autoround::ModelQuantOptions& options, const StreamSink<autoround::DynamicDoubleQuantizer>& sink,
                                const autoround::BlockProgress& on_block, const autoround::StepProgress& on_step,
                                const autoround::Cuda& backend, const autoround::RunCheckpoint<autoround::DynamicDoubleQuantizer>& checkpoint) {
  streaming_on_cuda(source, samples, options, sink, on_block, on_step, backend, checkpoint);
}

void quantize_streaming_on_cuda(const autoround::AnyModelSource& source, std::span<const autoround::TokenSequence> samples,
                                const autoround::ModelQuantOptions& options, const StreamSink<autoround::DynamicFloatQuantizer>& sink,
                                const autoround::BlockProgress& on_block, const autoround::StepProgress& on_step,
                                const autoround::Cuda& backend, const autoround::RunCheckpoint<autoround::DynamicFloatQuantizer>& checkpoint) {
  streaming_on_cuda(source, samples, options, sink, on_block, on_step, backend, checkpoint);
}

int cuda_device_count() { return autoround::cuda::device_count(); }

}  // namespace autoround_cli
