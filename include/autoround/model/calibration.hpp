#pragma once
// Calibration activations for layer-wise tuning: cut a token stream into samples of `seqlen`
// consecutive tokens (non-overlapping, from the start), run each sample through the blocks
// before `block` in full precision, and stack what that block's linear layers see.
#include <span>
#include <string>

#include "llama_forward.hpp"

namespace autoround {

/// What the linear layers of one block saw, stacked over samples (rows = tokens).
struct BlockInputs {
  RowMatrix attention_in, output_in, mlp_in, down_in;
  const RowMatrix& of(Linear l) const { return input_of(*this, l); }
};

inline BlockInputs collect_block_inputs(const LlamaModel& m, std::span<const std::int32_t> tokens, Index nsamples,
                                        Index seqlen, Index block) {
  if (block < 0 || block >= static_cast<Index>(m.blocks.size()))
    throw Error("block = " + std::to_string(block) + ": the model has " + std::to_string(m.blocks.size()) + " blocks");
  if (nsamples <= 0 || seqlen <= 0 || nsamples * seqlen > static_cast<Index>(tokens.size()))
    throw Error("calibration: " + std::to_string(nsamples) + " samples of " + std::to_string(seqlen) +
                " tokens need more than the " + std::to_string(tokens.size()) + " tokens given");
  BlockInputs stacked;
  auto append = [&](RowMatrix& all, const RowMatrix& part, Index sample) {
    if (sample == 0) all.resize(nsamples * seqlen, part.cols());
    all.middleRows(sample * seqlen, seqlen) = part;
  };
  for (Index s = 0; s < nsamples; ++s) {
    RowMatrix h = embed(m, tokens.subspan(static_cast<std::size_t>(s * seqlen), static_cast<std::size_t>(seqlen)));
    for (Index b = 0; b < block; ++b) block_forward(m.blocks[static_cast<std::size_t>(b)], m.config, h);
    BlockCache seen;
    block_forward(m.blocks[static_cast<std::size_t>(block)], m.config, h, &seen);
    append(stacked.attention_in, seen.attention_in, s);
    append(stacked.output_in, seen.output_in, s);
    append(stacked.mlp_in, seen.mlp_in, s);
    append(stacked.down_in, seen.down_in, s);
  }
  return stacked;
}

}  // namespace autoround
