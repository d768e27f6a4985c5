#pragma once
// One LLaMA decoder block, forward and backward, in float32:
//   xn = rms(x)·g1; q,k,v = xn Wq/k/vᵀ; RoPE(q,k); O = causal softmax(q kᵀ/√d) v (GQA)
//   h = x + O Woᵀ;  yn = rms(h)·g2;  A = silu(yn Wgᵀ) ⊙ (yn Wuᵀ);  out = h + A Wdᵀ
// The forward can keep what the backward needs (BlockCache). The backward returns the gradient
// of the loss with respect to the seven weight matrices (the input x is a constant here: block-
// wise tuning differentiates only the block's own quantized weights).
#include <Eigen/Core>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "../core/matrix.hpp"
#include "llama_model.hpp"

namespace autoround {

/// The seven linear weights a block computes with (full precision or fake-quantized) and its norms.
struct BlockWeights {
  std::array<const RowMatrix*, 7> linear{};
  const Eigen::VectorXf* attn_norm = nullptr;
  const Eigen::VectorXf* ffn_norm = nullptr;
  std::array<const Eigen::VectorXf*, 3> qkv_bias{};  ///< may point to empty vectors (no bias)
  const Eigen::VectorXf* q_norm = nullptr;            ///< Qwen3; may point to an empty vector
  const Eigen::VectorXf* k_norm = nullptr;
  bool has_qk_norm() const { return q_norm && q_norm->size() > 0; }
  const RowMatrix& operator[](Linear l) const { return *linear[static_cast<std::size_t>(l)]; }

  static BlockWeights of(const LlamaBlock& b) {
    BlockWeights w;
    for (Linear l : all_linears) w.linear[static_cast<std::size_t>(l)] = &b[l];
    for (std::size_t j = 0; j < 3; ++j) w.qkv_bias[j] = &b.qkv_bias[j];
    w.q_norm = &b.q_norm;
    w.k_norm = &b.k_norm;
    w.attn_norm = &b.attn_norm;
    w.ffn_norm = &b.ffn_norm;
    return w;
  }
};

/// Which input of the block a linear layer reads: q/k/v the normed hidden state, the output
/// projection the attention result, gate/up the second normed state, down the SwiGLU product.
template <class Inputs>
const RowMatrix& input_of(const Inputs& in, Linear l) {
  switch (l) {
    case Linear::Query: case Linear::Key: case Linear::Value: return in.attention_in;
    case Linear::Output: return in.output_in;
    case Linear::Gate: case Linear::Up: return in.mlp_in;
    default: return in.down_in;
  }
}

/// Intermediate values of one forward (one sequence).
struct BlockCache {
  RowMatrix x, attention_in, q, k, v, output_in, h, mlp_in, gate, up, down_in;
  RowMatrix q_projected, k_projected;  ///< q and k before Qwen3's per-head norms (only with them)
  std::vector<RowMatrix> probabilities;  ///< per query head [T, T], causal
  const RowMatrix& of(Linear l) const { return input_of(*this, l); }
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

/// d rms_norm(x) given d out: with r = 1/sqrt(mean(x²)+eps), u = g ⊙ dy:
/// dx = r u − x r³ (u·x) / d.
inline RowMatrix rms_norm_backward(const RowMatrix& x, const Eigen::VectorXf& weight, float eps, const RowMatrix& dy) {
  RowMatrix dx(x.rows(), x.cols());
  const float d = static_cast<float>(x.cols());
  for (Index t = 0; t < x.rows(); ++t) {
    const float r = 1.0f / std::sqrt(x.row(t).squaredNorm() / d + eps);
    const Eigen::RowVectorXf u = dy.row(t).cwiseProduct(weight.transpose());
    dx.row(t) = r * u - x.row(t) * (r * r * r * u.dot(x.row(t)) / d);
  }
  return dx;
}

/// RMSNorm of each head's slice (Qwen3's q_norm / k_norm), and its backward.
inline RowMatrix head_rms_norm(const RowMatrix& x, Index heads, Index head_dim, const Eigen::VectorXf& weight, float eps) {
  RowMatrix out(x.rows(), x.cols());
  for (Index h = 0; h < heads; ++h) out.middleCols(h * head_dim, head_dim) = rms_norm(x.middleCols(h * head_dim, head_dim), weight, eps);
  return out;
}
inline RowMatrix head_rms_norm_backward(const RowMatrix& x, Index heads, Index head_dim, const Eigen::VectorXf& weight, float eps,
                                        const RowMatrix& dy) {
  RowMatrix dx(x.rows(), x.cols());
  for (Index h = 0; h < heads; ++h)
    dx.middleCols(h * head_dim, head_dim) = rms_norm_backward(x.middleCols(h * head_dim, head_dim), weight, eps,
                                                              dy.middleCols(h * head_dim, head_dim));
  return dx;
}

/// Rotation frequency of pair i: theta^(-2i/head_dim), over the scaling divisor if any (double,
/// as every RoPE here computes its angles).
inline double rope_frequency(const LlamaConfig& c, Index i) {
  double frequency = std::pow(static_cast<double>(c.rope_theta), -2.0 * static_cast<double>(i) / static_cast<double>(c.head_dim));
  if (!c.rope_divisors.empty()) frequency /= static_cast<double>(c.rope_divisors[static_cast<std::size_t>(i)]);
  return frequency;
}

/// Rotate each head's pairs by direction · position · theta^(-2i/head_dim) (over the scaling
/// divisor, if any); direction -1 undoes
/// it, which is also the backward (a rotation's transpose is its inverse).
inline void apply_rope(RowMatrix& x, Index heads, const LlamaConfig& c, float direction = 1.0f) {
  const Index half = c.head_dim / 2;
  for (Index i = 0; i < half; ++i) {
    const double frequency = rope_frequency(c, i);
    const Index a = c.rope_style == RopeStyle::AdjacentPairs ? 2 * i : i;
    const Index b = c.rope_style == RopeStyle::AdjacentPairs ? 2 * i + 1 : i + half;
    for (Index t = 0; t < x.rows(); ++t) {
      const double angle = static_cast<double>(t) * frequency;
      const float cos_a = static_cast<float>(std::cos(angle)), sin_a = direction * static_cast<float>(std::sin(angle));
      for (Index h = 0; h < heads; ++h) {
        float* head = x.row(t).data() + h * c.head_dim;
        const float x0 = head[a], x1 = head[b];
        head[a] = x0 * cos_a - x1 * sin_a;
        head[b] = x0 * sin_a + x1 * cos_a;
      }
    }
  }
}

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace detail

/// hidden [tokens, hidden] -> the block's output, in place; `cache` (optional) keeps the
/// intermediates for block_backward and for reading the linear layers' inputs.
inline void block_forward(const BlockWeights& w, const LlamaConfig& c, RowMatrix& hidden, BlockCache* cache = nullptr) {
  const Index tokens = hidden.rows(), d = c.head_dim, group = c.heads / c.kv_heads;
  RowMatrix xn = detail::rms_norm(hidden, *w.attn_norm, c.rms_eps);
  RowMatrix q = xn * w[Linear::Query].transpose();
  RowMatrix k = xn * w[Linear::Key].transpose();
  RowMatrix v = xn * w[Linear::Value].transpose();
  // Qwen2's projection biases: constants for tuning, they only shift the outputs
  RowMatrix* projected[3] = {&q, &k, &v};
  for (std::size_t j = 0; j < 3; ++j)
    if (w.qkv_bias[j] && w.qkv_bias[j]->size() > 0) projected[j]->rowwise() += w.qkv_bias[j]->transpose();
  if (w.has_qk_norm()) {  // Qwen3: RMSNorm over each head of q and k, before RoPE
    RowMatrix qn = detail::head_rms_norm(q, c.heads, d, *w.q_norm, c.rms_eps);
    RowMatrix kn = detail::head_rms_norm(k, c.kv_heads, d, *w.k_norm, c.rms_eps);
    if (cache) {
      cache->q_projected = std::move(q);
      cache->k_projected = std::move(k);
    }
    q = std::move(qn);
    k = std::move(kn);
  }
  detail::apply_rope(q, c.heads, c);
  detail::apply_rope(k, c.kv_heads, c);
  RowMatrix attention(tokens, c.heads * d);
  if (cache) cache->probabilities.resize(static_cast<std::size_t>(c.heads));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (Index h = 0; h < c.heads; ++h) {
    const Index kv = h / group;
    RowMatrix p = (q.middleCols(h * d, d) * k.middleCols(kv * d, d).transpose()) * scale;
    for (Index t = 0; t < tokens; ++t) {
      auto row = p.row(t);
      const float max = row.head(t + 1).maxCoeff();
      row.head(t + 1) = (row.head(t + 1).array() - max).exp();
      row.head(t + 1) /= row.head(t + 1).sum();
      row.tail(tokens - t - 1).setZero();  // causal: no attention to later tokens
    }
    attention.middleCols(h * d, d) = p * v.middleCols(kv * d, d);
    if (cache) cache->probabilities[static_cast<std::size_t>(h)] = std::move(p);
  }
  if (cache) cache->x = hidden;
  hidden.noalias() += attention * w[Linear::Output].transpose();

  RowMatrix yn = detail::rms_norm(hidden, *w.ffn_norm, c.rms_eps);
  RowMatrix gate = yn * w[Linear::Gate].transpose();
  RowMatrix up = yn * w[Linear::Up].transpose();
  RowMatrix act = gate.unaryExpr(&detail::silu).cwiseProduct(up);
  if (cache) cache->h = hidden;
  hidden.noalias() += act * w[Linear::Down].transpose();
  if (cache) {
    cache->attention_in = std::move(xn);
    cache->q = std::move(q);
    cache->k = std::move(k);
    cache->v = std::move(v);
    cache->output_in = std::move(attention);
    cache->mlp_in = std::move(yn);
    cache->gate = std::move(gate);
    cache->up = std::move(up);
    cache->down_in = std::move(act);
  }
}

inline void block_forward(const LlamaBlock& block, const LlamaConfig& c, RowMatrix& hidden, BlockCache* cache = nullptr) {
  block_forward(BlockWeights::of(block), c, hidden, cache);
}

/// Accumulate dL/dW for the seven weights into `grads` (each [out, in], added to), given
/// dL/d(block output) for the sequence whose forward filled `cache`.
inline void block_backward(const BlockWeights& w, const LlamaConfig& c, const BlockCache& cache, const RowMatrix& d_out,
                           std::array<RowMatrix, 7>& grads) {
  auto grad = [&](Linear l) -> RowMatrix& { return grads[static_cast<std::size_t>(l)]; };
  const Index tokens = d_out.rows(), d = c.head_dim, group = c.heads / c.kv_heads;
  // MLP
  grad(Linear::Down).noalias() += d_out.transpose() * cache.down_in;
  const RowMatrix d_act = d_out * w[Linear::Down];
  RowMatrix d_gate(cache.gate.rows(), cache.gate.cols()), d_up(cache.up.rows(), cache.up.cols());
  for (Index i = 0; i < d_gate.size(); ++i) {
    const float g = cache.gate.data()[i], sigma = 1.0f / (1.0f + std::exp(-g));
    d_up.data()[i] = d_act.data()[i] * g * sigma;
    d_gate.data()[i] = d_act.data()[i] * cache.up.data()[i] * sigma * (1.0f + g * (1.0f - sigma));
  }
  grad(Linear::Gate).noalias() += d_gate.transpose() * cache.mlp_in;
  grad(Linear::Up).noalias() += d_up.transpose() * cache.mlp_in;
  const RowMatrix d_yn = d_gate * w[Linear::Gate] + d_up * w[Linear::Up];
  const RowMatrix d_h = d_out + detail::rms_norm_backward(cache.h, *w.ffn_norm, c.rms_eps, d_yn);
  // attention output projection
  grad(Linear::Output).noalias() += d_h.transpose() * cache.output_in;
  const RowMatrix d_attention = d_h * w[Linear::Output];
  RowMatrix d_q(tokens, c.heads * d), d_k = RowMatrix::Zero(tokens, c.kv_heads * d), d_v = RowMatrix::Zero(tokens, c.kv_heads * d);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<RowMatrix> d_k_head(static_cast<std::size_t>(c.heads)), d_v_head(static_cast<std::size_t>(c.heads));
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (Index h = 0; h < c.heads; ++h) {
    const Index kv = h / group;
    const RowMatrix& p = cache.probabilities[static_cast<std::size_t>(h)];
    const auto d_o = d_attention.middleCols(h * d, d);
    const RowMatrix d_p = d_o * cache.v.middleCols(kv * d, d).transpose();
    // softmax backward row by row: dS = P ⊙ (dP − Σ_j dP_j P_j); masked entries have P = 0
    RowMatrix d_s = p.cwiseProduct(d_p);
    for (Index t = 0; t < tokens; ++t) d_s.row(t) -= p.row(t) * d_s.row(t).sum();
    d_s *= scale;
    d_q.middleCols(h * d, d) = d_s * cache.k.middleCols(kv * d, d);
    d_k_head[static_cast<std::size_t>(h)] = d_s.transpose() * cache.q.middleCols(h * d, d);
    d_v_head[static_cast<std::size_t>(h)] = p.transpose() * d_o;
  }
  for (Index h = 0; h < c.heads; ++h) {  // heads sharing a KV head add up, in a fixed order
    const Index kv = h / group;
    d_k.middleCols(kv * d, d) += d_k_head[static_cast<std::size_t>(h)];
    d_v.middleCols(kv * d, d) += d_v_head[static_cast<std::size_t>(h)];
  }
  detail::apply_rope(d_q, c.heads, c, -1.0f);
  detail::apply_rope(d_k, c.kv_heads, c, -1.0f);
  if (w.has_qk_norm()) {
    d_q = detail::head_rms_norm_backward(cache.q_projected, c.heads, d, *w.q_norm, c.rms_eps, d_q);
    d_k = detail::head_rms_norm_backward(cache.k_projected, c.kv_heads, d, *w.k_norm, c.rms_eps, d_k);
  }
  grad(Linear::Query).noalias() += d_q.transpose() * cache.attention_in;
  grad(Linear::Key).noalias() += d_k.transpose() * cache.attention_in;
  grad(Linear::Value).noalias() += d_v.transpose() * cache.attention_in;
}

}  // namespace autoround
