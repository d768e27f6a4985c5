// MoE layouts from config.json and a layer's experts from safetensors (model/hf_moe.hpp), on
// small checkpoints written here: per-expert names (Qwen2-MoE with its gated shared expert,
// Mixtral's w1/w3/w2, DeepSeek-V3's grouped router), transformers 5's fused layout, and the
// errors (missing or mis-shaped tensors, unknown families, dense layers).
#include <doctest/doctest.h>

#include <autoround/model/hf_moe.hpp>
#include <autoround/model/linear_slots.hpp>
#include <array>
#include <filesystem>
#include <random>
#include <string>

namespace test_hf_moe {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;
namespace fs = std::filesystem;

namespace {
constexpr Index hidden = 8, inter = 4, experts = 4;

RowMatrix random_matrix(Index r, Index c, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  RowMatrix m(r, c);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

struct Checkpoint {
  fs::path dir;
  SafetensorsWriter w;
  explicit Checkpoint(const std::string& name) : dir(fs::temp_directory_path() / name) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void add(const std::string& name, const RowMatrix& m, std::vector<std::int64_t> shape = {}) {
    if (shape.empty()) shape = {m.rows(), m.cols()};
    w.add<float>(name, Dtype::F32, shape, std::span<const float>(m.data(), static_cast<std::size_t>(m.size())));
  }
  SafetensorsCheckpoint write() {
    w.write(dir / "model.safetensors");
    return SafetensorsCheckpoint(dir);
  }
  ~Checkpoint() { fs::remove_all(dir); }
};

MoeWeights random_layer(std::mt19937& rng, Index shared_inter) {
  MoeWeights m;
  m.router = random_matrix(experts, hidden, rng);
  for (Index e = 0; e < experts; ++e)
    m.experts.push_back({random_matrix(inter, hidden, rng), random_matrix(inter, hidden, rng), random_matrix(hidden, inter, rng), {}, {}, {}});
  if (shared_inter)
    m.shared = ExpertWeights{random_matrix(shared_inter, hidden, rng), random_matrix(shared_inter, hidden, rng),
                             random_matrix(hidden, shared_inter, rng), {}, {}, {}};
  return m;
}

void check_same(const MoeWeights& a, const MoeWeights& b) {
  CHECK(a.router == b.router);
  REQUIRE(a.experts.size() == b.experts.size());
  for (std::size_t e = 0; e < a.experts.size(); ++e) {
    CAPTURE(e);
    CHECK(a.experts[e].gate == b.experts[e].gate);
    CHECK(a.experts[e].up == b.experts[e].up);
    CHECK(a.experts[e].down == b.experts[e].down);
  }
  REQUIRE(a.shared.has_value() == b.shared.has_value());
  if (a.shared) {
    CHECK(a.shared->gate == b.shared->gate);
    CHECK(a.shared->down == b.shared->down);
  }
  CHECK(a.shared_gate == b.shared_gate);
  CHECK(a.correction_bias == b.correction_bias);
}
}  // namespace

TEST_CASE("Qwen2-MoE: sparse layers by step and mlp_only_layers, per-expert tensors and the gated shared expert") {
  const nlohmann::json config = {{"model_type", "qwen2_moe"}, {"num_experts", experts}, {"num_experts_per_tok", 2},
                                 {"moe_intermediate_size", inter}, {"shared_expert_intermediate_size", 6},
                                 {"decoder_sparse_step", 2}, {"mlp_only_layers", {3}}};
  const MoeLayout m = moe_layout(config, 6);
  CHECK(m.sparse == std::vector<bool>{false, true, false, false, false, true});  // (i + 1) % 2 == 0, not layer 3
  CHECK_FALSE(m.spec.normalize);  // norm_topk_prob's default
  CHECK(m.shared_gate);
  std::mt19937 rng(1);
  MoeWeights expected = random_layer(rng, 6);
  expected.shared_gate = random_matrix(1, hidden, rng).row(0).transpose();
  Checkpoint c("autoround_test_qwen2_moe");
  c.add("model.layers.1.mlp.gate.weight", expected.router);
  for (Index e = 0; e < experts; ++e) {
    const std::string p = "model.layers.1.mlp.experts." + std::to_string(e) + ".";
    c.add(p + "gate_proj.weight", expected.experts[static_cast<std::size_t>(e)].gate);
    c.add(p + "up_proj.weight", expected.experts[static_cast<std::size_t>(e)].up);
    c.add(p + "down_proj.weight", expected.experts[static_cast<std::size_t>(e)].down);
  }
  c.add("model.layers.1.mlp.shared_expert.gate_proj.weight", expected.shared->gate);
  c.add("model.layers.1.mlp.shared_expert.up_proj.weight", expected.shared->up);
  c.add("model.layers.1.mlp.shared_expert.down_proj.weight", expected.shared->down);
  c.add("model.layers.1.mlp.shared_expert_gate.weight", RowMatrix(expected.shared_gate.transpose()));
  const SafetensorsCheckpoint ckpt = c.write();
  const MoeWeights loaded = load_moe(ckpt, m, 1, hidden);
  check_same(loaded, expected);
  // and it runs: routed through the loaded router, the shared expert gated
  RowMatrix out;
  moe_forward(loaded, m.spec, random_matrix(3, hidden, rng), out);
  CHECK(out.allFinite());
  CHECK_THROWS_WITH_AS(load_moe(ckpt, m, 0, hidden), doctest::Contains("layer 0 has no mixture of experts"), Error);
  CHECK_THROWS_WITH_AS(load_moe(ckpt, m, 5, hidden), doctest::Contains("no tensor named 'model.layers.5.mlp.gate.weight'"), Error);
  CHECK_THROWS_WITH_AS(load_moe(ckpt, m, 1, hidden + 1), doctest::Contains("tensor 'model.layers.1.mlp.gate.weight' is 4x8, expected 4x9"), Error);
}

TEST_CASE("Mixtral: block_sparse_moe's w1/w3/w2 are gate/up/down; the top-k always renormalized") {
  const nlohmann::json config = {{"model_type", "mixtral"}, {"num_local_experts", experts}, {"num_experts_per_tok", 2}, {"intermediate_size", inter}};
  const MoeLayout m = moe_layout(config, 2);
  CHECK(m.spec.normalize);
  CHECK(m.sparse == std::vector<bool>{true, true});
  std::mt19937 rng(2);
  const MoeWeights expected = random_layer(rng, 0);
  // as transformers saves Mixtral (w1 / w3 / w2), and as the reference (auto-round 0.16.1) exports
  // it: its unfused experts' gate_proj / up_proj / down_proj, under block_sparse_moe too (read on a
  // checkpoint it wrote: docs/block-descriptions.md)
  for (const auto& [name, projections] : {std::pair{"autoround_test_mixtral", std::array{"w1", "w3", "w2"}},
                                          std::pair{"autoround_test_mixtral_reference", std::array{"gate_proj", "up_proj", "down_proj"}}}) {
    CAPTURE(name);
    Checkpoint c(name);
    c.add("model.layers.0.block_sparse_moe.gate.weight", expected.router);
    for (Index e = 0; e < experts; ++e) {
      const std::string p = "model.layers.0.block_sparse_moe.experts." + std::to_string(e) + ".";
      const ExpertWeights& x = expected.experts[static_cast<std::size_t>(e)];
      c.add(p + projections[0] + ".weight", x.gate);
      c.add(p + projections[1] + ".weight", x.up);
      c.add(p + projections[2] + ".weight", x.down);
    }
    check_same(load_moe(c.write(), m, 0, hidden), expected);
  }
  // and our exports name them so
  CHECK(hf_name(LinearSlot{Linear::Up, 3}, "mixtral") == "block_sparse_moe.experts.3.up_proj");
  CHECK(hf_name(LinearSlot{Linear::Up, 3}, "qwen3_moe") == "mlp.experts.3.up_proj");
}

TEST_CASE("transformers 5's fused experts: gate_up_proj [E, 2I, H] (gate rows first), down_proj [E, H, I]") {
  const nlohmann::json config = {{"model_type", "qwen3_moe"}, {"num_experts", experts}, {"num_experts_per_tok", 2},
                                 {"moe_intermediate_size", inter}, {"norm_topk_prob", true}};
  const MoeLayout m = moe_layout(config, 1);
  CHECK(m.spec.normalize);
  std::mt19937 rng(3);
  const MoeWeights expected = random_layer(rng, 0);
  RowMatrix gate_up(experts * 2 * inter, hidden), down(experts * hidden, inter);
  for (Index e = 0; e < experts; ++e) {
    gate_up.middleRows(e * 2 * inter, inter) = expected.experts[static_cast<std::size_t>(e)].gate;
    gate_up.middleRows(e * 2 * inter + inter, inter) = expected.experts[static_cast<std::size_t>(e)].up;
    down.middleRows(e * hidden, hidden) = expected.experts[static_cast<std::size_t>(e)].down;
  }
  Checkpoint c("autoround_test_fused_moe");
  c.add("model.layers.0.mlp.gate.weight", expected.router);
  c.add("model.layers.0.mlp.experts.gate_up_proj", gate_up, {experts, 2 * inter, hidden});
  c.add("model.layers.0.mlp.experts.down_proj", down, {experts, hidden, inter});
  check_same(load_moe(c.write(), m, 0, hidden), expected);
}

TEST_CASE("DeepSeek-V3: dense first layers, the grouped sigmoid router and its correction bias, shared experts") {
  const nlohmann::json config = {{"model_type", "deepseek_v3"}, {"n_routed_experts", experts}, {"num_experts_per_tok", 2},
                                 {"moe_intermediate_size", inter}, {"n_shared_experts", 2}, {"n_group", 2}, {"topk_group", 1},
                                 {"routed_scaling_factor", 2.5}, {"first_k_dense_replace", 1}};
  const MoeLayout m = moe_layout(config, 3);
  CHECK(m.sparse == std::vector<bool>{false, true, true});
  CHECK(m.spec.scoring == RouterScoring::SigmoidGrouped);
  CHECK(m.spec.normalize);
  CHECK(m.spec.groups == 2);
  CHECK(m.spec.top_groups == 1);
  CHECK(m.spec.scale == 2.5f);
  CHECK(m.shared_intermediate == 2 * inter);
  std::mt19937 rng(4);
  MoeWeights expected = random_layer(rng, 2 * inter);
  expected.correction_bias = random_matrix(1, experts, rng).row(0).transpose();
  Checkpoint c("autoround_test_deepseek_moe");
  c.add("model.layers.2.mlp.gate.weight", expected.router);
  c.add("model.layers.2.mlp.gate.e_score_correction_bias", RowMatrix(expected.correction_bias.transpose()), {experts});
  for (Index e = 0; e < experts; ++e) {
    const std::string p = "model.layers.2.mlp.experts." + std::to_string(e) + ".";
    c.add(p + "gate_proj.weight", expected.experts[static_cast<std::size_t>(e)].gate);
    c.add(p + "up_proj.weight", expected.experts[static_cast<std::size_t>(e)].up);
    c.add(p + "down_proj.weight", expected.experts[static_cast<std::size_t>(e)].down);
  }
  c.add("model.layers.2.mlp.shared_experts.gate_proj.weight", expected.shared->gate);
  c.add("model.layers.2.mlp.shared_experts.up_proj.weight", expected.shared->up);
  c.add("model.layers.2.mlp.shared_experts.down_proj.weight", expected.shared->down);
  check_same(load_moe(c.write(), m, 2, hidden), expected);
}

TEST_CASE("MoE layouts refuse what they cannot describe") {
  CHECK_THROWS_WITH_AS(moe_layout({{"model_type", "llama"}, {"num_experts_per_tok", 2}}, 2),
                       doctest::Contains("model_type 'llama' has no mixture-of-experts layout"), Error);
  CHECK_THROWS_WITH_AS(moe_layout({{"model_type", "qwen3_moe"}, {"num_experts_per_tok", 2}, {"moe_intermediate_size", 4}}, 2),
                       doctest::Contains("config.json (qwen3_moe): no 'num_experts'"), Error);
  CHECK_THROWS_WITH_AS(moe_layout({{"model_type", "mixtral"}, {"num_local_experts", 2}, {"num_experts_per_tok", 3}, {"intermediate_size", 4}}, 2),
                       doctest::Contains("inconsistent expert counts"), Error);
  CHECK_THROWS_WITH_AS(moe_layout({{"model_type", "deepseek_v3"}, {"n_routed_experts", 4}, {"num_experts_per_tok", 2},
                                   {"moe_intermediate_size", 4}, {"scoring_func", "softmax"}}, 2),
                       doctest::Contains("scoring_func 'softmax' is not supported"), Error);
}
}  // namespace test_hf_moe
