// Writing a mixture-of-experts model to GGUF (export/gguf_model.hpp): a qwen3moe file written here
// in llama.cpp's layout (F32), tuned block by block on the CPU and streamed into gguf:q4_0 and
// gguf:q4_k_m. Checked: every routed expert's tuned codes land in its own slice of the 3-D
// ffn_*_exps tensors (each slice decodes to that expert's tuned values), the router is copied
// byte for byte, and the types follow llama-quantize's rules, the 8-expert ones included.
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

namespace test_gguf_moe_export {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;
namespace fs = std::filesystem;

namespace {

struct Shape {
  Index blocks = 2, hidden = 64, inter = 64, experts = 4, vocab = 48, heads = 4, kv_heads = 2;
};

RowMatrix random_matrix(Index r, Index c, float scale, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  RowMatrix m(r, c);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = scale * normal(rng);
  return m;
}

std::vector<std::byte> f32_bytes(const RowMatrix& m) {
  return ggml::quantize(ggml::Type::F32, std::span<const float>(m.data(), static_cast<std::size_t>(m.size())));
}

// a qwen3moe GGUF of `s`, every tensor F32, random weights scaled by 1/sqrt(in)
fs::path write_qwen3moe(const Shape& s, const fs::path& path, std::uint32_t seed) {
  std::mt19937 rng(seed);
  const auto H = static_cast<std::uint64_t>(s.hidden), I = static_cast<std::uint64_t>(s.inter), E = static_cast<std::uint64_t>(s.experts);
  const Index hd = s.hidden / s.heads;
  GgufWriter w;
  const std::string a = "qwen3moe";
  w.set_string("general.architecture", a);
  w.set_u32(a + ".block_count", static_cast<std::uint32_t>(s.blocks));
  w.set_u32(a + ".embedding_length", static_cast<std::uint32_t>(s.hidden));
  w.set_u32(a + ".attention.head_count", static_cast<std::uint32_t>(s.heads));
  w.set_u32(a + ".attention.head_count_kv", static_cast<std::uint32_t>(s.kv_heads));
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_u32(a + ".expert_count", static_cast<std::uint32_t>(s.experts));
  w.set_u32(a + ".expert_used_count", 2);
  w.set_u32(a + ".expert_feed_forward_length", static_cast<std::uint32_t>(s.inter));
  const auto add = [&](const std::string& name, std::vector<std::uint64_t> dims, float scale) {
    Index rows = 1;
    for (std::size_t d = 1; d < dims.size(); ++d) rows *= static_cast<Index>(dims[d]);
    const RowMatrix m = scale == 0 ? RowMatrix(RowMatrix::Ones(rows, static_cast<Index>(dims[0])))
                                   : random_matrix(rows, static_cast<Index>(dims[0]), scale / std::sqrt(static_cast<float>(dims[0])), rng);
    w.add_tensor(name, std::move(dims), ggml::Type::F32, f32_bytes(m));
  };
  add("token_embd.weight", {H, static_cast<std::uint64_t>(s.vocab)}, 8.0f);
  add("output_norm.weight", {H}, 0);
  add("output.weight", {H, static_cast<std::uint64_t>(s.vocab)}, 1.0f);
  for (Index b = 0; b < s.blocks; ++b) {
    const std::string p = "blk." + std::to_string(b) + ".";
    add(p + "attn_norm.weight", {H}, 0);
    add(p + "attn_q.weight", {H, static_cast<std::uint64_t>(s.heads * hd)}, 1.0f);
    add(p + "attn_k.weight", {H, static_cast<std::uint64_t>(s.kv_heads * hd)}, 1.0f);
    add(p + "attn_v.weight", {H, static_cast<std::uint64_t>(s.kv_heads * hd)}, 1.0f);
    add(p + "attn_output.weight", {static_cast<std::uint64_t>(s.heads * hd), H}, 1.0f);
    add(p + "attn_q_norm.weight", {static_cast<std::uint64_t>(hd)}, 0);
    add(p + "attn_k_norm.weight", {static_cast<std::uint64_t>(hd)}, 0);
    add(p + "ffn_norm.weight", {H}, 0);
    add(p + "ffn_gate_inp.weight", {H, E}, 1.0f);
    add(p + "ffn_gate_exps.weight", {H, I, E}, 1.0f);
    add(p + "ffn_up_exps.weight", {H, I, E}, 1.0f);
    add(p + "ffn_down_exps.weight", {I, H, E}, 1.0f);
  }
  w.write(path);
  return path;
}

template <WeightQuantizer Q>
std::vector<LayerResults<Q>> tune_into_gguf(const fs::path& source_path, const std::string& type, const fs::path& out) {
  const GgufModelSource source(source_path.string());
  const GgufScheme scheme = gguf_scheme(type);
  ModelQuantOptions options;
  options.nsamples = 4;
  options.seqlen = 16;
  options.tune.iters = 4;
  options.tune.batch_size = 2;
  options.overrides = gguf_tuning_overrides(scheme, source.config(), gguf_experts(source.file()));
  std::mt19937 rng(5);
  std::vector<TokenSequence> samples(4, TokenSequence(16));
  for (auto& sample : samples)
    for (auto& t : sample) t = static_cast<std::int32_t>(rng() % static_cast<unsigned>(source.config().vocab));
  GgufBlockWriter<Q> writer(source.file(), scheme, source.config(), out);
  std::vector<LayerResults<Q>> all;
  quantize_model_streaming<SignSGD<>, Cpu, Q>(source, samples, options, [&](Index b, const LlamaBlock&, const LayerResults<Q>& results) {
    writer.add_block(b, results);
    all.push_back(results);
  });
  const auto choices = writer.finish();
  for (const GgufTensorChoice& c : choices)
    if (c.name.find("_exps") != std::string::npos) CHECK_MESSAGE(c.tuned, c.name);
  return all;
}

}  // namespace

TEST_CASE("gguf:q4_0 of a qwen3moe model: each expert's tuned codes in its slice of ffn_*_exps, the router copied") {
  const Shape s;
  const fs::path dir = fs::temp_directory_path() / "autoround_gguf_moe_export";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path source_path = write_qwen3moe(s, dir / "source.gguf", 11);
  const auto results = tune_into_gguf<DynamicIntQuantizer>(source_path, "q4_0", dir / "q4_0.gguf");
  const GgufFile source(source_path.string()), out((dir / "q4_0.gguf").string());
  REQUIRE(results.size() == 2);
  for (Index b = 0; b < s.blocks; ++b) {
    CAPTURE(b);
    const std::string p = "blk." + std::to_string(b) + ".";
    const GgufTensor& router = out.tensor(p + "ffn_gate_inp.weight");
    CHECK(router.type == ggml::Type::F32);
    CHECK(std::equal(router.data.begin(), router.data.end(), source.tensor(p + "ffn_gate_inp.weight").data.begin(),
                     source.tensor(p + "ffn_gate_inp.weight").data.end()));
    const LayerResults<>& r = results[static_cast<std::size_t>(b)];
    REQUIRE(r.size() == static_cast<std::size_t>(4 + 3 * s.experts));
    for (Linear l : {Linear::Gate, Linear::Up, Linear::Down}) {
      const std::string name = p + gguf_name(l) + "_exps.weight";
      CAPTURE(name);
      const GgufTensor& t = out.tensor(name);
      REQUIRE(t.type == ggml::Type::Q4_0);
      CHECK(t.dims == source.tensor(name).dims);
      const RowMatrix values = out.to_float(t);  // [E * rows, cols], expert after expert
      for (Index e = 0; e < s.experts; ++e) {
        const auto& q = r[static_cast<std::size_t>(4 + 3 * e + (static_cast<int>(l) - static_cast<int>(Linear::Gate)))];
        REQUIRE(q.has_value());
        CHECK(q->quantizer.spec() == QuantSpec{4, 32, Symmetric});
        const RowMatrix tuned = q->dequantize();
        const RowMatrix slice = values.middleRows(e * tuned.rows(), tuned.rows());
        // Q4_0 stores the scale in float16: the slice is the tuned values up to that rounding
        CHECK((slice - tuned).cwiseAbs().maxCoeff() <= 2e-3f * tuned.cwiseAbs().maxCoeff());
        // and not its neighbour's
        if (e > 0) CHECK((values.middleRows((e - 1) * tuned.rows(), tuned.rows()) - tuned).cwiseAbs().maxCoeff() > 0.1f * tuned.cwiseAbs().maxCoeff());
      }
    }
    for (const char* attention : {"attn_q", "attn_k", "attn_v", "attn_output"}) CHECK(out.tensor(p + attention + ".weight").type == ggml::Type::Q4_0);
  }
  // llama.cpp's reader sees a qwen3moe file it can load: our reader loads it back as MoE blocks
  const LlamaModel model = load_llama_gguf((dir / "q4_0.gguf").string());
  CHECK(model.blocks[1].moe.has_value());
  fs::remove_all(dir);
}

TEST_CASE("llama-quantize's types for experts: ffn_*_exps as ffn_*, the 8-expert rules for attention") {
  LlamaConfig c;
  c.layers = 16, c.hidden = 256, c.heads = 8, c.kv_heads = 2, c.head_dim = 32;
  const auto type = [&](const std::string& mix, Index b, Linear l, Index experts, Index cols = 256) {
    return gguf_tensor_type(gguf_scheme(mix), cols, b, l, c, false, experts);
  };
  using T = ggml::Type;
  // ffn_down's use_more_bits layers (first and last eighth, every third between) in Q4_K_M, by layer number
  CHECK(type("q4_k_m", 0, Linear::Down, 8) == T::Q6_K);
  CHECK(type("q4_k_m", 3, Linear::Down, 8) == T::Q4_K);
  CHECK(type("q4_k_m", 4, Linear::Down, 8) == T::Q6_K);
  CHECK(type("q4_k_m", 15, Linear::Down, 128) == T::Q6_K);
  CHECK(type("q4_k_m", 5, Linear::Gate, 128) == T::Q4_K);
  // exactly 8 experts: attn_k and attn_v Q8_0 in every mix, attn_output Q5_K in the low mixes only
  CHECK(type("q4_k_m", 5, Linear::Value, 8) == T::Q8_0);
  CHECK(type("q2_k", 5, Linear::Key, 8) == T::Q8_0);
  CHECK(type("q4_0", 5, Linear::Key, 8) == T::Q8_0);
  CHECK(type("q4_k_m", 5, Linear::Output, 8) == T::Q5_K);
  CHECK(type("q3_k_l", 5, Linear::Output, 8) == T::Q3_K);  // the dense rule (Q5_K) does not apply with 8 experts
  CHECK(type("q3_k_l", 5, Linear::Output, 128) == T::Q5_K);
  CHECK(type("q4_k_m", 5, Linear::Key, 128) == T::Q4_K);   // 128 experts: no 8-expert rule
  // an expert down projection of 768 columns holds Q4_K; of 96 it falls back
  CHECK(type("q4_k_m", 5, Linear::Down, 128, 768) == T::Q4_K);
  CHECK(type("q4_k_m", 5, Linear::Down, 128, 96) == T::Q5_0);
  // names
  const GgufTensorSite exps = gguf_tensor_site("blk.7.ffn_down_exps.weight");
  CHECK(exps.block == 7);
  CHECK(exps.linear == Linear::Down);
  CHECK(exps.owner == GgufTensorSite::Owner::Experts);
  CHECK(gguf_tensor_site("blk.2.ffn_up_shexp.weight").owner == GgufTensorSite::Owner::SharedExpert);
  CHECK(gguf_tensor_site("blk.2.ffn_gate_inp.weight").keep_type);
  CHECK_FALSE(gguf_tensor_site("blk.2.ffn_gate_inp.weight").linear.has_value());
  CHECK(gguf_tensor_site("blk.2.ffn_gate_inp_shexp.weight").keep_type);
}

TEST_CASE("phi3's fused tensors: attn_qkv typed as llama-quantize types it (attn_v's rules), each layer tuned for its tensor's type") {
  LlamaConfig c;
  c.layers = 16, c.hidden = 256, c.intermediate = 256, c.heads = 8, c.kv_heads = 2, c.head_dim = 32, c.model_type = "phi3";
  using T = ggml::Type;
  const GgufTensorSite qkv = gguf_tensor_site("blk.4.attn_qkv.weight");
  CHECK(qkv.block == 4);
  CHECK(qkv.linear == Linear::Value);
  CHECK(gguf_fused_layers("blk.4.attn_qkv.weight", "phi3") == std::vector<Linear>{Linear::Query, Linear::Key, Linear::Value});
  CHECK(gguf_fused_layers("blk.4.ffn_up.weight", "phi3") == std::vector<Linear>{Linear::Gate, Linear::Up});
  CHECK(gguf_fused_layers("blk.4.ffn_up.weight", "llama").empty());  // a llama ffn_up is up alone
  CHECK(gguf_fused_layers("blk.4.attn_output.weight", "phi3").empty());
  // Q4_K_M: attn_qkv Q6_K on use_more_bits layers (0, 1, 4, 7, 10, 13, 14, 15 of 16), else Q4_K
  const auto qkv_type = [&](Index b) { return gguf_tensor_type(gguf_scheme("q4_k_m"), c.hidden, b, qkv.linear, c, false); };
  CHECK(qkv_type(0) == T::Q6_K);
  CHECK(qkv_type(3) == T::Q4_K);
  CHECK(qkv_type(4) == T::Q6_K);
  CHECK(qkv_type(15) == T::Q6_K);
  // the tuning schemes: q, k and v each for attn_qkv's type, gate for ffn_up's (a llama model's q and k: the base type)
  const auto spec_of = [](const std::vector<LayerOverride>& overrides, Index b, Linear l) {
    const std::string pattern = "^" + detail::escaped_dots(layer_name(b, l)) + "$";
    const auto o = std::find_if(overrides.begin(), overrides.end(), [&](const LayerOverride& x) { return x.pattern == pattern; });
    REQUIRE(o != overrides.end());
    return o->spec;
  };
  const auto phi3 = gguf_tuning_overrides(gguf_scheme("q4_k_m"), c);
  for (Linear l : {Linear::Query, Linear::Key, Linear::Value}) {
    CHECK(spec_of(phi3, 4, l) == exact_spec_for(T::Q6_K));
    CHECK(spec_of(phi3, 3, l) == exact_spec_for(T::Q4_K));
  }
  CHECK(spec_of(phi3, 4, Linear::Gate) == exact_spec_for(T::Q4_K));
  c.model_type = "llama";
  CHECK(spec_of(gguf_tuning_overrides(gguf_scheme("q4_k_m"), c), 4, Linear::Query) == exact_spec_for(T::Q4_K));
}

TEST_CASE("gguf:mxfp4 of a deepseek2 model: its overrides' patterns cover the latent attention's tensors, tuned as MXFP4") {
  // gguf:mxfp4 = MXFP4_MOE with --tensor-type 'attn_(q|k|v|output)=mxfp4' 'ffn_(gate|up|down)=mxfp4';
  // llama-quantize matches them anywhere in a name (std::regex_search): attn_q_a, attn_q_b
  // ("attn_q"), attn_kv_a_mqa, attn_k_b ("attn_k") and attn_v_b ("attn_v") are MXFP4, where the
  // k-quant mixes type them by the OTHER rule (the base type). (Before: Q8_0, and the run stopped on
  // an integer scheme in a floating-point pass.)
  LlamaConfig c;
  c.layers = 4, c.hidden = 256, c.intermediate = 256, c.heads = 4, c.kv_heads = 4, c.head_dim = 32, c.model_type = "deepseek2";
  c.q_lora_rank = 64, c.kv_lora_rank = 128, c.qk_nope_dim = 32, c.v_head_dim = 64;
  using T = ggml::Type;
  const GgufScheme mxfp4 = gguf_scheme("mxfp4"), q4_k_m = gguf_scheme("q4_k_m");
  for (const char* tensor : {"attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_k_b", "attn_v_b", "attn_output"}) {
    CAPTURE(tensor);
    const GgufTensorSite site = gguf_tensor_site(std::string("blk.2.") + tensor + ".weight");
    CHECK(gguf_tensor_type(mxfp4, 128, site.block, site.rule(mxfp4.mix), c, false) == T::MXFP4);
    if (site.other_rule) CHECK(gguf_tensor_type(q4_k_m, 256, site.block, site.rule(q4_k_m.mix), c, false) == T::Q4_K);
  }
  CHECK(gguf_tensor_type(mxfp4, 48, 2, Linear::Value, c, false) == T::F16);  // rows that hold no 32-blocks
  const auto overrides = gguf_tuning_overrides(mxfp4, c);
  for (const LinearSlot slot : {LinearSlot{Linear::Query}, LinearSlot{Linear::Key}, LinearSlot{Linear::Value}, LinearSlot{Linear::Output},
                                LinearSlot{Linear::Query, LinearSlot::latent}}) {
    const std::string pattern = "^" + detail::escaped_dots(layer_name(1, slot, c.model_type)) + "$";
    const auto o = std::find_if(overrides.begin(), overrides.end(), [&](const LayerOverride& x) { return x.pattern == pattern; });
    REQUIRE(o != overrides.end());
    CAPTURE(pattern);
    CHECK(o->spec == exact_spec_for(T::MXFP4));
  }
}

TEST_CASE("a norm stored 2-D ([n, 1]) stays float in a quantized GGUF, as llama-quantize keeps every *_norm.weight") {
  const fs::path path = fs::temp_directory_path() / "autoround_gguf_2d_norm.gguf";
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  const RowMatrix norm = RowMatrix::Ones(1, 256), weight = RowMatrix::Constant(256, 256, 0.01f);
  w.add_tensor("output_norm.weight", {256, 1}, ggml::Type::F32, f32_bytes(norm));
  w.add_tensor("blk.0.attn_output.weight", {256, 256}, ggml::Type::F32, f32_bytes(weight));
  w.write(path);
  const GgufFile file(path.string());
  LlamaConfig c;
  c.layers = 1, c.hidden = 256, c.heads = 8, c.kv_heads = 8, c.head_dim = 32;
  const GgufScheme scheme = gguf_scheme("q4_k_m");
  CHECK(gguf_output_type(file, file.tensor("output_norm.weight"), scheme, c, {}) == ggml::Type::F32);
  CHECK(gguf_output_type(file, file.tensor("blk.0.attn_output.weight"), scheme, c, {}) == ggml::Type::Q4_K);
  fs::remove(path);
}

TEST_CASE("gguf:q4_k_m of a qwen3moe model: experts tuned as Q4_K / Q6_K through the double quantization") {
  Shape s;
  s.hidden = 256, s.inter = 256, s.blocks = 2, s.heads = 4, s.kv_heads = 2;
  const fs::path dir = fs::temp_directory_path() / "autoround_gguf_moe_kquant";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path source_path = write_qwen3moe(s, dir / "source.gguf", 12);
  const auto results = tune_into_gguf<DynamicDoubleQuantizer>(source_path, "q4_k_m", dir / "q4_k_m.gguf");
  const GgufFile out((dir / "q4_k_m.gguf").string());
  for (Index b = 0; b < s.blocks; ++b) {
    const std::string p = "blk." + std::to_string(b) + ".";
    CHECK(out.tensor(p + "ffn_gate_exps.weight").type == ggml::Type::Q4_K);
    // use_more_bits of 2 layers: layer 1 (>= 7 * 2 / 8) gets Q6_K, layer 0 keeps Q4_K
    CHECK(out.tensor(p + "ffn_down_exps.weight").type == (b == 1 ? ggml::Type::Q6_K : ggml::Type::Q4_K));
    const RowMatrix values = out.to_float(out.tensor(p + "ffn_down_exps.weight"));
    const auto& q = results[static_cast<std::size_t>(b)][4 + 3 * 2 + 2];  // expert 2's down
    REQUIRE(q.has_value());
    const RowMatrix tuned = q->dequantize();
    CHECK((values.middleRows(2 * tuned.rows(), tuned.rows()) - tuned).cwiseAbs().maxCoeff() <= 2e-3f * tuned.cwiseAbs().maxCoeff());
  }
  fs::remove_all(dir);
}

TEST_CASE("our types for MoE GGUF files equal llama-quantize's, tensor by tensor") {
  // synthetic qwen3moe / Mixtral-like (8 experts) / qwen2moe (shared expert) / deepseek2 (latent
  // attention: attn_q_a, attn_q_b, attn_kv_a_mqa, attn_k_b, attn_v_b; a dense first block) files
  // quantized by llama-quantize itself (scripts/make_llama_quantize_moe.py): every 2-D and 3-D tensor's type
  std::ifstream in(std::string(AUTOROUND_FIXTURES_DIR) + "/llama_quantize_types_moe.json");
  REQUIRE(in.good());
  const nlohmann::json fixture = nlohmann::json::parse(in);
  for (const auto& [model, entry] : fixture["models"].items()) {
    const auto& c = entry["config"];
    LlamaConfig config;
    config.layers = c["layers"];
    config.hidden = c["hidden"];
    config.heads = c["heads"];
    config.kv_heads = c["kv_heads"];
    config.head_dim = config.hidden / config.heads;
    config.tied_embeddings = false;
    const Index experts = c["experts"];
    for (const auto& [name, tensors] : entry["types"].items()) {
      CAPTURE(model);
      CAPTURE(name);
      int differing = 0, exps = 0;
      for (const auto& [tensor, theirs] : tensors.items()) {
        const GgufTensorSite site = gguf_tensor_site(tensor);
        const Index cols = theirs[1].get<Index>();
        const GgufScheme scheme = gguf_scheme(name);
        const ggml::Type ours = site.keep_type ? ggml::Type::F32  // the router, F32 in the source
                                               : gguf_tensor_type(scheme, cols, site.block, site.rule(scheme.mix), config,
                                                                  tensor == "output.weight", experts);
        exps += site.owner == GgufTensorSite::Owner::Experts;
        if (theirs[0].get<std::string>() != ggml::traits(ours).name) {
          ++differing;
          MESSAGE(tensor << ": ours " << std::string(ggml::traits(ours).name) << ", llama-quantize " << theirs[0].get<std::string>());
        }
      }
      CHECK(exps == 3 * (config.layers - c.value("dense", Index{0})));
      CHECK(differing == 0);
    }
  }
}
/// A synthetic gemma4 file's configuration as scripts/make_llama_quantize_gemma4.py wrote it (its
/// fixture's "config"): sizes, a full layer every 6th, v_norm, tied embeddings.
LlamaConfig gemma4_fixture_config(const nlohmann::json& c) {
  LlamaConfig config;
  config.model_type = "gemma4";
  config.layers = c["layers"];
  config.hidden = c["hidden"];
  config.heads = c["heads"];
  config.kv_heads = c["kv_heads"];
  config.head_dim = c["head_dim"];
  config.full_head_dim = c["full_head_dim"];
  config.value_norm = true;
  for (Index b = 0; b < config.layers; ++b) config.sliding.push_back(b % 6 != 5);
  config.tied_embeddings = true;
  return config;
}
TEST_CASE("our types for a gemma4 GGUF file equal llama-quantize's, whose attn_v rules count the attn_v tensors") {
  // a synthetic gemma4 file of 12 layers quantized by llama-quantize itself
  // (scripts/make_llama_quantize_gemma4.py): the full layers 5 and 11 have no attn_v (keys as
  // values), so its attn_v rules see 10 of them; by layer number (of 12) q4_k_m's Q6_K layers
  // would be 0, 3, 6, 9, 10, 11 instead of 0, 3, 7, 9, 10
  std::ifstream in(std::string(AUTOROUND_FIXTURES_DIR) + "/llama_quantize_types_gemma4.json");
  REQUIRE(in.good());
  const nlohmann::json fixture = nlohmann::json::parse(in);
  LlamaConfig config = gemma4_fixture_config(fixture["config"]);
  config.full_kv_heads = fixture["config"]["full_kv_heads"];
  config.full_values_from_keys = true;
  int v_tensors = 0;
  for (const auto& [name, tensors] : fixture["types"].items()) {
    CAPTURE(name);
    int differing = 0;
    for (const auto& [tensor, theirs] : tensors.items()) {
      const GgufTensorSite site = gguf_tensor_site(tensor);
      const GgufScheme scheme = gguf_scheme(name);
      const ggml::Type ours = gguf_tensor_type(scheme, theirs[1].get<Index>(), site.block, site.rule(scheme.mix), config,
                                               tensor == "token_embd.weight");
      v_tensors += name == "q4_k_m" && site.linear == Linear::Value;
      if (theirs[0].get<std::string>() != ggml::traits(ours).name) {
        ++differing;
        MESSAGE(tensor << ": ours " << std::string(ggml::traits(ours).name) << ", llama-quantize " << theirs[0].get<std::string>());
      }
    }
    CHECK(differing == 0);
  }
  CHECK(v_tensors == 10);
  // and the tuning's overrides name no v_proj for the full layers, and o_proj at its own width
  const std::vector<LayerOverride> overrides = gguf_tuning_overrides(gguf_scheme("q4_k_m"), config);
  const auto named = [&](const std::string& layer) {
    return std::any_of(overrides.begin(), overrides.end(), [&](const LayerOverride& o) { return o.pattern.find(layer) != std::string::npos; });
  };
  CHECK(named("layers\\.4\\.self_attn\\.v_proj"));
  CHECK_FALSE(named("layers\\.5\\.self_attn\\.v_proj"));
}
TEST_CASE("our types for a gemma4 E2B-like GGUF file equal llama-quantize's: per-layer table, projection, branch, shared KV layers") {
  // the same 12 layers with E2B's pieces (scripts/make_llama_quantize_gemma4.py ... E2B): layers 6-11
  // share layers 4's and 5's keys and values (6 attn_v tensors), their MLPs 1024 wide (ffn_down's
  // rows); per_layer_token_embd is typed as the tied output, per_layer_model_proj never quantized,
  // inp_gate / proj by the base type (OTHER)
  std::ifstream in(std::string(AUTOROUND_FIXTURES_DIR) + "/llama_quantize_types_gemma4_e2b.json");
  REQUIRE(in.good());
  const nlohmann::json fixture = nlohmann::json::parse(in);
  const auto& c = fixture["config"];
  LlamaConfig config = gemma4_fixture_config(c);
  config.intermediate = c["ff"];
  config.per_layer_input = c["per_layer"];
  config.kv_shared_layers = c["shared_kv"];
  config.double_wide_mlp = true;
  // a stand-in source holding the two global tensors whose types do not follow from the config alone
  GgufWriter w;
  w.set_string("general.architecture", "gemma4");
  w.add_tensor("per_layer_model_proj.weight", {256, 3072}, ggml::Type::F16, std::vector<std::byte>(256 * 3072 * 2));
  w.add_tensor("per_layer_token_embd.weight", {3072, 512}, ggml::Type::F16, std::vector<std::byte>(3072 * 512 * 2));
  const std::filesystem::path path = std::filesystem::temp_directory_path() / "autoround_e2b_types.gguf";
  w.write(path);
  const GgufFile source(path.string());
  int v_tensors = 0;
  for (const auto& [name, tensors] : fixture["types"].items()) {
    CAPTURE(name);
    const GgufScheme scheme = gguf_scheme(name);
    int differing = 0;
    for (const auto& [tensor, theirs] : tensors.items()) {
      const GgufTensorSite site = gguf_tensor_site(tensor);
      ggml::Type ours;
      if (const GgufTensor* t = source.find_tensor(tensor)) ours = gguf_output_type(source, *t, scheme, config, {});
      else ours = gguf_tensor_type(scheme, theirs[1].get<Index>(), site.block, site.rule(scheme.mix), config, tensor == "token_embd.weight");
      v_tensors += name == "q4_k_m" && site.linear == Linear::Value;
      if (theirs[0].get<std::string>() != ggml::traits(ours).name) {
        ++differing;
        MESSAGE(tensor << ": ours " << std::string(ggml::traits(ours).name) << ", llama-quantize " << theirs[0].get<std::string>());
      }
    }
    CHECK(differing == 0);
  }
  std::filesystem::remove(path);
  CHECK(v_tensors == 6);
  // the tuning's overrides: no k_proj / v_proj in the shared layers, the branch's two in every layer
  const std::vector<LayerOverride> overrides = gguf_tuning_overrides(gguf_scheme("q4_k_m"), config);
  const auto named = [&](const std::string& layer) {
    return std::any_of(overrides.begin(), overrides.end(), [&](const LayerOverride& o) { return o.pattern.find(layer) != std::string::npos; });
  };
  CHECK(named("layers\\.5\\.self_attn\\.k_proj"));
  CHECK_FALSE(named("layers\\.6\\.self_attn\\.k_proj"));
  CHECK_FALSE(named("layers\\.6\\.self_attn\\.v_proj"));
  CHECK(named("layers\\.11\\.per_layer_input_gate"));
  CHECK(named("layers\\.11\\.per_layer_projection"));
}
}  // namespace test_gguf_moe_export
