// MoE layouts and expert tensors from GGUF (model/gguf_moe.hpp), on files written here with the
// project's GgufWriter in llama.cpp's layout: qwen3moe with Q8_0 experts (the values are
// dequantize(quantize(w)), expert by expert), Mixtral as llama with experts, qwen2moe's shared
// expert and its gate, and the errors.
#include <doctest/doctest.h>

#include <autoround/format/gguf_writer.hpp>
#include <autoround/model/gguf_moe.hpp>
#include <autoround/model/gguf_source.hpp>
#include <autoround/model/llama_forward.hpp>
#include <autoround/pack/ggml_quantize.hpp>
#include <filesystem>
#include <random>

namespace test_gguf_moe {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

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
  CHECK(m.spec.normalize);  // llama.cpp's qwen3moe graph renormalizes (build_moe_ffn's norm_w)
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
    CHECK(m.spec.normalize);  // Mixtral: renormalized
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
  CHECK_FALSE(m.spec.normalize);  // llama.cpp's qwen2moe graph does not renormalize (norm_w false), as Qwen2-MoE's norm_topk_prob default
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

TEST_CASE("a qwen3moe GGUF model evaluates: experts that all equal a dense Qwen3 MLP give the dense GGUF's logits") {
  // one block, hidden 32, 4 heads of 8 (2 KV heads), MLP 32, vocab 40; the MoE file's four experts
  // are copies of the dense file's MLP, so with renormalized top-2 weights every mixture is it
  constexpr Index vocab = 40, heads = 4, kv_heads = 2, head_dim = 8;
  std::mt19937 rng(8);
  const auto scaled = [&](Index r, Index c, float s) { return RowMatrix(s * random_matrix(r, c, rng)); };
  const RowMatrix embedding = scaled(vocab, hidden, 0.5f), output = scaled(vocab, hidden, 0.3f);
  const RowMatrix q = scaled(heads * head_dim, hidden, 0.2f), k = scaled(kv_heads * head_dim, hidden, 0.2f),
                  v = scaled(kv_heads * head_dim, hidden, 0.2f), o = scaled(hidden, heads * head_dim, 0.2f);
  const RowMatrix gate = scaled(inter, hidden, 0.2f), up = scaled(inter, hidden, 0.2f), down = scaled(hidden, inter, 0.2f);
  const RowMatrix router = scaled(experts, hidden, 0.5f);
  const RowMatrix ones = RowMatrix::Ones(1, hidden), head_ones = RowMatrix::Constant(1, head_dim, 1.1f);
  const auto H = static_cast<std::uint64_t>(hidden), I = static_cast<std::uint64_t>(inter), E = static_cast<std::uint64_t>(experts);
  const auto write = [&](const std::string& arch, const std::string& name) {
    GgufWriter w;
    w.set_string("general.architecture", arch);
    w.set_u32(arch + ".block_count", 1);
    w.set_u32(arch + ".embedding_length", hidden);
    w.set_u32(arch + ".feed_forward_length", inter);
    w.set_u32(arch + ".attention.head_count", heads);
    w.set_u32(arch + ".attention.head_count_kv", kv_heads);
    w.set_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
    const auto f32 = [&](const std::string& t, std::vector<std::uint64_t> dims, const RowMatrix& m) {
      w.add_tensor(t, std::move(dims), ggml::Type::F32, bytes_of(m, ggml::Type::F32));
    };
    f32("token_embd.weight", {H, vocab}, embedding);
    f32("output_norm.weight", {H}, ones);
    f32("output.weight", {H, vocab}, output);
    f32("blk.0.attn_norm.weight", {H}, ones);
    f32("blk.0.ffn_norm.weight", {H}, ones);
    f32("blk.0.attn_q.weight", {H, heads * head_dim}, q);
    f32("blk.0.attn_k.weight", {H, kv_heads * head_dim}, k);
    f32("blk.0.attn_v.weight", {H, kv_heads * head_dim}, v);
    f32("blk.0.attn_output.weight", {heads * head_dim, H}, o);
    f32("blk.0.attn_q_norm.weight", {head_dim}, head_ones);
    f32("blk.0.attn_k_norm.weight", {head_dim}, head_ones);
    if (arch == "qwen3") {
      f32("blk.0.ffn_gate.weight", {H, I}, gate);
      f32("blk.0.ffn_up.weight", {H, I}, up);
      f32("blk.0.ffn_down.weight", {I, H}, down);
    } else {
      w.set_u32(arch + ".expert_count", experts);
      w.set_u32(arch + ".expert_used_count", 2);
      w.set_u32(arch + ".expert_feed_forward_length", inter);
      f32("blk.0.ffn_gate_inp.weight", {H, E}, router);
      f32("blk.0.ffn_gate_exps.weight", {H, I, E}, stacked({gate, gate, gate, gate}));
      f32("blk.0.ffn_up_exps.weight", {H, I, E}, stacked({up, up, up, up}));
      f32("blk.0.ffn_down_exps.weight", {I, H, E}, stacked({down, down, down, down}));
    }
    const fs::path path = fs::temp_directory_path() / name;
    w.write(path);
    return path;
  };
  const fs::path dense_path = write("qwen3", "autoround_test_qwen3_dense.gguf"), moe_path = write("qwen3moe", "autoround_test_qwen3moe.gguf");
  const LlamaModel dense = load_llama_gguf(dense_path.string()), moe = load_llama_gguf(moe_path.string());
  REQUIRE(moe.blocks[0].moe.has_value());
  CHECK(moe.blocks[0].moe->spec.normalize);
  const std::vector<std::int32_t> tokens{3, 17, 0, 39, 22, 8, 8, 31};
  const RowMatrix a = forward_logits(dense, tokens), b = forward_logits(moe, tokens);
  CHECK((a - b).cwiseAbs().maxCoeff() < 1e-5f);
  CHECK(a.cwiseAbs().maxCoeff() > 0.1f);  // not trivially zero
  fs::remove(dense_path);
  fs::remove(moe_path);
}

TEST_CASE("glm4moe GGUF: DeepSeek-V3's routing from the metadata, leading dense blocks, MTP blocks left out, bad keys refused") {
  const auto glm = [](std::uint32_t gating, std::uint32_t groups, std::uint32_t kept, std::uint32_t mtp) {
    GgufWriter w;
    w.set_string("general.architecture", "glm4moe");
    w.set_u32("glm4moe.block_count", 4 + mtp);
    w.set_u32("glm4moe.nextn_predict_layers", mtp);
    w.set_u32("glm4moe.expert_count", 8);
    w.set_u32("glm4moe.expert_used_count", 2);
    w.set_u32("glm4moe.expert_feed_forward_length", 48);
    w.set_u32("glm4moe.expert_shared_count", 2);
    w.set_u32("glm4moe.leading_dense_block_count", 1);
    w.set_u32("glm4moe.expert_gating_func", gating);
    w.set_u32("glm4moe.expert_group_count", groups);
    w.set_u32("glm4moe.expert_group_used_count", kept);
    w.set_f32("glm4moe.expert_weights_scale", 2.5f);
    w.set_bool("glm4moe.expert_weights_norm", true);
    return w;
  };
  const GgufFile file = written(glm(2, 4, 2, 1), "autoround_test_glm4moe.gguf");
  const MoeLayout m = gguf_moe_layout(file);
  CHECK(m.sparse == std::vector<bool>{false, true, true, true});  // the MTP block (the fifth) is not part of the forward
  CHECK((m.spec.scoring == RouterScoring::SigmoidGrouped && m.spec.groups == 4 && m.spec.top_groups == 2 && m.spec.normalize));
  CHECK(m.spec.scale == 2.5f);
  CHECK((m.shared_intermediate == 96 && !m.shared_gate));
  fs::remove(file.path());
  const GgufFile softmax = written(glm(1, 4, 2, 0), "autoround_test_glm4moe_softmax.gguf");
  CHECK_THROWS_WITH_AS(gguf_moe_layout(softmax), doctest::Contains("glm4moe.expert_gating_func 1 is not supported"), Error);
  fs::remove(softmax.path());
  const GgufFile groups = written(glm(2, 3, 1, 0), "autoround_test_glm4moe_groups.gguf");  // 3 groups do not divide 8 experts
  CHECK_THROWS_WITH_AS(gguf_moe_layout(groups), doctest::Contains("expert groups that do not divide the experts"), Error);
  fs::remove(groups.path());
  GgufWriter only_mtp = glm(2, 1, 1, 0);
  only_mtp.set_u32("glm4moe.nextn_predict_layers", 4);  // every one of the 4 blocks a draft block
  const GgufFile mtp = written(only_mtp, "autoround_test_glm4moe_mtp.gguf");
  CHECK_THROWS_WITH_AS(gguf_moe_layout(mtp), doctest::Contains("glm4moe.nextn_predict_layers is not below block_count"), Error);
  fs::remove(mtp.path());
}
}  // namespace test_gguf_moe
