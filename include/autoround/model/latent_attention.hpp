#pragma once
// DeepSeek-V3's multi-head latent attention (MLA), forward and backward in float32, as
// transformers 5.17's DeepseekV3Attention computes it (eager), from the normed hidden state xn:
//   query:   q = q_b(rms(q_a(xn))·g_qa)   (or q_proj(xn) without query compression);
//            each head [q_nope (qk_nope_dim) | q_rope (head_dim)], RoPE on q_rope
//   latent:  [c | k_rope] = kv_a(xn);  c ← rms(c)·g_kv;  RoPE on k_rope: ONE key part every head shares
//   kv_b(c): each head [k_nope (qk_nope_dim) | v (v_head_dim)]
//   scores:  (q_nope·k_nope + q_rope·k_rope) × scale, causal softmax; O_h = P v_h  [tokens, heads·v_head_dim]
// The block's o_proj then reads O (llama_block.hpp does that part, as for any attention). Its
// linear layers are the block's Query (q_b_proj), Key (kv_a_proj_with_mqa), Value (kv_b_proj) and
// Output slots plus q_a_proj (LinearSlot::latent). RoPE rotates adjacent pairs (transformers'
// rope_interleave, llama.cpp's deepseek2: rotating in place gives the same q·k as transformers'
// de-interleaved copy). llama.cpp computes the same scores "absorbed" (kv_b's key rows folded into
// the query); the sums differ only in order.
#include <Eigen/Core>
#include <vector>

#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "block_math.hpp"
#include "llama_model.hpp"

namespace autoround {

/// The weights a latent attention computes with (full precision or fake-quantized).
struct LatentAttentionWeights {
  const RowMatrix* query_a = nullptr;  ///< q_a_proj; null or empty: `query` reads xn
  const RowMatrix* query = nullptr;    ///< q_b_proj (or q_proj)
  const RowMatrix* kv_a = nullptr;     ///< kv_a_proj_with_mqa [kv_lora_rank + head_dim, hidden]
  const RowMatrix* kv_b = nullptr;     ///< kv_b_proj [heads·(qk_nope + v_head), kv_lora_rank]
  const Eigen::VectorXf* query_a_norm = nullptr;
  const Eigen::VectorXf* kv_a_norm = nullptr;
  bool compressed_query() const { return query_a && query_a->size() > 0; }
};

/// Intermediates of one forward, kept for the backward (and for reading q_b's and kv_b's inputs).
struct LatentAttentionCache {
  RowMatrix query_a_out;   ///< q_a(xn), before its norm
  RowMatrix query_latent;  ///< rms(q_a(xn))·g_qa: q_b's input
  RowMatrix q_nope, q_rope;  ///< [tokens, heads·qk_nope], [tokens, heads·head_dim] (roped)
  RowMatrix kv_a_out;      ///< kv_a(xn), before the latent's norm and the key's RoPE
  RowMatrix kv_latent;     ///< rms(c)·g_kv: kv_b's input
  RowMatrix key_rope;      ///< the shared roped key part [tokens, head_dim]
  RowMatrix kv;            ///< kv_b(c): per head [k_nope | v]
  std::vector<RowMatrix> probabilities;  ///< per sequence and head (sequence-major) [T, T]
};

/// The backward's temporaries, kept between calls for their memory.
struct LatentAttentionScratch {
  RowMatrix d_q_nope, d_q_rope, d_q, d_kv, d_key_rope, d_latent, d_kv_a, d_query_latent, d_query_a;
  std::vector<RowMatrix> d_s, d_key_rope_head;
};

/// Where the gradients of the five linear layers go (added to; a null or empty one is skipped).
struct LatentAttentionGradients {
  RowMatrix* query_a = nullptr;
  RowMatrix* query = nullptr;
  RowMatrix* kv_a = nullptr;
  RowMatrix* kv_b = nullptr;
};

/// xn [tokens, hidden] (sequences of `length` tokens stacked) → O [tokens, heads·v_head_dim] in
/// `out`; `keep`: the probabilities too (for the backward).
inline void latent_attention_forward(const LatentAttentionWeights& w, const LlamaConfig& c, const RowMatrix& xn,
                                     LatentAttentionCache& m, RowMatrix& out, bool keep, Index length) {
  const Index tokens = xn.rows(), heads = c.heads, dn = c.qk_nope_dim, dr = c.head_dim, dv = c.v_head_dim;
  const Index dqk = dn + dr, dkv = dn + dv, sequences = tokens > 0 ? tokens / length : 0;
  detail::require(c.kv_lora_rank > 0 && dr % 2 == 0, "latent attention: kv_lora_rank and an even qk_rope_head_dim are required");
  RowMatrix q;
  if (w.compressed_query()) {
    m.query_a_out.noalias() = xn * w.query_a->transpose();
    m.query_latent = detail::rms_norm(m.query_a_out, *w.query_a_norm, c.latent_norm_eps);
    q.noalias() = m.query_latent * w.query->transpose();
  } else {
    m.query_a_out.resize(0, 0), m.query_latent.resize(0, 0);
    q.noalias() = xn * w.query->transpose();
  }
  m.q_nope.resize(tokens, heads * dn);
  m.q_rope.resize(tokens, heads * dr);
  for (Index h = 0; h < heads; ++h) {
    m.q_nope.middleCols(h * dn, dn) = q.middleCols(h * dqk, dn);
    m.q_rope.middleCols(h * dr, dr) = q.middleCols(h * dqk + dn, dr);
  }
  m.kv_a_out.noalias() = xn * w.kv_a->transpose();
  m.kv_latent = detail::rms_norm(m.kv_a_out.leftCols(c.kv_lora_rank), *w.kv_a_norm, c.latent_norm_eps);
  m.key_rope = m.kv_a_out.rightCols(dr);
  detail::apply_rope(m.q_rope, heads, c, 1.0f, length);
  detail::apply_rope(m.key_rope, 1, c, 1.0f, length);
  m.kv.noalias() = m.kv_latent * w.kv_b->transpose();
  out.resize(tokens, heads * dv);
  m.probabilities.resize(static_cast<std::size_t>(sequences * heads));
  const float scale = detail::attention_scale(c);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (Index j = 0; j < sequences * heads; ++j) {  // one (sequence, head) pair each
    const Index h = j % heads, row = (j / heads) * length;
    RowMatrix& p = m.probabilities[static_cast<std::size_t>(j)];
    p.noalias() = m.q_nope.block(row, h * dn, length, dn) * m.kv.block(row, h * dkv, length, dn).transpose();
    p.noalias() += m.q_rope.block(row, h * dr, length, dr) * m.key_rope.middleRows(row, length).transpose();
    p *= scale;
    for (Index t = 0; t < length; ++t) {
      auto r = p.row(t);
      r.head(t + 1) = (r.head(t + 1).array() - r.head(t + 1).maxCoeff()).exp();
      r.head(t + 1) /= r.head(t + 1).sum();
      r.tail(length - t - 1).setZero();  // causal
    }
    out.block(row, h * dv, length, dv).noalias() = p * m.kv.block(row, h * dkv + dn, length, dv);
  }
  if (!keep) m.probabilities.clear();
}

/// Given dL/dO (`d_out`, [tokens, heads·v_head_dim]) for the forward that filled `m` from `xn`:
/// dL/dW of the five linear layers into `grads`.
inline void latent_attention_backward(const LatentAttentionWeights& w, const LlamaConfig& c, const RowMatrix& xn,
                                      const LatentAttentionCache& m, const RowMatrix& d_out, const LatentAttentionGradients& grads,
                                      LatentAttentionScratch& z, Index length) {
  const Index tokens = d_out.rows(), heads = c.heads, dn = c.qk_nope_dim, dr = c.head_dim, dv = c.v_head_dim;
  const Index dqk = dn + dr, dkv = dn + dv, sequences = tokens / length;
  const float scale = detail::attention_scale(c);
  z.d_q_nope.resize(tokens, heads * dn);
  z.d_q_rope.resize(tokens, heads * dr);
  z.d_kv.resize(tokens, heads * dkv);
  const auto pairs = static_cast<std::size_t>(sequences * heads);
  z.d_s.resize(pairs);
  z.d_key_rope_head.resize(pairs);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (Index j = 0; j < sequences * heads; ++j) {
    const Index h = j % heads, row = (j / heads) * length;
    const RowMatrix& p = m.probabilities[static_cast<std::size_t>(j)];
    const auto d_o = d_out.block(row, h * dv, length, dv);
    RowMatrix& d_s = z.d_s[static_cast<std::size_t>(j)];
    d_s.noalias() = d_o * m.kv.block(row, h * dkv + dn, length, dv).transpose();  // dP
    d_s = p.cwiseProduct(d_s);  // softmax: dS = P ⊙ (dP − Σ dP·P); masked entries have P = 0
    for (Index t = 0; t < length; ++t) d_s.row(t) -= p.row(t) * d_s.row(t).sum();
    d_s *= scale;
    z.d_q_nope.block(row, h * dn, length, dn).noalias() = d_s * m.kv.block(row, h * dkv, length, dn);
    z.d_q_rope.block(row, h * dr, length, dr).noalias() = d_s * m.key_rope.middleRows(row, length);
    z.d_kv.block(row, h * dkv, length, dn).noalias() = d_s.transpose() * m.q_nope.block(row, h * dn, length, dn);
    z.d_kv.block(row, h * dkv + dn, length, dv).noalias() = p.transpose() * d_o;
    z.d_key_rope_head[static_cast<std::size_t>(j)].noalias() = d_s.transpose() * m.q_rope.block(row, h * dr, length, dr);
  }
  z.d_key_rope.setZero(tokens, dr);
  for (Index j = 0; j < sequences * heads; ++j)  // every head's share of the one key part, in a fixed order
    z.d_key_rope.middleRows((j / heads) * length, length) += z.d_key_rope_head[static_cast<std::size_t>(j)];
  detail::apply_rope(z.d_q_rope, heads, c, -1.0f, length);
  detail::apply_rope(z.d_key_rope, 1, c, -1.0f, length);
  // kv_b, then through the latent's norm into kv_a (the roped key's part goes straight there)
  detail::add_weight_gradient(grads.kv_b, z.d_kv, m.kv_latent);
  z.d_latent.noalias() = z.d_kv * *w.kv_b;
  z.d_kv_a.resize(tokens, c.kv_lora_rank + dr);
  z.d_kv_a.leftCols(c.kv_lora_rank) = detail::rms_norm_backward(m.kv_a_out.leftCols(c.kv_lora_rank), *w.kv_a_norm, c.latent_norm_eps, z.d_latent);
  z.d_kv_a.rightCols(dr) = z.d_key_rope;
  detail::add_weight_gradient(grads.kv_a, z.d_kv_a, xn);
  // the query: q_b (or q_proj), then through q_a's norm into q_a
  z.d_q.resize(tokens, heads * dqk);
  for (Index h = 0; h < heads; ++h) {
    z.d_q.middleCols(h * dqk, dn) = z.d_q_nope.middleCols(h * dn, dn);
    z.d_q.middleCols(h * dqk + dn, dr) = z.d_q_rope.middleCols(h * dr, dr);
  }
  if (!w.compressed_query()) {
    detail::add_weight_gradient(grads.query, z.d_q, xn);
    return;
  }
  detail::add_weight_gradient(grads.query, z.d_q, m.query_latent);
  if (!grads.query_a || grads.query_a->size() == 0) return;
  z.d_query_latent.noalias() = z.d_q * *w.query;
  z.d_query_a = detail::rms_norm_backward(m.query_a_out, *w.query_a_norm, c.latent_norm_eps, z.d_query_latent);
  detail::add_weight_gradient(grads.query_a, z.d_query_a, xn);
}

}  // namespace autoround
