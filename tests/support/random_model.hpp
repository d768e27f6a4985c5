#pragma once
// Small LLaMA-family blocks and models with random weights, for tests of the implementation
// (pipelines, CPU against GPU), never of accuracy.
#include <autoround/model/calibration_samples.hpp>
#include <autoround/model/llama_block.hpp>
#include <autoround/model/llama_model.hpp>
#include <cmath>
#include <random>

namespace test_models {

using namespace autoround;

/// One block of shape `c`: heavy-tailed weights scaled by 1/sqrt(in), norms around 1; `qwen`
/// adds q/k/v biases and q/k norms.
inline LlamaBlock random_block(const LlamaConfig& c, bool qwen, std::mt19937& rng) {
  std::student_t_distribution<float> heavy(4.0f);
  std::normal_distribution<float> normal;
  LlamaBlock b;
  for (Linear l : all_linears) {
    const auto [out, in] = linear_shape(c, l);
    b[l].resize(out, in);
    for (Index i = 0; i < b[l].size(); ++i) b[l].data()[i] = heavy(rng) / std::sqrt(static_cast<float>(in));
  }
  auto around_one = [&](Index n) {
    Eigen::VectorXf v(n);
    for (Index i = 0; i < n; ++i) v[i] = 1.0f + 0.2f * normal(rng);
    return v;
  };
  b.attn_norm = around_one(c.hidden);
  b.ffn_norm = around_one(c.hidden);
  if (qwen) {
    for (std::size_t j = 0; j < 3; ++j) b.qkv_bias[j] = 0.3f * (around_one(linear_shape(c, all_linears[j]).first).array() - 1.0f);
    b.q_norm = around_one(c.head_dim);
    b.k_norm = around_one(c.head_dim);
  }
  return b;
}

/// [rows, cols] of normal values × scale.
inline RowMatrix random_matrix(Index rows, Index cols, float scale, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  RowMatrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = scale * normal(rng);
  return m;
}

/// A SwiGLU expert of intermediate size `inter`, weights scaled by 1/sqrt(hidden).
/// n values center + N(0, scale²) (norm weights, scales).
inline Eigen::VectorXf random_vector_around(Index n, float center, float scale, std::mt19937& rng) {
  return Eigen::VectorXf::Constant(n, center) + random_matrix(n, 1, scale, rng).col(0);
}

inline ExpertWeights random_expert(Index inter, Index hidden, std::mt19937& rng) {
  const float s = 1.0f / std::sqrt(static_cast<float>(hidden));
  return {random_matrix(inter, hidden, s, rng), random_matrix(inter, hidden, s, rng), random_matrix(hidden, inter, s, rng), {}, {}, {}};
}

/// A random_block whose MLP becomes `experts` experts (intermediate 64, top `top_k`, renormalized
/// when `normalize`; router weights normal × router_scale) and, with `shared`, a gated shared expert of intermediate 32 (Qwen2-MoE).
/// With `starve_last`, the router's column 0 keeps the last expert out of every token's top
/// choices when the inputs' channel 0 is a large positive constant (it dominates the logits after
/// the ffn norm, whose channel 0 is 20).
inline LlamaBlock random_moe_block(const LlamaConfig& c, std::mt19937& rng, bool shared, bool starve_last, int experts = 4, Index top_k = 2,
                                   bool normalize = true, float router_scale = 0.3f) {
  LlamaBlock block = random_block(c, false, rng);
  for (Linear l : {Linear::Gate, Linear::Up, Linear::Down}) block[l] = RowMatrix();
  MoeFeedForward moe;
  moe.spec.top_k = top_k;
  moe.spec.normalize = normalize;
  moe.weights.router = random_matrix(experts, c.hidden, router_scale, rng);
  for (int e = 0; e < experts; ++e) moe.weights.experts.push_back(random_expert(64, c.hidden, rng));
  if (shared) {
    moe.weights.shared = random_expert(32, c.hidden, rng);
    moe.weights.shared_gate = random_matrix(c.hidden, 1, 0.3f, rng).col(0);
  }
  if (starve_last) {
    moe.weights.router.col(0).setConstant(0.05f);
    moe.weights.router(experts - 1, 0) = -1.0f;
    block.ffn_norm(0) = 20.0f;
  }
  block.moe = moe;
  return block;
}

/// A LLaMA model of `layers` blocks (hidden 64, GQA 4:1) with random weights, for the pipeline tests.
inline LlamaModel small_random_model(std::mt19937& rng, Index layers = 2) {
  LlamaModel model;
  LlamaConfig& c = model.config;
  c.layers = layers, c.hidden = 64, c.heads = 4, c.kv_heads = 1, c.head_dim = 16, c.intermediate = 128, c.vocab = 40;
  std::normal_distribution<float> normal;
  model.embedding.resize(c.vocab, c.hidden);
  for (Index i = 0; i < model.embedding.size(); ++i) model.embedding.data()[i] = normal(rng);
  for (Index b = 0; b < c.layers; ++b) model.blocks.push_back(random_block(c, false, rng));
  model.final_norm = Eigen::VectorXf::Ones(c.hidden);
  return model;
}

/// `count` token sequences of `length` random ids below `vocab`.
inline std::vector<TokenSequence> random_samples(std::size_t count, std::size_t length, Index vocab, std::mt19937& rng) {
  std::vector<TokenSequence> samples(count, TokenSequence(length));
  for (auto& s : samples)
    for (auto& t : s) t = static_cast<std::int32_t>(rng() % static_cast<unsigned>(vocab));
  return samples;
}

}  // namespace test_models
