// Backward of a LLaMA block (RMSNorm, RoPE, causal GQA softmax attention, SwiGLU, residuals;
// with Qwen2's q/k/v biases and Qwen3's q/k norms in the half-split case; Gemma 3's block: sandwich
// norms, GeGLU, q/k norms, a sliding window with its own RoPE base, scaled linear RoPE, another
// attention scale; Gemma 2's: soft-capped attention scores in a sliding window; Phi-3's partial
// rotary embedding with LongRoPE's attention factor; GPT-OSS's attention sinks, o_proj bias and
// YaRN; Gemma 4's full layer: its own head size and KV heads, values from k_proj, v_norm,
// proportional RoPE, layer_scalar, and its sliding layer) against central
// finite differences of its forward, on a small random block; with quantized linear inputs,
// against torch's autograd through auto-round's activation quantizers.
#include <doctest/doctest.h>

#include <autoround/format/safetensors.hpp>
#include <autoround/model/linear_slots.hpp>
#include <autoround/model/llama_block.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <string>

namespace test_block_gradients {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
LlamaBlock random_block(const LlamaConfig& c, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  auto matrix = [&](Index r, Index k, float scale) {
    RowMatrix m(r, k);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = scale * normal(rng);
    return m;
  };
  LlamaBlock b;
  const Index q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  b[Linear::Query] = matrix(q, c.hidden, 0.4f);
  b[Linear::Key] = matrix(kv, c.hidden, 0.4f);
  b[Linear::Value] = matrix(kv, c.hidden, 0.4f);
  b[Linear::Output] = matrix(c.hidden, q, 0.3f);
  b[Linear::Gate] = matrix(c.intermediate, c.hidden, 0.3f);
  b[Linear::Up] = matrix(c.intermediate, c.hidden, 0.3f);
  b[Linear::Down] = matrix(c.hidden, c.intermediate, 0.3f);
  b.attn_norm = Eigen::VectorXf::Ones(c.hidden) + 0.2f * matrix(c.hidden, 1, 1.0f).col(0);
  b.ffn_norm = Eigen::VectorXf::Ones(c.hidden) + 0.2f * matrix(c.hidden, 1, 1.0f).col(0);
  return b;
}
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("block backward matches finite differences", Style, block_gradient_test) {
  LlamaConfig c;
  c.hidden = 16, c.heads = 4, c.kv_heads = 2, c.head_dim = 4, c.intermediate = 24, c.rope_theta = 100.0f;
  c.rope_style = Style::value;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  LlamaBlock block = random_block(c, rng);
  if (Style::gemma == 2 || Style::gemma == 3) {  // Gemma's block; windows of 3 over 6 tokens
    c.activation = MlpActivation::GeluTanh;
    c.attention_scale = 0.3f;
    c.sliding_window = 3;
    block.sliding = true;
    block.post_attn_norm = Eigen::VectorXf::Ones(c.hidden) + 0.3f * random_block(c, rng)[Linear::Down].col(0);
    block.post_ffn_norm = Eigen::VectorXf::Ones(c.hidden) + 0.3f * random_block(c, rng)[Linear::Output].col(0);
    if (Style::gemma == 2) c.attention_softcap = 1.5f;  // scores reach ±3: tanh bends
    if (Style::gemma == 3) {
      c.sliding_rope_theta = 37.0f;
      c.rope_divisors.assign(2, 3.0f);  // the full layers' (unused by a sliding layer: checked below)
    }
  }
  if (Style::gemma == 4) {  // Phi-3's RoPE: partial rotary, LongRoPE's attention factor and divisors, a window on every layer
    c.rotary_dims = 2;
    c.rope_attention_factor = 1.3f;
    c.rope_divisors = {1.7f};
    c.sliding_window = 4;
    block.sliding = true;
  }
  if (Style::gemma == 5) {  // GPT-OSS's attention: sinks, q/k/v/o biases, YaRN's divisors and factor, a window on this layer
    block.sinks = 1.5f * random_block(c, rng)[Linear::Query].col(0).head(c.heads);
    block.output_bias = 0.3f * random_block(c, rng)[Linear::Output].col(0);
    for (std::size_t j = 0; j < 3; ++j) block.qkv_bias[j] = 0.3f * random_block(c, rng)[all_linears[j]].col(0);
    c.rope_divisors = rope_yarn_divisors(100.0, c.head_dim, 8.0, 32.0, 1.0, 64.0, false);
    c.rope_attention_factor = rope_yarn_attention_factor(8.0);
    c.sliding_window = 4;
    block.sliding = true;
  }
  if (Style::gemma == 6 || Style::gemma == 7) {  // Gemma 4: v_norm, plain-w q/k norms, scale 1, layer_scalar, sandwich norms
    c.activation = MlpActivation::GeluTanh;
    c.attention_scale = 1.0f;
    c.value_norm = true;
    c.sliding_window = 3;
    c.sliding_rope_theta = 37.0f;
    block.post_attn_norm = Eigen::VectorXf::Ones(c.hidden) + 0.3f * random_block(c, rng)[Linear::Down].col(0);
    block.post_ffn_norm = Eigen::VectorXf::Ones(c.hidden) + 0.3f * random_block(c, rng)[Linear::Output].col(0);
    block.layer_scalar = 0.7f;
    block.sliding = Style::gemma == 7;
    if (Style::gemma == 6) {  // a full layer: its own head size (8) and KV heads (1), values from k_proj, proportional RoPE
      c.full_head_dim = 8, c.full_kv_heads = 1, c.full_values_from_keys = true;
      c.rope_divisors = {2.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity(),
                         std::numeric_limits<float>::infinity()};
      const LlamaBlock wide = random_block(layer_config(c, false), rng);
      block[Linear::Query] = wide[Linear::Query];
      block[Linear::Key] = wide[Linear::Key];
      block[Linear::Value] = RowMatrix();
      block[Linear::Output] = wide[Linear::Output];
      block.values_from_keys = true;
    }
    const Index d = layer_config(c, block.sliding).head_dim;
    block.q_norm = Eigen::VectorXf::Ones(d) + 0.3f * random_block(c, rng)[Linear::Query].col(0).head(d);
    block.k_norm = Eigen::VectorXf::Ones(d) + 0.3f * random_block(c, rng)[Linear::Key].col(0).head(d);
  }
  if (c.rope_style == RopeStyle::HalfSplit && Style::gemma != 2 && Style::gemma != 4 && Style::gemma != 5 && Style::gemma != 6 &&
      Style::gemma != 7) {  // Qwen2's q/k/v biases and Qwen3's q/k norms (half-split RoPE)
    for (std::size_t j = 0; j < 3; ++j) block.qkv_bias[j] = 0.3f * random_block(c, rng)[all_linears[j]].col(0);
    block.q_norm = Eigen::VectorXf::Ones(c.head_dim) + 0.3f * random_block(c, rng)[Linear::Query].col(0).head(c.head_dim);
    block.k_norm = Eigen::VectorXf::Ones(c.head_dim) + 0.3f * random_block(c, rng)[Linear::Key].col(0).head(c.head_dim);
  }
  const Index tokens = 6;
  RowMatrix x(tokens, c.hidden), weights_of_loss(tokens, c.hidden);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng), weights_of_loss.data()[i] = normal(rng);

  // L = sum(C ⊙ block(x)): dL/d out = C
  auto loss = [&](const LlamaBlock& b) {
    RowMatrix h = x;
    block_forward(b, c, h);
    return static_cast<double>(h.cwiseProduct(weights_of_loss).sum());
  };
  RowMatrix h = x;
  BlockCache cache;
  block_forward(block, c, h, &cache);
  std::array<RowMatrix, 7> grads;
  for (Linear l : all_linears) grads[static_cast<std::size_t>(l)] = RowMatrix::Zero(block[l].rows(), block[l].cols());
  block_backward(BlockWeights::of(block), c, cache, weights_of_loss, grads);

  // Float32 forward: finite differences carry ~3e-4 of rounding noise here. Per entry we allow
  // that; along a random direction through a whole matrix the derivative is large and the
  // check is tight (1e-3 relative).
  const float step = 1e-2f;
  CHECK(grads[static_cast<std::size_t>(Linear::Value)].size() == block[Linear::Value].size());  // none without v_proj
  for (Linear l : all_linears) {
    if (block[l].size() == 0) continue;  // Gemma 4's full layer: no v_proj
    const RowMatrix& g = grads[static_cast<std::size_t>(l)];
    const std::string name = gguf_name(l);
    CAPTURE(name);
    for (Index probe = 0; probe < 6; ++probe) {
      const Index r = (probe * 7 + 3) % block[l].rows(), k = (probe * 5 + 1) % block[l].cols();
      LlamaBlock plus = block, minus = block;
      plus[l](r, k) += step;
      minus[l](r, k) -= step;
      const double fd = (loss(plus) - loss(minus)) / (2.0 * step);
      CAPTURE(r);
      CAPTURE(k);
      CHECK(std::abs(g(r, k) - fd) < 6e-4 + 1e-2 * std::abs(fd));
    }
    RowMatrix direction(block[l].rows(), block[l].cols());
    for (Index i = 0; i < direction.size(); ++i) direction.data()[i] = normal(rng);
    // the whole matrix moves: central differences at h and 2h, Richardson-extrapolated so
    // that the h^2 curvature term cancels. h = 8e-3: at 1e-3 the float32 forward's rounding
    // noise over 2h reached 1.3e-3 of the derivative (attn_output, half-split); at 8e-3 every
    // matrix's estimate is within 2e-4 of the analytic one in both RoPE pairings.
    const auto central = [&](float small) {
      LlamaBlock plus = block, minus = block;
      plus[l] += small * direction;
      minus[l] -= small * direction;
      return (loss(plus) - loss(minus)) / (2.0 * small);
    };
    // GPT-OSS's case bends harder still along attn_q (YaRN's attention factor sharpens the scores:
    // central differences at 1e-3 … 1.6e-2 were -1.9913, -2.0065, -2.0800, -2.3556, -3.4881 against
    // the analytic -1.9850): there the extrapolation starts at 1e-3 (-1.9862, 6e-4 from it).
    // Gemma 4's v_norm bends attn_v as hard (its sliding case: 30.35, 32.41, 32.96, 33.10, 33.14 at
    // 1.6e-2 … 1e-3 against the analytic 33.151): there too from 1e-3.
    const float h0 = Style::gemma == 5 || Style::gemma >= 6 ? 1e-3f : 8e-3f;
    const double fd = (4.0 * central(h0) - central(2 * h0)) / 3.0;
    const double analytic = static_cast<double>(g.cwiseProduct(direction).sum());
    // Phi-3's case bends hard along attn_q's direction (central differences at 1e-3 … 1.6e-2:
    // -0.1984, -0.1974, -0.1934, -0.1766, -0.1088 on a 2-core AMD EPYC), so its extrapolation
    // keeps ~0.7% of curvature and float32 noise, depending on the CPU's summation order: 1e-2 there.
    CHECK(analytic == doctest::Approx(fd).epsilon(Style::gemma == 4 ? 1e-2 : Style::gemma == 5 ? 2e-3 : 1e-3));
  }
}
struct Adjacent {
  static constexpr RopeStyle value = RopeStyle::AdjacentPairs;
  static constexpr int gemma = 0;
};
struct HalfSplit {
  static constexpr RopeStyle value = RopeStyle::HalfSplit;
  static constexpr int gemma = 0;
};
struct Gemma3 {
  static constexpr RopeStyle value = RopeStyle::HalfSplit;
  static constexpr int gemma = 3;
};
struct Gemma2 {
  static constexpr RopeStyle value = RopeStyle::HalfSplit;
  static constexpr int gemma = 2;
};
struct Phi3 {
  static constexpr RopeStyle value = RopeStyle::HalfSplit;
  static constexpr int gemma = 4;  // not Gemma: Phi-3's RoPE settings
};
struct GptOss {
  static constexpr RopeStyle value = RopeStyle::HalfSplit;
  static constexpr int gemma = 5;  // not Gemma: GPT-OSS's attention
};
struct Gemma4Full {
  static constexpr RopeStyle value = RopeStyle::HalfSplit;
  static constexpr int gemma = 6;  // Gemma 4's full-attention layer
};
struct Gemma4Sliding {
  static constexpr RopeStyle value = RopeStyle::HalfSplit;
  static constexpr int gemma = 7;  // Gemma 4's sliding layer
};
TEST_CASE_TEMPLATE_INVOKE(block_gradient_test, Adjacent, HalfSplit, Gemma3, Gemma2, Phi3, GptOss, Gemma4Full, Gemma4Sliding);

TEST_CASE("Gemma 4 E2B / E4B: a kv-shared layer with a per-layer branch, its backward matches finite differences (every slot)") {
  // Gemma 4's sliding layer as above, with no k_proj / v_proj (its donor's keys and values are
  // inputs), the per-layer branch gate / projection / post norm at its end, before layer_scalar.
  LlamaConfig c;
  c.hidden = 16, c.heads = 4, c.kv_heads = 2, c.head_dim = 4, c.intermediate = 24, c.rope_theta = 100.0f;
  c.activation = MlpActivation::GeluTanh, c.attention_scale = 1.0f, c.value_norm = true, c.sliding_window = 3;
  c.per_layer_input = 4;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  LlamaBlock block = random_block(c, rng);
  block.sliding = true;
  block.kv_shared = true;
  block[Linear::Key] = RowMatrix();
  block[Linear::Value] = RowMatrix();
  block.post_attn_norm = Eigen::VectorXf::Ones(c.hidden) + 0.3f * random_block(c, rng)[Linear::Down].col(0);
  block.post_ffn_norm = Eigen::VectorXf::Ones(c.hidden) + 0.3f * random_block(c, rng)[Linear::Output].col(0);
  block.q_norm = Eigen::VectorXf::Ones(c.head_dim) + 0.3f * random_block(c, rng)[Linear::Query].col(0).head(c.head_dim);
  block.layer_scalar = 0.7f;
  const auto random_matrix = [&](Index rows, Index cols, float scale) {
    RowMatrix m(rows, cols);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = scale * normal(rng);
    return m;
  };
  PerLayerBranch branch;
  branch.gate = random_matrix(c.per_layer_input, c.hidden, 0.5f);
  branch.projection = random_matrix(c.hidden, c.per_layer_input, 0.5f);
  branch.post_norm = Eigen::VectorXf::Ones(c.hidden) + 0.3f * random_matrix(c.hidden, 1, 1.0f).col(0);
  block.per_layer = std::move(branch);
  const Index tokens = 6;
  BlockSideInputs side;
  side.per_layer = random_matrix(tokens, c.per_layer_input, 1.0f);
  side.keys = random_matrix(tokens, c.kv_heads * c.head_dim, 1.0f);
  side.values = random_matrix(tokens, c.kv_heads * c.head_dim, 1.0f);
  const RowMatrix x = random_matrix(tokens, c.hidden, 1.0f), weights_of_loss = random_matrix(tokens, c.hidden, 1.0f);
  const std::vector<LinearSlot> slots = linear_slots(block);
  REQUIRE(slots.size() == 7);  // q, o, gate, up, down, and the branch's gate and projection
  CHECK(slots[1] == LinearSlot{Linear::Output, LinearSlot::own});
  CHECK(slots[5] == LinearSlot{Linear::Gate, LinearSlot::per_layer});
  CHECK(slots[6] == LinearSlot{Linear::Down, LinearSlot::per_layer});
  CHECK(own_slot_index(Linear::Output, false, true) == std::size_t{1});
  CHECK_FALSE(own_slot_index(Linear::Key, false, true).has_value());

  auto loss = [&](const LlamaBlock& b) {
    RowMatrix h = x;
    BlockWeights w = BlockWeights::of(b);
    w.side = &side;
    block_forward(w, c, h);
    return static_cast<double>(h.cwiseProduct(weights_of_loss).sum());
  };
  RowMatrix h = x;
  BlockCache cache;
  BlockWeights w = BlockWeights::of(block);
  w.side = &side;
  block_forward(w, c, h, &cache);
  std::array<RowMatrix, 7> grads;
  for (Linear l : all_linears) grads[static_cast<std::size_t>(l)] = RowMatrix::Zero(block[l].rows(), block[l].cols());
  std::array<RowMatrix, 2> per_layer_grads{RowMatrix::Zero(4, 16), RowMatrix::Zero(16, 4)};
  block_backward(w, c, cache, weights_of_loss, grads, nullptr, nullptr, &per_layer_grads);
  // without the side inputs the forward is refused by name
  {
    RowMatrix bare = x;
    CHECK_THROWS_WITH_AS(block_forward(block, c, bare), doctest::Contains("donor's keys and values"), Error);
  }
  for (const LinearSlot& s : slots) {
    const RowMatrix& g = s.expert == LinearSlot::per_layer ? per_layer_grads[s.role == Linear::Gate ? 0 : 1] : grads[static_cast<std::size_t>(s.role)];
    const std::string name = hf_name(s);
    CAPTURE(name);
    REQUIRE(g.rows() == slot_weight(block, s).rows());
    const RowMatrix direction = random_matrix(g.rows(), g.cols(), 1.0f);
    const auto central = [&](float small) {
      LlamaBlock plus = block, minus = block;
      slot_weight(plus, s) += small * direction;
      slot_weight(minus, s) -= small * direction;
      return (loss(plus) - loss(minus)) / (2.0 * small);
    };
    const double fd = (4.0 * central(1e-3f) - central(2e-3f)) / 3.0;
    const double analytic = static_cast<double>(g.cwiseProduct(direction).sum());
    CHECK(analytic == doctest::Approx(fd).epsilon(1e-3));
  }
  // the branch is computed: without the per-layer inputs' share (zero ple) the output moves
  const double with = loss(block);
  side.per_layer.setZero();
  CHECK(std::abs(loss(block) - with) > 1e-2);
}

TEST_CASE("attention sinks: each row's probabilities sum to 1 − the sink's share, as softmax over the scores and the sink") {
  LlamaConfig c;
  c.hidden = 16, c.heads = 4, c.kv_heads = 2, c.head_dim = 4, c.intermediate = 24, c.rope_theta = 100.0f;
  std::mt19937 rng(17);
  std::normal_distribution<float> normal;
  LlamaBlock block = random_block(c, rng);
  block.sinks = Eigen::Vector4f(-1.0f, 0.5f, 2.0f, 30.0f);  // the last: nearly all the mass goes to the sink
  RowMatrix x(5, c.hidden);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
  RowMatrix h = x;
  BlockCache cache;
  block_forward(block, c, h, &cache);
  const Index d = c.head_dim;
  for (Index head = 0; head < c.heads; ++head) {
    const RowMatrix& p = cache.probabilities[static_cast<std::size_t>(head)];
    const auto q = cache.q.middleCols(head * d, d), k = cache.k.middleCols(head / 2 * d, d);
    for (Index t = 0; t < 5; ++t) {  // by hand, in double: exp(s_j) / (Σ_j exp(s_j) + exp(sink))
      double denominator = std::exp(static_cast<double>(block.sinks(head)));
      for (Index j = 0; j <= t; ++j) denominator += std::exp(static_cast<double>(q.row(t).dot(k.row(j))) / 2.0);
      for (Index j = 0; j <= t; ++j)
        CHECK(p(t, j) == doctest::Approx(std::exp(static_cast<double>(q.row(t).dot(k.row(j))) / 2.0) / denominator).epsilon(1e-5));
      CHECK(p.row(t).sum() < 1.0f);
    }
  }
  CHECK(cache.probabilities[3].maxCoeff() < 1e-9f);  // sink 30: the head attends to nothing
}

TEST_CASE("Gemma's sliding window: a query sees itself and window − 1 tokens before it; a sliding layer's own RoPE") {
  LlamaConfig c;
  c.hidden = 16, c.heads = 4, c.kv_heads = 2, c.head_dim = 4, c.intermediate = 24, c.rope_theta = 100.0f;
  c.sliding_window = 3;
  c.sliding_rope_theta = 37.0f;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  LlamaBlock block = random_block(c, rng);
  block.sliding = true;
  RowMatrix x(7, c.hidden);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
  RowMatrix h = x;
  BlockCache cache;
  block_forward(block, c, h, &cache);
  for (const RowMatrix& p : cache.probabilities)
    for (Index t = 0; t < p.rows(); ++t)
      for (Index j = 0; j < p.cols(); ++j) {
        CAPTURE(t);
        CAPTURE(j);
        if (j > t || t - j >= 3) CHECK(p(t, j) == 0.0f);
        else CHECK(p(t, j) > 0.0f);
      }
  // the last token's output depends on tokens 4..6 only: change token 0..3 and it stays
  RowMatrix y = x;
  y.topRows(4).setRandom();
  block_forward(block, c, y);
  CHECK((y.row(6) - h.row(6)).cwiseAbs().maxCoeff() == 0.0f);
  // a sliding layer rotates with sliding_rope_theta: the full layer's base gives other outputs,
  // and so does a full (non-sliding) block
  LlamaConfig other = c;
  other.sliding_rope_theta = 0;
  RowMatrix z = x;
  block_forward(block, other, z);
  CHECK((z - h).cwiseAbs().maxCoeff() > 1e-4f);
}

TEST_CASE("a batch of sequences: each sequence's forward, and the sum of each sequence's gradients") {
  // The tuning step stacks its minibatch (block_forward with seqlen): positions restart in each
  // sequence, attention stays inside it, and the weight gradients add up over the sequences.
  for (const bool qwen : {false, true}) {
    CAPTURE(qwen);
    LlamaConfig c;
    c.hidden = 16, c.heads = 4, c.kv_heads = 2, c.head_dim = 4, c.intermediate = 24, c.rope_theta = 100.0f;
    std::mt19937 rng(11);
    std::normal_distribution<float> normal;
    LlamaBlock block = random_block(c, rng);
    if (qwen) {
      for (std::size_t j = 0; j < 3; ++j) block.qkv_bias[j] = 0.3f * random_block(c, rng)[all_linears[j]].col(0);
      block.q_norm = Eigen::VectorXf::Ones(c.head_dim) + 0.3f * random_block(c, rng)[Linear::Query].col(0).head(c.head_dim);
      block.k_norm = Eigen::VectorXf::Ones(c.head_dim) + 0.3f * random_block(c, rng)[Linear::Key].col(0).head(c.head_dim);
    }
    const Index seqlen = 7, sequences = 3;
    RowMatrix x(seqlen * sequences, c.hidden), d_out(seqlen * sequences, c.hidden);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng), d_out.data()[i] = normal(rng);
    const BlockWeights w = BlockWeights::of(block);
    auto zeros = [&] {
      std::array<RowMatrix, 7> g;
      for (Linear l : all_linears) g[static_cast<std::size_t>(l)] = RowMatrix::Zero(block[l].rows(), block[l].cols());
      return g;
    };
    RowMatrix batched = x;
    BlockCache cache;
    block_forward(w, c, batched, &cache, seqlen);
    std::array<RowMatrix, 7> batch_grads = zeros(), sum_grads = zeros();
    block_backward(w, c, cache, d_out, batch_grads);
    for (Index s = 0; s < sequences; ++s) {
      RowMatrix one = x.middleRows(s * seqlen, seqlen);
      BlockCache own;
      block_forward(w, c, one, &own);
      CHECK((one - batched.middleRows(s * seqlen, seqlen)).cwiseAbs().maxCoeff() <= 1e-5f * one.cwiseAbs().maxCoeff());
      block_backward(w, c, own, RowMatrix(d_out.middleRows(s * seqlen, seqlen)), sum_grads);
    }
    for (Linear l : all_linears) {
      const std::string name = gguf_name(l);
      CAPTURE(name);
      const RowMatrix& a = batch_grads[static_cast<std::size_t>(l)];
      const RowMatrix& b = sum_grads[static_cast<std::size_t>(l)];
      CHECK((a - b).cwiseAbs().maxCoeff() <= 1e-5f * b.cwiseAbs().maxCoeff());
    }
    // the span form stacks as many sequences as it likes and gives each its own output
    std::vector<RowMatrix> each;
    for (Index s = 0; s < sequences; ++s) each.emplace_back(x.middleRows(s * seqlen, seqlen));
    block_forward(w, c, std::span<RowMatrix>(each), 2);
    for (Index s = 0; s < sequences; ++s)
      CHECK((each[static_cast<std::size_t>(s)] - batched.middleRows(s * seqlen, seqlen)).cwiseAbs().maxCoeff() <=
            1e-5f * batched.cwiseAbs().maxCoeff());
  }
}

namespace {
// A mixture-of-experts block's backward against central finite differences: in the MLP's place
// (Qwen3-MoE's), or beside the dense MLP (Gemma 4's 26B-A4B: GeGLU everywhere, sandwich norms, the
// experts' and both branches' own norms, the router on rms(h) × its scale, per-expert scales).
void check_moe_block_gradients(bool beside) {
  LlamaConfig c;
  c.hidden = 16, c.heads = 4, c.kv_heads = 2, c.head_dim = 4, c.intermediate = 24, c.rope_theta = 100.0f;
  c.rope_style = RopeStyle::HalfSplit;
  std::mt19937 rng(13);
  std::normal_distribution<float> normal;
  LlamaBlock block = random_block(c, rng);
  const auto matrix = [&](Index r, Index k, float scale) {
    RowMatrix m(r, k);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = scale * normal(rng);
    return m;
  };
  const auto norm = [&]() -> Eigen::VectorXf { return Eigen::VectorXf::Ones(c.hidden) + 0.3f * matrix(c.hidden, 1, 1.0f).col(0); };
  MoeFeedForward moe;
  moe.spec = {2, true};
  moe.weights.router = matrix(4, c.hidden, 0.8f);
  for (int e = 0; e < 4; ++e) moe.weights.experts.push_back({matrix(12, c.hidden, 0.3f), matrix(12, c.hidden, 0.3f), matrix(c.hidden, 12, 0.3f), {}, {}, {}});
  if (beside) {
    c.activation = MlpActivation::GeluTanh;
    moe.spec.activation = ExpertActivation::GeGlu;
    moe.weights.expert_scale = Eigen::Vector4f(0.7f, 1.3f, 0.9f, 1.6f);
    moe.weights.router *= 3.0f;  // (the router's input is normed to about 1/√hidden per entry)
    moe.beside_mlp = ExpertsBesideMlp{norm(), norm(), norm(), norm()};
    block.post_attn_norm = norm();
    block.post_ffn_norm = norm();
  }
  block.moe = moe;
  if (!beside)
    for (Linear l : {Linear::Gate, Linear::Up, Linear::Down}) block[l] = RowMatrix();
  REQUIRE(linear_slots(block).size() == (beside ? 7u : 4u) + 12u);
  REQUIRE(first_expert_slot(block) == (beside ? 7u : 4u));
  const Index tokens = 6;
  const RowMatrix x = matrix(tokens, c.hidden, 1.0f), weights_of_loss = matrix(tokens, c.hidden, 1.0f);
  RowMatrix h = x;
  BlockCache cache;
  block_forward(block, c, h, &cache);
  RowMatrix plain = x;
  block_forward(block, c, plain);  // without a cache: the same output
  CHECK(plain == h);
  const auto loss = [&](const LlamaBlock& b) {
    RowMatrix out = x;
    BlockCache seen;
    block_forward(b, c, out, &seen);
    CHECK(seen.moe.chosen == cache.moe.chosen);  // a step that changed the routing would not be a derivative
    return static_cast<double>(out.cwiseProduct(weights_of_loss).sum());
  };
  std::array<RowMatrix, 7> grads;
  for (Linear l : all_linears)
    if (block[l].size() > 0) grads[static_cast<std::size_t>(l)] = RowMatrix::Zero(block[l].rows(), block[l].cols());
  std::vector<std::array<RowMatrix, 3>> expert_grads(4);
  for (auto& g : expert_grads) g = {RowMatrix::Zero(12, c.hidden), RowMatrix::Zero(12, c.hidden), RowMatrix::Zero(c.hidden, 12)};
  block_backward(BlockWeights::of(block), c, cache, weights_of_loss, grads, expert_grads);
  const auto check_direction = [&](const RowMatrix& g, auto&& member) {
    const RowMatrix direction = matrix(g.rows(), g.cols(), 1.0f);
    const auto central = [&](float small) {
      LlamaBlock plus = block, minus = block;
      member(plus) += small * direction;
      member(minus) -= small * direction;
      return (loss(plus) - loss(minus)) / (2.0 * small);
    };
    const double fd = (4.0 * central(4e-3f) - central(8e-3f)) / 3.0;
    CHECK(static_cast<double>(g.cwiseProduct(direction).sum()) == doctest::Approx(fd).epsilon(2e-3));
  };
  for (Linear l : all_linears) {
    if (block[l].size() == 0) continue;
    CAPTURE(std::string(gguf_name(l)));
    check_direction(grads[static_cast<std::size_t>(l)], [l](LlamaBlock& b) -> RowMatrix& { return b[l]; });
  }
  for (std::size_t e = 0; e < 4; ++e)
    for (std::size_t p = 0; p < 3; ++p) {
      CAPTURE(e);
      CAPTURE(p);
      if (cache.moe.tokens[e] == 0) continue;
      check_direction(expert_grads[e][p], [e, p](LlamaBlock& b) -> RowMatrix& {
        ExpertWeights& ex = b.moe->weights.experts[e];
        return p == 0 ? ex.gate : p == 1 ? ex.up : ex.down;
      });
    }
}
}  // namespace

TEST_CASE("a mixture-of-experts block's backward matches finite differences: attention weights and experts") {
  check_moe_block_gradients(false);
}

TEST_CASE("Gemma 4's experts beside the dense MLP: the block's backward matches finite differences (attention, MLP, experts)") {
  check_moe_block_gradients(true);
}

// With quantized linear inputs (MXFP4 / MXFP8 / NVFP4 / FP8_STATIC / FP8_BLOCK W4A4-W8A8 schemes) the block is
// piecewise constant in its inputs, so finite differences say nothing; the expectation is torch's
// autograd through auto-round 0.16.1's own activation quantizers on the same block
// (tests/fixtures/act_quant_block.safetensors, scripts/make_act_quant_block_fixture.py), and the
// same forward with a plain straight-through backward, which the block's backward must be far from.
namespace {
const char* const act_quant_names[7] = {"q", "k", "v", "o", "gate", "up", "down"};

/// tests/fixtures/act_quant_block.safetensors: its dense block, configuration, input x, output
/// gradient R and the calibration maxima of the four linear inputs.
struct ActQuantFixture {
  SafetensorsFile file{std::string(AUTOROUND_FIXTURES_DIR) + "/act_quant_block.safetensors"};
  LlamaConfig c;
  LlamaBlock block;
  RowMatrix x, R;
  std::array<float, 4> absmax{};
  ActQuantFixture() {
    c.hidden = 64, c.heads = 4, c.kv_heads = 2, c.head_dim = 16, c.intermediate = 96, c.rope_theta = 10000.0f, c.rms_eps = 1e-5f;
    c.rope_style = RopeStyle::HalfSplit;
    for (Linear l : all_linears) block[l] = file.to_float(act_quant_names[static_cast<std::size_t>(l)]);
    block.attn_norm = file.to_float("attn_norm").row(0).transpose();
    block.ffn_norm = file.to_float("ffn_norm").row(0).transpose();
    x = file.to_float("x"), R = file.to_float("R");
    const RowMatrix row = file.to_float("absmax");
    absmax = {row(0, 0), row(0, 1), row(0, 2), row(0, 3)};
  }
};
}  // namespace

TEST_CASE("block backward through quantized linear inputs equals autograd's through auto-round's quantizers") {
  ActQuantFixture f;
  auto& [file, c, block, x, R, absmax] = f;
  const std::pair<const char*, FloatFormat> schemes[] = {
      {"mxfp4", FloatFormat::MxFp4}, {"mxfp8", FloatFormat::MxFp8}, {"nvfp4", FloatFormat::NvFp4}, {"fp8_static", FloatFormat::Fp8},
      {"fp8_block", FloatFormat::Fp8Block}};
  for (const auto& [scheme, format] : schemes) {
    CAPTURE(std::string(scheme));
    block.act_quant = activation_quant_for(float_spec(format), absmax);
    REQUIRE(block.act_quant);
    RowMatrix h = x;
    BlockCache cache;
    block_forward(block, c, h, &cache, 12);
    const RowMatrix expected_out = file.to_float(std::string(scheme) + ".out");
    CHECK((h - expected_out).norm() <= 1e-4f * expected_out.norm());
    std::array<RowMatrix, 7> grads;
    for (Linear l : all_linears) grads[static_cast<std::size_t>(l)] = RowMatrix::Zero(block[l].rows(), block[l].cols());
    block_backward(BlockWeights::of(block), c, cache, R, grads);
    for (Linear l : all_linears) {
      const std::string name = act_quant_names[static_cast<std::size_t>(l)];
      CAPTURE(name);
      const RowMatrix exact = file.to_float(std::string(scheme) + ".exact." + name);
      const RowMatrix ste = file.to_float(std::string(scheme) + ".ste." + name);
      const float error = (grads[static_cast<std::size_t>(l)] - exact).norm() / exact.norm();
      const float ste_error = (ste - exact).norm() / exact.norm();
      MESSAGE(std::string(scheme) << " " << name << ": relative error " << error << " (straight-through: " << ste_error << ")");
      CHECK(error <= 1e-4f);
      if (l != Linear::Down) CHECK(ste_error >= 50.0f * error);  // down_proj's gradient does not pass through a quantizer
    }
  }
}

// The same fixture with the MLP as a mixture of experts: one routed expert, top 1 (its weight is
// exactly 1, the router's gradient 0), that is the dense MLP — or an ungated shared expert that is,
// beside a routed expert whose down projection is 0. The experts' linear inputs are quantized as
// the reference's wrapped expert Linears quantize them (gate and up read q(x), down q(product)), so
// the output and every gradient are autograd's through auto-round's quantizers on the dense block.
// NVFP4's static global scales are each expert's own (ActivationQuant::experts; the block's are
// made wrong here, so using them would move the output).
TEST_CASE("a mixture of experts' linear inputs are quantized as the dense MLP's: autograd's values through auto-round's quantizers") {
  const ActQuantFixture f;
  const auto& [file, c, dense, x, R, absmax] = f;
  const ExpertWeights mlp{dense[Linear::Gate], dense[Linear::Up], dense[Linear::Down], {}, {}, {}};
  for (const bool shared : {false, true}) {
    CAPTURE(shared);
    LlamaBlock block = dense;
    for (Linear l : {Linear::Gate, Linear::Up, Linear::Down}) block[l] = RowMatrix();
    MoeFeedForward ffn;
    ffn.spec.top_k = 1;
    ffn.weights.router = RowMatrix::Constant(1, c.hidden, 0.1f);
    ExpertWeights routed = mlp;
    if (shared) {
      routed.down.setZero();
      ffn.weights.shared = mlp;
    }
    ffn.weights.experts.push_back(routed);
    block.moe = ffn;
    const std::size_t owner = shared ? 1 : 0;  // where the dense MLP's gradients must appear
    for (const auto& [scheme, format] : {std::pair<const char*, FloatFormat>{"mxfp4", FloatFormat::MxFp4}, {"nvfp4", FloatFormat::NvFp4},
                                         {"fp8_block", FloatFormat::Fp8Block}}) {
      CAPTURE(std::string(scheme));
      block.act_quant = activation_quant_for(float_spec(format), absmax);
      if (format == FloatFormat::NvFp4) {  // each expert's own static scales are the ones used: the block's made wrong
        for (std::size_t e = 0; e <= owner; ++e) block.act_quant->set_expert_maxima(e, absmax[2], absmax[3]);
        for (LinearInput in : {LinearInput::Mlp, LinearInput::MlpProduct}) block.act_quant->global_scale[static_cast<std::size_t>(in)] *= 7.0f;
      }
      RowMatrix h = x;
      BlockCache cache;
      block_forward(block, c, h, &cache, 12);
      const RowMatrix expected_out = file.to_float(std::string(scheme) + ".out");
      CHECK((h - expected_out).norm() <= 1e-4f * expected_out.norm());
      std::array<RowMatrix, 7> grads;
      for (Linear l : all_linears) grads[static_cast<std::size_t>(l)] = RowMatrix::Zero(block[l].rows(), block[l].cols());
      std::vector<std::array<RowMatrix, 3>> expert_grads(shared ? 2 : 1);
      for (auto& g : expert_grads)
        g = {RowMatrix::Zero(mlp.gate.rows(), mlp.gate.cols()), RowMatrix::Zero(mlp.up.rows(), mlp.up.cols()),
             RowMatrix::Zero(mlp.down.rows(), mlp.down.cols())};
      block_backward(BlockWeights::of(block), c, cache, R, grads, expert_grads);
      for (Linear l : all_linears) {
        const std::string name = act_quant_names[static_cast<std::size_t>(l)];
        CAPTURE(name);
        const RowMatrix exact = file.to_float(std::string(scheme) + ".exact." + name);
        const bool expert = l == Linear::Gate || l == Linear::Up || l == Linear::Down;
        const RowMatrix& ours = expert ? expert_grads[owner][static_cast<std::size_t>(l) - static_cast<std::size_t>(Linear::Gate)]
                                       : grads[static_cast<std::size_t>(l)];
        CHECK((ours - exact).norm() <= 1e-4f * exact.norm());
      }
    }
  }
}
}  // namespace test_block_gradients
