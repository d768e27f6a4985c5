#pragma once
// What the CUDA block run (backend/cuda/block_tuning_run.cuh) does not compute yet, said once for
// the CLI (which refuses before reading any weight) and the run (for library users).
#include <string>

#include "../model/llama_model.hpp"

namespace autoround {

/// Why the GPU cannot tune blocks of a model so configured (empty: it can).
inline std::string cuda_unsupported(const LlamaConfig& c) {
  if (c.per_layer_input > 0) return "per-layer embeddings (Gemma 4 E2B / E4B)";
  if (c.kv_shared_layers > 0) return "layers sharing keys and values (Gemma 4 E2B / E4B)";
  return {};
}

/// The refusal's message: `what` names the model or block.
inline std::string cuda_refusal(const std::string& what, const std::string& reason) {
  return what + ": " + reason + ": the GPU does not tune it yet (issue #25); run with --device cpu";
}

}  // namespace autoround
