#pragma once
// The CUDA backend policy: LayerTuner, LayerTuningRun, BlockTuningRun and quantize_model with
// B = Cuda run on the current CUDA device. This header is plain C++ (it only names the policy);
// the runs themselves are in backend/cuda/cuda_runs.cuh, which a translation unit compiled by
// nvcc includes. SignSGD with LinearDecay (the reference's optimizer) is what the device runs.
namespace autoround {

/// Precision of the GEMMs of a device run. Loss, gradients and every tuned parameter are float32
/// either way.
enum class GemmPrecision {
  Float32,   ///< the CPU backend's numerics: results differ from it only by summation order
  BFloat16,  ///< bf16 operands, float32 accumulation: what the reference's default amp autocast gives its matmuls on CUDA
};

/// Where quantize_model keeps its activation streams (every calibration sample's hidden state,
/// float32) between blocks.
enum class StreamPlacement {
  Auto,    ///< on the device when they fit beside a block's tuning run (cudaMemGetInfo), else Host
  Device,  ///< on the device: no host copies and no transfers between blocks
  Host,    ///< in host memory, uploaded for each block (device memory: one block's run)
};

struct Cuda {
  static constexpr bool runs_on_device = true;
  GemmPrecision precision = GemmPrecision::Float32;
  StreamPlacement streams = StreamPlacement::Auto;
};

namespace cuda {
using autoround::GemmPrecision;
}

}  // namespace autoround
