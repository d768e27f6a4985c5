#pragma once
// The CUDA backend policy: LayerTuner, LayerTuningRun, BlockTuningRun and quantize_model with
// B = Cuda run on the current CUDA device. This header is plain C++ (it only names the policy);
// the runs themselves are in backend/cuda/cuda_runs.cuh, which a translation unit compiled by
// nvcc includes. SignSGD with LinearDecay (the reference's optimizer) is what the device runs.
#include <cstddef>

namespace autoround {

/// Precision of the GEMMs of a device run. Loss, gradients and every tuned parameter are float32
/// either way.
enum class GemmPrecision {
  Float32,   ///< the CPU backend's numerics: results differ from it only by summation order
  BFloat16,  ///< bf16 operands, float32 accumulation: what the reference's default amp autocast gives its matmuls on CUDA
};

/// Where quantize_model keeps its activation streams (every calibration sample's hidden state)
/// between blocks. Either way the results are the same.
enum class StreamPlacement {
  Auto,    ///< on the device when they fit beside a block's tuning run in the memory budget, else Host
  Device,  ///< on the device: nothing crosses the bus but the blocks' weights
  Host,    ///< in pinned host memory, read minibatch by minibatch over the bus (device memory: one block's run)
};

/// How quantize_model stores its activation streams.
enum class StreamDtype {
  Float32,   ///< the CPU backend's numerics
  BFloat16,  ///< half the memory; what the reference keeps (its streams are in the model's bf16)
};

/// How a block's tuning run on the device splits a minibatch to bound its memory. 0: no split
/// (the fastest; the whole minibatch's activations and attention probabilities at once).
struct BlockMemoryPlan {
  long micro_batch = 0;      ///< samples per forward/backward (gradients summed over the minibatch's parts)
  long attention_pairs = 0;  ///< (sample, head) pairs whose [seqlen, seqlen] probabilities are held at once
                             ///< (fewer than a forward's: the backward recomputes them, chunk by chunk)
  long attention_tile = 0;   ///< query rows per causal attention tile (0: about 8 tiles, a multiple of 64 rows)
};

struct Cuda {
  static constexpr bool runs_on_device = true;
  GemmPrecision precision = GemmPrecision::Float32;
  StreamPlacement streams = StreamPlacement::Auto;
  StreamDtype stream_dtype = StreamDtype::Float32;
  /// Device memory quantize_model may use, in bytes (its buffers: streams, the block's weights
  /// and tuning state, the step's workspace); 0: what cudaMemGetInfo says is free, less 512 MiB
  /// for cuBLAS and the CUDA context. The streams, their storage and the block plan are chosen to fit.
  std::size_t memory_budget = 0;
  BlockMemoryPlan plan{};  ///< a lone BlockTuningRun's split (quantize_model chooses its own from the budget)
};

namespace cuda {
using autoround::BlockMemoryPlan;
using autoround::GemmPrecision;
using autoround::StreamDtype;
}

}  // namespace autoround
