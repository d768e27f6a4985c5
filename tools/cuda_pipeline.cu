#include <autoround/backend/cuda/cuda_runs.cuh>

#include "cuda_pipeline.hpp"

namespace autoround_cli {

ModelResults quantize_model_on_cuda(autoround::LlamaModel& model, std::span<const autoround::TokenSequence> samples,
                                    const autoround::ModelQuantOptions& options, const autoround::BlockProgress& on_block,
                                    const autoround::StepProgress& on_step, autoround::GemmPrecision precision) {
  using namespace autoround;
  return quantize_model<SignSGD<>, Cuda>(model, samples, options, on_block, on_step, SignSGD<>{}, Cuda{precision});
}

KQuantModelResults quantize_kquant_model_on_cuda(autoround::LlamaModel& model, std::span<const autoround::TokenSequence> samples,
                                                 const autoround::ModelQuantOptions& options, const autoround::BlockProgress& on_block,
                                                 const autoround::StepProgress& on_step, autoround::GemmPrecision precision) {
  using namespace autoround;
  return quantize_model<SignSGD<>, Cuda, DynamicDoubleQuantizer>(model, samples, options, on_block, on_step, SignSGD<>{},
                                                                 Cuda{precision});
}

int cuda_device_count() { return autoround::cuda::device_count(); }

}  // namespace autoround_cli
