// The whole model's backward (model/model_backward.hpp) against finite differences of the
// model's next-token loss, the Fisher factors (tune/fisher_factors.hpp) against sums computed
// from the forward alone, and their loss estimate against its formula by hand.
#include <doctest/doctest.h>

#include <autoround/model/model_backward.hpp>
#include <autoround/tune/fisher_factors.hpp>
#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "support/memory_source.hpp"
#include "support/random_model.hpp"

namespace test_model_backward {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;
using test_models::MemorySource;

namespace {

/// A 2-block model; `gemma`: q/k norms, biases, sandwich norms, soft-capped logits and scaled
/// embeddings, so that every branch of the backward is taken.
LlamaModel make_model(bool gemma, std::mt19937& rng) {
  LlamaModel m = test_models::small_random_model(rng, 2);
  LlamaConfig& c = m.config;
  c.hidden = 32, c.heads = 4, c.kv_heads = 2, c.head_dim = 8, c.intermediate = 48, c.vocab = 24;
  c.tied_embeddings = true;
  std::normal_distribution<float> normal;
  m.embedding.resize(c.vocab, c.hidden);
  for (Index i = 0; i < m.embedding.size(); ++i) m.embedding.data()[i] = normal(rng);
  m.blocks.clear();
  for (Index b = 0; b < c.layers; ++b) m.blocks.push_back(test_models::random_block(c, gemma, rng));
  m.final_norm = Eigen::VectorXf::Ones(c.hidden) + 0.1f * Eigen::VectorXf::Random(c.hidden);
  if (gemma) {
    c.logit_softcap = 3.0f;
    c.embedding_scale = 1.5f;
    for (LlamaBlock& b : m.blocks) {
      b.post_attn_norm = Eigen::VectorXf::Ones(c.hidden) + 0.2f * Eigen::VectorXf::Random(c.hidden);
      b.post_ffn_norm = Eigen::VectorXf::Ones(c.hidden) + 0.2f * Eigen::VectorXf::Random(c.hidden);
    }
  }
  return m;
}

/// Mean next-token loss of the sequences (each of `seqlen`), in double from float logits.
double mean_loss(const LlamaModel& m, const std::vector<std::int32_t>& ids, Index seqlen) {
  const RowMatrix logits = forward_logits(m, ids, seqlen);
  double total = 0;
  Index n = 0;
  for (Index r = 0; r < logits.rows(); ++r) {
    if (r % seqlen == seqlen - 1) continue;
    const auto z = logits.row(r).cast<double>();
    const double max = z.maxCoeff();
    total += max + std::log((z.array() - max).exp().sum()) - z(ids[static_cast<std::size_t>(r + 1)]);
    ++n;
  }
  return total / static_cast<double>(n);
}

/// The backward by hand: the gradients of every block's weights, and of the embedding's rows
/// (per position).
struct Chain {
  double loss = 0;
  std::vector<std::array<RowMatrix, 7>> grads;
  RowMatrix d_embedded;  // dL/d(embedding row) at each position
};
Chain backward(const LlamaModel& m, const std::vector<std::int32_t>& ids, Index seqlen) {
  const LlamaConfig& c = m.config;
  Chain chain;
  RowMatrix h = embed(m, ids);
  std::vector<RowMatrix> inputs;
  for (const LlamaBlock& b : m.blocks) {
    inputs.push_back(h);
    block_forward(b, c, h, nullptr, seqlen);
  }
  const Index scored = static_cast<Index>(ids.size()) - static_cast<Index>(ids.size()) / seqlen;
  HeadGradient g = head_backward(h, ids, seqlen, m.final_norm, m.lm_head(), c, 1.0 / static_cast<double>(scored));
  chain.loss = g.loss;
  RowMatrix d = g.d_hidden;
  chain.grads.resize(m.blocks.size());
  for (Index b = c.layers - 1; b >= 0; --b) {
    const LlamaBlock& block = m.blocks[static_cast<std::size_t>(b)];
    const BlockWeights w = BlockWeights::of(block);
    BlockCache cache;
    BlockBackwardScratch z;
    RowMatrix x = inputs[static_cast<std::size_t>(b)];
    block_forward(w, c, x, &cache, seqlen);
    auto& grads = chain.grads[static_cast<std::size_t>(b)];
    for (Linear l : all_linears) grads[static_cast<std::size_t>(l)].setZero(block[l].rows(), block[l].cols());
    block_backward(w, c, cache, d, grads, &z);
    // the linear layers' output gradients as found, times their inputs, are those weight gradients
    for (Linear l : all_linears) {
      const RowMatrix product = linear_output_gradient(l, w, d, z).transpose() * cache.of(l);
      CHECK_MESSAGE((product - grads[static_cast<std::size_t>(l)]).norm() <= 1e-5f * (1.0f + grads[static_cast<std::size_t>(l)].norm()),
                    "linear ", static_cast<int>(l));
    }
    d = block_input_gradient(w, c, cache, z);
  }
  chain.d_embedded = d * c.embedding_scale;
  return chain;
}

/// Central difference of the loss in one float, at the largest few entries of an analytic gradient.
template <class Get>
void check_against_differences(LlamaModel& m, const std::vector<std::int32_t>& ids, Index seqlen, const RowMatrix& analytic, Get&& entry,
                               const char* what) {
  std::vector<std::pair<float, Index>> order;
  for (Index i = 0; i < analytic.size(); ++i) order.push_back({-std::abs(analytic.data()[i]), i});
  std::sort(order.begin(), order.end());
  for (int k = 0; k < 4; ++k) {
    const Index i = order[static_cast<std::size_t>(k)].second;
    float& value = entry(i);
    const float saved = value, step = 1e-2f;
    value = saved + step;
    const double up = mean_loss(m, ids, seqlen);
    value = saved - step;
    const double down = mean_loss(m, ids, seqlen);
    value = saved;
    const double numeric = (up - down) / (2.0 * step);
    const double exact = analytic.data()[i];
    CHECK_MESSAGE(std::abs(numeric - exact) <= 0.02 * std::abs(exact) + 2e-5, what, " entry ", i, ": ", exact, " vs finite difference ", numeric);
  }
}

}  // namespace

TEST_CASE("the model's backward: every weight's and the embedding's gradient against finite differences") {
  for (bool gemma : {false, true}) {
    CAPTURE(gemma);
    std::mt19937 rng(gemma ? 11 : 7);
    LlamaModel m = make_model(gemma, rng);
    const Index seqlen = 12;
    const auto samples = test_models::random_samples(3, static_cast<std::size_t>(seqlen), m.config.vocab, rng);
    std::vector<std::int32_t> ids;
    for (const auto& s : samples) ids.insert(ids.end(), s.begin(), s.end());
    const Chain chain = backward(m, ids, seqlen);
    CHECK(chain.loss == doctest::Approx(mean_loss(m, ids, seqlen)).epsilon(1e-5));
    for (Index b = 0; b < m.config.layers; ++b)
      for (Linear l : all_linears) {
        RowMatrix& w = m.blocks[static_cast<std::size_t>(b)][l];
        check_against_differences(m, ids, seqlen, chain.grads[static_cast<std::size_t>(b)][static_cast<std::size_t>(l)],
                                  [&](Index i) -> float& { return w.data()[i]; }, gguf_name(l));
      }
    // the embedding's lookup side (tied, a row's gradient would add the LM head's): on an untied
    // copy, whose head is a matrix of its own
    LlamaModel untied = m;
    untied.config.tied_embeddings = false;
    untied.output = m.embedding;
    const Chain u = backward(untied, ids, seqlen);
    RowMatrix lookup = RowMatrix::Zero(m.config.vocab, m.config.hidden);
    for (std::size_t t = 0; t < ids.size(); ++t) lookup.row(ids[t]) += u.d_embedded.row(static_cast<Index>(t));
    check_against_differences(untied, ids, seqlen, lookup, [&](Index i) -> float& { return untied.embedding.data()[i]; }, "embedding");
  }
}

TEST_CASE("the Fisher factors: the second moments of the forward's inputs and the head's gradient, the loss the perplexity's") {
  std::mt19937 rng(3);
  const LlamaModel m = make_model(false, rng);
  const LlamaConfig& c = m.config;
  const Index seqlen = 10;
  const auto samples = test_models::random_samples(5, static_cast<std::size_t>(seqlen), c.vocab, rng);
  const MemorySource source{&m};
  const ModelFisher fisher = measure_fisher(source, samples, 2);  // batches of 2, 2, 1
  std::vector<std::int32_t> ids;
  for (const auto& s : samples) ids.insert(ids.end(), s.begin(), s.end());
  CHECK(fisher.tokens == 5 * (seqlen - 1));
  CHECK(fisher.loss == doctest::Approx(perplexity(m, ids, seqlen).mean_nll).epsilon(1e-5));
  // block 0's q/k/v read the normed embedding; the head reads the final normed state
  const RowMatrix normed = detail::rms_norm(embed(m, ids), m.blocks[0].attn_norm, c.rms_eps);
  const Eigen::VectorXd x0 = normed.cast<double>().array().square().colwise().sum().transpose();
  for (Linear l : {Linear::Query, Linear::Key, Linear::Value}) {
    CHECK((fisher.of(0, l).in_sq - x0).norm() <= 1e-5 * x0.norm());
    CHECK(fisher.of(0, l).tokens == static_cast<Index>(ids.size()));
  }
  const RowMatrix last = forward_hidden(m, ids, seqlen);
  const Eigen::VectorXd xh = last.cast<double>().array().square().colwise().sum().transpose();
  CHECK((fisher.head.in_sq - xh).norm() <= 1e-5 * xh.norm());
  // the head's output side: (softmax − one-hot)² / scored², summed over the scored positions
  const RowMatrix logits = forward_logits(m, ids, seqlen);
  Eigen::VectorXd out = Eigen::VectorXd::Zero(c.vocab);
  const double scored = static_cast<double>(fisher.tokens);
  for (Index r = 0; r < logits.rows(); ++r) {
    if (r % seqlen == seqlen - 1) continue;
    Eigen::VectorXd p = (logits.row(r).cast<double>().array() - logits.row(r).maxCoeff()).exp().transpose();
    p /= p.sum();
    p[ids[static_cast<std::size_t>(r + 1)]] -= 1.0;
    out += (p / scored).array().square().matrix();
  }
  CHECK((fisher.head.out_sq - out).norm() <= 1e-4 * out.norm());
  // the embedding's rows: one per token id that occurs
  std::set<std::int32_t> seen(ids.begin(), ids.end());
  CHECK(fisher.embedding_rows.size() == seen.size());
  CHECK(fisher.embedding_counts.size() == seen.size());
  for (std::int32_t id : seen)
    CHECK(fisher.embedding_counts.at(id) == static_cast<Index>(std::count(ids.begin(), ids.end(), id)));
}

TEST_CASE("the loss-rise estimate: ½ Σ out_r in_i (w − q)² / tokens, by hand") {
  FisherFactors f;
  f.out_sq = Eigen::Vector2d(2.0, 0.5);
  f.in_sq = Eigen::Vector3d(1.0, 4.0, 0.0);
  f.tokens = 4;
  RowMatrix w(2, 3), q(2, 3);
  w << 1, 2, 3, 4, 5, 6;
  q << 1.5, 2, 0, 4, 4, 6;
  // row 0: 1·0.25 + 4·0 + 0·9 = 0.25, × 2 = 0.5; row 1: 4·1 = 4, × 0.5 = 2 → ½ · 2.5 / 4
  CHECK(f.loss_rise(w, q) == doctest::Approx(0.3125));
  CHECK_THROWS_WITH_AS(f.loss_rise(w.leftCols(2), q.leftCols(2)), doctest::Contains("against factors of 2 x 3"), Error);
  ModelFisher m;
  m.embedding_rows[1] = Eigen::Vector3d(1.0, 0.0, 2.0);
  RowMatrix e = RowMatrix::Zero(3, 3), eq = RowMatrix::Zero(3, 3);
  eq(1, 0) = 1, eq(1, 2) = -2, eq(0, 0) = 100;  // row 0 is never looked up: it does not count
  CHECK(m.embedding_loss_rise(e, eq) == doctest::Approx(0.5 * (1.0 + 8.0)));  // no counts: no unseen estimate
}

TEST_CASE("the embedding's unseen rows: Good–Turing's share of the positions at the mean observed F, by hand") {
  ModelFisher m;
  m.embedding_rows[1] = Eigen::Vector2d(1.0, 3.0);  // id 1 at two positions
  m.embedding_rows[2] = Eigen::Vector2d(2.0, 0.0);  // id 2 at one
  m.embedding_counts = {{1, 2}, {2, 1}};
  RowMatrix e = RowMatrix::Zero(4, 2), q = RowMatrix::Zero(4, 2);
  q << 2, 0,   // row 0 unseen
      1, 0,    // row 1: 1 · 1 = 1
      0, 1,    // row 2: 0 · 1 = 0
      0, -1;   // row 3 unseen
  // 3 positions, 1 id seen once, 2 unseen rows: each (1/2) position at the mean F (3, 3)/3 = (1, 1),
  // so F = (0.5, 0.5): row 0 0.5 · 4 = 2, row 3 0.5 · 1 = 0.5
  CHECK(m.embedding_loss_rise(e, q) == doctest::Approx(0.5 * (1.0 + 0.0 + 2.0 + 0.5)));
  m.embedding_counts = {{1, 2}, {2, 2}};  // no id seen once: nothing estimated for the unseen rows
  CHECK(m.embedding_loss_rise(e, q) == doctest::Approx(0.5 * 1.0));
}
}  // namespace test_model_backward
