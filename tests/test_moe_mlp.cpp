// The sparse MoE MLP (model/moe_mlp.hpp): routing against the formula computed here in double,
// the forward against a token-by-token evaluation of Σ_k w_k f_{e_k}(x), and the backward
// (experts' weights, and the input through the experts and the router) against central finite
// differences of the forward, normalized (Mixtral, Qwen3 with norm_topk_prob) and not; Gemma 4's
// pieces (a router input of its own, per-expert scales, GeGLU experts) against transformers' own
// modules (tests/fixtures/gemma4_moe.safetensors) and finite differences.
#include <doctest/doctest.h>

#include <autoround/format/safetensors.hpp>
#include <autoround/model/moe_mlp.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace test_moe_mlp {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
constexpr Index hidden = 8, inter = 6, experts = 5, tokens = 7;

RowMatrix random_matrix(Index r, Index c, float scale, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  RowMatrix m(r, c);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = scale * normal(rng);
  return m;
}

MoeWeights random_moe(std::mt19937& rng) {
  MoeWeights w;
  w.router = random_matrix(experts, hidden, 0.8f, rng);
  for (Index e = 0; e < experts; ++e)
    w.experts.push_back({random_matrix(inter, hidden, 0.4f, rng), random_matrix(inter, hidden, 0.4f, rng), random_matrix(hidden, inter, 0.4f, rng), {}, {}, {}});
  return w;
}

// softmax over the experts and the top-k, in double, for one token
std::vector<std::pair<Index, double>> expected_choice(const MoeWeights& w, const RowMatrix& x, Index t, const MoeSpec& routing) {
  std::vector<double> p(experts);
  double top = -1e300, sum = 0;
  for (Index e = 0; e < experts; ++e) {
    double logit = 0;
    for (Index j = 0; j < hidden; ++j) logit += static_cast<double>(w.router(e, j)) * static_cast<double>(x(t, j));
    p[static_cast<std::size_t>(e)] = logit;
    top = std::max(top, logit);
  }
  for (double& v : p) sum += (v = std::exp(v - top));
  for (double& v : p) v /= sum;
  std::vector<std::pair<Index, double>> order;
  for (Index e = 0; e < experts; ++e) order.emplace_back(e, p[static_cast<std::size_t>(e)]);
  std::stable_sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.second > b.second; });
  order.resize(static_cast<std::size_t>(routing.top_k));
  double chosen = 0;
  for (auto& [e, v] : order) chosen += v;
  if (routing.normalize)
    for (auto& [e, v] : order) v /= chosen;
  return order;
}

// dL/dx at a dozen entries against Richardson-extrapolated central differences of `loss`
template <class Loss>
void check_input_gradient(const RowMatrix& x, const RowMatrix& d_x, Loss&& loss) {
  for (Index probe = 0; probe < 12; ++probe) {
    const Index t = (probe * 3 + 1) % x.rows(), j = (probe * 5 + 2) % x.cols();
    CAPTURE(t);
    CAPTURE(j);
    const auto central = [&](float h) {
      RowMatrix plus = x, minus = x;
      plus(t, j) += h;
      minus(t, j) -= h;
      return (loss(plus) - loss(minus)) / (2.0 * h);
    };
    const double fd = (4.0 * central(2e-3f) - central(4e-3f)) / 3.0;
    CHECK(std::abs(d_x(t, j) - fd) < 1e-3 + 3e-3 * std::abs(fd));
  }
}

// d/dt loss(w with member(w) += t · direction) at t = 0: Richardson-extrapolated central differences
template <class Member, class Loss>
double directional_difference(const MoeWeights& w, const RowMatrix& direction, Member&& member, Loss&& loss) {
  const auto central = [&](float h) {
    MoeWeights plus = w, minus = w;
    member(plus) += h * direction;
    member(minus) -= h * direction;
    return (loss(plus) - loss(minus)) / (2.0 * h);
  };
  return (4.0 * central(4e-3f) - central(8e-3f)) / 3.0;
}

// the smallest gap between the k-th and (k+1)-th probability over the tokens: finite differences
// must not move a token across it
double smallest_gap(const MoeCache& c, Index top_k) {
  double gap = 1;
  for (Index t = 0; t < c.probabilities.rows(); ++t) {
    std::vector<float> p(c.probabilities.row(t).data(), c.probabilities.row(t).data() + experts);
    std::sort(p.rbegin(), p.rend());
    gap = std::min(gap, static_cast<double>(p[static_cast<std::size_t>(top_k - 1)] - p[static_cast<std::size_t>(top_k)]));
  }
  return gap;
}
}  // namespace

TEST_CASE("MoE routing and forward: the top-k of the softmax, each token's experts summed with their weights") {
  std::mt19937 rng(11);
  const MoeWeights w = random_moe(rng);
  const RowMatrix x = random_matrix(tokens, hidden, 1.0f, rng);
  for (bool normalize : {true, false}) {
    CAPTURE(normalize);
    const MoeSpec routing{2, normalize};
    MoeCache cache;
    RowMatrix out;
    moe_forward(w, routing, x, out, &cache);
    Index routed = 0;
    for (Index t = 0; t < tokens; ++t) {
      CAPTURE(t);
      const auto expected = expected_choice(w, x, t, routing);
      Eigen::VectorXd sum = Eigen::VectorXd::Zero(hidden);
      for (std::size_t k = 0; k < expected.size(); ++k) {
        CHECK(cache.chosen[static_cast<std::size_t>(t)][k] == expected[k].first);
        CHECK(cache.weights[static_cast<std::size_t>(t)][k] == doctest::Approx(expected[k].second).epsilon(1e-6));
        const ExpertWeights& ex = w.experts[static_cast<std::size_t>(expected[k].first)];
        const Eigen::VectorXd xt = x.row(t).transpose().cast<double>();
        const Eigen::VectorXd g = ex.gate.cast<double>() * xt, u = ex.up.cast<double>() * xt;
        Eigen::VectorXd a(inter);
        for (Index j = 0; j < inter; ++j) a(j) = g(j) / (1 + std::exp(-g(j))) * u(j);
        sum += expected[k].second * (ex.down.cast<double>() * a);
      }
      for (Index j = 0; j < hidden; ++j) CHECK(out(t, j) == doctest::Approx(sum(j)).epsilon(1e-5));
    }
    for (Index n : cache.tokens) routed += n;
    CHECK(routed == tokens * 2);
  }
}

TEST_CASE("MoE backward matches finite differences: experts' weights and the input (through the router)") {
  std::mt19937 rng(3);
  MoeWeights w = random_moe(rng);
  RowMatrix x = random_matrix(tokens, hidden, 1.0f, rng);
  const RowMatrix c_loss = random_matrix(tokens, hidden, 1.0f, rng);  // L = Σ C ⊙ out
  for (bool normalize : {true, false}) {
    CAPTURE(normalize);
    const MoeSpec routing{2, normalize};
    auto loss = [&](const MoeWeights& weights, const RowMatrix& input) {
      RowMatrix out;
      moe_forward(weights, routing, input, out);
      return static_cast<double>(out.cwiseProduct(c_loss).sum());
    };
    MoeCache cache;
    RowMatrix out, d_x;
    moe_forward(w, routing, x, out, &cache);
    REQUIRE(smallest_gap(cache, 2) > 1e-3);  // steps below keep every token's choice
    std::vector<std::array<RowMatrix, 3>> grads(experts);
    for (Index e = 0; e < experts; ++e)
      for (int p = 0; p < 3; ++p) {
        const RowMatrix& m = p == 0 ? w.experts[static_cast<std::size_t>(e)].gate : p == 1 ? w.experts[static_cast<std::size_t>(e)].up
                                                                                           : w.experts[static_cast<std::size_t>(e)].down;
        grads[static_cast<std::size_t>(e)][static_cast<std::size_t>(p)] = RowMatrix::Zero(m.rows(), m.cols());
      }
    moe_backward(w, routing, cache, x, c_loss, grads, &d_x);
    // along a random direction through each weight (Richardson-extrapolated central differences)
    for (Index e = 0; e < experts; ++e)
      for (int p = 0; p < 3; ++p) {
        CAPTURE(e);
        CAPTURE(p);
        const RowMatrix& g = grads[static_cast<std::size_t>(e)][static_cast<std::size_t>(p)];
        auto member = [&](MoeWeights& m) -> RowMatrix& {
          ExpertWeights& ex = m.experts[static_cast<std::size_t>(e)];
          return p == 0 ? ex.gate : p == 1 ? ex.up : ex.down;
        };
        const RowMatrix direction = random_matrix(g.rows(), g.cols(), 1.0f, rng);
        const double fd = directional_difference(w, direction, member, [&](const MoeWeights& m) { return loss(m, x); });
        const double analytic = static_cast<double>(g.cwiseProduct(direction).sum());
        if (cache.tokens[static_cast<std::size_t>(e)] == 0) {
          CHECK(g.isZero(0));  // no token reached it: no gradient, and the loss does not move
          CHECK(std::abs(fd) < 1e-6);
        } else {
          CHECK(analytic == doctest::Approx(fd).epsilon(2e-3));
        }
      }
    // the input: per entry, through the experts and the router's softmax and top-k weights
    check_input_gradient(x, d_x, [&](const RowMatrix& input) { return loss(w, input); });
  }
}

TEST_CASE("MoE: an expert no token reaches is counted and computes nothing; bad shapes are refused") {
  std::mt19937 rng(7);
  MoeWeights w = random_moe(rng);
  w.router.row(4).setConstant(0.0f);
  w.router.row(4) -= 50.0f * w.router.row(0).cwiseAbs();  // expert 4's logit far below the others' for positive x
  RowMatrix x = random_matrix(tokens, hidden, 1.0f, rng).cwiseAbs();
  MoeCache cache;
  RowMatrix out;
  moe_forward(w, {2, true}, x, out, &cache);
  CHECK(cache.tokens[4] == 0);
  CHECK(cache.rows[4].empty());
  MoeWeights bad = w;
  bad.router = RowMatrix::Zero(experts, hidden + 1);
  CHECK_THROWS_WITH_AS(moe_forward(bad, {2, true}, x, out), doctest::Contains("router is not [experts, hidden]"), Error);
  CHECK_THROWS_WITH_AS(moe_forward(w, {6, true}, x, out), doctest::Contains("top_k"), Error);
}

namespace {
// DeepSeek-V3's choice for token t, in double: sigmoid scores, groups by the sum of their two best
// biased scores, the kept groups' top_k by biased score, weights from the unbiased scores
std::vector<std::pair<Index, double>> expected_grouped(const MoeWeights& w, const RowMatrix& x, Index t, const MoeSpec& r) {
  const Index e_count = w.router.rows(), per = e_count / r.groups;
  std::vector<double> s(static_cast<std::size_t>(e_count)), key(s.size());
  for (Index e = 0; e < e_count; ++e) {
    double logit = 0;
    for (Index j = 0; j < x.cols(); ++j) logit += static_cast<double>(w.router(e, j)) * static_cast<double>(x(t, j));
    s[static_cast<std::size_t>(e)] = 1 / (1 + std::exp(-logit));
    key[static_cast<std::size_t>(e)] = s[static_cast<std::size_t>(e)] + static_cast<double>(w.correction_bias(e));
  }
  std::vector<std::pair<double, Index>> groups;
  for (Index g = 0; g < r.groups; ++g) {
    std::vector<double> m(key.begin() + g * per, key.begin() + (g + 1) * per);
    std::sort(m.rbegin(), m.rend());
    groups.emplace_back(m[0] + m[1], g);
  }
  std::stable_sort(groups.begin(), groups.end(), [](auto& a, auto& b) { return a.first > b.first; });
  std::vector<Index> candidates;
  for (Index e = 0; e < e_count; ++e)
    for (Index g = 0; g < r.top_groups; ++g)
      if (groups[static_cast<std::size_t>(g)].second == e / per) candidates.push_back(e);
  std::stable_sort(candidates.begin(), candidates.end(), [&](Index a, Index b) { return key[static_cast<std::size_t>(a)] > key[static_cast<std::size_t>(b)]; });
  std::vector<std::pair<Index, double>> out;
  double sum = 0;
  for (Index k = 0; k < r.top_k; ++k) out.emplace_back(candidates[static_cast<std::size_t>(k)], s[static_cast<std::size_t>(candidates[static_cast<std::size_t>(k)])]);
  for (auto& [e, v] : out) sum += v;
  for (auto& [e, v] : out) v = (r.normalize ? v / (sum + 1e-20) : v) * r.scale;
  return out;
}

Eigen::VectorXd expert_output(const ExpertWeights& ex, const RowMatrix& x, Index t) {
  const Eigen::VectorXd xt = x.row(t).transpose().cast<double>();
  const Eigen::VectorXd g = ex.gate.cast<double>() * xt, u = ex.up.cast<double>() * xt;
  Eigen::VectorXd a(g.size());
  for (Index j = 0; j < g.size(); ++j) a(j) = g(j) / (1 + std::exp(-g(j))) * u(j);
  return ex.down.cast<double>() * a;
}

MoeWeights random_grouped(std::mt19937& rng, Index e_count, bool gated_shared) {
  MoeWeights w;
  w.router = random_matrix(e_count, hidden, 0.8f, rng);
  for (Index e = 0; e < e_count; ++e)
    w.experts.push_back({random_matrix(inter, hidden, 0.4f, rng), random_matrix(inter, hidden, 0.4f, rng), random_matrix(hidden, inter, 0.4f, rng), {}, {}, {}});
  w.correction_bias = random_matrix(e_count, 1, 0.3f, rng).col(0);
  w.shared = ExpertWeights{random_matrix(inter, hidden, 0.4f, rng), random_matrix(inter, hidden, 0.4f, rng), random_matrix(hidden, inter, 0.4f, rng), {}, {}, {}};
  if (gated_shared) w.shared_gate = random_matrix(hidden, 1, 0.5f, rng).col(0);
  return w;
}
}  // namespace

TEST_CASE("DeepSeek-V3 routing (sigmoid, biased choice in groups, unbiased weights x scale) with a shared expert") {
  std::mt19937 rng(23);
  const MoeWeights w = random_grouped(rng, 8, false);
  const RowMatrix x = random_matrix(tokens, hidden, 1.0f, rng);
  for (bool normalize : {true, false}) {
    CAPTURE(normalize);
    MoeSpec routing{3, normalize, RouterScoring::SigmoidGrouped, 4, 2, 2.5f};
    MoeCache cache;
    RowMatrix out;
    moe_forward(w, routing, x, out, &cache);
    for (Index t = 0; t < tokens; ++t) {
      CAPTURE(t);
      const auto expected = expected_grouped(w, x, t, routing);
      Eigen::VectorXd sum = expert_output(*w.shared, x, t);  // DeepSeek's shared expert: no gate
      for (std::size_t k = 0; k < expected.size(); ++k) {
        CHECK(cache.chosen[static_cast<std::size_t>(t)][k] == expected[k].first);
        CHECK(cache.weights[static_cast<std::size_t>(t)][k] == doctest::Approx(expected[k].second).epsilon(1e-6));
        sum += expected[k].second * expert_output(w.experts[static_cast<std::size_t>(expected[k].first)], x, t);
      }
      for (Index j = 0; j < hidden; ++j) CHECK(out(t, j) == doctest::Approx(sum(j)).epsilon(1e-5));
    }
  }
  MoeSpec bad{3, true, RouterScoring::SigmoidGrouped, 3, 2, 1.0f};
  RowMatrix out;
  CHECK_THROWS_WITH_AS(moe_forward(w, bad, x, out), doctest::Contains("groups must divide the experts"), Error);
}

TEST_CASE("MoE backward with a shared expert (gated, Qwen2-MoE; ungated, DeepSeek-V3) matches finite differences") {
  struct Case {
    const char* name;
    bool gated;
    MoeSpec routing;
  };
  for (const Case& k : {Case{"Qwen2-MoE", true, MoeSpec{2, false}},
                        Case{"DeepSeek-V3", false, MoeSpec{2, true, RouterScoring::SigmoidGrouped, 4, 2, 2.5f}}}) {
    CAPTURE(std::string(k.name));
    std::mt19937 rng(31);
    const MoeWeights w = random_grouped(rng, 8, k.gated);
    const RowMatrix x = random_matrix(tokens, hidden, 1.0f, rng), c_loss = random_matrix(tokens, hidden, 1.0f, rng);
    MoeCache base;
    RowMatrix out, d_x;
    moe_forward(w, k.routing, x, out, &base);
    // L = Σ C ⊙ out; every perturbed forward must keep the base routing, or the difference is meaningless
    auto loss = [&](const MoeWeights& weights, const RowMatrix& input) {
      MoeCache c;
      RowMatrix o;
      moe_forward(weights, k.routing, input, o, &c);
      CHECK(c.chosen == base.chosen);
      return static_cast<double>(o.cwiseProduct(c_loss).sum());
    };
    std::vector<std::array<RowMatrix, 3>> grads(w.experts.size() + 1);
    for (std::size_t e = 0; e < grads.size(); ++e) {
      const ExpertWeights& ex = e < w.experts.size() ? w.experts[e] : *w.shared;
      grads[e] = {RowMatrix::Zero(ex.gate.rows(), ex.gate.cols()), RowMatrix::Zero(ex.up.rows(), ex.up.cols()),
                  RowMatrix::Zero(ex.down.rows(), ex.down.cols())};
    }
    moe_backward(w, k.routing, base, x, c_loss, grads, &d_x);
    for (std::size_t e = 0; e < grads.size(); ++e)
      for (int p = 0; p < 3; ++p) {
        CAPTURE(e);
        CAPTURE(p);
        auto member = [&](MoeWeights& m) -> RowMatrix& {
          ExpertWeights& ex = e < m.experts.size() ? m.experts[e] : *m.shared;
          return p == 0 ? ex.gate : p == 1 ? ex.up : ex.down;
        };
        const RowMatrix& g = grads[e][static_cast<std::size_t>(p)];
        const RowMatrix direction = random_matrix(g.rows(), g.cols(), 1.0f, rng);
        const double fd = directional_difference(w, direction, member, [&](const MoeWeights& m) { return loss(m, x); });
        const double analytic = static_cast<double>(g.cwiseProduct(direction).sum());
        if (e < w.experts.size() && base.tokens[e] == 0) CHECK(std::abs(fd) < 1e-6);
        else CHECK(analytic == doctest::Approx(fd).epsilon(2e-3));
      }
    check_input_gradient(x, d_x, [&](const RowMatrix& input) { return loss(w, input); });
  }
}

TEST_CASE("GPT-OSS's MoE: top-k of the biased logits, softmax over them, clamped SwiGLU experts with biases") {
  std::mt19937 rng(41);
  MoeWeights w = random_moe(rng);
  w.router_bias = random_matrix(experts, 1, 0.5f, rng).col(0);
  for (ExpertWeights& ex : w.experts) {
    ex.gate_bias = random_matrix(inter, 1, 0.3f, rng).col(0);
    ex.up_bias = random_matrix(inter, 1, 0.3f, rng).col(0);
    ex.down_bias = random_matrix(hidden, 1, 0.3f, rng).col(0);
  }
  const RowMatrix x = random_matrix(tokens, hidden, 1.0f, rng), c_loss = random_matrix(tokens, hidden, 1.0f, rng);
  MoeSpec spec{2, false, RouterScoring::TopKSoftmax};
  spec.activation = ExpertActivation::ClampedSwiGlu;
  spec.limit = 0.8f;  // small, so that the clamps act on these values (GPT-OSS's own is 7)
  MoeCache base;
  RowMatrix out;
  moe_forward(w, spec, x, out, &base);
  Index clamped = 0;
  for (Index t = 0; t < tokens; ++t) {
    CAPTURE(t);
    std::vector<std::pair<double, Index>> logits;
    for (Index e = 0; e < experts; ++e)
      logits.emplace_back(static_cast<double>(w.router.row(e).cast<double>().dot(x.row(t).cast<double>())) + w.router_bias(e), e);
    std::stable_sort(logits.begin(), logits.end(), [](auto& a, auto& b) { return a.first > b.first; });
    const double z = std::exp(logits[1].first - logits[0].first) + 1;
    Eigen::VectorXd sum = Eigen::VectorXd::Zero(hidden);
    for (std::size_t k = 0; k < 2; ++k) {
      const double weight = std::exp(logits[k].first - logits[0].first) / z;
      CHECK(base.chosen[static_cast<std::size_t>(t)][k] == logits[k].second);
      CHECK(base.weights[static_cast<std::size_t>(t)][k] == doctest::Approx(weight).epsilon(1e-6));
      const ExpertWeights& ex = w.experts[static_cast<std::size_t>(logits[k].second)];
      const Eigen::VectorXd xt = x.row(t).transpose().cast<double>();
      const Eigen::VectorXd g = ex.gate.cast<double>() * xt + ex.gate_bias.cast<double>(), u = ex.up.cast<double>() * xt + ex.up_bias.cast<double>();
      Eigen::VectorXd a(inter);
      for (Index j = 0; j < inter; ++j) {
        const double gc = std::min(g(j), 0.8), uc = std::clamp(u(j), -0.8, 0.8);
        clamped += (g(j) > 0.8) + (std::abs(u(j)) > 0.8);
        a(j) = (uc + 1) * gc / (1 + std::exp(-1.702 * gc));
      }
      sum += weight * (ex.down.cast<double>() * a + ex.down_bias.cast<double>());
    }
    for (Index j = 0; j < hidden; ++j) CHECK(out(t, j) == doctest::Approx(sum(j)).epsilon(1e-5));
  }
  CHECK(clamped > 0);
  // the backward, against finite differences of L = Σ C ⊙ out (routing kept under every step)
  auto loss = [&](const MoeWeights& weights, const RowMatrix& input) {
    MoeCache c;
    RowMatrix o;
    moe_forward(weights, spec, input, o, &c);
    CHECK(c.chosen == base.chosen);
    return static_cast<double>(o.cwiseProduct(c_loss).sum());
  };
  std::vector<std::array<RowMatrix, 3>> grads(experts);
  for (auto& g : grads) g = {RowMatrix::Zero(inter, hidden), RowMatrix::Zero(inter, hidden), RowMatrix::Zero(hidden, inter)};
  RowMatrix d_x;
  moe_backward(w, spec, base, x, c_loss, grads, &d_x);
  for (Index probe = 0; probe < 24; ++probe) {  // per entry: a kink of the clamp is crossed by no step this small
    const Index e = probe % experts, p = probe % 3;
    CAPTURE(e);
    CAPTURE(p);
    auto member = [&](MoeWeights& m) -> RowMatrix& {
      ExpertWeights& ex = m.experts[static_cast<std::size_t>(e)];
      return p == 0 ? ex.gate : p == 1 ? ex.up : ex.down;
    };
    const RowMatrix& g = grads[static_cast<std::size_t>(e)][static_cast<std::size_t>(p)];
    const Index r = (probe * 7 + 1) % g.rows(), col = (probe * 5 + 3) % g.cols();
    const auto central = [&](float h) {
      MoeWeights plus = w, minus = w;
      member(plus)(r, col) += h;
      member(minus)(r, col) -= h;
      return (loss(plus, x) - loss(minus, x)) / (2.0 * h);
    };
    const double fd = (4.0 * central(2e-3f) - central(4e-3f)) / 3.0;
    CHECK(std::abs(g(r, col) - fd) < 1e-3 + 3e-3 * std::abs(fd));
  }
  check_input_gradient(x, d_x, [&](const RowMatrix& input) { return loss(w, input); });
}

namespace {
// Gemma 4's router input: RMSNorm without weight, × router.scale / √hidden (in double, rounded once)
RowMatrix gemma4_router_input(const RowMatrix& h, const Eigen::VectorXf& scale, float eps) {
  RowMatrix r(h.rows(), h.cols());
  for (Index t = 0; t < h.rows(); ++t) {
    double ms = 0;
    for (Index j = 0; j < h.cols(); ++j) ms += static_cast<double>(h(t, j)) * h(t, j);
    const double inv = 1.0 / std::sqrt(ms / static_cast<double>(h.cols()) + eps);
    for (Index j = 0; j < h.cols(); ++j)
      r(t, j) = static_cast<float>(h(t, j) * inv * scale(j) / std::sqrt(static_cast<double>(h.cols())));
  }
  return r;
}
}  // namespace

TEST_CASE("Gemma 4's experts equal transformers' Gemma4TextRouter + Gemma4TextExperts (own router input, per-expert scale, GeGLU)") {
  // tests/fixtures/gemma4_moe.safetensors: scripts/make_gemma4_moe_fixture.py (transformers 5.17's
  // modules in float64 on float32 weights and inputs): 6 experts of width 8, top 2, hidden 16
  const SafetensorsFile f(std::string(AUTOROUND_FIXTURES_DIR) + "/gemma4_moe.safetensors");
  const Index e_count = 6, width = 8, h_size = 16;
  MoeWeights w;
  w.router = f.to_float("router.proj.weight");
  w.expert_scale = f.to_float("router.per_expert_scale").row(0).transpose();
  const RowMatrix gate_up = f.to_float("experts.gate_up_proj"), down = f.to_float("experts.down_proj");
  REQUIRE(gate_up.rows() == e_count * 2 * width);
  REQUIRE(down.rows() == e_count * h_size);
  for (Index e = 0; e < e_count; ++e)  // each expert's gate rows, then its up rows
    w.experts.push_back({gate_up.middleRows(e * 2 * width, width), gate_up.middleRows(e * 2 * width + width, width),
                         down.middleRows(e * h_size, h_size), {}, {}, {}});
  MoeSpec spec{2, true};
  spec.activation = ExpertActivation::GeGlu;
  const RowMatrix h = f.to_float("h"), x = f.to_float("x"), expected = f.to_float("out"), expected_weights = f.to_float("top_k_weights");
  const RowMatrix router_x = gemma4_router_input(h, f.to_float("router.scale").row(0).transpose(), 1e-6f);
  MoeCache cache;
  RowMatrix out;
  moe_forward(w, spec, x, out, &cache, &router_x);
  const auto index = f.view_as<std::int32_t>("top_k_index", Dtype::I32);
  for (Index t = 0; t < h.rows(); ++t)
    for (Index k = 0; k < 2; ++k) {
      CAPTURE(t);
      CAPTURE(k);
      CHECK(cache.chosen[static_cast<std::size_t>(t)][static_cast<std::size_t>(k)] == index[static_cast<std::size_t>(t * 2 + k)]);
      CHECK(cache.weights[static_cast<std::size_t>(t)][static_cast<std::size_t>(k)] == doctest::Approx(expected_weights(t, k)).epsilon(1e-5));
    }
  CHECK((out - expected).cwiseAbs().maxCoeff() < 1e-5f * std::max(1.0f, expected.cwiseAbs().maxCoeff()));
  // what each part is worth: without the per-expert scale, or with SwiGLU, or routed on x, it differs
  MoeWeights unscaled = w;
  unscaled.expert_scale.resize(0);
  RowMatrix other;
  moe_forward(unscaled, spec, x, other, nullptr, &router_x);
  CHECK((other - expected).cwiseAbs().maxCoeff() > 1e-2f);
  MoeSpec swiglu = spec;
  swiglu.activation = ExpertActivation::SwiGlu;
  moe_forward(w, swiglu, x, other, nullptr, &router_x);
  CHECK((other - expected).cwiseAbs().maxCoeff() > 1e-2f);
  moe_forward(w, spec, x, other);
  CHECK((other - expected).cwiseAbs().maxCoeff() > 1e-2f);
}

TEST_CASE("MoE backward with its own router input, per-expert scales and GeGLU experts matches finite differences") {
  std::mt19937 rng(11);
  MoeWeights w = random_moe(rng);
  w.expert_scale = Eigen::VectorXf(experts);
  for (Index e = 0; e < experts; ++e) w.expert_scale(e) = 0.6f + 0.2f * static_cast<float>(e);
  const RowMatrix x = random_matrix(tokens, hidden, 1.0f, rng), r = random_matrix(tokens, hidden, 1.0f, rng);
  const RowMatrix c_loss = random_matrix(tokens, hidden, 1.0f, rng);  // L = Σ C ⊙ out
  for (bool normalize : {true, false}) {
    CAPTURE(normalize);
    MoeSpec spec{2, normalize};
    spec.activation = ExpertActivation::GeGlu;
    auto loss = [&](const MoeWeights& weights, const RowMatrix& input, const RowMatrix& router_input) {
      RowMatrix out;
      moe_forward(weights, spec, input, out, nullptr, &router_input);
      return static_cast<double>(out.cwiseProduct(c_loss).sum());
    };
    MoeCache cache;
    RowMatrix out, d_x, d_r;
    moe_forward(w, spec, x, out, &cache, &r);
    REQUIRE(smallest_gap(cache, 2) > 1e-3);  // steps below keep every token's choice
    std::vector<std::array<RowMatrix, 3>> grads(experts);
    for (auto& g : grads) g = {RowMatrix::Zero(inter, hidden), RowMatrix::Zero(inter, hidden), RowMatrix::Zero(hidden, inter)};
    moe_backward(w, spec, cache, x, c_loss, grads, &d_x, &d_r);
    for (Index e = 0; e < experts; ++e)
      for (int p = 0; p < 3; ++p) {
        CAPTURE(e);
        CAPTURE(p);
        if (cache.tokens[static_cast<std::size_t>(e)] == 0) continue;
        const RowMatrix& g = grads[static_cast<std::size_t>(e)][static_cast<std::size_t>(p)];
        auto member = [&](MoeWeights& m) -> RowMatrix& {
          ExpertWeights& ex = m.experts[static_cast<std::size_t>(e)];
          return p == 0 ? ex.gate : p == 1 ? ex.up : ex.down;
        };
        const RowMatrix direction = random_matrix(g.rows(), g.cols(), 1.0f, rng);
        const double fd = directional_difference(w, direction, member, [&](const MoeWeights& m) { return loss(m, x, r); });
        CHECK(static_cast<double>(g.cwiseProduct(direction).sum()) == doctest::Approx(fd).epsilon(2e-3));
      }
    // the experts' input (the experts alone) and the router's input (the routing weights alone)
    check_input_gradient(x, d_x, [&](const RowMatrix& input) { return loss(w, input, r); });
    check_input_gradient(r, d_r, [&](const RowMatrix& input) { return loss(w, x, input); });
    // the router's gradient never lands on the wrong input: d_x alone, or d_router_x without router_x, is refused
    CHECK_THROWS_WITH(moe_backward(w, spec, cache, x, c_loss, grads, &d_x), doctest::Contains("d_x needs d_router_x"));
    MoeCache plain;
    moe_forward(w, spec, x, out, &plain);
    CHECK_THROWS_WITH(moe_backward(w, spec, plain, x, c_loss, grads, &d_x, &d_r), doctest::Contains("the forward's router read x"));
    CHECK_NOTHROW(moe_backward(w, spec, cache, x, c_loss, grads));  // weight gradients only
  }
}

}  // namespace test_moe_mlp
