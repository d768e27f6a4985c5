#pragma once
// Float32 forward pass of a LLaMA-family decoder on the CPU: RMSNorm, grouped-query causal
// attention with RoPE, SwiGLU MLP, residuals. One sequence, or a batch of equal-length sequences,
// positions from 0 in each.
// (The block itself, forward and backward, is in llama_block.hpp.)
#include <Eigen/Core>
#include <cmath>
#include <span>

#include "../core/matrix.hpp"
#include "llama_block.hpp"
#include "llama_model.hpp"

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
inline RowMatrix forward_hidden(const LlamaModel& m, std::span<const std::int32_t> tokens, Index seqlen = 0) {
  RowMatrix h = embed(m, tokens);
  for (const LlamaBlock& block : m.blocks) block_forward(block, m.config, h, nullptr, seqlen);
  return detail::rms_norm(h, m.final_norm, m.config.rms_eps);
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
