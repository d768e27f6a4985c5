#pragma once
// Float32 forward pass of a LLaMA-family decoder on the CPU: RMSNorm, grouped-query causal
// attention with RoPE, SwiGLU MLP, residuals. One sequence, or a batch of equal-length sequences,
// positions from 0 in each.
// (The block itself, forward and backward, is in llama_block.hpp.)
#include <Eigen/Core>
#include <array>
#include <cmath>
#include <span>

#include "../core/matrix.hpp"
#include "llama_block.hpp"
#include "llama_model.hpp"
#include "per_layer_input.hpp"

namespace autoround {

inline RowMatrix embed(const LlamaModel& m, std::span<const std::int32_t> tokens) {
  RowMatrix h(static_cast<Index>(tokens.size()), m.config.hidden);
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || tokens[t] >= m.config.vocab)
      throw Error("token id " + std::to_string(tokens[t]) + " at position " + std::to_string(t) +
                  " is outside the vocabulary of " + std::to_string(m.config.vocab));
    h.row(static_cast<Index>(t)) = m.embedding.row(tokens[t]);
  }
  scale_embeddings(h, m.config);
  return h;
}

/// The final (normed) hidden states [tokens, hidden] of a token sequence, or of tokens.size() /
/// seqlen sequences of `seqlen` tokens one after another (one batch; positions restart at each).
/// Gemma 4 E2B / E4B: every layer also reads its per-layer inputs, and the kv-shared layers their
/// donors' keys and values (model/per_layer_input.hpp, LlamaConfig::kv_donor).
inline RowMatrix forward_hidden(const LlamaModel& m, std::span<const std::int32_t> tokens, Index seqlen = 0) {
  RowMatrix h = embed(m, tokens);
  const LlamaConfig& c = m.config;
  if (c.per_layer_input == 0 && c.kv_shared_layers == 0) {
    for (const LlamaBlock& block : m.blocks) block_forward(block, c, h, nullptr, seqlen);
  } else {
    detail::require(c.per_layer_input == 0 || m.per_layer.has_value(), "a model with per-layer inputs without its per-layer embedding");
    const RowMatrix x0 = h;  // the scaled embeddings the per-layer inputs are made from
    std::array<BlockSideInputs, 2> donated;  // the donors' keys and values: [0] the sliding layers', [1] the full ones'
    for (Index b = 0; b < static_cast<Index>(m.blocks.size()); ++b) {
      BlockSideInputs side;
      if (c.per_layer_input > 0) side.per_layer = per_layer_input(x0, per_layer_table_rows(*m.per_layer, c, tokens, b), *m.per_layer, c, b);
      const std::size_t kind = c.is_sliding(b) ? 0 : 1;
      if (c.kv_shared(b)) side.keys = donated[kind].keys, side.values = donated[kind].values;
      BlockWeights w = BlockWeights::of(m.blocks[static_cast<std::size_t>(b)]);
      w.side = &side;
      if (c.kv_donates(b)) w.donate = &donated[kind];
      block_forward(w, c, h, nullptr, seqlen);
    }
  }
  return detail::rms_norm(h, m.final_norm, c.rms_eps);
}

/// Logits [tokens, vocab] of a token sequence, or of tokens.size() / seqlen sequences of
/// `seqlen` tokens one after another (computed as one batch; positions restart at each).
inline RowMatrix forward_logits(const LlamaModel& m, std::span<const std::int32_t> tokens, Index seqlen = 0) {
  RowMatrix logits;
  logits.noalias() = forward_hidden(m, tokens, seqlen) * m.lm_head().transpose();
  soft_cap_logits(logits, m.config);
  return logits;
}

}  // namespace autoround
