// Our Hugging Face mixture-of-experts loaders and float32 forward pass against transformers
// itself: per family a small random checkpoint that transformers 5.17 wrote with save_pretrained
// (config.json as it writes it: RoPE theta 20000 under rope_parameters; qwen3_moe's expert count
// as num_local_experts) and that model's logits on 48 tokens, from transformers (float32, eager
// attention, CPU). tests/fixtures/families/<family>/, scripts/make_family_fixtures.py.
//   qwen3_moe  8 experts, top 2, norm_topk_prob true, q/k norms
//   qwen2_moe  4 experts, top 2, norm_topk_prob false, q/k/v biases, a shared expert (48) scaled
//              by sigmoid(shared_expert_gate)
//   mixtral    8 experts, top 2 (always renormalized), block_sparse_moe.experts.E.{w1,w3,w2}
// Both layers of each model are MoE layers.
//   gemma3_text  Gemma3ForCausalLM: sandwich norms (1 + w), GeGLU, q/k norms, √hidden embedding
//                scale, query_pre_attn_scalar 24, layers [sliding, sliding, full, sliding] with an
//                8-token window over 48 tokens, full layers' RoPE linear ×2 on theta 20000 and the
//                sliding layers' theta 5000, final logit soft-capping 20, tied embeddings
//   gemma4_text  Gemma4ForCausalLM (31B's dense layout): full layers with their own head size (32 vs
//                16) and KV heads (1 vs 2), their values k_proj's output (attention_k_eq_v), v_norm,
//                proportional RoPE (a quarter of the pairs turn), plain-w norms, layer_scalar
//   gemma4_moe   the same with enable_moe_block (the 26B-A4B's layout): 8 GeGLU experts top 2 beside
//                every dense MLP, their own norms, the router on rms(h) × router.scale / √64, top-k
//                renormalized × per_expert_scale; transformers saves the experts fused
//   gemma4_e2b   Gemma4ForCausalLM with E2B's pieces: per-layer embeddings (32 wide), the last 2 of 6
//                layers attending with layers 2's and 3's keys and values, their MLPs double-wide
//   gemma2       Gemma2ForCausalLM: its alternation (sliding, full, sliding), window 8, attention
//                soft-capping 2 and final 3, no q/k norms
//   gpt_oss      GptOssForCausalLM: 8 experts top 2 (top-k of the biased router logits, softmax over
//                them), clamped SwiGLU experts with biases (gate_up × 6: the ±7 clamps bind), q/k/v/o
//                biases, attention sinks, [sliding, full] with an 8-token window, YaRN (truncate
//                false); gpt_oss_mxfp4 the same with its experts in MXFP4 as released checkpoints hold them
//   deepseek_v3  DeepseekV3ForCausalLM: latent attention (q_lora_rank 32, kv_lora_rank 32, qk_nope 8,
//                qk_rope 32, v_head 16), YaRN ×4 with mscale / mscale_all_dim, a dense first layer,
//                then 8 experts in 2 groups (top group 1, top 2), a shared expert
#include <doctest/doctest.h>

#include <algorithm>
#include <autoround/autoround.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace test_family_logits {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;

namespace {
std::string family_dir(const std::string& family) { return std::string(AUTOROUND_FIXTURES_DIR) + "/families/" + family; }

void check_logits(const std::string& family, const LlamaModel& model) {
  const SafetensorsFile fixture(family_dir(family) + "/logits.safetensors");
  const auto tokens = fixture.view_as<std::int32_t>("tokens", Dtype::I32);
  // where the fixture has transformers' float64 logits (Gemma 4: unscaled scores bend float32
  // sums more), those are the reference and the bound is twice transformers' own float32 error
  const bool exact = fixture.find("logits_f64") != nullptr;
  const RowMatrix expected = fixture.to_float(exact ? "logits_f64" : "logits");
  const double own_error = exact ? (fixture.to_float("logits") - expected).cwiseAbs().maxCoeff() : 0.0;
  const RowMatrix logits = forward_logits(model, tokens);
  REQUIRE(logits.rows() == expected.rows());
  REQUIRE(logits.cols() == expected.cols());
  const double scale = expected.cwiseAbs().maxCoeff();
  const double worst = (logits - expected).cwiseAbs().maxCoeff();
  Index agree = 0;
  for (Index p = 0; p < logits.rows(); ++p) {
    Index ours, theirs;
    logits.row(p).maxCoeff(&ours);
    expected.row(p).maxCoeff(&theirs);
    agree += ours == theirs;
  }
  MESSAGE(family << ": max |logit difference| " << worst << " (max |logit| " << scale << "), arg-max agrees at " << agree
                 << " / " << logits.rows());
  // float32 sums in another order over 2 blocks; logits are O(3). Measured 2026-12-04 (x86-64,
  // g++ 12 -O1, no FMA contraction): 1.95e-6 / 1.31e-6 / 1.67e-6 (qwen3_moe / qwen2_moe / mixtral),
  // at most 6.5e-7 of max |logit|; the bound is about 8 times that. The fixtures' smallest router
  // margin (4.3e-4, qwen3_moe) and top-1/top-2 logit gap (5.5e-4, mixtral) are far above it, so
  // neither an expert choice nor an arg-max can flip on rounding alone.
  if (exact) MESSAGE(family << ": against float64; transformers' float32 logits are " << own_error << " from them");
  CHECK(worst <= std::max(5e-6 * scale, 2 * own_error));
  CHECK(agree == logits.rows());
}

/// How far the logits of a family's model with one change made move from transformers' (the
/// fixture's): a setting that is read and computed moves them far beyond check_logits' tolerance.
class LogitShift {
 public:
  LogitShift(const std::string& dir, LlamaModel model)
      : fixture_(dir + "/logits.safetensors"), tokens_(fixture_.view_as<std::int32_t>("tokens", Dtype::I32)),
        expected_(fixture_.to_float("logits")), model_(std::move(model)) {}
  template <class Change>
  double operator()(Change&& change) const {
    LlamaModel m = model_;
    change(m);
    return static_cast<double>((forward_logits(m, tokens_) - expected_).cwiseAbs().maxCoeff());
  }

 private:
  SafetensorsFile fixture_;
  std::span<const std::int32_t> tokens_;
  RowMatrix expected_;
  LlamaModel model_;
};

void check_family(const std::string& family, Index experts) {
  const LlamaModel model = load_llama(family_dir(family));
  CHECK(model.config.rope_theta == 20000.0f);  // config.json: rope_parameters.rope_theta
  REQUIRE(model.blocks.size() == 2);
  for (const LlamaBlock& block : model.blocks) {
    REQUIRE(block.moe.has_value());
    CHECK(static_cast<Index>(block.moe->weights.experts.size()) == experts);
  }
  check_logits(family, model);
}
}  // namespace

TEST_CASE("qwen3_moe: logits equal transformers' Qwen3MoeForCausalLM") { check_family("qwen3_moe", 8); }
TEST_CASE("qwen2_moe: logits equal transformers' Qwen2MoeForCausalLM (gated shared expert, q/k/v biases)") {
  check_family("qwen2_moe", 4);
}
TEST_CASE("mixtral: logits equal transformers' MixtralForCausalLM") { check_family("mixtral", 8); }

TEST_CASE("gemma3_text: logits equal transformers' Gemma3ForCausalLM (sandwich norms, GeGLU, sliding windows, two RoPEs)") {
  const LlamaModel model = load_llama(family_dir("gemma3_text"));
  const LlamaConfig& c = model.config;
  CHECK(c.activation == MlpActivation::GeluTanh);
  CHECK(c.embedding_scale == std::sqrt(72.0f));  // a float32 checkpoint: √hidden unrounded
  CHECK(c.attention_scale == 1.0f / std::sqrt(24.0f));
  CHECK(c.sliding == std::vector<bool>{true, true, false, true});
  CHECK(c.sliding_window == 8);
  CHECK(c.rope_theta == 20000.0f);
  CHECK(c.sliding_rope_theta == 5000.0f);
  REQUIRE(c.rope_divisors.size() == 8);
  CHECK(c.rope_divisors[0] == 2.0f);
  CHECK(c.logit_softcap == 20.0f);
  CHECK(c.tied_embeddings);
  REQUIRE(model.blocks.size() == 4);
  CHECK(model.blocks[2].sliding == false);
  CHECK(model.blocks[3].sliding == true);
  CHECK(model.blocks[0].post_ffn_norm.size() == 72);
  CHECK(model.blocks[0].q_norm.size() == 16);
  check_logits("gemma3_text", model);
}

TEST_CASE("a bfloat16 Gemma checkpoint (as released) loads: √hidden rounded to bf16 as transformers scales the embedding") {
  // the gemma3_text fixture rewritten with every float tensor in BF16 (round to nearest even, as
  // torch's .to(torch.bfloat16)): √72 = 8.485 becomes 8.5 (a float32 checkpoint keeps 8.485);
  // before ggml::quantize knew BF16, every bf16 Gemma checkpoint was refused at load
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "autoround_gemma3_bf16";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(family_dir("gemma3_text") + "/config.json", dir / "config.json", std::filesystem::copy_options::overwrite_existing);
  const SafetensorsFile source(family_dir("gemma3_text") + "/model.safetensors");
  SafetensorsWriter writer;
  for (const SafetensorsTensor& t : source.tensors()) {
    const RowMatrix values = source.to_float(t.name);
    writer.add(t.name, Dtype::BF16, t.shape, ggml::quantize(ggml::Type::BF16, std::span<const float>(values.data(), static_cast<std::size_t>(values.size()))));
  }
  writer.write(dir / "model.safetensors");
  const LlamaModel model = load_llama(dir.string());
  CHECK(model.config.embedding_scale == 8.5f);
  const LlamaModel float_model = load_llama(family_dir("gemma3_text"));
  CHECK(float_model.config.embedding_scale == std::sqrt(72.0f));
  // the bf16 weights' logits stay near the float32 model's (bf16 keeps 8 bits of mantissa)
  const SafetensorsFile fixture(family_dir("gemma3_text") + "/logits.safetensors");
  const auto tokens = fixture.view_as<std::int32_t>("tokens", Dtype::I32);
  const RowMatrix expected = fixture.to_float("logits"), logits = forward_logits(model, tokens);
  const double worst = (logits - expected).cwiseAbs().maxCoeff();
  MESSAGE("bf16 gemma3_text: max |logit difference| from the float32 model's " << worst);
  CHECK(worst < 0.1 * expected.cwiseAbs().maxCoeff());
  CHECK(worst > 1e-4);  // (they are bf16 weights: not the float32 model)
  std::filesystem::remove_all(dir);
}

TEST_CASE("gemma4_text: logits equal transformers' Gemma4ForCausalLM (full layers' own geometry, keys as values, v_norm, layer_scalar)") {
  const LlamaModel model = load_llama(family_dir("gemma4_text"));
  const LlamaConfig& c = model.config;
  CHECK(c.activation == MlpActivation::GeluTanh);
  CHECK_FALSE(c.norm_weight_plus_one);
  CHECK(c.attention_scale == 1.0f);
  CHECK(c.value_norm);
  CHECK(c.sliding == std::vector<bool>{true, false, true, false});
  CHECK(c.head_dim == 16);
  CHECK(c.full_head_dim == 32);
  CHECK(c.full_kv_heads == 1);
  CHECK(c.full_values_from_keys);
  CHECK(c.sliding_rope_theta == 5000.0f);
  REQUIRE(c.rope_divisors.size() == 16);  // proportional: pairs 0..3 of the 32-wide heads turn, 4..15 not
  CHECK(c.rope_divisors[3] == 1.0f);
  CHECK(std::isinf(c.rope_divisors[4]));
  CHECK_FALSE(c.llama_shaped());
  CHECK(cuda_unsupported(c).empty());  // the GPU tunes it too (tests/cuda/test_cuda_block_run.cpp)
  REQUIRE(model.blocks.size() == 4);
  CHECK(model.blocks[1].values_from_keys);
  CHECK(model.blocks[1][Linear::Value].size() == 0);
  CHECK(model.blocks[1][Linear::Key].rows() == 32);  // 1 KV head of 32
  CHECK(model.blocks[1].q_norm.size() == 32);
  CHECK(model.blocks[0][Linear::Value].rows() == 32);  // 2 KV heads of 16
  CHECK(linear_slots(model.blocks[1]).size() == 6);
  CHECK(linear_slots(model.blocks[0]).size() == 7);
  CHECK(model.blocks[2].layer_scalar != 1.0f);
  check_logits("gemma4_text", model);
  // each Gemma 4 setting is read and computed: without it the logits move far beyond the tolerance
  const LogitShift distance(family_dir("gemma4_text"), model);
  CHECK(distance([](LlamaModel& m) { m.config.value_norm = false; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.blocks[1].layer_scalar = 1; }) > 1e-2);  // (not the last: the final norm undoes its scale)
  CHECK(distance([](LlamaModel& m) { m.config.rope_divisors.assign(16, 1.0f); }) > 1e-2);  // every pair turning
  CHECK(distance([](LlamaModel& m) { m.config.attention_scale = 0; }) > 1e-2);              // 1/√head_dim
  CHECK(distance([](LlamaModel& m) { m.config.sliding_rope_theta = 0; }) > 1e-2);           // one RoPE base
}

TEST_CASE("gemma4_e2b: logits equal transformers' Gemma4ForCausalLM with E2B's per-layer embeddings, shared KV layers and double-wide MLPs") {
  const LlamaModel model = load_llama(family_dir("gemma4_e2b"));
  const LlamaConfig& c = model.config;
  CHECK(c.per_layer_input == 32);
  CHECK(c.per_layer_vocab == 128);
  CHECK(c.kv_shared_layers == 2);
  CHECK(c.double_wide_mlp);
  CHECK(c.kv_donor(4) == 2);  // [s, f] × 3: the last non-shared sliding layer is 2, the full one 3
  CHECK(c.kv_donor(5) == 3);
  CHECK(c.kv_donor(3) == -1);
  CHECK(c.kv_donates(2));
  CHECK(c.kv_donates(3));
  CHECK_FALSE(c.kv_donates(1));
  CHECK(cuda_unsupported(c) == "per-layer embeddings (Gemma 4 E2B / E4B)");
  REQUIRE(model.blocks.size() == 6);
  REQUIRE(model.per_layer.has_value());
  CHECK(model.per_layer->table.rows() == 128);
  CHECK(model.per_layer->table.cols() == 6 * 32);
  CHECK(model.per_layer->projection.rows() == 6 * 32);
  for (Index b = 0; b < 6; ++b) {
    const LlamaBlock& block = model.blocks[static_cast<std::size_t>(b)];
    CAPTURE(b);
    REQUIRE(block.per_layer.has_value());
    CHECK(block.per_layer->gate.rows() == 32);
    CHECK(block.per_layer->projection.cols() == 32);
    CHECK(block.kv_shared == (b >= 4));
    CHECK(block[Linear::Key].rows() == (b >= 4 ? 0 : b % 2 == 0 ? 2 * 16 : 2 * 32));  // 2 KV heads of the layer's own size
    CHECK(block[Linear::Gate].rows() == (b >= 4 ? 192 : 96));  // double-wide in the shared layers
  }
  CHECK(model.blocks[4][Linear::Key].size() == 0);
  CHECK(model.blocks[4][Linear::Value].size() == 0);
  CHECK(model.blocks[4].k_norm.size() == 0);
  check_logits("gemma4_e2b", model);
  // each piece is read and computed: without it the logits move far beyond the tolerance
  const LogitShift distance(family_dir("gemma4_e2b"), model);
  CHECK(distance([](LlamaModel& m) { m.per_layer->norm.setOnes(); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.per_layer->projection.setZero(); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.per_layer->table.setZero(); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.blocks[2].per_layer->post_norm.setOnes(); }) > 1e-2);
  // a shared layer attending with its own kind's other layer (the full donor's keys for the sliding layer: another width, so
  // the sliding donor's of the layer before it instead) moves them too
  CHECK(distance([](LlamaModel& m) { m.config.kv_shared_layers = 0; m.blocks[4].kv_shared = false; m.blocks[5].kv_shared = false;
                                      m.blocks[4][Linear::Key] = m.blocks[2][Linear::Key]; m.blocks[4][Linear::Value] = m.blocks[2][Linear::Value];
                                      m.blocks[4].k_norm = m.blocks[2].k_norm; m.blocks[5][Linear::Key] = m.blocks[3][Linear::Key];
                                      m.blocks[5][Linear::Value] = m.blocks[3][Linear::Value]; m.blocks[5].k_norm = m.blocks[3].k_norm; }) > 1e-2);
}

TEST_CASE("gemma4_moe: logits equal transformers' Gemma4ForCausalLM with enable_moe_block (experts beside the MLP, 26B-A4B's layout)") {
  const LlamaModel model = load_llama(family_dir("gemma4_moe"));
  REQUIRE(model.blocks.size() == 4);
  for (std::size_t b = 0; b < 4; ++b) {
    CAPTURE(b);
    const LlamaBlock& block = model.blocks[b];
    REQUIRE(block.moe.has_value());
    REQUIRE(block.moe->beside_mlp.has_value());
    CHECK(block.moe->spec.top_k == 2);
    CHECK(block.moe->spec.normalize);
    CHECK(block.moe->spec.activation == ExpertActivation::GeGlu);
    CHECK(block.moe->weights.experts.size() == 8);
    CHECK(block.moe->weights.experts[7].down.cols() == 32);
    CHECK(block.moe->weights.expert_scale.size() == 8);
    CHECK(block.moe->beside_mlp->router_scale.size() == 64);
    CHECK(block[Linear::Gate].rows() == 96);  // the dense MLP stays
    // attention (3 without v_proj in the full layers), the MLP's 3, then 8 experts × 3
    CHECK(linear_slots(block).size() == (block.values_from_keys ? 6u : 7u) + 24u);
    CHECK(first_expert_slot(block) == (block.values_from_keys ? 6u : 7u));
  }
  check_logits("gemma4_moe", model);
  // each piece is read and computed: without it the logits move far beyond the tolerance
  const LogitShift distance(family_dir("gemma4_moe"), model);
  const auto each = [](auto&& change) {
    return [change](LlamaModel& m) {
      for (LlamaBlock& b : m.blocks) change(*b.moe);
    };
  };
  CHECK(distance(each([](MoeFeedForward& f) { f.beside_mlp->router_scale.setOnes(); })) > 1e-2);
  CHECK(distance(each([](MoeFeedForward& f) { f.weights.expert_scale.resize(0); })) > 1e-2);
  CHECK(distance(each([](MoeFeedForward& f) { f.beside_mlp->input_norm.setOnes(); })) > 1e-2);
  CHECK(distance(each([](MoeFeedForward& f) { f.beside_mlp->mlp_norm.setOnes(); })) > 1e-2);
  CHECK(distance(each([](MoeFeedForward& f) { f.beside_mlp->experts_norm.setOnes(); })) > 1e-2);
  CHECK(distance(each([](MoeFeedForward& f) { f.spec.activation = ExpertActivation::SwiGlu; })) > 1e-2);
  CHECK(distance([](LlamaModel& m) {  // the experts alone, the dense MLP gone
    for (LlamaBlock& b : m.blocks) b.moe->beside_mlp.reset();
  }) > 1e-2);
}

TEST_CASE("gemma4_text: the GGUF that llama.cpp's converter writes of it (gemma4) reads to transformers' logits") {
  // model.gguf: scripts/convert_family_gguf.py (llama.cpp 0.3.36's converter, float32): arch gemma4,
  // attention.head_count_kv [2, 1, 2, 1], key_length 32 / key_length_swa 16, no attn_v in the full
  // layers, rope_freqs.weight (16 values: 4 ones, 12 × 1e30), layer_output_scale, norms as stored
  const LlamaModel model = load_llama(family_dir("gemma4_text") + "/model.gguf");
  const LlamaModel hf = load_llama(family_dir("gemma4_text"));
  const LlamaConfig& c = model.config;
  CHECK(c.model_type == "gemma4");
  CHECK(c.head_dim == 16);
  CHECK(c.full_head_dim == 32);
  CHECK(c.kv_heads == 2);
  CHECK(c.full_kv_heads == 1);
  CHECK(c.full_values_from_keys);
  CHECK(c.value_norm);
  CHECK(c.attention_scale == 1.0f);
  CHECK(c.sliding == hf.config.sliding);
  CHECK(c.sliding_window == 8);
  CHECK(c.sliding_rope_theta == 5000.0f);
  REQUIRE(c.rope_divisors.size() == 16);
  CHECK(c.rope_divisors[3] == 1.0f);
  CHECK(c.rope_divisors[4] == 1e30f);
  CHECK(c.logit_softcap == 20.0f);
  for (std::size_t b = 0; b < 4; ++b) {
    CAPTURE(b);
    CHECK(model.blocks[b].values_from_keys == hf.blocks[b].values_from_keys);
    CHECK(model.blocks[b].layer_scalar == hf.blocks[b].layer_scalar);
    CHECK(model.blocks[b].q_norm == hf.blocks[b].q_norm);
    CHECK(model.blocks[b].post_ffn_norm == hf.blocks[b].post_ffn_norm);
    for (Linear l : all_linears) CHECK(model.blocks[b][l] == hf.blocks[b][l]);
  }
  check_logits("gemma4_text", model);
}

TEST_CASE("gemma4_e2b: the GGUF that llama.cpp's converter writes of it reads to the same weights and transformers' logits") {
  // model.gguf: scripts/convert_family_gguf.py (llama.cpp 0.3.36's converter, float32): gemma4 with
  // embedding_length_per_layer_input 32, attention.shared_kv_layers 2, feed_forward_length one
  // width per layer [96 × 4, 192 × 2], per_layer_token_embd / per_layer_model_proj /
  // per_layer_proj_norm, blk.N.inp_gate / proj / post_norm, no attn_k / attn_v in blocks 4 and 5
  const LlamaModel model = load_llama(family_dir("gemma4_e2b") + "/model.gguf");
  const LlamaModel hf = load_llama(family_dir("gemma4_e2b"));
  const LlamaConfig& c = model.config;
  CHECK(c.model_type == "gemma4");
  CHECK(c.per_layer_input == 32);
  CHECK(c.per_layer_vocab == 128);
  CHECK(c.kv_shared_layers == 2);
  CHECK(c.double_wide_mlp);
  CHECK(c.intermediate == 96);
  REQUIRE(model.per_layer.has_value());
  CHECK(model.per_layer->table == hf.per_layer->table);
  CHECK(model.per_layer->projection == hf.per_layer->projection);
  CHECK(model.per_layer->norm == hf.per_layer->norm);
  for (std::size_t b = 0; b < 6; ++b) {
    CAPTURE(b);
    CHECK(model.blocks[b].kv_shared == hf.blocks[b].kv_shared);
    CHECK(model.blocks[b].k_norm == hf.blocks[b].k_norm);
    REQUIRE(model.blocks[b].per_layer.has_value());
    CHECK(model.blocks[b].per_layer->gate == hf.blocks[b].per_layer->gate);
    CHECK(model.blocks[b].per_layer->projection == hf.blocks[b].per_layer->projection);
    CHECK(model.blocks[b].per_layer->post_norm == hf.blocks[b].per_layer->post_norm);
    for (Linear l : all_linears) CHECK(model.blocks[b][l] == hf.blocks[b][l]);
  }
  check_logits("gemma4_e2b", model);
  // read a slice at a time (what a streaming run does) the table's rows are the whole table's
  const GgufModelSource source(family_dir("gemma4_e2b") + "/model.gguf");
  const std::vector<std::int32_t> ids{5, 0, 127};
  const RowMatrix rows = source.per_layer_rows(ids, 3);
  for (std::size_t i = 0; i < ids.size(); ++i) CHECK(rows.row(static_cast<Index>(i)) == hf.per_layer->table.row(ids[i]).segment(3 * 32, 32));
  // the same from the Hugging Face directory (both sources share one table reader each with the embedding)
  const HfModelSource hf_source(family_dir("gemma4_e2b"));
  const RowMatrix hf_rows = hf_source.per_layer_rows(ids, 3);
  for (std::size_t i = 0; i < ids.size(); ++i) CHECK(hf_rows.row(static_cast<Index>(i)) == hf.per_layer->table.row(ids[i]).segment(3 * 32, 32));
  CHECK(hf_source.embedding_rows(ids) == source.embedding_rows(ids));
  // a token beyond the per-layer table is refused by name, from either source
  const std::vector<std::int32_t> beyond{1, static_cast<std::int32_t>(c.per_layer_vocab)};
  for (const char* what : {"outside the per-layer embedding table of", "at position 1"}) {
    CHECK_THROWS_WITH_AS(source.per_layer_rows(beyond, 0), doctest::Contains(what), Error);
    CHECK_THROWS_WITH_AS(hf_source.per_layer_rows(beyond, 0), doctest::Contains(what), Error);
  }
}

TEST_CASE("gemma4_moe: the GGUF that llama.cpp's converter writes of it reads to the same weights and transformers' logits") {
  // model.gguf: scripts/convert_family_gguf.py (llama.cpp 0.3.36's converter, float32): expert_count 8,
  // expert_used_count 2, expert_feed_forward_length 32; per layer ffn_gate_inp (+ .scale = router.scale),
  // the fused ffn_gate_up_exps ne {64, 64, 8}, ffn_down_exps (+ .scale = per_expert_scale),
  // pre_ffw_norm_2, post_ffw_norm_1, post_ffw_norm_2 beside the dense ffn_gate / ffn_up / ffn_down
  const LlamaModel model = load_llama(family_dir("gemma4_moe") + "/model.gguf");
  const LlamaModel hf = load_llama(family_dir("gemma4_moe"));
  CHECK(model.config.experts == 8);
  for (std::size_t b = 0; b < 4; ++b) {
    CAPTURE(b);
    const LlamaBlock &ours = model.blocks[b], &theirs = hf.blocks[b];
    REQUIRE(ours.moe.has_value());
    REQUIRE(ours.moe->beside_mlp.has_value());
    CHECK(ours.moe->spec.top_k == 2);
    CHECK(ours.moe->spec.activation == ExpertActivation::GeGlu);
    CHECK(ours.moe->spec.normalize);
    for (Linear l : all_linears) CHECK(ours[l] == theirs[l]);
    const MoeWeights &w = ours.moe->weights, &v = theirs.moe->weights;
    CHECK(w.router == v.router);
    CHECK(w.expert_scale == v.expert_scale);
    for (std::size_t e = 0; e < 8; ++e) {
      CHECK(w.experts[e].gate == v.experts[e].gate);
      CHECK(w.experts[e].up == v.experts[e].up);
      CHECK(w.experts[e].down == v.experts[e].down);
    }
    const ExpertsBesideMlp &x = *ours.moe->beside_mlp, &y = *theirs.moe->beside_mlp;
    CHECK(x.router_scale == y.router_scale);
    CHECK(x.input_norm == y.input_norm);
    CHECK(x.mlp_norm == y.mlp_norm);
    CHECK(x.experts_norm == y.experts_norm);
  }
  check_logits("gemma4_moe", model);
}

TEST_CASE("gemma4_text: per-layer embeddings or shared KV layers a checkpoint cannot back are refused by name, experts without their counts too") {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "autoround_gemma4_refusals";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(family_dir("gemma4_text") + "/model.safetensors", dir / "model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  std::ifstream in(family_dir("gemma4_text") + "/config.json");
  const nlohmann::json base = nlohmann::json::parse(in);
  const auto refused = [&](const char* key, const nlohmann::json& value, const std::string& expected) {
    nlohmann::json j = base;
    if (value.is_null()) j.erase(key);
    else j[key] = value;
    std::ofstream(dir / "config.json") << j.dump();
    CAPTURE(key);
    CHECK_THROWS_WITH_AS(load_llama(dir), doctest::Contains(expected.c_str()), Error);
  };
  // (E2B / E4B are read: gemma4_e2b below; here the checkpoint lacks what the config asks for)
  refused("hidden_size_per_layer_input", 256, "per_layer_input_gate");
  refused("hidden_size_per_layer_input", nullptr, "per_layer_input_gate");  // transformers' default is 256
  refused("num_kv_shared_layers", 3, "shared layer 1 has no earlier layer of its kind");  // [s, f, s, f]: layer 1 full, none before it
  refused("num_kv_shared_layers", 4, "out of range");
  refused("enable_moe_block", true, "no 'top_k_experts'");  // (the 26B-A4B's experts are read: gemma4_moe above)
  refused("use_bidirectional_attention", "all", "use_bidirectional_attention");
  std::filesystem::remove_all(dir);
}

TEST_CASE("gemma4 GGUF: what the reader cannot compute is refused by name, the file named") {
  // The converter's file rewritten with one change each (GgufWriter: its metadata and tensors
  // copied, one key or tensor added or changed), as a hostile or newer file would come.
  const GgufFile source(family_dir("gemma4_text") + "/model.gguf");
  const std::filesystem::path path = std::filesystem::temp_directory_path() / "autoround_gemma4_hostile.gguf";
  const auto refused = [&](const char* what, const auto& change, const std::string& expected) {
    GgufWriter w;
    for (const std::string& key : source.metadata_order()) w.set(key, source.metadata().at(key));
    for (const GgufTensor& t : source.tensors()) w.add_tensor(t.name, t.dims, t.type, std::vector<std::byte>(t.data.begin(), t.data.end()));
    change(w);
    w.write(path);
    CAPTURE(what);
    CHECK_THROWS_WITH_AS(load_llama(path.string()), doctest::Contains(expected.c_str()), Error);
    CHECK_THROWS_WITH_AS(load_llama(path.string()), doctest::Contains(path.string().c_str()), Error);
  };
  // (E2B / E4B files are read: gemma4_e2b above; here the file lacks what its keys ask for)
  refused("per-layer embeddings without their tensors", [](GgufWriter& w) { w.set_u32("gemma4.embedding_length_per_layer_input", 256); },
          "no tensor named 'per_layer_token_embd.weight'");
  refused("shared KV layers whose donors llama.cpp would choose otherwise", [](GgufWriter& w) { w.set_u32("gemma4.attention.shared_kv_layers", 3); },
          "layer 1's keys and values would come from another layer in llama.cpp than in transformers");
  refused("more shared KV layers than layers", [](GgufWriter& w) { w.set_u32("gemma4.attention.shared_kv_layers", 4); },
          "gemma4.attention.shared_kv_layers is out of range");
  refused("experts without routers", [](GgufWriter& w) {
    w.set_u32("gemma4.expert_count", 128);
    w.set_u32("gemma4.expert_used_count", 8);
  }, "gemma4.expert_count > 0 but no layer has its router (ffn_gate_inp)");
  refused("attn_v in one full layer only", [&](GgufWriter& w) {  // layers [s, f, s, f]: the full ones have none
    const GgufTensor& k = source.tensor("blk.3.attn_k.weight");
    w.add_tensor("blk.3.attn_v.weight", k.dims, k.type, std::vector<std::byte>(k.data.begin(), k.data.end()));
  }, "blk.3.attn_v.weight: gemma4's full layers must all have it or all lack it");
  const GgufValue kv = source.metadata().at("gemma4.attention.head_count_kv");  // [2, 1, 2, 1]
  REQUIRE(kv.array.size() == 4);
  refused("KV heads differing within the sliding layers", [&](GgufWriter& w) {
    GgufValue v = kv;
    v.array[2].u = 4, v.array[2].i = 4;
    w.set("gemma4.attention.head_count_kv", v);
  }, "layer 2's count 4 differs from the other layers of its kind");
  refused("a KV count per layer, one short", [&](GgufWriter& w) {
    GgufValue v = kv;
    v.array.pop_back();
    w.set("gemma4.attention.head_count_kv", v);
  }, "one count per layer is read for gemma4 only, 4 of them");
  refused("an odd key length", [](GgufWriter& w) { w.set_u32("gemma4.attention.key_length", 31); },
          "gemma4 needs even attention.key_length");
  refused("values longer than keys", [](GgufWriter& w) { w.set_u32("gemma4.attention.value_length_swa", 32); },
          "equal to value_length / value_length_swa");
  std::filesystem::remove(path);
}

TEST_CASE("gemma2: logits equal transformers' Gemma2ForCausalLM (attention and final soft-capping)") {
  const LlamaModel model = load_llama(family_dir("gemma2"));
  CHECK(model.config.attention_softcap == 2.0f);
  CHECK(model.config.logit_softcap == 3.0f);
  CHECK(model.config.sliding == std::vector<bool>{true, false, true});
  CHECK(model.config.sliding_rope_theta == 0.0f);  // one RoPE for both kinds of layer
  CHECK(model.blocks[0].q_norm.size() == 0);
  check_logits("gemma2", model);
}

TEST_CASE("phi3: logits equal transformers' Phi3ForCausalLM (fused qkv / gate_up, LongRoPE, partial rotary, sliding window)") {
  const LlamaModel model = load_llama(family_dir("phi3"));
  const LlamaConfig& c = model.config;
  CHECK(c.rotary_dims == 8);  // partial_rotary_factor 0.5 of head_dim 16
  CHECK(c.rope_long_after == 32);
  REQUIRE(c.rope_long_divisors.size() == 4);
  CHECK(c.rope_long_divisors[3] == 9.7f);
  CHECK(c.rope_divisors[1] == 1.3f);
  CHECK(c.rope_attention_factor == doctest::Approx(std::sqrt(1 + std::log(8.0) / std::log(32.0))));
  CHECK(c.sliding == std::vector<bool>{true, true});
  CHECK(c.sliding_window == 40);
  CHECK(!c.llama_shaped());
  check_logits("phi3", model);  // 48 tokens: beyond original_max_position_embeddings, the long factors
  // the first 32 tokens alone: the short factors
  const SafetensorsFile fixture(family_dir("phi3") + "/logits.safetensors");
  const auto tokens = fixture.view_as<std::int32_t>("tokens", Dtype::I32);
  const RowMatrix expected = fixture.to_float("logits_short");
  const RowMatrix logits = forward_logits(model, std::span<const std::int32_t>(tokens.data(), 32));
  const double worst = (logits - expected).cwiseAbs().maxCoeff();
  MESSAGE("phi3, 32 tokens (short factors): max |logit difference| " << worst);
  CHECK(worst <= 5e-6 * expected.cwiseAbs().maxCoeff());
}

TEST_CASE("phi3: the GGUF that llama.cpp's converter writes of it reads to transformers' logits") {
  // model.gguf: scripts/convert_family_gguf.py (llama.cpp 0.3.36's convert_hf_to_gguf.py, float32,
  // a stand-in vocabulary): arch phi3, blk.N.attn_qkv [Q | K | V] and ffn_up [gate | up] fused,
  // rope_factors_short / _long, rope.scaling.original_context_length 32, rope.scaling.attn_factor,
  // rope.dimension_count 8, attention.sliding_window 40 — which llama.cpp ignores (phi3's sliding
  // window is disabled there: full causal attention), so the GGUF reads without it and agrees with
  // transformers' logits up to position 40, where the window starts to matter
  const LlamaModel model = load_llama(family_dir("phi3") + "/model.gguf");
  LlamaModel hf = load_llama(family_dir("phi3"));
  const LlamaConfig& c = model.config;
  CHECK(c.model_type == "phi3");
  CHECK(c.rope_style == RopeStyle::HalfSplit);
  CHECK(c.rotary_dims == hf.config.rotary_dims);
  CHECK(c.rope_divisors == hf.config.rope_divisors);
  CHECK(c.rope_long_divisors == hf.config.rope_long_divisors);
  CHECK(c.rope_long_after == hf.config.rope_long_after);
  CHECK(c.rope_attention_factor == doctest::Approx(hf.config.rope_attention_factor).epsilon(1e-6));
  CHECK(c.sliding_window == 0);
  for (std::size_t b = 0; b < 2; ++b)
    for (Linear l : all_linears) CHECK(model.blocks[b][l] == hf.blocks[b][l]);  // the fused tensors split as the checkpoint's
  const SafetensorsFile fixture(family_dir("phi3") + "/logits.safetensors");
  const auto tokens = fixture.view_as<std::int32_t>("tokens", Dtype::I32);
  const RowMatrix logits = forward_logits(model, tokens);  // 48 tokens: the long factors
  const RowMatrix expected = fixture.to_float("logits");
  const double unwindowed = (logits - expected).topRows(40).cwiseAbs().maxCoeff();
  MESSAGE("phi3 GGUF: max |logit difference| over the first 40 of 48 positions " << unwindowed);
  CHECK(unwindowed <= 5e-6 * expected.cwiseAbs().maxCoeff());
  CHECK((logits - expected).bottomRows(8).cwiseAbs().maxCoeff() > 1e-3);  // the window mattered in transformers' run
  for (LlamaBlock& block : hf.blocks) block.sliding = false;  // the checkpoint computed as llama.cpp computes phi3
  CHECK((logits - forward_logits(hf, tokens)).cwiseAbs().maxCoeff() <= 1e-6 * expected.cwiseAbs().maxCoeff());
  const RowMatrix short_expected = fixture.to_float("logits_short");  // 32 tokens: the short factors
  const RowMatrix short_logits = forward_logits(model, std::span<const std::int32_t>(tokens.data(), 32));
  CHECK((short_logits - short_expected).cwiseAbs().maxCoeff() <= 5e-6 * short_expected.cwiseAbs().maxCoeff());
}

namespace {
RowMatrix rounded_to_half(const RowMatrix& m) { return m.unaryExpr([](float x) { return round_to_half(x); }); }
Eigen::VectorXf rounded_to_half(const Eigen::VectorXf& v) { return v.unaryExpr([](float x) { return round_to_half(x); }); }

// every weight of `written` (a checkpoint we wrote, float16) is the one of `hf` (transformers'
// float32 checkpoint) rounded to float16: names, shapes, expert order and q/k row order
void check_weights_rounded(const LlamaModel& written, const LlamaModel& hf) {
  CHECK(written.embedding == rounded_to_half(hf.embedding));
  CHECK(written.output == rounded_to_half(hf.output));
  CHECK(written.final_norm == rounded_to_half(hf.final_norm));
  REQUIRE(written.blocks.size() == hf.blocks.size());
  for (std::size_t b = 0; b < hf.blocks.size(); ++b) {
    CAPTURE(b);
    const LlamaBlock &w = written.blocks[b], &h = hf.blocks[b];
    for (Linear l : all_linears) CHECK(w[l] == rounded_to_half(h[l]));
    CHECK(w.attn_norm == rounded_to_half(h.attn_norm));
    CHECK(w.ffn_norm == rounded_to_half(h.ffn_norm));
    CHECK(w.q_norm == rounded_to_half(h.q_norm));
    CHECK(w.k_norm == rounded_to_half(h.k_norm));
    for (std::size_t k = 0; k < 3; ++k) CHECK(w.qkv_bias[k] == rounded_to_half(h.qkv_bias[k]));
    REQUIRE(w.moe.has_value());
    REQUIRE(h.moe.has_value());
    const MoeWeights &wm = w.moe->weights, &hm = h.moe->weights;
    CHECK(w.moe->spec.top_k == h.moe->spec.top_k);
    CHECK(w.moe->spec.normalize == h.moe->spec.normalize);
    CHECK(wm.router == rounded_to_half(hm.router));
    REQUIRE(wm.experts.size() == hm.experts.size());
    for (std::size_t e = 0; e < hm.experts.size(); ++e) {
      CHECK(wm.experts[e].gate == rounded_to_half(hm.experts[e].gate));
      CHECK(wm.experts[e].up == rounded_to_half(hm.experts[e].up));
      CHECK(wm.experts[e].down == rounded_to_half(hm.experts[e].down));
    }
    REQUIRE(wm.shared.has_value() == hm.shared.has_value());
    if (hm.shared) {
      CHECK(wm.shared->gate == rounded_to_half(hm.shared->gate));
      CHECK(wm.shared->down == rounded_to_half(hm.shared->down));
    }
    CHECK(wm.shared_gate == rounded_to_half(hm.shared_gate));
  }
}
}  // namespace

TEST_CASE("qwen3_moe, qwen2_moe, mixtral: the GGUF llama.cpp's converter writes reads to transformers' logits; written "
          "as a Hugging Face checkpoint, it is transformers' own in float16 with the config.json keys transformers wrote") {
  // model.gguf: scripts/convert_family_gguf.py (llama.cpp 0.3.36's convert_hf_to_gguf.py, float32, a
  // stand-in vocabulary): qwen3moe, qwen2moe (its shared-expert gate as ne {64, 1}), and Mixtral as
  // llama with experts (q/k rows permuted for adjacent-pair RoPE). Nothing in the written
  // checkpoint is quantized here (no layer results): every tensor float16.
  for (const std::string family : {"qwen3_moe", "qwen2_moe", "mixtral"}) {
    CAPTURE(family);
    const std::string gguf_path = family_dir(family) + "/model.gguf";
    const LlamaModel model = load_llama(gguf_path);
    check_logits(family, model);
    const auto dir = std::filesystem::temp_directory_path() / ("autoround_gguf_to_hf_" + family);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const GgufFile gguf(gguf_path);
    const std::vector<LayerResults<>> none(model.blocks.size());  // (no block has results)
    const ModelQuantOptions options;
    export_hf_checkpoint(QuantizedLlama<>{model, none, options}, HfFormat::AutoRound, dir, {&gguf, {}});
    check_weights_rounded(load_llama(dir), load_llama(family_dir(family)));
    // config.json: what transformers wrote of the same model, key by key where GGUF carries it (the
    // expert count under either name: 5.17 saves qwen3_moe's as num_local_experts)
    const auto read = [](const std::filesystem::path& p) { return nlohmann::json::parse(std::ifstream(p)); };
    const nlohmann::json ours = read(dir / "config.json"), theirs = read(family_dir(family) + "/config.json");
    for (const char* key : {"architectures", "model_type", "hidden_size", "num_attention_heads", "num_key_value_heads",
                            "num_hidden_layers", "head_dim", "vocab_size", "tie_word_embeddings", "num_experts_per_tok",
                            "moe_intermediate_size", "norm_topk_prob", "shared_expert_intermediate_size", "qkv_bias",
                            "attention_bias", "intermediate_size", "decoder_sparse_step", "mlp_only_layers"}) {
      CAPTURE(key);
      if (theirs.contains(key) && !theirs[key].is_null()) CHECK(ours.at(key) == theirs[key]);
    }
    CHECK(ours.at("rms_norm_eps").get<double>() == doctest::Approx(theirs.at("rms_norm_eps").get<double>()));
    CHECK(ours.at("rope_parameters").at("rope_theta") == theirs.at("rope_parameters").at("rope_theta"));
    const auto experts = [](const nlohmann::json& c) { return c.contains("num_experts") ? c["num_experts"] : c["num_local_experts"]; };
    CHECK(experts(ours) == experts(theirs));
    std::filesystem::remove_all(dir);
  }
  // the GGUF families whose config.json is not written yet are refused by name, nothing left behind
  for (const std::string family : {"glm4_moe", "deepseek_v3", "gpt_oss"}) {
    CAPTURE(family);
    const std::string gguf_path = family_dir(family) + "/model.gguf";
    const LlamaModel model = load_llama(gguf_path);
    const GgufFile gguf(gguf_path);
    const std::vector<LayerResults<>> none(model.blocks.size());
    const ModelQuantOptions options;
    const auto dir = std::filesystem::temp_directory_path() / ("autoround_gguf_to_hf_" + family);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    CHECK_THROWS_WITH_AS(export_hf_checkpoint(QuantizedLlama<>{model, none, options}, HfFormat::AutoRound, dir, {&gguf, {}}),
                         doctest::Contains("read from GGUF cannot be written as a Hugging Face checkpoint yet"), Error);
    CHECK(std::filesystem::is_empty(dir));
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("gpt_oss: the GGUF files llama.cpp's converter writes of it (float and MXFP4 experts) read as llama.cpp computes them") {
  // model.gguf of gpt_oss and gpt_oss_mxfp4: scripts/convert_family_gguf.py (llama.cpp 0.3.36's
  // convert_hf_to_gguf.py; the MXFP4 experts repacked into ggml's MXFP4 blocks): arch gpt-oss,
  // attn_{q,k,v,output}.bias, attn_sinks, post_attention_norm, ffn_gate_inp.bias, ffn_*_exps.bias,
  // rope.scaling.type yarn (factor 8 of 4096), attention.sliding_window 8 (even layers). llama.cpp's
  // YaRN floors / ceils the correction range (transformers' truncate = true) where the checkpoint
  // says truncate = false: the same model with those divisors is what the file must read to, and
  // transformers computes it so with truncate = true.
  for (const std::string family : {"gpt_oss", "gpt_oss_mxfp4"}) {
    CAPTURE(family);
    const LlamaModel model = load_llama(family_dir(family) + "/model.gguf");
    LlamaModel hf = load_llama(family_dir(family));
    const LlamaConfig& c = model.config;
    CHECK(c.model_type == "gpt-oss");
    CHECK(c.rope_style == RopeStyle::HalfSplit);
    CHECK(c.sliding == hf.config.sliding);
    CHECK(c.sliding_window == hf.config.sliding_window);
    CHECK(c.rope_attention_factor == doctest::Approx(hf.config.rope_attention_factor).epsilon(1e-6));
    CHECK(c.rope_divisors != hf.config.rope_divisors);  // truncate = false in the checkpoint
    const std::vector<float> truncated = rope_yarn_divisors(20000.0, 16, 8.0, 32.0, 1.0, 4096.0, true);
    REQUIRE(c.rope_divisors.size() == truncated.size());
    for (std::size_t i = 0; i < truncated.size(); ++i) CHECK(c.rope_divisors[i] == doctest::Approx(truncated[i]).epsilon(1e-6));
    for (std::size_t b = 0; b < 2; ++b) {
      const LlamaBlock &g = model.blocks[b], &h = hf.blocks[b];
      for (Linear l : {Linear::Query, Linear::Key, Linear::Value, Linear::Output}) CHECK(g[l] == h[l]);
      for (std::size_t j = 0; j < 3; ++j) CHECK(g.qkv_bias[j] == h.qkv_bias[j]);
      CHECK(g.output_bias == h.output_bias);
      CHECK(g.sinks == h.sinks);
      CHECK(g.ffn_norm == h.ffn_norm);
      REQUIRE((g.moe && h.moe));
      CHECK(g.moe->spec.scoring == RouterScoring::TopKSoftmax);
      CHECK(g.moe->spec.activation == ExpertActivation::ClampedSwiGlu);
      CHECK(g.moe->weights.router == h.moe->weights.router);
      CHECK(g.moe->weights.router_bias == h.moe->weights.router_bias);
      for (std::size_t e = 0; e < 8; ++e) {
        const ExpertWeights &x = g.moe->weights.experts[e], &y = h.moe->weights.experts[e];
        CHECK((x.gate == y.gate && x.up == y.up && x.down == y.down));  // MXFP4: the same decoded values
        CHECK((x.gate_bias == y.gate_bias && x.up_bias == y.up_bias && x.down_bias == y.down_bias));
      }
    }
    hf.config.rope_divisors = truncated;
    const SafetensorsFile fixture(family_dir(family) + "/logits.safetensors");
    const auto tokens = fixture.view_as<std::int32_t>("tokens", Dtype::I32);
    const RowMatrix logits = forward_logits(model, tokens), expected = fixture.to_float("logits");
    CHECK((logits - forward_logits(hf, tokens)).cwiseAbs().maxCoeff() <= 1e-6 * expected.cwiseAbs().maxCoeff());
    // against transformers' own run of the checkpoint with truncate = true (the fixture's
    // logits_truncate, scripts/make_family_fixtures.py): the model llama.cpp computes, independently
    const RowMatrix rounded = fixture.to_float("logits_truncate");
    const double same = (logits - rounded).cwiseAbs().maxCoeff(), apart = (logits - expected).cwiseAbs().maxCoeff();
    MESSAGE(family << " GGUF against transformers: max |logit difference| " << same << " (truncate = true), " << apart
                   << " (the checkpoint's truncate = false)");
    CHECK(same <= 5e-6 * rounded.cwiseAbs().maxCoeff());
    CHECK(apart > 1e-2);  // the rounding matters on this fixture
  }
}

TEST_CASE("gpt_oss: logits equal transformers' GptOssForCausalLM (sinks, biases, YaRN, top-k softmax, clamped SwiGLU)") {
  const LlamaModel model = load_llama(family_dir("gpt_oss"));
  const LlamaConfig& c = model.config;
  CHECK(c.sliding == std::vector<bool>{true, false});
  CHECK(c.sliding_window == 8);
  REQUIRE(c.rope_divisors.size() == 8);
  // YaRN, truncate false: correction dims 16 ln(4096 / (2π β)) / (2 ln 20000) for β = 32, 1: a ramp
  // from 2.4338 to 5.2314 (pairs ≤ 2 keep their frequency, ≥ 6 are divided by 8)
  const double pi = 3.14159265358979323846;
  const double low = 16 * std::log(4096 / (2 * pi * 32)) / (2 * std::log(20000.0)), high = 16 * std::log(4096 / (2 * pi)) / (2 * std::log(20000.0));
  for (Index i = 0; i < 8; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    CHECK(c.rope_divisors[static_cast<std::size_t>(i)] == doctest::Approx(1 / (ramp / 8 + 1 - ramp)).epsilon(1e-6));
  }
  CHECK(c.rope_divisors[2] == 1.0f);
  CHECK(c.rope_divisors[6] == 8.0f);
  CHECK(c.rope_attention_factor == doctest::Approx(1 + 0.1 * std::log(8.0)));
  REQUIRE(model.blocks.size() == 2);
  const LlamaBlock& b = model.blocks[0];
  CHECK(b.sinks.size() == 4);
  CHECK(b.output_bias.size() == 64);
  CHECK(b.qkv_bias[1].size() == 32);
  REQUIRE(b.moe.has_value());
  CHECK(b.moe->spec.scoring == RouterScoring::TopKSoftmax);
  CHECK(b.moe->spec.activation == ExpertActivation::ClampedSwiGlu);
  CHECK(b.moe->weights.router_bias.size() == 8);
  CHECK(b.moe->weights.experts[3].gate_bias.size() == 32);
  CHECK(b.moe->weights.experts[3].down_bias.size() == 64);
  check_logits("gpt_oss", model);
}

TEST_CASE("gpt_oss: MXFP4 experts as the released checkpoints store them, read as transformers unpacks them") {
  // the same model with its experts packed (scripts/make_family_fixtures.py); transformers computed
  // the logits from that directory with its own MXFP4 unpacking
  const LlamaModel packed = load_llama(family_dir("gpt_oss_mxfp4"));
  const LlamaModel plain = load_llama(family_dir("gpt_oss"));
  const ExpertWeights& e = packed.blocks[1].moe->weights.experts[5];
  // every value is an E2M1 code times a power of two, within an MXFP4 step of the float weight
  const ExpertWeights& f = plain.blocks[1].moe->weights.experts[5];
  for (Index i = 0; i < e.gate.cols(); ++i) {
    const float v = e.gate(7, i), w = f.gate(7, i);
    int exponent = 0;
    const float mantissa = std::frexp(std::abs(v), &exponent);  // E2M1: 0, 0.5 (×2^k), 0.75
    CHECK((v == 0 || mantissa == 0.5f || mantissa == 0.75f));
    CHECK(std::abs(v - w) <= 0.26f * f.gate.row(7).segment(i / 32 * 32, 32).cwiseAbs().maxCoeff() + 1e-6f);
  }
  CHECK(e.gate_bias == f.gate_bias);  // biases stay as they are
  check_logits("gpt_oss_mxfp4", packed);
}

TEST_CASE("gpt_oss: MXFP4 blocks or scales of the wrong shape or type are refused, naming the tensor") {
  namespace fs = std::filesystem;
  const fs::path source = family_dir("gpt_oss_mxfp4");
  const SafetensorsFile original((source / "model.safetensors").string());
  const std::string scales = "model.layers.1.mlp.experts.down_proj_scales", blocks = "model.layers.0.mlp.experts.gate_up_proj_blocks";
  const auto broken = [&](const std::string& name, Dtype dtype, std::vector<std::int64_t> shape, const std::string& dir) {
    const fs::path d = fs::temp_directory_path() / dir;
    fs::remove_all(d);
    fs::create_directories(d);
    fs::copy_file(source / "config.json", d / "config.json");
    SafetensorsWriter w;
    for (const SafetensorsTensor& t : original.tensors()) {
      if (t.name != name) {
        w.add(t.name, t.dtype, t.shape, t.data);
        continue;
      }
      std::int64_t n = 1;
      for (auto v : shape) n *= v;
      w.add(t.name, dtype, shape, std::vector<std::byte>(static_cast<std::size_t>(n) * dtype_size(dtype), std::byte{127}));
    }
    w.write(d / "model.safetensors");
    return d;
  };
  // one group too few per row (a truncated tensor), then bytes of another type
  const fs::path a = broken(scales, Dtype::U8, {8, 64, 0}, "autoround_gpt_oss_scales");
  CHECK_THROWS_WITH(load_llama(a), doctest::Contains(scales.c_str()));
  const fs::path b = broken(blocks, Dtype::F16, {8, 64, 2, 8}, "autoround_gpt_oss_blocks");
  CHECK_THROWS_WITH(load_llama(b), doctest::Contains(blocks.c_str()));
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST_CASE("gpt_oss: sinks, the o_proj bias, the router bias, the expert biases and YaRN each change the logits") {
  const LogitShift distance(family_dir("gpt_oss"), load_llama(family_dir("gpt_oss")));
  CHECK(distance([](LlamaModel&) {}) < 1e-4);
  CHECK(distance([](LlamaModel& m) { for (auto& b : m.blocks) b.sinks.resize(0); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& b : m.blocks) b.output_bias.resize(0); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& b : m.blocks) b.moe->weights.router_bias.resize(0); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& b : m.blocks) for (auto& e : b.moe->weights.experts) e.down_bias.resize(0); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& b : m.blocks) b.moe->spec.limit = 1e9f; }) > 1e-2);  // the clamps bind
  CHECK(distance([](LlamaModel& m) { m.config.rope_divisors.clear(); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.rope_attention_factor = 1; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.sliding_window = 0; }) > 1e-2);
}

TEST_CASE("Gemma's settings each change the logits (each is read and computed, none is inert here)") {
  // the fixture's logits, recomputed with one setting at LLaMA's value, must move away from
  // transformers' far beyond check_logits' tolerance
  const LogitShift distance(family_dir("gemma3_text"), load_llama(family_dir("gemma3_text")));
  CHECK(distance([](LlamaModel&) {}) < 1e-4);
  CHECK(distance([](LlamaModel& m) { m.config.activation = MlpActivation::Silu; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.embedding_scale = 1; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.attention_scale = 0; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.sliding_window = 0; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.sliding_rope_theta = 0; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.rope_divisors.clear(); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.logit_softcap = 0; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& b : m.blocks) b.post_attn_norm.resize(0); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& b : m.blocks) b.post_ffn_norm.resize(0); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& b : m.blocks) b.attn_norm.array() -= 1.0f; }) > 1e-2);  // the (1 + w)
}

TEST_CASE("llama-perplexity's window scoring: BOS first, the second half of each window") {
  const LlamaModel model = load_llama(std::string(AUTOROUND_FIXTURES_DIR) + "/families/qwen2_moe");
  std::vector<std::int32_t> tokens;
  for (int i = 0; i < 3 * 16 + 5; ++i) tokens.push_back(static_cast<std::int32_t>((i * 37 + 11) % model.config.vocab));
  const std::int32_t bos = 7;
  const PerplexityResult r = perplexity(model, tokens, 16, 0, WindowScoring::llama_perplexity(16, bos));
  // by hand: each of the 3 whole windows with its first token replaced, positions 8..14 predicting 9..15
  double nll = 0;
  for (int w = 0; w < 3; ++w) {
    std::vector<std::int32_t> window(tokens.begin() + w * 16, tokens.begin() + (w + 1) * 16);
    window[0] = bos;
    const RowMatrix logits = forward_logits(model, window);
    for (Index t = 8; t < 15; ++t) {
      const Eigen::VectorXd row = logits.row(t).cast<double>().transpose();
      nll += std::log((row.array() - row.maxCoeff()).exp().sum()) + row.maxCoeff() - row(window[static_cast<std::size_t>(t + 1)]);
    }
  }
  CHECK(r.tokens_scored == 3 * 7);
  CHECK(r.mean_nll == doctest::Approx(nll / 21).epsilon(1e-6));
  CHECK_THROWS_WITH(perplexity(model, tokens, 16, 0, WindowScoring{15, {}}), doctest::Contains("outside a window"));
}

TEST_CASE("glm4_moe: logits equal transformers' Glm4MoeForCausalLM (sigmoid grouped routing, shared expert, dense first layer)") {
  // GLM-4.5's block: q/k/v biases, q/k norms, partial rotary 0.5; its MoE is DeepSeek-V3's
  // (sigmoid scores, choice on score + e_score_correction_bias within the best n_group groups,
  // weights renormalized × routed_scaling_factor 2.5, a shared expert), first_k_dense_replace 1
  const LlamaModel model = load_llama(family_dir("glm4_moe"));
  const LlamaConfig& c = model.config;
  CHECK(c.rope_theta == 20000.0f);
  CHECK(c.rotary_dims == 8);
  REQUIRE(model.blocks.size() == 3);
  CHECK(!model.blocks[0].moe.has_value());
  CHECK(model.blocks[0][Linear::Gate].rows() == 96);
  const LlamaBlock& b = model.blocks[2];
  REQUIRE(b.moe.has_value());
  const MoeSpec& spec = b.moe->spec;
  CHECK(spec.scoring == RouterScoring::SigmoidGrouped);
  CHECK((spec.groups == 2 && spec.top_groups == 1 && spec.top_k == 2 && spec.normalize && spec.scale == 2.5f));
  CHECK(b.moe->weights.correction_bias.size() == 8);
  REQUIRE(b.moe->weights.shared.has_value());
  CHECK(b.moe->weights.shared->gate.rows() == 32);
  CHECK(b.qkv_bias[2].size() == 32);
  CHECK(b.q_norm.size() == 16);
  check_logits("glm4_moe", model);
  // each setting moves the logits (the fixture's correction bias is N(0, 0.3): it changes choices)
  const LogitShift distance(family_dir("glm4_moe"), model);
  CHECK(distance([](LlamaModel& m) { for (auto& k : m.blocks) if (k.moe) k.moe->weights.correction_bias.setZero(); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& k : m.blocks) if (k.moe) k.moe->spec.groups = k.moe->spec.top_groups = 1; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& k : m.blocks) if (k.moe) k.moe->spec.scale = 1; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& k : m.blocks) if (k.moe) k.moe->weights.shared.reset(); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.rotary_dims = 0; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& k : m.blocks) k.qkv_bias[0].setZero(); }) > 1e-2);
}

TEST_CASE("deepseek_v3: logits equal transformers' DeepseekV3ForCausalLM (latent attention, YaRN with mscale, grouped routing)") {
  // DeepSeek-V3's block at small sizes: q_a (32) → norm → q_b, kv_a → [latent 32 | shared roped key 32]
  // → norm → kv_b → per head [key 8 | value 16]; RoPE on adjacent pairs (rope_interleave); YaRN ×4
  // with mscale 1 / mscale_all_dim 0.8 (cos and sin × their ratio, scores × (0.1·0.8·ln 4 + 1)²);
  // a dense first layer, then its MoE (GLM's, above)
  const LlamaModel model = load_llama(family_dir("deepseek_v3"));
  const LlamaConfig& c = model.config;
  CHECK(c.latent_attention());
  CHECK((c.q_lora_rank == 32 && c.kv_lora_rank == 32 && c.qk_nope_dim == 8 && c.head_dim == 32 && c.v_head_dim == 16));
  CHECK(c.rope_style == RopeStyle::AdjacentPairs);
  const double mscale = 0.1 * 0.8 * std::log(4.0) + 1.0;
  CHECK(c.attention_scale == doctest::Approx(mscale * mscale / std::sqrt(40.0)).epsilon(1e-6));
  CHECK(c.rope_attention_factor == doctest::Approx((0.1 * std::log(4.0) + 1.0) / mscale).epsilon(1e-6));
  REQUIRE(model.blocks.size() == 3);
  CHECK(!model.blocks[0].moe.has_value());
  for (const LlamaBlock& b : model.blocks) {
    REQUIRE(b.mla.has_value());
    CHECK((b.mla->query_a.rows() == 32 && b.mla->query_a.cols() == 64));
    CHECK((b[Linear::Query].rows() == 160 && b[Linear::Query].cols() == 32));
    CHECK((b[Linear::Key].rows() == 64 && b[Linear::Value].rows() == 96 && b[Linear::Value].cols() == 32));
    CHECK(b[Linear::Output].cols() == 64);
  }
  const std::vector<LinearSlot> slots = linear_slots(model.blocks[2]);
  CHECK(slots.back() == LinearSlot{Linear::Query, LinearSlot::latent});
  CHECK(hf_name(slots.back(), c.model_type) == "self_attn.q_a_proj");
  CHECK(hf_name(slots[2], c.model_type) == "self_attn.kv_b_proj");
  CHECK(slots.size() == 4 + 3 * 8 + 3 + 1);
  check_logits("deepseek_v3", model);
  const LogitShift distance(family_dir("deepseek_v3"), model);
  // each part of the attention is read and computed: none is inert on this fixture
  CHECK(distance([](LlamaModel& m) { m.config.rope_style = RopeStyle::HalfSplit; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.rope_divisors.clear(); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.rope_attention_factor = 1; }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { m.config.attention_scale = 1 / std::sqrt(40.0f); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& b : m.blocks) b.mla->query_a_norm.setOnes(); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& b : m.blocks) b.mla->kv_a_norm.setOnes(); }) > 1e-2);
  CHECK(distance([](LlamaModel& m) { for (auto& k : m.blocks) if (k.moe) k.moe->weights.correction_bias.setZero(); }) > 1e-2);
}

TEST_CASE("deepseek_v3: the GGUF that llama.cpp's converter writes of it (deepseek2, attn_k_b / attn_v_b) reads as llama.cpp computes it") {
  // model.gguf: scripts/convert_family_gguf.py (llama.cpp 0.3.36's converter, float32): arch deepseek2,
  // kv_b_proj split per head into attn_k_b (transposed) and attn_v_b, head_count_kv 1,
  // key_length_mla 40 / value_length_mla 16, rope.scaling.yarn_log_multiplier 0.1 × mscale_all_dim
  const LlamaModel model = load_llama(family_dir("deepseek_v3") + "/model.gguf");
  LlamaModel hf = load_llama(family_dir("deepseek_v3"));
  const LlamaConfig& c = model.config;
  CHECK(c.model_type == "deepseek2");
  CHECK((c.q_lora_rank == 32 && c.kv_lora_rank == 32 && c.qk_nope_dim == 8 && c.head_dim == 32 && c.v_head_dim == 16));
  CHECK(c.rope_style == RopeStyle::AdjacentPairs);
  CHECK(c.rope_divisors == hf.config.rope_divisors);
  CHECK(c.attention_scale == doctest::Approx(hf.config.attention_scale).epsilon(1e-6));  // (1 + 0.1·0.8·ln 4)² / √40 both
  // llama.cpp assumes mscale = mscale_all_dim where mscale_all_dim ≠ 1 (llama-context.cpp): cos and
  // sin unscaled, where transformers scales them by m(4, 1) / m(4, 0.8) with this checkpoint's mscale 1
  CHECK(c.rope_attention_factor == 1.0f);
  CHECK(hf.config.rope_attention_factor > 1.02f);
  CHECK(c.latent_norm_eps == c.rms_eps);
  for (std::size_t b = 0; b < 3; ++b) {
    CAPTURE(b);
    for (const LinearSlot& s : linear_slots(hf.blocks[b])) CHECK(slot_weight(model.blocks[b], s) == slot_weight(hf.blocks[b], s));
    CHECK(model.blocks[b].mla->kv_a_norm == hf.blocks[b].mla->kv_a_norm);
    CHECK(model.blocks[b].mla->query_a_norm == hf.blocks[b].mla->query_a_norm);
  }
  const SafetensorsFile fixture(family_dir("deepseek_v3") + "/logits.safetensors");
  const auto tokens = fixture.view_as<std::int32_t>("tokens", Dtype::I32);
  const RowMatrix expected = fixture.to_float("logits");
  const RowMatrix logits = forward_logits(model, tokens);
  // the checkpoint computed as llama.cpp computes it (its cos/sin factor, its latent norms' epsilon)
  hf.config.rope_attention_factor = c.rope_attention_factor;
  hf.config.latent_norm_eps = c.latent_norm_eps;
  const double same = (logits - forward_logits(hf, tokens)).cwiseAbs().maxCoeff();
  const double apart = (logits - expected).cwiseAbs().maxCoeff();
  MESSAGE("deepseek2 GGUF: max |logit difference| " << same << " from the checkpoint with llama.cpp's factors, " << apart
                                                    << " from transformers' run (max |logit| " << expected.cwiseAbs().maxCoeff() << ")");
  CHECK(same <= 1e-6 * expected.cwiseAbs().maxCoeff());
  // transformers' cos/sin factor 1.025 moves these logits by up to 2.1 (max 3.3): llama.cpp computes
  // another model than transformers here (equal for DeepSeek-V3's mscale = mscale_all_dim = 1);
  // llama-perplexity itself judges the deepseek2 files (scripts/moe-llama-check.sh ARCHS=deepseek2)
  CHECK(apart > 1e-2);
}

TEST_CASE("glm4_moe: the GGUF that llama.cpp's converter writes of it reads to transformers' logits") {
  // model.gguf: scripts/convert_family_gguf.py (llama.cpp 0.3.36's convert_hf_to_gguf.py, float32,
  // a stand-in vocabulary): arch glm4moe, leading_dense_block_count 1, expert_group_count 2,
  // expert_weights_scale 2.5, exp_probs_b.bias, ffn_*_shexp, post_attention_norm before the MLP,
  // rope.dimension_count 8 (NEOX pairs within the first 8 of 16)
  const LlamaModel model = load_llama(family_dir("glm4_moe") + "/model.gguf");
  const LlamaConfig& c = model.config;
  CHECK(c.model_type == "glm4moe");
  CHECK(c.rotary_dims == 8);
  REQUIRE(model.blocks.size() == 3);
  CHECK(!model.blocks[0].moe.has_value());
  REQUIRE(model.blocks[1].moe.has_value());
  const MoeFeedForward& m = *model.blocks[1].moe;
  CHECK((m.spec.scoring == RouterScoring::SigmoidGrouped && m.spec.groups == 2 && m.spec.top_groups == 1 && m.spec.normalize &&
         m.spec.scale == 2.5f));
  CHECK(m.weights.correction_bias.size() == 8);
  REQUIRE(m.weights.shared.has_value());
  CHECK(m.weights.shared->down.cols() == 32);
  check_logits("glm4_moe", model);
  const LlamaModel hf = load_llama(family_dir("glm4_moe"));  // the same weights as the checkpoint's
  CHECK(model.blocks[2].moe->weights.correction_bias == hf.blocks[2].moe->weights.correction_bias);
  CHECK(model.blocks[1].ffn_norm == hf.blocks[1].ffn_norm);
}
}  // namespace test_family_logits
