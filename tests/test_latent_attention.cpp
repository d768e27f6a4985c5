// DeepSeek-V3's multi-head latent attention (model/latent_attention.hpp): its backward against
// central finite differences of its forward for all five attention layers (q_a, q_b, kv_a, kv_b, o)
// and the MLP's, with and without query compression; a batch of sequences against each sequence
// alone; and the block tuned on the CPU with q_a_proj as the extra slot, on the transformers-made
// deepseek_v3 fixture (tests/fixtures/families/deepseek_v3: its logits are checked against
// transformers' in test_family_logits).
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <tuple>

#include "support/block_error.hpp"

namespace test_latent_attention {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
RowMatrix normal_matrix(Index r, Index k, float scale, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  RowMatrix m(r, k);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = scale * normal(rng);
  return m;
}
Eigen::VectorXf near_one(Index n, std::mt19937& rng) { return Eigen::VectorXf::Ones(n) + 0.2f * normal_matrix(n, 1, 1.0f, rng).col(0); }

// hidden 16, 2 heads of [key 4 | roped 4], value 3, latent 6, query rank 8 (0: q_proj), YaRN
LlamaConfig mla_config(Index q_lora_rank) {
  LlamaConfig c;
  c.hidden = 16, c.heads = 2, c.kv_heads = 2, c.intermediate = 12, c.rope_theta = 100.0f;
  c.q_lora_rank = q_lora_rank, c.kv_lora_rank = 6, c.qk_nope_dim = 4, c.head_dim = 4, c.v_head_dim = 3;
  c.rope_style = RopeStyle::AdjacentPairs;
  c.rope_divisors = rope_yarn_divisors(100.0, c.head_dim, 4.0, 32.0, 1.0, 8.0, true);
  c.rope_attention_factor = 1.1f;
  c.attention_scale = 0.6f;
  c.latent_norm_eps = 1e-6f;
  c.model_type = "deepseek_v3";
  return c;
}

LlamaBlock mla_block(const LlamaConfig& c, std::mt19937& rng) {
  LlamaBlock b;
  for (Linear l : all_linears) {
    const auto [out, in] = linear_shape(c, l);
    b[l] = normal_matrix(out, in, 0.4f, rng);
  }
  b.attn_norm = near_one(c.hidden, rng);
  b.ffn_norm = near_one(c.hidden, rng);
  LatentAttention a;
  if (c.q_lora_rank > 0) {
    a.query_a = normal_matrix(c.q_lora_rank, c.hidden, 0.4f, rng);
    a.query_a_norm = near_one(c.q_lora_rank, rng);
  }
  a.kv_a_norm = near_one(c.kv_lora_rank, rng);
  b.mla = std::move(a);
  return b;
}
}  // namespace

TEST_CASE("latent attention: the backward of all five attention layers and the MLP's matches finite differences") {
  for (Index q_lora_rank : {Index{8}, Index{0}}) {
    CAPTURE(q_lora_rank);
    const LlamaConfig c = mla_config(q_lora_rank);
    std::mt19937 rng(11);
    const LlamaBlock block = mla_block(c, rng);
    const Index tokens = 6;
    const RowMatrix x = normal_matrix(tokens, c.hidden, 1.0f, rng), weights_of_loss = normal_matrix(tokens, c.hidden, 1.0f, rng);
    auto loss = [&](const LlamaBlock& b) {  // L = sum(C ⊙ block(x)): dL/d out = C
      RowMatrix h = x;
      block_forward(b, c, h);
      return static_cast<double>(h.cwiseProduct(weights_of_loss).sum());
    };
    RowMatrix h = x;
    BlockCache cache;
    block_forward(block, c, h, &cache);
    std::array<RowMatrix, 7> grads;
    for (Linear l : all_linears) grads[static_cast<std::size_t>(l)] = RowMatrix::Zero(block[l].rows(), block[l].cols());
    RowMatrix query_a_grad = RowMatrix::Zero(block.mla->query_a.rows(), block.mla->query_a.cols());
    block_backward(BlockWeights::of(block), c, cache, weights_of_loss, grads, nullptr, &query_a_grad);
    // q_b and kv_b read the latents, q_a the normed hidden state (what the clipping search weighs)
    CHECK(cache.of(Linear::Value).cols() == c.kv_lora_rank);
    CHECK(cache.of(Linear::Query).cols() == (q_lora_rank > 0 ? q_lora_rank : c.hidden));

    const auto slots = linear_slots(block);
    CHECK(slots.size() == (q_lora_rank > 0 ? 8u : 7u));
    for (const LinearSlot& s : slots) {
      const std::string name = hf_name(s, c.model_type);
      CAPTURE(name);
      const RowMatrix& g = s.expert == LinearSlot::latent ? query_a_grad : grads[static_cast<std::size_t>(s.role)];
      const RowMatrix& w = slot_weight(block, s);
      const float step = 1e-2f;
      for (Index probe = 0; probe < 6; ++probe) {
        const Index r = (probe * 7 + 3) % w.rows(), k = (probe * 5 + 1) % w.cols();
        LlamaBlock plus = block, minus = block;
        slot_weight(plus, s)(r, k) += step;
        slot_weight(minus, s)(r, k) -= step;
        const double fd = (loss(plus) - loss(minus)) / (2.0 * step);
        CAPTURE(r);
        CAPTURE(k);
        CHECK(std::abs(g(r, k) - fd) < 6e-4 + 1e-2 * std::abs(fd));
      }
      // along a random direction through the whole matrix, Richardson-extrapolated central differences
      const RowMatrix direction = normal_matrix(w.rows(), w.cols(), 1.0f, rng);
      const auto central = [&](float small) {
        LlamaBlock plus = block, minus = block;
        slot_weight(plus, s) += small * direction;
        slot_weight(minus, s) -= small * direction;
        return (loss(plus) - loss(minus)) / (2.0 * small);
      };
      const double fd = (4.0 * central(4e-3f) - central(8e-3f)) / 3.0;
      const double analytic = static_cast<double>(g.cwiseProduct(direction).sum());
      CHECK(analytic == doctest::Approx(fd).epsilon(2e-3));
    }
  }
}

TEST_CASE("latent attention: a batch of sequences computes each sequence's forward and the sum of their gradients") {
  const LlamaConfig c = mla_config(8);
  std::mt19937 rng(12);
  const LlamaBlock block = mla_block(c, rng);
  const Index length = 5;
  const RowMatrix a = normal_matrix(length, c.hidden, 1.0f, rng), b = normal_matrix(length, c.hidden, 1.0f, rng);
  const RowMatrix da = normal_matrix(length, c.hidden, 1.0f, rng), db = normal_matrix(length, c.hidden, 1.0f, rng);
  const BlockWeights w = BlockWeights::of(block);
  auto gradients = [&](const RowMatrix& x, const RowMatrix& d, Index seqlen) {
    RowMatrix h = x;
    BlockCache cache;
    block_forward(w, c, h, &cache, seqlen);
    std::array<RowMatrix, 7> g;
    for (Linear l : all_linears) g[static_cast<std::size_t>(l)] = RowMatrix::Zero(block[l].rows(), block[l].cols());
    RowMatrix qa = RowMatrix::Zero(c.q_lora_rank, c.hidden);
    block_backward(w, c, cache, d, g, nullptr, &qa);
    return std::pair{h, std::pair{g, qa}};
  };
  RowMatrix both(2 * length, c.hidden), d_both(2 * length, c.hidden);
  both << a, b;
  d_both << da, db;
  const auto [out, g] = gradients(both, d_both, length);
  const auto [out_a, ga] = gradients(a, da, 0);
  const auto [out_b, gb] = gradients(b, db, 0);
  CHECK((out.topRows(length) - out_a).cwiseAbs().maxCoeff() < 1e-5f);
  CHECK((out.bottomRows(length) - out_b).cwiseAbs().maxCoeff() < 1e-5f);
  for (Linear l : all_linears) {
    const auto i = static_cast<std::size_t>(l);
    CHECK((g.first[i] - ga.first[i] - gb.first[i]).cwiseAbs().maxCoeff() < 1e-4f * (1 + g.first[i].cwiseAbs().maxCoeff()));
  }
  CHECK((g.second - ga.second - gb.second).cwiseAbs().maxCoeff() < 1e-4f * (1 + g.second.cwiseAbs().maxCoeff()));
}

TEST_CASE("deepseek_v3: a latent-attention MoE block tunes all its layers, q_a_proj included, in one block loss") {
  using Run = BlockTuningRun<DynamicIntQuantizer, SignSGD<LinearDecay>, Cpu>;
  const LlamaModel model = load_llama(std::string(AUTOROUND_FIXTURES_DIR) + "/families/deepseek_v3");
  const LlamaConfig& c = model.config;
  const LlamaBlock& block = model.blocks[2];  // latent attention + 8 routed experts + the shared one
  // the block's inputs: the fixture's tokens through the embedding and the first two blocks, in windows of 12
  const std::vector<std::int32_t> tokens = read_token_file(std::string(AUTOROUND_FIXTURES_DIR) + "/families/deepseek_v3/text.tokens");
  std::vector<RowMatrix> inputs;
  for (std::size_t first = 0; first + 12 <= tokens.size(); first += 12) {
    RowMatrix h = embed(model, std::span<const std::int32_t>(tokens).subspan(first, 12));
    for (Index b = 0; b < 2; ++b) block_forward(model.blocks[static_cast<std::size_t>(b)], c, h);
    inputs.push_back(h);
  }
  REQUIRE(inputs.size() == 4);
  const auto slots = linear_slots(block);
  REQUIRE(slots.back() == LinearSlot{Linear::Query, LinearSlot::latent});
  const Run::LayerQuantizers quantizers(slots.size(), DynamicIntQuantizer(QuantSpec{3, 16, Asymmetric}));
  TuneOptions o;
  o.iters = 40;
  o.batch_size = 2;
  Run run(o, quantizers, SignSGD<LinearDecay>{}, Cpu{}, block, c, std::span<const RowMatrix>(inputs), "model.layers.2");
  while (run.running()) run.step();
  CHECK(run.stats().best_loss < 0.8 * run.stats().rtn_loss);
  const Run::LayerResults results = run.result();
  REQUIRE(results.size() == slots.size());
  // every attention layer moved off round-to-nearest (q_a_proj's gradient reaches it), and the
  // results put into the block compute the run's kept loss (a slot mapped to the wrong weight would not)
  for (std::size_t i : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{3}, slots.size() - 1}) {
    CAPTURE(hf_name(slots[i], c.model_type));
    const auto rtn = quantize_rtn(*quantizers[i], view(slot_weight(block, slots[i])));
    CHECK(results[i]->codes != rtn.codes);
  }
  LlamaBlock quantized = block;
  detail::dequantize_into(quantized, results);
  CHECK(quantized.mla->query_a == results.back()->dequantize());
  CHECK(test_models::block_error(block, c, results, inputs) == doctest::Approx(run.evaluate()).epsilon(1e-4));
}

namespace {
std::string fixture_dir() { return std::string(AUTOROUND_FIXTURES_DIR) + "/families/deepseek_v3"; }

// The fixture's GGUF rewritten: `drop` a key, `set` one, replace a tensor by `tensor` (name, dims, floats)
std::string rewritten_gguf(const std::string& name, const std::string& drop, std::optional<std::pair<std::string, std::uint32_t>> set = {},
                           std::optional<std::pair<std::string, std::vector<std::uint64_t>>> tensor = {}) {
  const GgufFile source(fixture_dir() + "/model.gguf");
  GgufWriter w;
  for (const std::string& key : source.metadata_order())
    if (key != drop) w.set(key, source.metadata().at(key));
  if (set) w.set_u32(set->first, set->second);
  for (const GgufTensor& t : source.tensors()) {
    if (tensor && t.name == tensor->first) {
      std::uint64_t n = 1;
      for (auto d : tensor->second) n *= d;
      const std::vector<float> zeros(n, 0.0f);
      w.add_tensor(t.name, tensor->second, ggml::Type::F32, ggml::quantize(ggml::Type::F32, std::span<const float>(zeros)));
      continue;
    }
    w.add_tensor(t.name, t.dims, t.type, std::vector<std::byte>(t.data.begin(), t.data.end()));
  }
  const std::string path = (std::filesystem::temp_directory_path() / ("autoround_test_mla_" + name + ".gguf")).string();
  w.write(path);
  return path;
}
}  // namespace

TEST_CASE("deepseek2 / deepseek_v3 files that do not hold a latent attention we read are refused, naming the key or tensor") {
  const auto refused = [](const std::string& path, const std::string& says) {
    CAPTURE(path);
    try {
      (void)load_llama(path);
      FAIL("loaded");
    } catch (const Error& e) {
      CAPTURE(e.what());
      CHECK(std::string(e.what()).find(says) != std::string::npos);
    }
    if (path.find(".gguf") != std::string::npos) std::filesystem::remove(path);
  };
  refused(rewritten_gguf("q_lora", "deepseek2.attention.q_lora_rank"), "without attention.q_lora_rank");
  refused(rewritten_gguf("rope", "", std::pair{std::string("deepseek2.rope.dimension_count"), 31u}), "inconsistent latent attention sizes");
  // llama.cpp reads a deepseek2 file without the gating key as DeepSeek-V2's softmax routing
  refused(rewritten_gguf("gating", "deepseek2.expert_gating_func"), "expert_gating_func 1 is not supported");
  refused(rewritten_gguf("k_b", "", {}, std::pair{std::string("blk.1.attn_k_b.weight"), std::vector<std::uint64_t>{8, 32, 3}}),
          "blk.1.attn_k_b.weight");
  // Hugging Face: no query compression (DeepSeek-V2-Lite's q_proj), an odd roped width, a kv_b of the wrong shape
  const auto hf_copy = [&](const std::string& name, auto&& edit) {
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("autoround_test_mla_" + name);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(fixture_dir() + "/model.safetensors", dir / "model.safetensors");
    std::ifstream in(fixture_dir() + "/config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    edit(config);
    std::ofstream(dir / "config.json") << config.dump();
    return dir;
  };
  for (const auto& [name, says, edit] : std::vector<std::tuple<std::string, std::string, std::function<void(nlohmann::json&)>>>{
           {"no_q_lora", "q_lora_rank null", [](nlohmann::json& j) { j["q_lora_rank"] = nullptr; }},
           {"odd_rope", "inconsistent latent attention sizes", [](nlohmann::json& j) { j["qk_rope_head_dim"] = 31; }},
           {"kv_b", "self_attn.kv_b_proj.weight", [](nlohmann::json& j) { j["v_head_dim"] = 12; }}}) {
    const std::filesystem::path dir = hf_copy(name, edit);
    refused(dir.string(), says);
    std::filesystem::remove_all(dir);
  }
}

}  // namespace test_latent_attention
