#pragma once
// One LLaMA decoder block, forward and backward, in float32:
//   xn = rms(x)·g1; q,k,v = xn Wq/k/vᵀ; RoPE(q,k); O = causal softmax(q kᵀ/√d) v (GQA)
//   h = x + O Woᵀ;  yn = rms(h)·g2;  A = silu(yn Wgᵀ) ⊙ (yn Wuᵀ);  out = h + A Wdᵀ
// The forward can keep what the backward needs (BlockCache). The backward returns the gradient
// of the loss with respect to the seven weight matrices (the input x is a constant here: block-
// wise tuning differentiates only the block's own quantized weights). A block whose MLP is a
// mixture of experts (BlockWeights::moe) runs moe_forward (model/moe_mlp.hpp) in the MLP's place
// (Gemma 4's 26B-A4B: beside it, MoeFeedForward::beside_mlp); its backward gives the attention's
// four gradients (and the dense MLP's three) and every expert's.
//
// DeepSeek-V3's blocks (LlamaConfig::latent_attention) run model/latent_attention.hpp between the
// attention norm and o_proj in place of the GQA core; their q_a_proj's gradient comes out through
// block_backward's `query_a_grad`.
//
// Gemma's blocks (LlamaConfig's Gemma settings) differ only in data: norms of the attention's and
// the MLP's outputs (sandwich norms), GeGLU, the attention's scale, soft-capping and sliding window,
// and the sliding layers' RoPE base; each is one branch here, in forward and backward.
//
// Batches: `hidden` may hold several sequences of `seqlen` tokens stacked row after row. Every
// linear layer then runs once over all rows (one GEMM: the weight is packed once, not once per
// sequence), RMSNorm and the MLP's elementwise work row by row; attention and RoPE positions are
// per sequence. One sequence alone computes exactly what it computes in a batch up to the GEMMs'
// blocking (Eigen picks its block sizes from the matrix shapes, so the sums may part by ulps).
#include <Eigen/Core>
#include <array>
#include <cmath>
#include <algorithm>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "block_math.hpp"
#include "latent_attention.hpp"
#include "linear_slots.hpp"
#include "llama_model.hpp"

namespace autoround {

/// What a block reads beside its hidden state (Gemma 4 E2B / E4B), for the rows of one forward
/// (sequences stacked as the hidden state's): the layer's per-layer inputs (model/per_layer_input.hpp)
/// and, for a kv-shared layer, its donor's keys (after k_norm and RoPE) and values (after v_norm).
struct BlockSideInputs {
  RowMatrix per_layer;     ///< [tokens, P]; empty: none
  RowMatrix keys, values;  ///< [tokens, kv_heads · head_dim] of the donor layer; empty: the block's own
};

/// The weights a block computes with (full precision or fake-quantized): the seven linears (the
/// MLP's three unused with `moe`), its norms and biases, and its mixture of experts if it has one;
/// and the inputs beside the hidden state (`side`) where the block reads some.
struct BlockWeights {
  std::array<const RowMatrix*, 7> linear{};
  const Eigen::VectorXf* attn_norm = nullptr;
  const Eigen::VectorXf* ffn_norm = nullptr;
  std::array<const Eigen::VectorXf*, 3> qkv_bias{};  ///< may point to empty vectors (no bias)
  const Eigen::VectorXf* output_bias = nullptr;       ///< GPT-OSS; may point to an empty vector
  const Eigen::VectorXf* sinks = nullptr;             ///< GPT-OSS's attention sinks [heads]; may point to an empty vector
  const Eigen::VectorXf* q_norm = nullptr;            ///< Qwen3; may point to an empty vector
  const Eigen::VectorXf* k_norm = nullptr;
  const MoeFeedForward* moe = nullptr;                ///< the MLP as a mixture of experts (its experts may be fake-quantized copies)
  const Eigen::VectorXf* post_attn_norm = nullptr;    ///< Gemma; may point to an empty vector
  const Eigen::VectorXf* post_ffn_norm = nullptr;
  bool sliding = false;                               ///< sliding-window attention (LlamaConfig::sliding_window)
  const ActivationQuant* act = nullptr;               ///< the linear inputs' quantization (W4A4 schemes); none: float inputs
  /// DeepSeek-V3's latent attention (LlamaConfig::latent_attention): q_a_proj (null or empty: none)
  /// and the two latent norms; the linears Query, Key, Value are then q_b, kv_a and kv_b.
  const RowMatrix* query_a = nullptr;
  const Eigen::VectorXf* query_a_norm = nullptr;
  const Eigen::VectorXf* kv_a_norm = nullptr;
  bool values_from_keys = false;                      ///< Gemma 4's full layers: V is k_proj's output (linear[Value] unused)
  float layer_scalar = 1;                             ///< Gemma 4: the block's output × this
  /// Gemma 4 E2B / E4B's per-layer branch (LlamaBlock::per_layer): gate, projection (null: none), post norm
  const RowMatrix* per_layer_gate = nullptr;
  const RowMatrix* per_layer_projection = nullptr;
  const Eigen::VectorXf* per_layer_norm = nullptr;
  bool kv_shared = false;                             ///< attends with side->keys / values (no k_proj, v_proj)
  const BlockSideInputs* side = nullptr;              ///< this forward's per-layer inputs and donor keys / values
  BlockSideInputs* donate = nullptr;                  ///< a donor layer's forward writes its keys and values here
  bool has_per_layer() const { return per_layer_gate != nullptr; }
  LatentAttentionWeights latent() const {
    return {query_a, linear[0], linear[1], linear[2], query_a_norm, kv_a_norm};
  }
  bool has_post_attn_norm() const { return post_attn_norm && post_attn_norm->size() > 0; }
  bool has_post_ffn_norm() const { return post_ffn_norm && post_ffn_norm->size() > 0; }
  bool has_qk_norm() const { return q_norm && q_norm->size() > 0; }
  bool has_output_bias() const { return output_bias && output_bias->size() > 0; }
  bool has_sinks() const { return sinks && sinks->size() > 0; }
  const RowMatrix& operator[](Linear l) const { return *linear[static_cast<std::size_t>(l)]; }

  static BlockWeights of(const LlamaBlock& b) {
    BlockWeights w;
    for (Linear l : all_linears) w.linear[static_cast<std::size_t>(l)] = &b[l];
    for (std::size_t j = 0; j < 3; ++j) w.qkv_bias[j] = &b.qkv_bias[j];
    w.output_bias = &b.output_bias;
    w.sinks = &b.sinks;
    w.q_norm = &b.q_norm;
    w.k_norm = &b.k_norm;
    w.attn_norm = &b.attn_norm;
    w.ffn_norm = &b.ffn_norm;
    if (b.moe) w.moe = &*b.moe;
    w.post_attn_norm = &b.post_attn_norm;
    w.post_ffn_norm = &b.post_ffn_norm;
    w.sliding = b.sliding;
    if (b.act_quant) w.act = &*b.act_quant;
    if (b.mla) w.query_a = &b.mla->query_a, w.query_a_norm = &b.mla->query_a_norm, w.kv_a_norm = &b.mla->kv_a_norm;
    w.values_from_keys = b.values_from_keys;
    w.layer_scalar = b.layer_scalar;
    if (b.per_layer)
      w.per_layer_gate = &b.per_layer->gate, w.per_layer_projection = &b.per_layer->projection, w.per_layer_norm = &b.per_layer->post_norm;
    w.kv_shared = b.kv_shared;
    return w;
  }
};

/// The LinearInput a linear layer reads (what its activation quantization is measured on).
inline LinearInput linear_input(Linear l) {
  switch (l) {
    case Linear::Query: case Linear::Key: case Linear::Value: return LinearInput::Attention;
    case Linear::Output: return LinearInput::AttentionOutput;
    case Linear::Gate: case Linear::Up: return LinearInput::Mlp;
    default: return LinearInput::MlpProduct;
  }
}

/// A quantized layer in `slot` of a block whose mixture of experts has `routed` routed experts,
/// added to `maxima`: to the block's (for an expert too: where one has none of its own), and to an
/// expert's own (its index: the routed one's, or `routed` for the shared one).
inline void add_slot_maxima(InputMaxima& maxima, const QuantSpec& spec, const LinearSlot& slot, std::size_t routed, float absmax) {
  if (slot.expert != LinearSlot::own && !slot.of_expert()) return;
  maxima.add(spec, linear_input(slot.role), absmax);
  if (slot.of_expert()) maxima.add_expert(spec, slot.routed() ? static_cast<std::size_t>(slot.expert) : routed, linear_input(slot.role), absmax);
}

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

/// Intermediate values of one forward (one sequence, or a batch of them stacked). Kept from
/// step to step, its matrices are written in place: a tuning loop allocates them once.
struct BlockCache {
  RowMatrix x, attention_in, q, k, v, output_in, h, mlp_in, gate, up, down_in;
  RowMatrix gate_sigmoid;                ///< sigmoid(gate) (SwiGLU), or tanh(√(2/π)(g + 0.044715 g³)) (GeGLU): the backward needs it
  RowMatrix attention_out, mlp_out;      ///< the attention's and the MLP's outputs before Gemma's post norms (only with them)
  RowMatrix q_projected, k_projected;    ///< q and k before Qwen3's per-head norms (only with them)
  RowMatrix v_projected;                 ///< v before Gemma 4's v_norm (only with it)
  std::vector<RowMatrix> probabilities;  ///< per sequence and query head (sequence-major) [T, T], causal
  MoeCache moe;                          ///< a mixture-of-experts MLP's routing and experts' intermediates (experts_input() is its input)
  /// Gemma 4's experts beside the dense MLP: their own input, the router's, and the two branches'
  /// outputs before their norms (mlp_out is then the sum of the normed branches)
  RowMatrix experts_in, router_in, dense_out, experts_out;
  /// With quantized inputs (BlockWeights::act): o_proj's, gate/up's and down_proj's inputs
  /// before the quantization, which the backward passes through (q/k/v's needs none: nothing
  /// before it is tuned).
  RowMatrix output_in_float, mlp_in_float, down_in_float;
  LatentAttentionCache mla;              ///< DeepSeek-V3's latent attention's intermediates (attention_in is its input)
  /// Gemma 4 E2B / E4B's per-layer branch: its input (the stream after the MLP), the gate's output
  /// and tanh (GELU's), gelu(gate) ⊙ ple (the projection's input), the projection's output
  RowMatrix per_layer_in, per_layer_gate, per_layer_tanh, per_layer_product, per_layer_out;
  Index seqlen = 0;                      ///< tokens per sequence
  /// What the experts read: mlp_in, or their own normed input beside a dense MLP (Gemma 4).
  const RowMatrix& experts_input() const { return experts_in.size() > 0 ? experts_in : mlp_in; }
  /// Linear l's input; a latent attention's q_b and kv_b read its latents, q_a attention_in.
  const RowMatrix& of(Linear l) const {
    if (l == Linear::Query && mla.query_latent.size() > 0) return mla.query_latent;
    if (l == Linear::Value && mla.kv_latent.size() > 0) return mla.kv_latent;
    return input_of(*this, l);
  }
};

/// The backward's temporaries, kept between calls for their memory (block_backward).
struct BlockBackwardScratch {
  RowMatrix d_act, d_gate, d_up, d_yn, d_h, d_attention, d_q, d_k, d_v, d_mlp, d_attention_out;
  RowMatrix d_dense, d_experts, d_experts_in, d_router_in;  ///< Gemma 4's experts beside the dense MLP
  RowMatrix d_out;  ///< dL/d(block output) × the block's layer_scalar (Gemma 4)
  RowMatrix d_per_layer_out, d_per_layer_gate, d_after_mlp;  ///< Gemma 4 E2B / E4B's per-layer branch
  std::vector<RowMatrix> d_k_head, d_v_head, d_s;
  LatentAttentionScratch mla;
};


namespace detail {
inline void attention_core_forward(const BlockWeights& w, const LlamaConfig& c, BlockCache& m, bool keep, Index length);
inline void output_projection_forward(const BlockWeights& w, const LlamaConfig& c, RowMatrix& hidden, BlockCache& m, bool keep);
inline void mlp_forward(const BlockWeights& w, const LlamaConfig& c, RowMatrix& hidden, BlockCache& m, bool keep);

/// Gemma 4 E2B / E4B: hidden += post_norm(projection(gelu_tanh(gate(hidden)) ⊙ ple)), ple = w.side->per_layer.
inline void per_layer_forward(const BlockWeights& w, const LlamaConfig& c, RowMatrix& hidden, BlockCache& m, bool keep) {
  const Index tokens = hidden.rows(), p = w.per_layer_gate->rows();
  detail::require(w.side && w.side->per_layer.rows() == tokens && w.side->per_layer.cols() == p,
                  "a block with a per-layer branch without its per-layer inputs for these rows");
  detail::require(!w.act, "per-layer inputs (Gemma 4 E2B / E4B) with quantized activations are not supported");
  if (keep) m.per_layer_in = hidden;
  m.per_layer_gate.noalias() = hidden * w.per_layer_gate->transpose();
  m.per_layer_tanh.resize(tokens, p);
  m.per_layer_product.resize(tokens, p);
  const RowMatrix& ple = w.side->per_layer;
  for_each_row(tokens, [&](Index t) {
    for (Index i = 0; i < p; ++i) {
      const float g = m.per_layer_gate(t, i), th = gelu_tanh_inner(g);
      m.per_layer_tanh(t, i) = th;
      m.per_layer_product(t, i) = 0.5f * g * (1.0f + th) * ple(t, i);
    }
  });
  m.per_layer_out.noalias() = m.per_layer_product * w.per_layer_projection->transpose();
  hidden += rms_norm(m.per_layer_out, *w.per_layer_norm, c.rms_eps);
}

/// The block's first half: hidden += attention(rms(hidden)), into `m`'s matrices (`keep`: also
/// the input and the probabilities, for the backward).

inline void attention_forward(const BlockWeights& w, const LlamaConfig& c, RowMatrix& hidden, BlockCache& m, bool keep, Index seqlen) {
  const Index length = detail::sequence_length(hidden.rows(), seqlen);
  m.seqlen = length;
  if (keep) m.x = hidden;
  m.attention_in = detail::rms_norm(hidden, *w.attn_norm, c.rms_eps);
  if (c.latent_attention()) {  // DeepSeek-V3 (model/latent_attention.hpp); then o_proj as below
    detail::require(!w.act, "latent attention (DeepSeek-V3) with quantized activations is not supported");
    latent_attention_forward(w.latent(), c, m.attention_in, m.mla, m.output_in, keep, length);
    m.probabilities.clear();
  } else {
    attention_core_forward(w, c, m, keep, length);
  }
  output_projection_forward(w, c, hidden, m, keep);
}

/// Multi-head (GQA) attention of the normed state m.attention_in into m.output_in.
inline void attention_core_forward(const BlockWeights& w, const LlamaConfig& model, BlockCache& m, bool keep, Index length) {
  LlamaConfig local;  // the layer's own RoPE and (Gemma 4's full layers) head size and KV heads
  const LlamaConfig& c = attention_config(model, w.sliding, local);
  const Index tokens = m.attention_in.rows(), d = c.head_dim, group = c.heads / c.kv_heads, sequences = tokens > 0 ? tokens / length : 0;
  if (w.act) w.act->apply(m.attention_in, LinearInput::Attention);  // the cache keeps the quantized inputs (dW = dY^T q(x))
  const Index window = w.sliding ? c.sliding_window : 0;
  RowMatrix& q = w.has_qk_norm() ? m.q_projected : m.q;
  RowMatrix& k = w.has_qk_norm() ? m.k_projected : m.k;
  const bool shared = w.kv_shared;  // Gemma 4's kv-shared layers: the donor's keys and values, as they are
  if (shared)
    detail::require(w.side && w.side->keys.rows() == tokens && w.side->keys.cols() == c.kv_heads * d &&
                        w.side->values.rows() == tokens && w.side->values.cols() == c.kv_heads * d,
                    "a kv-shared layer's forward without its donor's keys and values for these rows");
  q.noalias() = m.attention_in * w[Linear::Query].transpose();
  if (!shared) k.noalias() = m.attention_in * w[Linear::Key].transpose();
  if (!w.values_from_keys && !shared) m.v.noalias() = m.attention_in * w[Linear::Value].transpose();
  // Qwen2's projection biases: constants for tuning, they only shift the outputs
  RowMatrix* projected[3] = {&q, &k, &m.v};
  for (std::size_t j = 0; j < 3; ++j)
    if (w.qkv_bias[j] && w.qkv_bias[j]->size() > 0 && !(j == 2 && w.values_from_keys) && !(j > 0 && shared))
      projected[j]->rowwise() += w.qkv_bias[j]->transpose();
  if (w.values_from_keys) m.v = k;  // Gemma 4's full layers: the values are k_proj's output, before k_norm and RoPE
  if (c.value_norm && !shared) {  // Gemma 4: per-head RMSNorm of v without a weight
    RowMatrix normed = detail::head_rms_norm(m.v, c.kv_heads, d, Eigen::VectorXf::Ones(d), c.rms_eps);
    if (keep) m.v_projected = std::move(m.v);
    m.v = std::move(normed);
  }
  if (w.has_qk_norm()) {  // Qwen3: RMSNorm over each head of q and k, before RoPE
    m.q = detail::head_rms_norm(q, c.heads, d, *w.q_norm, c.rms_eps);
    if (!shared) m.k = detail::head_rms_norm(k, c.kv_heads, d, *w.k_norm, c.rms_eps);
  }
  detail::apply_rope(m.q, c.heads, c, 1.0f, length);
  if (shared) {
    m.k = w.side->keys;
    m.v = w.side->values;
  } else {
    detail::apply_rope(m.k, c.kv_heads, c, 1.0f, length);
  }
  if (w.donate) w.donate->keys = m.k, w.donate->values = m.v;
  m.output_in.resize(tokens, c.heads * d);
  m.probabilities.resize(static_cast<std::size_t>(sequences * c.heads));
  const float scale = attention_scale(c), cap = c.attention_softcap;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (Index j = 0; j < sequences * c.heads; ++j) {  // one (sequence, head) pair each
    const Index s = j / c.heads, h = j % c.heads, kv = h / group, row = s * length;
    RowMatrix& p = m.probabilities[static_cast<std::size_t>(j)];
    p.noalias() = m.q.block(row, h * d, length, d) * m.k.block(row, kv * d, length, d).transpose();
    p *= scale;
    if (cap > 0) p = (p.array() / cap).tanh() * cap;  // Gemma 2's soft-capping, before the mask
    // GPT-OSS's sink: one more logit per head in every row's softmax, whose probability is dropped
    // (the row sums to less than 1). The backward needs nothing more: dS = P ⊙ (dP − Σ dP·P) over
    // the kept columns holds as it is, the sink's column having no dP.
    const bool sunk = w.has_sinks();
    const float sink = sunk ? (*w.sinks)(h) : 0.0f;
    for (Index t = 0; t < length; ++t) {
      auto r = p.row(t);
      const Index lo = first_visible(t, window), n = t + 1 - lo;
      const float max = sunk ? std::max(r.segment(lo, n).maxCoeff(), sink) : r.segment(lo, n).maxCoeff();
      r.segment(lo, n) = (r.segment(lo, n).array() - max).exp();
      r.segment(lo, n) /= r.segment(lo, n).sum() + (sunk ? std::exp(sink - max) : 0.0f);
      r.head(lo).setZero();              // sliding window: no attention to tokens before it
      r.tail(length - t - 1).setZero();  // causal: no attention to later tokens
    }
    m.output_in.block(row, h * d, length, d).noalias() = p * m.v.block(row, kv * d, length, d);
  }
  if (!keep) m.probabilities.clear();
}

/// hidden += o_proj(m.output_in) (through Gemma's post norm; GPT-OSS's bias).
inline void output_projection_forward(const BlockWeights& w, const LlamaConfig& c, RowMatrix& hidden, BlockCache& m, bool keep) {
  if (w.act && keep) m.output_in_float = m.output_in;
  if (w.act) w.act->apply(m.output_in, LinearInput::AttentionOutput);
  if (w.has_post_attn_norm()) {  // Gemma: the attention's output normed before the residual add
    m.attention_out.noalias() = m.output_in * w[Linear::Output].transpose();
    if (w.has_output_bias()) m.attention_out.rowwise() += w.output_bias->transpose();
    hidden += detail::rms_norm(m.attention_out, *w.post_attn_norm, c.rms_eps);
    return;
  }
  hidden.noalias() += m.output_in * w[Linear::Output].transpose();
  if (w.has_output_bias()) hidden.rowwise() += w.output_bias->transpose();  // GPT-OSS: a constant shift
}
}  // namespace detail

/// hidden [tokens, hidden] -> the block's output, in place; `cache` (optional) keeps the
/// intermediates for block_backward and for reading the linear layers' inputs. `hidden` holds
/// rows / seqlen sequences of `seqlen` tokens one after another (0: all rows are one sequence).
inline void block_forward(const BlockWeights& w, const LlamaConfig& c, RowMatrix& hidden, BlockCache* cache = nullptr,
                          Index seqlen = 0) {
  BlockCache local;
  BlockCache& m = cache ? *cache : local;  // everything is computed into the cache's matrices
  detail::attention_forward(w, c, hidden, m, cache != nullptr, seqlen);
  detail::mlp_forward(w, c, hidden, m, cache != nullptr);
  if (w.has_per_layer()) detail::per_layer_forward(w, c, hidden, m, cache != nullptr);
  if (w.layer_scalar != 1.0f) hidden *= w.layer_scalar;  // Gemma 4: the whole output, residual included
}

namespace detail {
/// The block's second half: hidden += MLP(rms(hidden)) (dense or mixture of experts).
inline void mlp_forward(const BlockWeights& w, const LlamaConfig& c, RowMatrix& hidden, BlockCache& m, bool keep) {
  BlockCache* cache = keep ? &m : nullptr;
  const Index tokens = hidden.rows();

  if (cache) m.h = hidden;
  m.mlp_in = detail::rms_norm(hidden, *w.ffn_norm, c.rms_eps);
  if (w.moe && !w.moe->beside_mlp) {  // the experts on their routed rows (model/moe_mlp.hpp)
    m.experts_in.resize(0, 0);
    RowMatrix out;
    moe_forward(w.moe->weights, w.moe->spec, m.mlp_in, out, cache ? &m.moe : nullptr, nullptr, w.act);  // (w.act: its experts' inputs)
    if (w.has_post_ffn_norm()) {
      m.mlp_out = std::move(out);
      hidden += detail::rms_norm(m.mlp_out, *w.post_ffn_norm, c.rms_eps);
    } else {
      hidden += out;
    }
    return;
  }
  if (w.act && cache) m.mlp_in_float = m.mlp_in;
  if (w.act) w.act->apply(m.mlp_in, LinearInput::Mlp);
  m.gate.noalias() = m.mlp_in * w[Linear::Gate].transpose();
  m.up.noalias() = m.mlp_in * w[Linear::Up].transpose();
  // SwiGLU: silu(g) u = g / (1 + exp(−g)) · u, with libm's expf: the values the per-sample code
  // computed (Eigen's vectorized exp is faster but rounds differently)
  m.gate_sigmoid.resize(m.gate.rows(), m.gate.cols());
  m.down_in.resize(m.gate.rows(), m.gate.cols());
  if (c.activation == MlpActivation::GeluTanh) {  // GeGLU: gelu_tanh(g) u, tanh kept for the backward
    detail::for_each_row(tokens, [&](Index t) {
      for (Index i = 0; i < m.gate.cols(); ++i) {
        const float g = m.gate(t, i), th = detail::gelu_tanh_inner(g);
        m.gate_sigmoid(t, i) = th;
        m.down_in(t, i) = 0.5f * g * (1.0f + th) * m.up(t, i);
      }
    });
  } else {
    detail::for_each_row(tokens, [&](Index t) {
      for (Index i = 0; i < m.gate.cols(); ++i) {
        const float g = m.gate(t, i), e = 1.0f + std::exp(-g);
        m.gate_sigmoid(t, i) = 1.0f / e;
        m.down_in(t, i) = g / e * m.up(t, i);
      }
    });
  }
  if (w.act && cache) m.down_in_float = m.down_in;
  if (w.act) w.act->apply(m.down_in, LinearInput::MlpProduct);
  if (w.moe) {  // Gemma 4: the experts beside the dense MLP, on the residual stream (hidden is still h)
    detail::require(w.has_post_ffn_norm(), "block_forward: experts beside the MLP need the post-feedforward norm");
    const ExpertsBesideMlp& beside = *w.moe->beside_mlp;
    m.dense_out.noalias() = m.down_in * w[Linear::Down].transpose();
    m.router_in = detail::rms_norm(hidden, beside.router_norm(), c.rms_eps);
    m.experts_in = detail::rms_norm(hidden, beside.input_norm, c.rms_eps);
    moe_forward(w.moe->weights, w.moe->spec, m.experts_in, m.experts_out, cache ? &m.moe : nullptr, &m.router_in, w.act);
    m.mlp_out = detail::rms_norm(m.dense_out, beside.mlp_norm, c.rms_eps);
    m.mlp_out += detail::rms_norm(m.experts_out, beside.experts_norm, c.rms_eps);
    hidden += detail::rms_norm(m.mlp_out, *w.post_ffn_norm, c.rms_eps);
    return;
  }
  if (w.has_post_ffn_norm()) {  // Gemma: the MLP's output normed before the residual add
    m.mlp_out.noalias() = m.down_in * w[Linear::Down].transpose();
    hidden += detail::rms_norm(m.mlp_out, *w.post_ffn_norm, c.rms_eps);
    return;
  }
  hidden.noalias() += m.down_in * w[Linear::Down].transpose();
}
}  // namespace detail


/// Rows per batched forward where the caller does not choose: enough for the weights' packing to
/// pay off (the 135M model's 128-token samples: 16 per forward), few enough that the
/// intermediates stay small (an 8B block's MLP at 2048 rows: 117 MB).
inline constexpr Index forward_batch_rows = 2048;

/// The block over many sequences (each replaced by its output), consecutive sequences of one
/// length stacked per forward: `batch` of them, or (0) as many as fill forward_batch_rows.
inline void block_forward(const BlockWeights& w, const LlamaConfig& c, std::span<RowMatrix> sequences, Index batch = 0) {
  for (std::size_t first = 0; first < sequences.size();) {
    const Index length = sequences[first].rows();
    const Index per = batch > 0 ? batch : std::max<Index>(1, forward_batch_rows / std::max<Index>(length, 1));
    std::size_t end = first;
    while (end < sequences.size() && end - first < static_cast<std::size_t>(per) && sequences[end].rows() == length) ++end;
    RowMatrix stacked(static_cast<Index>(end - first) * length, sequences[first].cols());
    for (std::size_t s = first; s < end; ++s) stacked.middleRows(static_cast<Index>(s - first) * length, length) = sequences[s];
    block_forward(w, c, stacked, nullptr, length);
    for (std::size_t s = first; s < end; ++s) sequences[s] = stacked.middleRows(static_cast<Index>(s - first) * length, length);
    first = end;
  }
}

/// The side inputs of samples `samples` of `from`, stacked as their hidden states are (one under another).
inline BlockSideInputs stack_side_inputs(std::span<const Index> samples, std::span<const BlockSideInputs> from) {
  BlockSideInputs out;
  const auto stack = [&](RowMatrix BlockSideInputs::*part) {
    const RowMatrix& first = from[static_cast<std::size_t>(samples[0])].*part;
    if (first.size() == 0) return;
    RowMatrix& to = out.*part;
    to.resize(static_cast<Index>(samples.size()) * first.rows(), first.cols());
    for (std::size_t i = 0; i < samples.size(); ++i) to.middleRows(static_cast<Index>(i) * first.rows(), first.rows()) = from[static_cast<std::size_t>(samples[i])].*part;
  };
  stack(&BlockSideInputs::per_layer);
  stack(&BlockSideInputs::keys);
  stack(&BlockSideInputs::values);
  return out;
}

/// As above, each sequence with its side inputs (`side[s]`; Gemma 4 E2B / E4B), one sequence per
/// forward; a donor layer's keys and values of sequence s into donate[s] (`donate` empty: not kept).
inline void block_forward(BlockWeights w, const LlamaConfig& c, std::span<RowMatrix> sequences, std::span<const BlockSideInputs> side,
                          std::span<BlockSideInputs> donate) {
  if (side.empty() && donate.empty()) return block_forward(w, c, sequences);
  detail::require(side.size() == sequences.size() && (donate.empty() || donate.size() == sequences.size()),
                  "block_forward: one side input (and kept keys and values) per sequence");
  for (std::size_t s = 0; s < sequences.size(); ++s) {
    w.side = &side[s];
    w.donate = donate.empty() ? nullptr : &donate[s];
    block_forward(w, c, sequences[s], nullptr, sequences[s].rows());
  }
}

namespace detail {
/// dL/d(the block's output before Gemma 4's layer_scalar): d_out × the scalar (in z), or d_out.
inline const RowMatrix& scaled_output_gradient(const BlockWeights& w, const RowMatrix& d_out, BlockBackwardScratch& z) {
  if (w.layer_scalar == 1.0f) return d_out;
  z.d_out = d_out * w.layer_scalar;
  return z.d_out;
}

/// grads[l] += d_yᵀ x, unless grads[l] is empty (add_weight_gradient)
inline void accumulate_weight_gradient(std::array<RowMatrix, 7>& grads, Linear l, const RowMatrix& d_y, const RowMatrix& x) {
  add_weight_gradient(&grads[static_cast<std::size_t>(l)], d_y, x);
}

/// The attention half's backward from z.d_h = dL/dh (h = x + attention(rms(x))): dL/dW of q, k,
/// v and o into `grads` (a latent attention's: q_b, kv_a, kv_b and o; q_a's into `query_a_grad`).
inline void attention_backward(const BlockWeights& w, const LlamaConfig& model, const BlockCache& cache, std::array<RowMatrix, 7>& grads,
                               BlockBackwardScratch& z, bool keep_scratch, RowMatrix* query_a_grad) {
  auto accumulate = [&](Linear l, const RowMatrix& d_y, const RowMatrix& x) { detail::accumulate_weight_gradient(grads, l, d_y, x); };
  LlamaConfig local;  // the layer's own RoPE, head size and KV heads (as the forward's)
  const LlamaConfig& c = detail::attention_config(model, w.sliding, local);
  const Index tokens = z.d_h.rows(), d = c.head_dim, group = c.heads / c.kv_heads;
  const Index length = cache.seqlen > 0 ? cache.seqlen : tokens, sequences = tokens / length;
  // attention output projection (through Gemma's post norm first)
  if (w.has_post_attn_norm()) z.d_attention_out = detail::rms_norm_backward(cache.attention_out, *w.post_attn_norm, c.rms_eps, z.d_h);
  const RowMatrix& d_o_all = w.has_post_attn_norm() ? z.d_attention_out : z.d_h;
  accumulate(Linear::Output, d_o_all, cache.output_in);
  z.d_attention.noalias() = d_o_all * w[Linear::Output];
  if (w.act) w.act->backward(cache.output_in_float, z.d_attention, LinearInput::AttentionOutput);
  if (c.latent_attention()) {
    const auto at = [&](Linear l) { return &grads[static_cast<std::size_t>(l)]; };
    latent_attention_backward(w.latent(), c, cache.attention_in, cache.mla, z.d_attention,
                              {query_a_grad, at(Linear::Query), at(Linear::Key), at(Linear::Value)}, z.mla, length);
    if (!keep_scratch) z.mla.d_s.clear();
    return;
  }
  z.d_q.resize(tokens, c.heads * d);
  z.d_k.setZero(tokens, c.kv_heads * d);
  z.d_v.setZero(tokens, c.kv_heads * d);
  const float scale = detail::attention_scale(c), cap = c.attention_softcap;
  const auto pairs = static_cast<std::size_t>(sequences * c.heads);
  z.d_k_head.resize(pairs);
  z.d_v_head.resize(pairs);
  z.d_s.resize(pairs);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (Index j = 0; j < sequences * c.heads; ++j) {  // one (sequence, head) pair each
    const Index s = j / c.heads, h = j % c.heads, kv = h / group, row = s * length;
    const RowMatrix& p = cache.probabilities[static_cast<std::size_t>(j)];
    const auto d_o = z.d_attention.block(row, h * d, length, d);
    RowMatrix& d_s = z.d_s[static_cast<std::size_t>(j)];
    d_s.noalias() = d_o * cache.v.block(row, kv * d, length, d).transpose();  // dP
    // softmax backward row by row: dS = P ⊙ (dP − Σ_j dP_j P_j); masked entries have P = 0
    d_s = p.cwiseProduct(d_s);
    for (Index t = 0; t < length; ++t) d_s.row(t) -= p.row(t) * d_s.row(t).sum();
    if (cap > 0) {  // through cap·tanh(s/cap): × (1 − tanh²), the tanh recomputed from q and k
      const RowMatrix raw = (cache.q.block(row, h * d, length, d) * cache.k.block(row, kv * d, length, d).transpose()) * scale;
      d_s.array() *= 1.0f - (raw.array() / cap).tanh().square();
    }
    d_s *= scale;
    z.d_q.block(row, h * d, length, d).noalias() = d_s * cache.k.block(row, kv * d, length, d);
    z.d_k_head[static_cast<std::size_t>(j)].noalias() = d_s.transpose() * cache.q.block(row, h * d, length, d);
    z.d_v_head[static_cast<std::size_t>(j)].noalias() = p.transpose() * d_o;
  }
  for (Index j = 0; j < sequences * c.heads; ++j) {  // heads sharing a KV head add up, in a fixed order
    const Index s = j / c.heads, kv = (j % c.heads) / group, row = s * length;
    z.d_k.block(row, kv * d, length, d) += z.d_k_head[static_cast<std::size_t>(j)];
    z.d_v.block(row, kv * d, length, d) += z.d_v_head[static_cast<std::size_t>(j)];
  }
  if (!keep_scratch) z.d_s.clear();
  detail::apply_rope(z.d_q, c.heads, c, -1.0f, length);
  if (w.has_qk_norm()) z.d_q = detail::head_rms_norm_backward(cache.q_projected, c.heads, d, *w.q_norm, c.rms_eps, z.d_q);
  accumulate(Linear::Query, z.d_q, cache.attention_in);
  if (w.kv_shared) return;  // the donor's keys and values: inputs of this block, nothing of it to tune behind them
  detail::apply_rope(z.d_k, c.kv_heads, c, -1.0f, length);
  if (w.has_qk_norm()) z.d_k = detail::head_rms_norm_backward(cache.k_projected, c.kv_heads, d, *w.k_norm, c.rms_eps, z.d_k);
  if (c.value_norm) z.d_v = detail::head_rms_norm_backward(cache.v_projected, c.kv_heads, d, Eigen::VectorXf::Ones(d), c.rms_eps, z.d_v);
  if (w.values_from_keys) z.d_k += z.d_v;  // k_proj's output is both the keys and (Gemma 4's full layers) the values
  accumulate(Linear::Key, z.d_k, cache.attention_in);
  if (!w.values_from_keys) accumulate(Linear::Value, z.d_v, cache.attention_in);
}

/// The dense MLP's backward from dL/d(its output) `d_mlp`: gate, up and down's weight gradients
/// into `grads`, dL/d(its normed input) into z.d_yn.
inline void dense_mlp_backward(const BlockWeights& w, const LlamaConfig& c, const BlockCache& cache, const RowMatrix& d_mlp,
                               std::array<RowMatrix, 7>& grads, BlockBackwardScratch& z) {
  auto accumulate = [&](Linear l, const RowMatrix& d_y, const RowMatrix& x) { detail::accumulate_weight_gradient(grads, l, d_y, x); };
  const Index tokens = d_mlp.rows();
  accumulate(Linear::Down, d_mlp, cache.down_in);
  z.d_act.noalias() = d_mlp * w[Linear::Down];
  if (w.act) w.act->backward(cache.down_in_float, z.d_act, LinearInput::MlpProduct);
  z.d_gate.resize(cache.gate.rows(), cache.gate.cols());
  z.d_up.resize(cache.up.rows(), cache.up.cols());
  if (c.activation == MlpActivation::GeluTanh) {
    detail::for_each_row(tokens, [&](Index t) {
      for (Index i = 0; i < cache.gate.cols(); ++i) {
        const float g = cache.gate(t, i), th = cache.gate_sigmoid(t, i), da = z.d_act(t, i);
        z.d_up(t, i) = da * 0.5f * g * (1.0f + th);
        z.d_gate(t, i) = da * cache.up(t, i) * detail::gelu_tanh_derivative(g, th);
      }
    });
  } else {
    detail::for_each_row(tokens, [&](Index t) {  // d silu(g) = sigma (1 + g (1 − sigma))
      const auto g = cache.gate.row(t).array();
      const auto sigma = cache.gate_sigmoid.row(t).array();
      const auto da = z.d_act.row(t).array();
      z.d_up.row(t) = da * g * sigma;
      z.d_gate.row(t) = da * cache.up.row(t).array() * sigma * (1.0f + g * (1.0f - sigma));
    });
  }
  accumulate(Linear::Gate, z.d_gate, cache.mlp_in);
  accumulate(Linear::Up, z.d_up, cache.mlp_in);
  z.d_yn.noalias() = z.d_gate * w[Linear::Gate];
  z.d_yn.noalias() += z.d_up * w[Linear::Up];
  if (w.act) w.act->backward(cache.mlp_in_float, z.d_yn, LinearInput::Mlp);
}

/// The per-layer branch's backward (Gemma 4 E2B / E4B) from dL/d(its output) `d_out`: the gate's
/// and the projection's weight gradients into (*grads)[0] and [1] (null or empty: not wanted);
/// returns dL/d(its input, the stream after the MLP) (in z).
inline const RowMatrix& per_layer_backward(const BlockWeights& w, const LlamaConfig& c, const BlockCache& cache, const RowMatrix& d_out,
                                           std::array<RowMatrix, 2>* grads, BlockBackwardScratch& z) {
  const Index tokens = d_out.rows(), p = w.per_layer_gate->rows();
  z.d_per_layer_out = rms_norm_backward(cache.per_layer_out, *w.per_layer_norm, c.rms_eps, d_out);
  if (grads) add_weight_gradient(&(*grads)[1], z.d_per_layer_out, cache.per_layer_product);
  z.d_per_layer_gate.noalias() = z.d_per_layer_out * *w.per_layer_projection;  // dL/d(gelu(g) ⊙ ple)
  const RowMatrix& ple = w.side->per_layer;
  for_each_row(tokens, [&](Index t) {
    for (Index i = 0; i < p; ++i) {
      const float g = cache.per_layer_gate(t, i);
      z.d_per_layer_gate(t, i) *= ple(t, i) * gelu_tanh_derivative(g, cache.per_layer_tanh(t, i));
    }
  });
  if (grads) add_weight_gradient(&(*grads)[0], z.d_per_layer_gate, cache.per_layer_in);
  z.d_after_mlp = d_out;
  z.d_after_mlp.noalias() += z.d_per_layer_gate * *w.per_layer_gate;
  return z.d_after_mlp;
}
}  // namespace detail

/// Accumulate dL/dW for the seven weights into `grads` (each [out, in], added to; an empty entry is
/// skipped), given dL/d(block output) for the sequences whose forward filled `cache`. `scratch` (optional)
/// keeps the temporaries' memory from call to call. A latent attention's q_a_proj: into `query_a_grad`
/// (null or empty: not wanted); a per-layer branch's gate and projection (Gemma 4 E2B / E4B): into
/// `per_layer_grads` [0] and [1] (the same).
inline void block_backward(const BlockWeights& w, const LlamaConfig& c, const BlockCache& cache, const RowMatrix& d_block_out,
                           std::array<RowMatrix, 7>& grads, BlockBackwardScratch* scratch = nullptr, RowMatrix* query_a_grad = nullptr,
                           std::array<RowMatrix, 2>* per_layer_grads = nullptr) {
  detail::require(w.moe == nullptr, "block_backward: a mixture-of-experts block's backward is the overload with expert gradients");
  BlockBackwardScratch local;
  BlockBackwardScratch& z = scratch ? *scratch : local;
  const RowMatrix& d_scaled = detail::scaled_output_gradient(w, d_block_out, z);
  const RowMatrix& d_out = w.has_per_layer() ? detail::per_layer_backward(w, c, cache, d_scaled, per_layer_grads, z) : d_scaled;
  // MLP (through Gemma's post norm first)
  if (w.has_post_ffn_norm()) z.d_mlp = detail::rms_norm_backward(cache.mlp_out, *w.post_ffn_norm, c.rms_eps, d_out);
  detail::dense_mlp_backward(w, c, cache, w.has_post_ffn_norm() ? z.d_mlp : d_out, grads, z);
  z.d_h = d_out + detail::rms_norm_backward(cache.h, *w.ffn_norm, c.rms_eps, z.d_yn);
  detail::attention_backward(w, c, cache, grads, z, scratch != nullptr, query_a_grad);
}

/// Accumulate dL/dW into `grads` for the attention's four weights (q, k, v, o; the MLP's three
/// entries are left alone, unless the experts run beside a dense MLP: then its three too) and into
/// `expert_grads` for every expert's (moe_backward's layout: [gate, up, down] per routed expert,
/// the shared expert's last), given dL/d(block output) for the forward of a mixture-of-experts
/// block (w.moe) that filled `cache`. The gradient reaches the attention through the experts, the
/// router (kept in full precision) and the norms of their inputs.
inline void block_backward(const BlockWeights& w, const LlamaConfig& c, const BlockCache& cache, const RowMatrix& d_block_out,
                           std::array<RowMatrix, 7>& grads, std::vector<std::array<RowMatrix, 3>>& expert_grads,
                           BlockBackwardScratch* scratch = nullptr, RowMatrix* query_a_grad = nullptr) {
  detail::require(w.moe != nullptr, "block_backward: expert gradients of a block without a mixture of experts");
  detail::require(!w.has_per_layer() && !w.kv_shared, "block_backward: per-layer inputs or shared keys and values in a mixture-of-experts block");
  BlockBackwardScratch local;
  BlockBackwardScratch& z = scratch ? *scratch : local;
  const RowMatrix& d_out = detail::scaled_output_gradient(w, d_block_out, z);
  if (w.has_post_ffn_norm()) z.d_mlp = detail::rms_norm_backward(cache.mlp_out, *w.post_ffn_norm, c.rms_eps, d_out);
  if (w.moe->beside_mlp) {  // Gemma 4: both branches, then the three norms of h they read (ffn, experts', router's)
    const ExpertsBesideMlp& beside = *w.moe->beside_mlp;
    z.d_dense = detail::rms_norm_backward(cache.dense_out, beside.mlp_norm, c.rms_eps, z.d_mlp);
    z.d_experts = detail::rms_norm_backward(cache.experts_out, beside.experts_norm, c.rms_eps, z.d_mlp);
    moe_backward(w.moe->weights, w.moe->spec, cache.moe, cache.experts_in, z.d_experts, expert_grads, &z.d_experts_in, &z.d_router_in);
    detail::dense_mlp_backward(w, c, cache, z.d_dense, grads, z);
    z.d_h = d_out + detail::rms_norm_backward(cache.h, *w.ffn_norm, c.rms_eps, z.d_yn);
    z.d_h += detail::rms_norm_backward(cache.h, beside.input_norm, c.rms_eps, z.d_experts_in);
    z.d_h += detail::rms_norm_backward(cache.h, beside.router_norm(), c.rms_eps, z.d_router_in);
    detail::attention_backward(w, c, cache, grads, z, scratch != nullptr, query_a_grad);
    return;
  }
  moe_backward(w.moe->weights, w.moe->spec, cache.moe, cache.mlp_in, w.has_post_ffn_norm() ? z.d_mlp : d_out, expert_grads, &z.d_yn);
  z.d_h = d_out + detail::rms_norm_backward(cache.h, *w.ffn_norm, c.rms_eps, z.d_yn);
  detail::attention_backward(w, c, cache, grads, z, scratch != nullptr, query_a_grad);
}

/// The block's forward with its own weights (dense or mixture of experts).
inline void block_forward(const LlamaBlock& block, const LlamaConfig& c, RowMatrix& hidden, BlockCache* cache = nullptr,
                          Index seqlen = 0) {
  block_forward(BlockWeights::of(block), c, hidden, cache, seqlen);
}

}  // namespace autoround
