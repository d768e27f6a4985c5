#pragma once
// A sparse mixture-of-experts MLP, forward and backward, in float32 on the CPU: the feed-forward
// part of a Qwen3-MoE, Qwen2-MoE (without its shared expert) or Mixtral block, as transformers 5
// computes it:
//   p = softmax(x W_rᵀ) over all experts;  the top_k experts of p, their weights w = p (divided
//   by their sum when `normalize`: Mixtral always, Qwen only with norm_topk_prob);
//   out = Σ_k w_k · down_e(silu(gate_e x) ⊙ up_e x)   for each token's chosen experts e.
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
// A building block of docs/block-descriptions.md's plan; not yet part of a tuned block.
#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <vector>

#include "../core/error.hpp"
#include "../core/matrix.hpp"

namespace autoround {

/// One expert's SwiGLU MLP: gate and up [intermediate, hidden], down [hidden, intermediate].
struct ExpertWeights {
  RowMatrix gate, up, down;
};

struct MoeWeights {
  RowMatrix router;  ///< [experts, hidden], full precision
  std::vector<ExpertWeights> experts;
};

struct MoeRouting {
  Index top_k = 2;
  bool normalize = true;  ///< divide the chosen probabilities by their sum
};

/// What one forward keeps for the backward (and for the report: tokens per expert).
struct MoeCache {
  RowMatrix probabilities;                  ///< [tokens, experts], the router's softmax
  std::vector<std::vector<Index>> chosen;   ///< per token: its top_k experts, by probability
  std::vector<std::vector<float>> weights;  ///< per token: the weights of `chosen`
  std::vector<std::vector<Index>> rows;     ///< per expert: its tokens, ascending
  std::vector<std::vector<Index>> slot;     ///< per expert: for each of its rows, the k of that token's choice
  std::vector<RowMatrix> gate, up, act, out;  ///< per expert, on its rows: gate x, up x, silu(gate x) ⊙ up x, its output
  std::vector<Index> tokens;                ///< per expert: how many tokens it got
};

namespace detail {
inline float silu(float g) { return g / (1.0f + std::exp(-g)); }
}  // namespace detail

/// out = the MoE MLP of x ([tokens, hidden] each); `cache` (optional) keeps what moe_backward needs.
inline void moe_forward(const MoeWeights& w, const MoeRouting& routing, const RowMatrix& x, RowMatrix& out, MoeCache* cache = nullptr) {
  const Index tokens = x.rows(), hidden = x.cols(), experts = static_cast<Index>(w.experts.size());
  detail::require(w.router.rows() == experts && w.router.cols() == hidden, "moe_forward: router is not [experts, hidden]");
  detail::require(routing.top_k >= 1 && routing.top_k <= experts, "moe_forward: top_k must be between 1 and the expert count");
  MoeCache local;
  MoeCache& c = cache ? *cache : local;
  // router: softmax over all experts, per token
  c.probabilities = x * w.router.transpose();
  for (Index t = 0; t < tokens; ++t) {
    auto row = c.probabilities.row(t);
    const float top = row.maxCoeff();
    row = (row.array() - top).exp().matrix();
    row /= row.sum();
  }
  c.chosen.assign(static_cast<std::size_t>(tokens), {});
  c.weights.assign(static_cast<std::size_t>(tokens), {});
  c.rows.assign(static_cast<std::size_t>(experts), {});
  c.slot.assign(static_cast<std::size_t>(experts), {});
  std::vector<Index> order(static_cast<std::size_t>(experts));
  for (Index t = 0; t < tokens; ++t) {
    std::iota(order.begin(), order.end(), Index{0});
    std::stable_sort(order.begin(), order.end(), [&](Index a, Index b) { return c.probabilities(t, a) > c.probabilities(t, b); });
    auto& chosen = c.chosen[static_cast<std::size_t>(t)];
    auto& weights = c.weights[static_cast<std::size_t>(t)];
    chosen.assign(order.begin(), order.begin() + routing.top_k);
    float sum = 0;
    for (Index e : chosen) weights.push_back(c.probabilities(t, e)), sum += c.probabilities(t, e);
    if (routing.normalize)
      for (float& v : weights) v /= sum;
    for (Index k = 0; k < routing.top_k; ++k) {
      c.rows[static_cast<std::size_t>(chosen[static_cast<std::size_t>(k)])].push_back(t);
      c.slot[static_cast<std::size_t>(chosen[static_cast<std::size_t>(k)])].push_back(k);
    }
  }
  out = RowMatrix::Zero(tokens, hidden);
  c.gate.assign(static_cast<std::size_t>(experts), {});
  c.up.assign(static_cast<std::size_t>(experts), {});
  c.act.assign(static_cast<std::size_t>(experts), {});
  c.out.assign(static_cast<std::size_t>(experts), {});
  c.tokens.assign(static_cast<std::size_t>(experts), 0);
  for (Index e = 0; e < experts; ++e) {
    const auto& rows = c.rows[static_cast<std::size_t>(e)];
    const auto i = static_cast<std::size_t>(e);
    c.tokens[i] = static_cast<Index>(rows.size());
    if (rows.empty()) continue;
    const ExpertWeights& ex = w.experts[i];
    RowMatrix xe(static_cast<Index>(rows.size()), hidden);
    for (std::size_t r = 0; r < rows.size(); ++r) xe.row(static_cast<Index>(r)) = x.row(rows[r]);
    c.gate[i] = xe * ex.gate.transpose();
    c.up[i] = xe * ex.up.transpose();
    c.act[i] = c.gate[i].unaryExpr([](float g) { return detail::silu(g); }).cwiseProduct(c.up[i]);
    c.out[i] = c.act[i] * ex.down.transpose();
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const float weight = c.weights[static_cast<std::size_t>(rows[r])][static_cast<std::size_t>(c.slot[i][r])];
      out.row(rows[r]) += weight * c.out[i].row(static_cast<Index>(r));
    }
  }
}

/// Given dL/d out for the forward that filled `cache`: adds each expert's dL/d(gate, up, down)
/// into `grads` (per expert, [3] = gate, up, down, each the weight's shape; an expert without
/// tokens gets nothing added) and, if `d_x`, sets dL/dx (through the experts and the router).
inline void moe_backward(const MoeWeights& w, const MoeRouting& routing, const MoeCache& c, const RowMatrix& x, const RowMatrix& d_out,
                         std::vector<std::array<RowMatrix, 3>>& grads, RowMatrix* d_x = nullptr) {
  const Index tokens = x.rows(), hidden = x.cols(), experts = static_cast<Index>(w.experts.size());
  detail::require(d_out.rows() == tokens && d_out.cols() == hidden, "moe_backward: d_out is not [tokens, hidden]");
  detail::require(grads.size() == w.experts.size(), "moe_backward: one gradient triple per expert");
  if (d_x) *d_x = RowMatrix::Zero(tokens, hidden);
  // dL/dw for each token's chosen experts: <dL/d out_t, expert output on t>
  std::vector<std::vector<float>> d_weight(static_cast<std::size_t>(tokens), std::vector<float>(static_cast<std::size_t>(routing.top_k), 0.0f));
  for (Index e = 0; e < experts; ++e) {
    const auto i = static_cast<std::size_t>(e);
    const auto& rows = c.rows[i];
    if (rows.empty()) continue;
    const ExpertWeights& ex = w.experts[i];
    const Index n = static_cast<Index>(rows.size());
    RowMatrix dy(n, hidden), xe(n, hidden);
    for (Index r = 0; r < n; ++r) {
      const Index t = rows[static_cast<std::size_t>(r)], k = c.slot[i][static_cast<std::size_t>(r)];
      dy.row(r) = c.weights[static_cast<std::size_t>(t)][static_cast<std::size_t>(k)] * d_out.row(t);
      xe.row(r) = x.row(t);
      d_weight[static_cast<std::size_t>(t)][static_cast<std::size_t>(k)] = d_out.row(t).dot(c.out[i].row(r));
    }
    grads[i][2].noalias() += dy.transpose() * c.act[i];
    const RowMatrix d_act = dy * ex.down;
    RowMatrix d_gate(n, c.gate[i].cols()), d_up(n, c.up[i].cols());
    for (Index r = 0; r < n; ++r)
      for (Index j = 0; j < d_gate.cols(); ++j) {  // d silu(g) = sigma (1 + g (1 − sigma))
        const float g = c.gate[i](r, j), sigma = 1.0f / (1.0f + std::exp(-g));
        d_up(r, j) = d_act(r, j) * detail::silu(g);
        d_gate(r, j) = d_act(r, j) * c.up[i](r, j) * sigma * (1.0f + g * (1.0f - sigma));
      }
    grads[i][0].noalias() += d_gate.transpose() * xe;
    grads[i][1].noalias() += d_up.transpose() * xe;
    if (d_x) {
      const RowMatrix dxe = d_gate * ex.gate + d_up * ex.up;
      for (Index r = 0; r < n; ++r) d_x->row(rows[static_cast<std::size_t>(r)]) += dxe.row(r);
    }
  }
  if (!d_x) return;
  // the router: dw → dp of the chosen (through the normalization) → softmax → logits → x
  RowMatrix d_logits = RowMatrix::Zero(tokens, experts);
  for (Index t = 0; t < tokens; ++t) {
    const auto& chosen = c.chosen[static_cast<std::size_t>(t)];
    const auto& dw = d_weight[static_cast<std::size_t>(t)];
    const auto& wt = c.weights[static_cast<std::size_t>(t)];
    Eigen::VectorXf dp = Eigen::VectorXf::Zero(experts);
    if (routing.normalize) {  // w_k = p_k / S: dp_k = (dw_k − Σ_j dw_j w_j) / S
      float sum = 0, dot = 0;
      for (std::size_t k = 0; k < chosen.size(); ++k) sum += c.probabilities(t, chosen[k]), dot += dw[k] * wt[k];
      for (std::size_t k = 0; k < chosen.size(); ++k) dp(chosen[k]) = (dw[k] - dot) / sum;
    } else {
      for (std::size_t k = 0; k < chosen.size(); ++k) dp(chosen[k]) = dw[k];
    }
    float pdp = 0;  // softmax: d logit_e = p_e (dp_e − Σ_j p_j dp_j)
    for (Index e = 0; e < experts; ++e) pdp += c.probabilities(t, e) * dp(e);
    for (Index e = 0; e < experts; ++e) d_logits(t, e) = c.probabilities(t, e) * (dp(e) - pdp);
  }
  d_x->noalias() += d_logits * w.router;
}

}  // namespace autoround
