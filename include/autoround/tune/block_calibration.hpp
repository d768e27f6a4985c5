#pragma once
// What one transformer block is tuned on. The reference carries two activation streams through
// the model (compressors/orchestrator.py, algorithms/composer.py `compress_block`): the block's
// quantized weights see the quantized stream (the outputs of the already quantized blocks),
// and must reproduce the full-precision block's output on the full-precision stream (the
// unquantized model's own activations), so that each block also corrects the error that the
// blocks before it left. The loss skips masked positions (the last position of every sample,
// padding: loss_masks in model/calibration_samples.hpp).
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "../model/llama_block.hpp"
#include "python_random.hpp"

namespace autoround {

/// One [seqlen] mask per calibration sample: 1 where a position counts in the loss, 0 where not.
using LossMask = std::vector<float>;

struct BlockCalibration {
  /// One [seqlen, hidden] matrix per sample: what the quantized block receives.
  std::span<const RowMatrix> inputs;
  /// What the block must output, one matrix per sample; empty: the full-precision block on
  /// `inputs` (one stream: the layer-wise view, or the reference's enable_quanted_input=False).
  std::span<const RowMatrix> targets = {};
  /// Per-sample loss masks; empty: every position counts.
  std::span<const LossMask> masks = {};
  /// The random stream the minibatch sampler draws from (must outlive the run); null: a fresh
  /// one seeded with TuneOptions::seed. quantize_model passes one stream to every block, as the
  /// reference's samplers share Python's global `random`.
  PythonRandom* random = nullptr;
  /// Per sample, what the block reads beside `inputs` (Gemma 4 E2B / E4B: its per-layer inputs
  /// and, in a kv-shared layer, its donor's keys and values on the same stream); empty: nothing.
  /// Own targets (no `targets`) are computed with them too.
  std::span<const BlockSideInputs> side = {};
};

namespace detail {

/// Every input [seqlen, hidden] with one seqlen; targets (if any) shaped as the inputs; one
/// mask (if any) of seqlen entries per sample. `name` names the block in the error.
inline void check_block_calibration(const BlockCalibration& c, Index hidden, const std::string& name) {
  require(!c.inputs.empty(), name + ": no calibration samples");
  const Index seqlen = c.inputs[0].rows();
  for (const RowMatrix& x : c.inputs)
    require(x.cols() == hidden && x.rows() == seqlen && seqlen > 0,
            name + ": calibration samples must all be [seqlen, " + std::to_string(hidden) + "]");
  if (!c.targets.empty()) {
    require(c.targets.size() == c.inputs.size(), name + ": " + std::to_string(c.targets.size()) + " targets for " +
                                                     std::to_string(c.inputs.size()) + " calibration samples");
    for (const RowMatrix& t : c.targets)
      require(t.rows() == seqlen && t.cols() == hidden, name + ": targets must be shaped as the calibration samples");
  }
  require(c.side.empty() || c.side.size() == c.inputs.size(),
          name + ": " + std::to_string(c.side.size()) + " side inputs for " + std::to_string(c.inputs.size()) + " calibration samples");
  if (!c.masks.empty()) {
    require(c.masks.size() == c.inputs.size(), name + ": " + std::to_string(c.masks.size()) + " loss masks for " +
                                                   std::to_string(c.inputs.size()) + " calibration samples");
    for (const LossMask& m : c.masks)
      require(static_cast<Index>(m.size()) == seqlen, name + ": a loss mask must have one entry per position (seqlen)");
  }
}

/// How the reference ranks a step: the minibatch's count of unmasked positions (1 without masks).
inline double unmasked_positions(std::span<const LossMask> masks, std::span<const Index> samples) {
  if (masks.empty()) return 1.0;
  double valid = 0;
  for (Index s : samples)
    for (float m : masks[static_cast<std::size_t>(s)]) valid += m != 0.0f;
  return valid > 0 ? valid : 1.0;
}

}  // namespace detail

}  // namespace autoround
