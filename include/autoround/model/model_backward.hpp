#pragma once
// The rest of a whole model's backward, around the blocks' own (llama_block.hpp, which gives only
// dL/dW): the next-token cross-entropy at the LM head and its gradient into the last hidden
// state, a block's input gradient, and where each linear layer's output gradient lies once
// block_backward has run. Measuring how much each weight matters to the model's loss
// (tune/fisher_factors.hpp) walks the blocks from the top with these.
// Dense blocks in full precision only: a mixture of experts or quantized inputs are refused.
#include <cmath>
#include <span>

#include "../core/error.hpp"
#include "llama_block.hpp"
#include "llama_model.hpp"

namespace autoround {

/// The LM head's part of the backward for some rows of hidden states.
struct HeadGradient {
  double loss = 0;         ///< Σ over the scored positions of −log p(next token), times `scale`
  RowMatrix d_hidden;      ///< dL/d(the last block's output), before the final norm
  Eigen::VectorXd out_sq;  ///< per vocabulary row: Σ_t (dL/dlogit_t,v)² (the head's output side)
  Eigen::VectorXd in_sq;   ///< per hidden feature: Σ_t hn_t,i² (the head's input side: the normed state)
};

/// Next-token cross-entropy of `hidden` (the last block's output: rows / seqlen sequences of
/// `seqlen` tokens, their ids in `tokens`): positions 0 .. seqlen − 2 of each sequence predict the
/// next token, each term weighted by `scale` (1 / all scored positions of a calibration set, so
/// that batches add up to its mean). Through Gemma 2's logit soft-capping where the model has it.
/// One sequence's logits at a time: [seqlen, vocab] is the largest temporary.
inline HeadGradient head_backward(const RowMatrix& hidden, std::span<const std::int32_t> tokens, Index seqlen,
                                  const Eigen::VectorXf& final_norm, const RowMatrix& head, const LlamaConfig& c, double scale) {
  detail::require(static_cast<Index>(tokens.size()) == hidden.rows(),
                  "head_backward: " + std::to_string(tokens.size()) + " token ids for " + std::to_string(hidden.rows()) + " rows");
  const Index length = detail::sequence_length(hidden.rows(), seqlen), sequences = hidden.rows() / length;
  detail::require(head.rows() == c.vocab && head.cols() == c.hidden, "head_backward: the LM head is not [vocab, hidden]");
  HeadGradient g;
  const RowMatrix normed = detail::rms_norm(hidden, final_norm, c.rms_eps);
  g.in_sq = normed.cast<double>().array().square().colwise().sum().transpose();
  g.out_sq = Eigen::VectorXd::Zero(c.vocab);
  RowMatrix d_normed(hidden.rows(), hidden.cols());
  RowMatrix logits, d_logits;
  std::vector<double> row_loss(static_cast<std::size_t>(length));
  for (Index s = 0; s < sequences; ++s) {
    const Index row = s * length;
    logits.noalias() = normed.middleRows(row, length) * head.transpose();
    const float cap = c.logit_softcap;
    RowMatrix capped_tanh;  // tanh(raw / cap), for the soft-cap's derivative
    if (cap > 0) {
      capped_tanh = (logits.array() / cap).tanh().matrix();
      logits = capped_tanh * cap;
    }
    d_logits.setZero(length, c.vocab);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (Index t = 0; t < length - 1; ++t) {  // the last position predicts nothing
      const std::int32_t next = tokens[static_cast<std::size_t>(row + t + 1)];
      const auto z = logits.row(t);
      const double max = z.maxCoeff();
      double sum = 0;
      for (Index v = 0; v < z.size(); ++v) sum += std::exp(static_cast<double>(z(v)) - max);
      row_loss[static_cast<std::size_t>(t)] = (max + std::log(sum) - z(next)) * scale;
      for (Index v = 0; v < z.size(); ++v)  // d/dz of −log softmax(z)[next] = p − onehot(next)
        d_logits(t, v) = static_cast<float>(std::exp(static_cast<double>(z(v)) - max) / sum * scale);
      d_logits(t, next) -= static_cast<float>(scale);
    }
    for (Index t = 0; t < length - 1; ++t) g.loss += row_loss[static_cast<std::size_t>(t)];  // in order: deterministic
    if (cap > 0) d_logits.array() *= 1.0f - capped_tanh.array().square();
    g.out_sq += d_logits.cast<double>().array().square().colwise().sum().transpose().matrix();
    d_normed.middleRows(row, length).noalias() = d_logits * head;
  }
  g.d_hidden = detail::rms_norm_backward(hidden, final_norm, c.rms_eps, d_normed);
  return g;
}

/// dL/d(block input) of a dense block in full precision, once block_backward(w, c, cache, d_out,
/// grads, &z) has run on the forward that filled `cache` (kept: block_forward with a cache keeps
/// its input): the residual's z.d_h plus what reaches the input through q, k, v and the
/// attention norm.
inline RowMatrix block_input_gradient(const BlockWeights& w, const LlamaConfig& c, const BlockCache& cache, const BlockBackwardScratch& z) {
  detail::require(!w.moe && !w.act && !c.latent_attention(), "block_input_gradient: a dense block with float inputs and GQA attention only");
  RowMatrix d_normed;
  d_normed.noalias() = z.d_q * w[Linear::Query];
  d_normed.noalias() += z.d_k * w[Linear::Key];
  d_normed.noalias() += z.d_v * w[Linear::Value];
  return z.d_h + detail::rms_norm_backward(cache.x, *w.attn_norm, c.rms_eps, d_normed);
}

/// dL/d(linear l's output) as block_backward left it in `z` (with `d_out` = dL/d(block output)
/// it was given): q and k before RoPE (and before Qwen3's head norms), o and down before Gemma's
/// post norms. Its input is cache.of(l). So dL/dW_l = gradientᵀ · input.
inline const RowMatrix& linear_output_gradient(Linear l, const BlockWeights& w, const RowMatrix& d_out, const BlockBackwardScratch& z) {
  switch (l) {
    case Linear::Query: return z.d_q;
    case Linear::Key: return z.d_k;
    case Linear::Value: return z.d_v;
    case Linear::Output: return w.has_post_attn_norm() ? z.d_attention_out : z.d_h;
    case Linear::Gate: return z.d_gate;
    case Linear::Up: return z.d_up;
    case Linear::Down: return w.has_post_ffn_norm() ? z.d_mlp : d_out;
  }
  throw Error("linear_output_gradient: unknown linear layer");
}

}  // namespace autoround
