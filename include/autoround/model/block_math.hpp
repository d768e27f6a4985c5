#pragma once
// The elementwise and row-wise pieces every block's forward and backward share, in float32:
// RMSNorm (whole rows and per head), RoPE (both pairings, scaled frequencies, LongRoPE / YaRN
// factors), the attention scale, the sliding window's first visible key, GELU's tanh form, and
// the row loops (a static schedule: the floats do not depend on the thread count).
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "gelu.hpp"
#include "llama_model.hpp"

namespace autoround {

namespace detail {

// Row loops over a batch: independent rows, a static schedule (the same rows per thread every
// run), so the floats do not depend on the thread count.
template <class F>
void for_each_row(Index rows, F&& f) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (rows >= 64)
#endif
  for (Index t = 0; t < rows; ++t) f(t);
}

inline RowMatrix rms_norm(const RowMatrix& x, const Eigen::VectorXf& weight, float eps) {
  RowMatrix out(x.rows(), x.cols());
  for_each_row(x.rows(), [&](Index t) {
    const float mean_square = x.row(t).squaredNorm() / static_cast<float>(x.cols());
    out.row(t) = x.row(t).cwiseProduct(weight.transpose()) * (1.0f / std::sqrt(mean_square + eps));
  });
  return out;
}

/// d rms_norm(x) given d out: with r = 1/sqrt(mean(x²)+eps), u = g ⊙ dy:
/// dx = r u − x r³ (u·x) / d.
inline RowMatrix rms_norm_backward(const RowMatrix& x, const Eigen::VectorXf& weight, float eps, const RowMatrix& dy) {
  RowMatrix dx(x.rows(), x.cols());
  const float d = static_cast<float>(x.cols());
  for_each_row(x.rows(), [&](Index t) {
    const float r = 1.0f / std::sqrt(x.row(t).squaredNorm() / d + eps);
    const Eigen::RowVectorXf u = dy.row(t).cwiseProduct(weight.transpose());
    dx.row(t) = r * u - x.row(t) * (r * r * r * u.dot(x.row(t)) / d);
  });
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
/// `length`: the sequence's tokens (LongRoPE's divisors depend on it; 0: the short ones).
inline double rope_frequency(const LlamaConfig& c, Index i, Index length = 0) {
  double frequency = std::pow(static_cast<double>(c.rope_theta), -2.0 * static_cast<double>(i) / static_cast<double>(c.rotary()));
  const bool long_rope = !c.rope_long_divisors.empty() && length > c.rope_long_after;
  const std::vector<float>& divisors = long_rope ? c.rope_long_divisors : c.rope_divisors;
  if (!divisors.empty()) frequency /= static_cast<double>(divisors[static_cast<std::size_t>(i)]);
  return frequency;
}

/// Rotate each head's pairs by direction · position · theta^(-2i/head_dim) (over the scaling
/// divisor, if any); direction -1 undoes it, which is also the backward (a rotation's transpose
/// is its inverse). Row r is position r mod seqlen (sequences stacked); seqlen 0: one sequence.
inline void apply_rope(RowMatrix& x, Index heads, const LlamaConfig& c, float direction = 1.0f, Index seqlen = 0) {
  const Index half = c.rotary() / 2, positions = seqlen > 0 ? std::min(seqlen, x.rows()) : x.rows();
  // cos and sin of every (position, pair), computed in double once for all sequences; LongRoPE
  // scales both (so the backward, direction −1, is the scaled rotation's transpose too)
  RowMatrix cos_table(positions, half), sin_table(positions, half);
  const float factor = c.rope_attention_factor;
  for (Index i = 0; i < half; ++i) {
    const double frequency = rope_frequency(c, i, positions);
    for (Index t = 0; t < positions; ++t) {
      const double angle = static_cast<double>(t) * frequency;
      cos_table(t, i) = static_cast<float>(std::cos(angle));
      sin_table(t, i) = direction * static_cast<float>(std::sin(angle));
      if (factor != 1.0f) cos_table(t, i) *= factor, sin_table(t, i) *= factor;
    }
  }
  const bool adjacent = c.rope_style == RopeStyle::AdjacentPairs;
  for_each_row(x.rows(), [&](Index r) {
    const Index t = r % positions;
    for (Index h = 0; h < heads; ++h) {
      float* head = x.row(r).data() + h * c.head_dim;
      for (Index i = 0; i < half; ++i) {
        const Index a = adjacent ? 2 * i : i, b = adjacent ? 2 * i + 1 : i + half;
        const float cos_a = cos_table(t, i), sin_a = sin_table(t, i);
        const float x0 = head[a], x1 = head[b];
        head[a] = x0 * cos_a - x1 * sin_a;
        head[b] = x0 * sin_a + x1 * cos_a;
      }
    }
  });
}

/// The configuration a block's attention uses (layer_config: a sliding layer's own RoPE base, a
/// full layer's own head size): `c` itself where nothing differs, else a copy made in `local`.
inline const LlamaConfig& attention_config(const LlamaConfig& c, bool sliding, LlamaConfig& local) {
  if (!has_layer_config(c, sliding)) return c;
  local = layer_config(c, sliding);
  return local;
}

inline float attention_scale(const LlamaConfig& c) {
  return c.attention_scale > 0 ? c.attention_scale : 1.0f / std::sqrt(static_cast<float>(c.head_dim));
}

/// The first key position query t may see: 0, or with a sliding window of w tokens, t − w + 1.
inline Index first_visible(Index t, Index window) { return window > 0 ? std::max<Index>(0, t - window + 1) : 0; }

/// g += d_yᵀ x, a linear layer's weight gradient, unless g is null or empty: a weight whose
/// gradient is not wanted (not tuned, or measure_fisher's output gradients only) costs no GEMM.
inline void add_weight_gradient(RowMatrix* g, const RowMatrix& d_y, const RowMatrix& x) {
  if (g && g->size() != 0) g->noalias() += d_y.transpose() * x;
}

/// Tokens per sequence of a batch of `rows` rows (0: one sequence), checked.
inline Index sequence_length(Index rows, Index seqlen) {
  if (seqlen <= 0) return rows;
  if (rows % seqlen != 0)
    throw Error("block batch: " + std::to_string(rows) + " rows are not whole sequences of " + std::to_string(seqlen) + " tokens");
  return seqlen;
}

}  // namespace detail

}  // namespace autoround
