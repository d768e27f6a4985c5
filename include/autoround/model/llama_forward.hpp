#pragma once
// Float32 forward pass of a LLaMA-family decoder on the CPU: RMSNorm, grouped-query causal
// attention with RoPE, SwiGLU MLP, residuals. One sequence at a time, positions from 0.
// A block can report the inputs its linear layers saw (for layer-wise calibration).
#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <span>

#include "../core/matrix.hpp"
#include "llama_model.hpp"

namespace autoround {

/// The inputs each linear layer of one block received (rows = tokens).
struct BlockInputs {
  RowMatrix attention_in;  ///< normed hidden state: input of q, k, v
  RowMatrix output_in;     ///< attention result: input of the output projection
  RowMatrix mlp_in;        ///< normed hidden state: input of gate and up
  RowMatrix down_in;       ///< silu(gate) * up: input of down
  const RowMatrix& of(Linear l) const {
    switch (l) {
      case Linear::Query: case Linear::Key: case Linear::Value: return attention_in;
      case Linear::Output: return output_in;
      case Linear::Gate: case Linear::Up: return mlp_in;
      default: return down_in;
    }
  }
};

namespace detail {

inline RowMatrix rms_norm(const RowMatrix& x, const Eigen::VectorXf& weight, float eps) {
  RowMatrix out(x.rows(), x.cols());
  for (Index t = 0; t < x.rows(); ++t) {
    const float mean_square = x.row(t).squaredNorm() / static_cast<float>(x.cols());
    out.row(t) = x.row(t).cwiseProduct(weight.transpose()) * (1.0f / std::sqrt(mean_square + eps));
  }
  return out;
}

/// Rotate each head's pairs by position * theta^(-2i/head_dim).
inline void apply_rope(RowMatrix& x, Index heads, const LlamaConfig& c) {
  const Index half = c.head_dim / 2;
  for (Index t = 0; t < x.rows(); ++t)
    for (Index i = 0; i < half; ++i) {
      const double angle = static_cast<double>(t) * std::pow(static_cast<double>(c.rope_theta), -2.0 * static_cast<double>(i) / static_cast<double>(c.head_dim));
      const float cos_a = static_cast<float>(std::cos(angle)), sin_a = static_cast<float>(std::sin(angle));
      for (Index h = 0; h < heads; ++h) {
        float* head = x.row(t).data() + h * c.head_dim;
        const Index a = c.rope_style == RopeStyle::AdjacentPairs ? 2 * i : i;
        const Index b = c.rope_style == RopeStyle::AdjacentPairs ? 2 * i + 1 : i + half;
        const float x0 = head[a], x1 = head[b];
        head[a] = x0 * cos_a - x1 * sin_a;
        head[b] = x0 * sin_a + x1 * cos_a;
      }
    }
}

inline RowMatrix causal_attention(const RowMatrix& q, const RowMatrix& k, const RowMatrix& v, const LlamaConfig& c) {
  const Index tokens = q.rows(), d = c.head_dim, group = c.heads / c.kv_heads;
  RowMatrix out(tokens, c.heads * d);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (Index h = 0; h < c.heads; ++h) {
    const Index kv = h / group;
    RowMatrix scores = (q.middleCols(h * d, d) * k.middleCols(kv * d, d).transpose()) * scale;
    for (Index t = 0; t < tokens; ++t) {
      auto row = scores.row(t);
      row.tail(tokens - t - 1).setConstant(-std::numeric_limits<float>::infinity());
      const float max = row.head(t + 1).maxCoeff();
      row = (row.array() - max).exp();
      row /= row.sum();
    }
    out.middleCols(h * d, d) = scores * v.middleCols(kv * d, d);
  }
  return out;
}

}  // namespace detail

/// hidden [tokens, hidden] -> the block's output; `seen` (optional) records the linear inputs.
inline void block_forward(const LlamaBlock& block, const LlamaConfig& c, RowMatrix& hidden, BlockInputs* seen = nullptr) {
  RowMatrix x = detail::rms_norm(hidden, block.attn_norm, c.rms_eps);
  RowMatrix q = x * block[Linear::Query].transpose();
  RowMatrix k = x * block[Linear::Key].transpose();
  const RowMatrix v = x * block[Linear::Value].transpose();
  detail::apply_rope(q, c.heads, c);
  detail::apply_rope(k, c.kv_heads, c);
  RowMatrix attention = detail::causal_attention(q, k, v, c);
  hidden.noalias() += attention * block[Linear::Output].transpose();
  if (seen) {
    seen->attention_in = std::move(x);
    seen->output_in = std::move(attention);
  }

  RowMatrix y = detail::rms_norm(hidden, block.ffn_norm, c.rms_eps);
  const RowMatrix gate = y * block[Linear::Gate].transpose();
  const RowMatrix up = y * block[Linear::Up].transpose();
  RowMatrix act = (gate.array() / (1.0f + (-gate.array()).exp()) * up.array()).matrix();  // silu(gate) * up
  hidden.noalias() += act * block[Linear::Down].transpose();
  if (seen) {
    seen->mlp_in = std::move(y);
    seen->down_in = std::move(act);
  }
}

inline RowMatrix embed(const LlamaModel& m, std::span<const std::int32_t> tokens) {
  RowMatrix h(static_cast<Index>(tokens.size()), m.config.hidden);
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0 || tokens[t] >= m.config.vocab)
      throw Error("token id " + std::to_string(tokens[t]) + " at position " + std::to_string(t) +
                  " is outside the vocabulary of " + std::to_string(m.config.vocab));
    h.row(static_cast<Index>(t)) = m.embedding.row(tokens[t]);
  }
  return h;
}

/// Logits [tokens, vocab] of a token sequence.
inline RowMatrix forward_logits(const LlamaModel& m, std::span<const std::int32_t> tokens) {
  RowMatrix h = embed(m, tokens);
  for (const LlamaBlock& block : m.blocks) block_forward(block, m.config, h);
  return detail::rms_norm(h, m.final_norm, m.config.rms_eps) * m.lm_head().transpose();
}

}  // namespace autoround
