#pragma once
// A sparse mixture-of-experts MLP, forward and backward, in float32 on the CPU: the feed-forward
// part of a Qwen3-MoE, Qwen2-MoE, Mixtral or DeepSeek-V3 block, as transformers 5 computes it:
//   RouterScoring::Softmax (Qwen, Mixtral): p = softmax(x W_rᵀ) over all experts; the top_k
//     experts of p, their weights w = p (divided by their sum when `normalize`: Mixtral always,
//     Qwen only with norm_topk_prob);
//   RouterScoring::SigmoidGrouped (DeepSeek-V3): s = sigmoid(x W_rᵀ); the choice is made on
//     s + correction_bias: experts in `groups` equal groups, each group scored by the sum of its
//     two best, the best `top_groups` groups kept, the top_k experts among theirs; their weights
//     are the unbiased s (over their sum + 1e-20 when `normalize`), times `scale`;
//   RouterScoring::TopKSoftmax (GPT-OSS): the top_k experts of the logits x W_rᵀ + b_r, their
//     weights the softmax over those k logits;
//   out = Σ_k w_k · down_e(silu(gate_e x) ⊙ up_e x)   for each token's chosen experts e
//         (GPT-OSS: biases, and ExpertActivation::ClampedSwiGlu: g = min(gate x, limit),
//         u = clamp(up x, ±limit), (u + 1) · g · sigmoid(alpha g); ExpertActivation::GeGlu:
//         gelu_tanh(gate x) ⊙ up x, Gemma 4's experts),
//         + g(x) · shared(x) with a shared expert (Qwen2-MoE: g = sigmoid(x·shared_gate);
//           DeepSeek-V3: no gate, g = 1).
// Gemma 4's 26B-A4B routes on an input of its own (moe_forward's `router_x`: the residual stream
// RMS-normed, × router.scale / √hidden, while the experts read another norm of it) and multiplies
// each chosen weight, after the normalization, by its expert's scale (MoeWeights::expert_scale,
// its router.per_expert_scale).
// The router stays in full precision (the reference never quantizes it), so the backward gives
// the experts' weight gradients and the gradient of the input, through both the experts and the
// router (dL/dw → the top-k normalization → the softmax → x), as autograd does: block-wise
// tuning needs the latter to reach the attention weights before the MLP.
//
// Each expert runs once over the rows routed to it (one GEMM per projection); the experts are
// walked in index order and each adds its weighted output to its tokens' rows, as transformers'
// experts loop does, so a token's sum is over its experts in index order. Top-k ties (equal
// probabilities) go to the lower expert index. An expert no token reaches computes nothing and
// gets a zero gradient; `MoeCache::tokens` counts each expert's tokens (the reference leaves
// such experts at their round-to-nearest start; docs/block-descriptions.md).
// block_forward / block_backward (model/llama_block.hpp) run it as a block's MLP; BlockTuningRun
// tunes every expert's linears in the block loss (docs/block-descriptions.md).
#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <numeric>
#include <optional>
#include <vector>

#include "../core/error.hpp"
#include "../core/matrix.hpp"
#include "activation_quant.hpp"
#include "gelu.hpp"

namespace autoround {

/// One expert's gated MLP: gate and up [intermediate, hidden], down [hidden, intermediate]; biases
/// (GPT-OSS) [intermediate], [intermediate], [hidden], empty when absent.
struct ExpertWeights {
  RowMatrix gate, up, down;
  Eigen::VectorXf gate_bias, up_bias, down_bias;
};

struct MoeWeights {
  RowMatrix router;  ///< [experts, hidden], full precision
  Eigen::VectorXf router_bias;        ///< [experts] (GPT-OSS); empty: none
  std::vector<ExpertWeights> experts;
  Eigen::VectorXf correction_bias;    ///< [experts], SigmoidGrouped's e_score_correction_bias (choice only)
  std::optional<ExpertWeights> shared;  ///< an expert every token goes through
  Eigen::VectorXf shared_gate;        ///< [hidden]: the shared expert's sigmoid gate; empty: none (g = 1)
  Eigen::VectorXf expert_scale;       ///< [experts]: each chosen weight × its expert's (Gemma 4's per_expert_scale); empty: 1
};

enum class RouterScoring { Softmax, SigmoidGrouped, TopKSoftmax };
enum class ExpertActivation { SwiGlu, ClampedSwiGlu, GeGlu };

struct MoeSpec {
  Index top_k = 2;
  bool normalize = true;  ///< divide the chosen weights by their sum
  RouterScoring scoring = RouterScoring::Softmax;
  Index groups = 1, top_groups = 1;  ///< SigmoidGrouped: expert groups, and how many are kept
  float scale = 1.0f;                ///< SigmoidGrouped: routed_scaling_factor
  ExpertActivation activation = ExpertActivation::SwiGlu;
  float limit = 7.0f, alpha = 1.702f;  ///< ClampedSwiGlu's clamp and sigmoid slope (GPT-OSS's)
};

/// What one forward keeps for the backward (and for the report: tokens per expert).
struct MoeCache {
  RowMatrix probabilities;                  ///< [tokens, experts], the router's softmax (or sigmoid) scores
  std::vector<std::vector<Index>> chosen;   ///< per token: its top_k experts, by probability
  std::vector<std::vector<float>> weights;  ///< per token: the weights of `chosen`
  std::vector<std::vector<Index>> rows;     ///< per expert: its tokens, ascending
  std::vector<std::vector<Index>> slot;     ///< per expert: for each of its rows, the k of that token's choice
  std::vector<RowMatrix> gate, up, act, out;  ///< per expert, on its rows: gate x, up x, silu(gate x) ⊙ up x, its output
  std::vector<Index> tokens;                ///< per expert: how many tokens it got
  RowMatrix shared_gate, shared_up, shared_act, shared_out;  ///< the shared expert on every token
  Eigen::VectorXf shared_weight;            ///< per token: g(x)
  bool own_router_input = false;            ///< the router read moe_forward's router_x, not x
  // quantized inputs (moe_forward's `act`; null: float inputs): each expert's gate and up read its
  // rows of x quantized, its down q(act) (act above stays float); the router and the shared
  // expert's gate read x itself
  const ActivationQuant* act_quant = nullptr;
  std::vector<RowMatrix> input_quantized;     ///< per expert: q_e(its rows of x), what its gate and up read
  std::vector<RowMatrix> act_quantized;       ///< per expert: q_e(act), what its down projection read
  RowMatrix shared_input_quantized, shared_act_quantized;
};

namespace detail {
inline float silu(float g) { return g / (1.0f + std::exp(-g)); }
inline float sigmoid(float g) { return 1.0f / (1.0f + std::exp(-g)); }

// token t's experts in order of preference: by score; SigmoidGrouped first keeps the best groups
// (by the sum of their two best biased scores). Ties go to the lower index.
inline std::vector<Index> expert_preference(const MoeSpec& spec, const RowMatrix& scores, const Eigen::VectorXf& bias, Index t) {
  const Index experts = scores.cols();
  std::vector<float> key(static_cast<std::size_t>(experts));
  for (Index e = 0; e < experts; ++e) key[static_cast<std::size_t>(e)] = scores(t, e) + (bias.size() ? bias(e) : 0.0f);
  std::vector<Index> order(static_cast<std::size_t>(experts));
  std::iota(order.begin(), order.end(), Index{0});
  auto by_key = [&](Index a, Index b) { return key[static_cast<std::size_t>(a)] > key[static_cast<std::size_t>(b)]; };
  if (spec.scoring == RouterScoring::SigmoidGrouped && spec.groups > 1) {
    const Index per = experts / spec.groups;
    std::vector<float> group_score(static_cast<std::size_t>(spec.groups));
    for (Index g = 0; g < spec.groups; ++g) {
      std::vector<float> members(key.begin() + g * per, key.begin() + (g + 1) * per);
      std::partial_sort(members.begin(), members.begin() + std::min<Index>(2, per), members.end(), std::greater<float>());
      group_score[static_cast<std::size_t>(g)] = members[0] + (per > 1 ? members[1] : 0.0f);
    }
    std::vector<Index> groups(static_cast<std::size_t>(spec.groups));
    std::iota(groups.begin(), groups.end(), Index{0});
    std::stable_sort(groups.begin(), groups.end(),
                     [&](Index a, Index b) { return group_score[static_cast<std::size_t>(a)] > group_score[static_cast<std::size_t>(b)]; });
    std::vector<bool> kept(static_cast<std::size_t>(spec.groups), false);
    for (Index g = 0; g < spec.top_groups; ++g) kept[static_cast<std::size_t>(groups[static_cast<std::size_t>(g)])] = true;
    order.erase(std::remove_if(order.begin(), order.end(), [&](Index e) { return !kept[static_cast<std::size_t>(e / per)]; }), order.end());
  }
  std::stable_sort(order.begin(), order.end(), by_key);
  return order;
}

// the gated activation of one (gate, up) pair, and its two partial derivatives
struct GatedUnit {
  float value, d_gate, d_up;
};
inline GatedUnit gated_unit(const MoeSpec& spec, float g, float u) {
  if (spec.activation == ExpertActivation::SwiGlu) {  // silu(g) u; d silu(g) = sigma (1 + g (1 − sigma))
    const float sigma = sigmoid(g);
    return {silu(g) * u, u * sigma * (1.0f + g * (1.0f - sigma)), silu(g)};
  }
  if (spec.activation == ExpertActivation::GeGlu) {  // ½ g (1 + t) u, t = tanh(k0 (g + k1 g³))
    const float t = gelu_tanh_inner(g), gelu = 0.5f * g * (1.0f + t);
    return {gelu * u, u * gelu_tanh_derivative(g, t), gelu};
  }
  // GPT-OSS: g' = min(g, limit), u' = clamp(u, ±limit), (u' + 1) g' sigmoid(alpha g')
  const float gc = std::min(g, spec.limit), uc = std::clamp(u, -spec.limit, spec.limit);
  const float sigma = sigmoid(spec.alpha * gc), glu = gc * sigma;
  const float d_glu = sigma + spec.alpha * gc * sigma * (1.0f - sigma);
  return {(uc + 1.0f) * glu, g <= spec.limit ? (uc + 1.0f) * d_glu : 0.0f, std::abs(u) <= spec.limit ? glu : 0.0f};
}

// the gated MLP of `ex` over x's rows: gate x, up x (with their biases), the activation, the output;
// with `quant`, the down projection reads q(act), kept in `act_quantized` (act stays float)
inline void expert_forward(const MoeSpec& spec, const ExpertWeights& ex, const RowMatrix& x, RowMatrix& gate, RowMatrix& up, RowMatrix& act,
                           RowMatrix& out, const ActivationQuant* quant = nullptr, RowMatrix* act_quantized = nullptr) {
  gate = x * ex.gate.transpose();
  up = x * ex.up.transpose();
  if (ex.gate_bias.size()) gate.rowwise() += ex.gate_bias.transpose();
  if (ex.up_bias.size()) up.rowwise() += ex.up_bias.transpose();
  act.resize(gate.rows(), gate.cols());
  for (Index r = 0; r < gate.rows(); ++r)
    for (Index j = 0; j < gate.cols(); ++j) act(r, j) = gated_unit(spec, gate(r, j), up(r, j)).value;
  if (quant) {
    *act_quantized = act;
    quant->apply(*act_quantized, LinearInput::MlpProduct);
  }
  out = (quant ? *act_quantized : act) * ex.down.transpose();
  if (ex.down_bias.size()) out.rowwise() += ex.down_bias.transpose();
}

// dy = dL/d(expert output) on x's rows: adds the weight gradients into grads, returns dL/dx (x: what
// gate and up read); with `quant`, through the down projection's quantized input (act_quantized)
inline RowMatrix expert_backward(const MoeSpec& spec, const ExpertWeights& ex, const RowMatrix& x, const RowMatrix& gate,
                                 const RowMatrix& up, const RowMatrix& act, const RowMatrix& dy, std::array<RowMatrix, 3>& grads,
                                 const ActivationQuant* quant = nullptr, const RowMatrix* act_quantized = nullptr) {
  grads[2].noalias() += dy.transpose() * (quant ? *act_quantized : act);
  RowMatrix d_act = dy * ex.down;
  if (quant) quant->backward(act, d_act, LinearInput::MlpProduct);
  RowMatrix d_gate(gate.rows(), gate.cols()), d_up(up.rows(), up.cols());
  for (Index r = 0; r < gate.rows(); ++r)
    for (Index j = 0; j < gate.cols(); ++j) {
      const GatedUnit unit = gated_unit(spec, gate(r, j), up(r, j));
      d_gate(r, j) = d_act(r, j) * unit.d_gate;
      d_up(r, j) = d_act(r, j) * unit.d_up;
    }
  grads[0].noalias() += d_gate.transpose() * x;
  grads[1].noalias() += d_up.transpose() * x;
  return d_gate * ex.gate + d_up * ex.up;
}
}  // namespace detail

/// out = the MoE MLP of x ([tokens, hidden] each); `cache` (optional) keeps what moe_backward needs.
/// `router_x` (optional, [tokens, router's columns]): what the router reads instead of x (Gemma 4).
/// `act` (optional: the W4A4 / W8A8 schemes): every expert's linear layers read quantized inputs, as
/// the reference's wrapped expert Linears do while tuning — gate and up its rows of x, down its
/// product, each under the expert's own static scales (ActivationQuant::for_expert; the dynamic
/// formats quantize each row alone, so there the rows are those of q(x)); the router and a shared
/// expert's gate, kept in float as the reference keeps them, read x itself.
inline void moe_forward(const MoeWeights& w, const MoeSpec& spec, const RowMatrix& x, RowMatrix& out, MoeCache* cache = nullptr,
                        const RowMatrix* router_x = nullptr, const ActivationQuant* act = nullptr) {
  const Index tokens = x.rows(), hidden = x.cols(), experts = static_cast<Index>(w.experts.size());
  const RowMatrix& scored = router_x ? *router_x : x;
  detail::require(w.router.rows() == experts && w.router.cols() == scored.cols(), "moe_forward: router is not [experts, hidden]");
  detail::require(scored.rows() == tokens, "moe_forward: router_x has not one row per token");
  detail::require(w.expert_scale.size() == 0 || w.expert_scale.size() == experts, "moe_forward: expert_scale is not [experts]");
  detail::require(w.expert_scale.size() == 0 || spec.scoring != RouterScoring::TopKSoftmax,
                  "moe_forward: expert_scale with TopKSoftmax routing is not implemented");
  detail::require(spec.top_k >= 1 && spec.top_k <= experts, "moe_forward: top_k must be between 1 and the expert count");
  MoeCache local;
  MoeCache& c = cache ? *cache : local;
  c.own_router_input = router_x != nullptr;
  c.act_quant = act;
  const bool grouped = spec.scoring == RouterScoring::SigmoidGrouped;
  detail::require(!grouped || (spec.groups >= 1 && experts % spec.groups == 0 && spec.top_groups >= 1 &&
                               spec.top_groups <= spec.groups && spec.top_k <= spec.top_groups * (experts / spec.groups)),
                  "moe_forward: groups must divide the experts and the kept groups must hold top_k experts");
  detail::require(w.correction_bias.size() == 0 || w.correction_bias.size() == experts, "moe_forward: correction_bias is not [experts]");
  detail::require(w.router_bias.size() == 0 || w.router_bias.size() == experts, "moe_forward: router_bias is not [experts]");
  const bool logits_first = spec.scoring == RouterScoring::TopKSoftmax;
  detail::require(w.shared_gate.size() == 0 || (w.shared && w.shared_gate.size() == hidden), "moe_forward: shared_gate needs a shared expert and [hidden] values");
  // router scores per token: softmax over all experts, sigmoid each, or the logits themselves
  c.probabilities = scored * w.router.transpose();
  if (w.router_bias.size()) c.probabilities.rowwise() += w.router_bias.transpose();
  for (Index t = 0; t < tokens; ++t) {
    auto row = c.probabilities.row(t);
    if (logits_first) continue;
    if (grouped) {
      row = row.unaryExpr([](float v) { return detail::sigmoid(v); });
      continue;
    }
    const float top = row.maxCoeff();
    row = (row.array() - top).exp().matrix();
    row /= row.sum();
  }
  c.chosen.assign(static_cast<std::size_t>(tokens), {});
  c.weights.assign(static_cast<std::size_t>(tokens), {});
  c.rows.assign(static_cast<std::size_t>(experts), {});
  c.slot.assign(static_cast<std::size_t>(experts), {});
  for (Index t = 0; t < tokens; ++t) {
    const std::vector<Index> order = detail::expert_preference(spec, c.probabilities, grouped ? w.correction_bias : Eigen::VectorXf(), t);
    auto& chosen = c.chosen[static_cast<std::size_t>(t)];
    auto& weights = c.weights[static_cast<std::size_t>(t)];
    chosen.assign(order.begin(), order.begin() + spec.top_k);
    float sum = 0;
    if (logits_first) {  // softmax over the chosen logits
      const float top = c.probabilities(t, chosen[0]);
      for (Index e : chosen) weights.push_back(std::exp(c.probabilities(t, e) - top)), sum += weights.back();
      for (float& v : weights) v /= sum;
    } else {
      for (Index e : chosen) weights.push_back(c.probabilities(t, e)), sum += c.probabilities(t, e);
    }
    if (spec.normalize && !logits_first)
      for (float& v : weights) v /= grouped ? sum + 1e-20f : sum;
    if (grouped)
      for (float& v : weights) v *= spec.scale;
    if (w.expert_scale.size())
      for (std::size_t k = 0; k < chosen.size(); ++k) weights[k] *= w.expert_scale(chosen[k]);
    for (Index k = 0; k < spec.top_k; ++k) {
      c.rows[static_cast<std::size_t>(chosen[static_cast<std::size_t>(k)])].push_back(t);
      c.slot[static_cast<std::size_t>(chosen[static_cast<std::size_t>(k)])].push_back(k);
    }
  }
  out = RowMatrix::Zero(tokens, hidden);
  c.gate.assign(static_cast<std::size_t>(experts), {});
  c.up.assign(static_cast<std::size_t>(experts), {});
  c.act.assign(static_cast<std::size_t>(experts), {});
  c.out.assign(static_cast<std::size_t>(experts), {});
  c.act_quantized.assign(act ? static_cast<std::size_t>(experts) : 0, {});
  c.input_quantized.assign(act ? static_cast<std::size_t>(experts) : 0, {});
  c.tokens.assign(static_cast<std::size_t>(experts), 0);
  for (Index e = 0; e < experts; ++e) {
    const auto& rows = c.rows[static_cast<std::size_t>(e)];
    const auto i = static_cast<std::size_t>(e);
    c.tokens[i] = static_cast<Index>(rows.size());
    if (rows.empty()) continue;
    RowMatrix xe(static_cast<Index>(rows.size()), hidden);
    for (std::size_t r = 0; r < rows.size(); ++r) xe.row(static_cast<Index>(r)) = x.row(rows[r]);
    if (act) {
      const ActivationQuant q = act->for_expert(i);
      q.apply(xe, LinearInput::Mlp);
      detail::expert_forward(spec, w.experts[i], xe, c.gate[i], c.up[i], c.act[i], c.out[i], &q, &c.act_quantized[i]);
      c.input_quantized[i] = std::move(xe);
    } else {
      detail::expert_forward(spec, w.experts[i], xe, c.gate[i], c.up[i], c.act[i], c.out[i]);
    }
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const float weight = c.weights[static_cast<std::size_t>(rows[r])][static_cast<std::size_t>(c.slot[i][r])];
      out.row(rows[r]) += weight * c.out[i].row(static_cast<Index>(r));
    }
  }
  if (w.shared) {  // after the routed experts, as transformers adds it
    if (act) {
      const ActivationQuant q = act->for_expert(static_cast<std::size_t>(experts));
      c.shared_input_quantized = x;
      q.apply(c.shared_input_quantized, LinearInput::Mlp);
      detail::expert_forward(spec, *w.shared, c.shared_input_quantized, c.shared_gate, c.shared_up, c.shared_act, c.shared_out, &q,
                             &c.shared_act_quantized);
    } else {
      detail::expert_forward(spec, *w.shared, x, c.shared_gate, c.shared_up, c.shared_act, c.shared_out);
    }
    c.shared_weight = w.shared_gate.size() ? Eigen::VectorXf((x * w.shared_gate).unaryExpr([](float v) { return detail::sigmoid(v); }))
                                           : Eigen::VectorXf::Ones(tokens);
    out += c.shared_weight.asDiagonal() * c.shared_out;
  }
}

/// Given dL/d out for the forward that filled `cache`: adds each expert's dL/d(gate, up, down)
/// into `grads` (per expert, [3] = gate, up, down, each the weight's shape; an expert without
/// tokens gets nothing added; with a shared expert, its triple is the last entry) and, if `d_x`,
/// sets dL/dx (through the experts, the router and the shared expert's gate). With the forward's
/// `router_x`, the router's share goes to `d_router_x` instead of d_x (d_x then needs d_router_x).
inline void moe_backward(const MoeWeights& w, const MoeSpec& spec, const MoeCache& c, const RowMatrix& x, const RowMatrix& d_out,
                         std::vector<std::array<RowMatrix, 3>>& grads, RowMatrix* d_x = nullptr, RowMatrix* d_router_x = nullptr) {
  const Index tokens = x.rows(), hidden = x.cols(), experts = static_cast<Index>(w.experts.size());
  detail::require(d_out.rows() == tokens && d_out.cols() == hidden, "moe_backward: d_out is not [tokens, hidden]");
  detail::require(grads.size() == w.experts.size() + (w.shared ? 1 : 0), "moe_backward: one gradient triple per expert (and the shared one last)");
  const bool grouped = spec.scoring == RouterScoring::SigmoidGrouped, logits_first = spec.scoring == RouterScoring::TopKSoftmax;
  // the router's gradient goes where its input came from: to d_router_x exactly when the forward had router_x
  detail::require(!d_router_x || c.own_router_input, "moe_backward: d_router_x given, but the forward's router read x");
  detail::require(!d_x || d_router_x || !c.own_router_input, "moe_backward: the forward's router read router_x, so d_x needs d_router_x beside it");
  if (d_x) *d_x = RowMatrix::Zero(tokens, hidden);
  // with quantized inputs each expert read q_e(its rows): its share of dL/dx goes back through
  // its quantizer (the router's and the shared gate's come to x directly)
  const ActivationQuant* quant = c.act_quant;
  // dL/dw for each token's chosen experts: <dL/d out_t, expert output on t>
  std::vector<std::vector<float>> d_weight(static_cast<std::size_t>(tokens), std::vector<float>(static_cast<std::size_t>(spec.top_k), 0.0f));
  for (Index e = 0; e < experts; ++e) {
    const auto i = static_cast<std::size_t>(e);
    const auto& rows = c.rows[i];
    if (rows.empty()) continue;
    const Index n = static_cast<Index>(rows.size());
    RowMatrix dy(n, hidden), xe(n, hidden);
    for (Index r = 0; r < n; ++r) {
      const Index t = rows[static_cast<std::size_t>(r)], k = c.slot[i][static_cast<std::size_t>(r)];
      dy.row(r) = c.weights[static_cast<std::size_t>(t)][static_cast<std::size_t>(k)] * d_out.row(t);
      xe.row(r) = x.row(t);
      d_weight[static_cast<std::size_t>(t)][static_cast<std::size_t>(k)] = d_out.row(t).dot(c.out[i].row(r));
    }
    RowMatrix dxe;
    if (quant) {
      const ActivationQuant q = quant->for_expert(i);
      dxe = detail::expert_backward(spec, w.experts[i], c.input_quantized[i], c.gate[i], c.up[i], c.act[i], dy, grads[i], &q, &c.act_quantized[i]);
      if (d_x) q.backward(xe, dxe, LinearInput::Mlp);
    } else {
      dxe = detail::expert_backward(spec, w.experts[i], xe, c.gate[i], c.up[i], c.act[i], dy, grads[i]);
    }
    if (d_x)
      for (Index r = 0; r < n; ++r) d_x->row(rows[static_cast<std::size_t>(r)]) += dxe.row(r);
  }
  if (w.shared) {
    const RowMatrix dy = c.shared_weight.asDiagonal() * d_out;
    RowMatrix dxs;
    if (quant) {
      const ActivationQuant q = quant->for_expert(static_cast<std::size_t>(experts));
      dxs = detail::expert_backward(spec, *w.shared, c.shared_input_quantized, c.shared_gate, c.shared_up, c.shared_act, dy, grads.back(), &q,
                                    &c.shared_act_quantized);
      if (d_x) q.backward(x, dxs, LinearInput::Mlp);
    } else {
      dxs = detail::expert_backward(spec, *w.shared, x, c.shared_gate, c.shared_up, c.shared_act, dy, grads.back());
    }
    if (d_x) {
      *d_x += dxs;
      if (w.shared_gate.size()) {  // g = sigmoid(x · w_g): dx += <d_out, shared(x)> g (1 − g) w_g
        for (Index t = 0; t < tokens; ++t) {
          const float g = c.shared_weight(t), dg = d_out.row(t).dot(c.shared_out.row(t)) * g * (1.0f - g);
          d_x->row(t) += dg * w.shared_gate.transpose();
        }
      }
    }
  }
  if (!d_x && !d_router_x) return;
  // the router: dw → dp of the chosen (through the normalization) → softmax → logits → x
  RowMatrix d_logits = RowMatrix::Zero(tokens, experts);
  for (Index t = 0; t < tokens; ++t) {
    const auto& chosen = c.chosen[static_cast<std::size_t>(t)];
    const auto& dw = d_weight[static_cast<std::size_t>(t)];
    const auto& wt = c.weights[static_cast<std::size_t>(t)];
    if (logits_first) {  // softmax over the chosen: d logit_k = w_k (dw_k − Σ_j w_j dw_j)
      float wdw = 0;
      for (std::size_t k = 0; k < chosen.size(); ++k) wdw += wt[k] * dw[k];
      for (std::size_t k = 0; k < chosen.size(); ++k) d_logits(t, chosen[k]) = wt[k] * (dw[k] - wdw);
      continue;
    }
    Eigen::VectorXf dp = Eigen::VectorXf::Zero(experts);
    const float scale = grouped ? spec.scale : 1.0f;
    // c_k = scale × the expert's own scale (Gemma 4), w_k = c_k p_k / S: dp_k = (c_k dw_k − Σ_j dw_j w_j) / S
    auto factor = [&](std::size_t k) { return w.expert_scale.size() ? scale * w.expert_scale(chosen[k]) : scale; };
    if (spec.normalize) {
      float sum = grouped ? 1e-20f : 0.0f, dot = 0;
      for (std::size_t k = 0; k < chosen.size(); ++k) sum += c.probabilities(t, chosen[k]), dot += dw[k] * wt[k];
      for (std::size_t k = 0; k < chosen.size(); ++k) dp(chosen[k]) = (factor(k) * dw[k] - dot) / sum;
    } else {
      for (std::size_t k = 0; k < chosen.size(); ++k) dp(chosen[k]) = factor(k) * dw[k];
    }
    if (grouped) {  // sigmoid: d logit_e = dp_e s_e (1 − s_e)
      for (Index e = 0; e < experts; ++e) d_logits(t, e) = dp(e) * c.probabilities(t, e) * (1.0f - c.probabilities(t, e));
      continue;
    }
    float pdp = 0;  // softmax: d logit_e = p_e (dp_e − Σ_j p_j dp_j)
    for (Index e = 0; e < experts; ++e) pdp += c.probabilities(t, e) * dp(e);
    for (Index e = 0; e < experts; ++e) d_logits(t, e) = c.probabilities(t, e) * (dp(e) - pdp);
  }
  if (d_router_x) d_router_x->noalias() = d_logits * w.router;
  else d_x->noalias() += d_logits * w.router;
}

}  // namespace autoround
