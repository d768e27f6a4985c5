#include <autoround/backend/cuda/cuda_runs.cuh>

#include "cuda_pipeline.hpp"

namespace autoround_cli {

void quantize_streaming_on_cuda(const autoround::AnyModelSource& source, std::span<const autoround::TokenSequence> samples,
                                const autoround::ModelQuantOptions& options, const StreamSink<autoround::DynamicIntQuantizer>& sink,
                                const autoround::BlockProgress& on_block, const autoround::StepProgress& on_step,
                                const autoround::Cuda& backend, const autoround::RunCheckpoint<autoround::DynamicIntQuantizer>& checkpoint) {
  using namespace autoround;
  quantize_model_streaming<SignSGD<>, Cuda, DynamicIntQuantizer>(source, samples, options, sink, on_block, on_step, SignSGD<>{},
                                                                 backend, checkpoint);
}

void quantize_kquant_streaming_on_cuda(const autoround::AnyModelSource& source, std::span<const autoround::TokenSequence> samples,
                                       const autoround::ModelQuantOptions& options,
                                       const StreamSink<autoround::DynamicDoubleQuantizer>& sink,
                                       const autoround::BlockProgress& on_block, const autoround::StepProgress& on_step,
                                       const autoround::Cuda& backend, const autoround::RunCheckpoint<autoround::DynamicDoubleQuantizer>& checkpoint) {
  using namespace autoround;
  quantize_model_streaming<SignSGD<>, Cuda, DynamicDoubleQuantizer>(source, samples, options, sink, on_block, on_step, SignSGD<>{},
                                                                    backend, checkpoint);
}

int cuda_device_count() { return autoround::cuda::device_count(); }

}  // namespace autoround_cli
