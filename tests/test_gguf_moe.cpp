// MoE layouts and expert tensors from GGUF (model/gguf_moe.hpp), on files written here with the
// project's GgufWriter in llama.cpp's layout: qwen3moe with Q8_0 experts (the values are
// dequantize(quantize(w)), expert by expert), Mixtral as llama with experts, qwen2moe's shared
// expert and its gate, and the errors.
#include <doctest/doctest.h>

#include <autoround/format/gguf_writer.hpp>
#include <autoround/model/gguf_moe.hpp>
#include <autoround/pack/ggml_quantize.hpp>
#include <filesystem>
#include <random>

using namespace autoround;
namespace fs = std::filesystem;

namespace {
constexpr Index hidden = 32, inter = 32, experts = 4;

RowMatrix random_matrix(Index r, Index c, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  RowMatrix m(r, c);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

std::vector<std::byte> bytes_of(const RowMatrix& m, ggml::Type type) {
  return ggml::quantize(type, std::span<const float>(m.data(), static_cast<std::size_t>(m.size())));
}

RowMatrix round_trip(const RowMatrix& m, ggml::Type type) {
  const auto bytes = bytes_of(m, type);
  RowMatrix back(m.rows(), m.cols());
  ggml::dequantize(type, bytes, std::span<float>(back.data(), static_cast<std::size_t>(back.size())));
  return back;
}

// the experts stacked as llama.cpp stores them: [E, rows, cols] in row-major order
RowMatrix stacked(const std::vector<RowMatrix>& parts) {
  RowMatrix all(static_cast<Index>(parts.size()) * parts[0].rows(), parts[0].cols());
  for (std::size_t e = 0; e < parts.size(); ++e) all.middleRows(static_cast<Index>(e) * parts[0].rows(), parts[0].rows()) = parts[e];
  return all;
}

struct Layer {
  RowMatrix router;
  std::vector<RowMatrix> gate, up, down;
};

Layer random_layer(std::mt19937& rng) {
  Layer l{random_matrix(experts, hidden, rng), {}, {}, {}};
  for (Index e = 0; e < experts; ++e) {
    l.gate.push_back(random_matrix(inter, hidden, rng));
    l.up.push_back(random_matrix(inter, hidden, rng));
    l.down.push_back(random_matrix(hidden, inter, rng));
  }
  return l;
}

void add_layer(GgufWriter& w, const Layer& l, ggml::Type experts_type) {
  const auto H = static_cast<std::uint64_t>(hidden), I = static_cast<std::uint64_t>(inter), E = static_cast<std::uint64_t>(experts);
  w.add_tensor("blk.0.ffn_gate_inp.weight", {H, E}, ggml::Type::F32, bytes_of(l.router, ggml::Type::F32));
  w.add_tensor("blk.0.ffn_gate_exps.weight", {H, I, E}, experts_type, bytes_of(stacked(l.gate), experts_type));
  w.add_tensor("blk.0.ffn_up_exps.weight", {H, I, E}, experts_type, bytes_of(stacked(l.up), experts_type));
  w.add_tensor("blk.0.ffn_down_exps.weight", {I, H, E}, experts_type, bytes_of(stacked(l.down), experts_type));
}

GgufFile written(const GgufWriter& w, const std::string& name) {
  const fs::path path = fs::temp_directory_path() / name;
  w.write(path);
  GgufFile file(path.string());
  return file;
}
}  // namespace

TEST_CASE("qwen3moe GGUF: the layout from the metadata, Q8_0 experts sliced from their 3-D tensors") {
  std::mt19937 rng(5);
  const Layer l = random_layer(rng);
  GgufWriter w;
  w.set_string("general.architecture", "qwen3moe");
  w.set_u32("qwen3moe.block_count", 1);
  w.set_u32("qwen3moe.expert_count", experts);
  w.set_u32("qwen3moe.expert_used_count", 2);
  w.set_u32("qwen3moe.expert_feed_forward_length", inter);
  w.set_u32("qwen3moe.feed_forward_length", 999);  // the dense size: not the experts'
  add_layer(w, l, ggml::Type::Q8_0);
  const GgufFile file = written(w, "autoround_test_qwen3moe.gguf");
  const MoeLayout m = gguf_moe_layout(file);
  CHECK(m.experts == experts);
  CHECK(m.spec.top_k == 2);
  CHECK(m.expert_intermediate == inter);
  CHECK(m.spec.normalize);  // llama.cpp renormalizes unless expert_weights_norm says otherwise
  const MoeWeights loaded = load_gguf_moe(file, m, 0, hidden);
  CHECK(loaded.router == l.router);
  for (Index e = 0; e < experts; ++e) {
    CAPTURE(e);
    const auto i = static_cast<std::size_t>(e);
    CHECK(loaded.experts[i].gate == round_trip(l.gate[i], ggml::Type::Q8_0));
    CHECK(loaded.experts[i].up == round_trip(l.up[i], ggml::Type::Q8_0));
    CHECK(loaded.experts[i].down == round_trip(l.down[i], ggml::Type::Q8_0));
    CHECK((loaded.experts[i].gate - l.gate[i]).cwiseAbs().maxCoeff() < 0.05f);  // and near the originals
  }
  CHECK_THROWS_WITH_AS(load_gguf_moe(file, m, 1, hidden), doctest::Contains("no block 1"), Error);
  CHECK_THROWS_WITH_AS(load_gguf_moe(file, m, 0, hidden * 2), doctest::Contains("tensor 'blk.0.ffn_gate_inp.weight' has ne {32, 4}, expected {64, 4}"), Error);
  fs::remove(file.path());
}

TEST_CASE("Mixtral GGUF (llama with experts): feed_forward_length is the expert size; qwen2moe's shared expert and gate") {
  std::mt19937 rng(6);
  const Layer l = random_layer(rng);
  {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_u32("llama.block_count", 1);
    w.set_u32("llama.expert_count", experts);
    w.set_u32("llama.expert_used_count", 2);
    w.set_u32("llama.feed_forward_length", inter);
    add_layer(w, l, ggml::Type::F32);
    const GgufFile file = written(w, "autoround_test_mixtral.gguf");
    const MoeLayout m = gguf_moe_layout(file);
    CHECK(m.expert_intermediate == inter);
    const MoeWeights loaded = load_gguf_moe(file, m, 0, hidden);
    for (std::size_t e = 0; e < static_cast<std::size_t>(experts); ++e) CHECK(loaded.experts[e].down == l.down[e]);
    fs::remove(file.path());
  }
  GgufWriter w;
  w.set_string("general.architecture", "qwen2moe");
  w.set_u32("qwen2moe.block_count", 1);
  w.set_u32("qwen2moe.expert_count", experts);
  w.set_u32("qwen2moe.expert_used_count", 2);
  w.set_u32("qwen2moe.expert_feed_forward_length", inter);
  w.set_u32("qwen2moe.expert_shared_feed_forward_length", 64);
  add_layer(w, l, ggml::Type::F32);
  const RowMatrix sg = random_matrix(64, hidden, rng), su = random_matrix(64, hidden, rng), sd = random_matrix(hidden, 64, rng);
  const RowMatrix gate_inp = random_matrix(1, hidden, rng);
  w.add_tensor("blk.0.ffn_gate_shexp.weight", {hidden, 64}, ggml::Type::F32, bytes_of(sg, ggml::Type::F32));
  w.add_tensor("blk.0.ffn_up_shexp.weight", {hidden, 64}, ggml::Type::F32, bytes_of(su, ggml::Type::F32));
  w.add_tensor("blk.0.ffn_down_shexp.weight", {64, hidden}, ggml::Type::F32, bytes_of(sd, ggml::Type::F32));
  w.add_tensor("blk.0.ffn_gate_inp_shexp.weight", {hidden}, ggml::Type::F32, bytes_of(gate_inp, ggml::Type::F32));
  const GgufFile file = written(w, "autoround_test_qwen2moe.gguf");
  const MoeLayout m = gguf_moe_layout(file);
  CHECK(m.shared_intermediate == 64);
  const MoeWeights loaded = load_gguf_moe(file, m, 0, hidden);
  REQUIRE(loaded.shared);
  CHECK(loaded.shared->gate == sg);
  CHECK(loaded.shared->down == sd);
  CHECK(loaded.shared_gate == gate_inp.row(0).transpose());
  fs::remove(file.path());
}

TEST_CASE("GGUF MoE layouts refuse dense models and unknown architectures") {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 1);
  const GgufFile dense = written(w, "autoround_test_dense.gguf");
  CHECK_THROWS_WITH_AS(gguf_moe_layout(dense), doctest::Contains("llama.expert_count is missing or 0"), Error);
  fs::remove(dense.path());
  GgufWriter g;
  g.set_string("general.architecture", "gemma3");
  const GgufFile other = written(g, "autoround_test_gemma3.gguf");
  CHECK_THROWS_WITH_AS(gguf_moe_layout(other), doctest::Contains("architecture 'gemma3' has no mixture-of-experts layout"), Error);
  fs::remove(other.path());
}
