// Hugging Face directories on a small random model (no assets needed): a plain float checkpoint
// loads back exactly; quantized auto_round / auto_gptq / auto_awq exports, mixed precision
// included, load back with every linear layer bit-identical; bad directories give errors that
// name the file, tensor or setting.
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <filesystem>
#include <fstream>
#include <random>

namespace test_hf_checkpoint {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;
namespace fs = std::filesystem;

namespace {
LlamaModel tiny_model() {
  LlamaModel m;
  LlamaConfig& c = m.config;
  c.layers = 2, c.hidden = 64, c.heads = 4, c.kv_heads = 2, c.head_dim = 16, c.intermediate = 128, c.vocab = 96;
  c.rope_theta = 10000.0f, c.rms_eps = 1e-5f, c.rope_style = RopeStyle::HalfSplit, c.tied_embeddings = false;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  const auto matrix = [&](Index r, Index k) {
    RowMatrix x(r, k);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
    return x;
  };
  m.embedding = matrix(c.vocab, c.hidden);
  m.output = matrix(c.vocab, c.hidden);
  m.final_norm = Eigen::VectorXf::Ones(c.hidden) + matrix(c.hidden, 1).col(0);
  for (Index b = 0; b < c.layers; ++b) {
    LlamaBlock block;
    block[Linear::Query] = matrix(64, 64), block[Linear::Key] = matrix(32, 64), block[Linear::Value] = matrix(32, 64);
    block[Linear::Output] = matrix(64, 64), block[Linear::Gate] = matrix(128, 64), block[Linear::Up] = matrix(128, 64);
    block[Linear::Down] = matrix(64, 128);
    block.attn_norm = Eigen::VectorXf::Ones(c.hidden) + matrix(c.hidden, 1).col(0);
    block.ffn_norm = Eigen::VectorXf::Ones(c.hidden) + matrix(c.hidden, 1).col(0);
    m.blocks.push_back(block);
  }
  return m;
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

const char* kConfig = R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
  "num_key_value_heads": 2, "num_hidden_layers": 2, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
  "vocab_size": 96, "tie_word_embeddings": false})";

/// A plain float32 Hugging Face directory holding `m`.
fs::path write_float_checkpoint(const LlamaModel& m, const fs::path& dir, const std::string& config = kConfig) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  SafetensorsWriter w;
  const auto add = [&](const std::string& name, const float* data, std::vector<std::int64_t> shape) {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    w.add<float>(name, Dtype::F32, shape, std::span<const float>(data, n));
  };
  const LlamaConfig& c = m.config;
  add("model.embed_tokens.weight", m.embedding.data(), {c.vocab, c.hidden});
  add("lm_head.weight", m.output.data(), {c.vocab, c.hidden});
  add("model.norm.weight", m.final_norm.data(), {c.hidden});
  for (Index b = 0; b < c.layers; ++b) {
    const std::string p = "model.layers." + std::to_string(b) + ".";
    const LlamaBlock& block = m.blocks[static_cast<std::size_t>(b)];
    add(p + "input_layernorm.weight", block.attn_norm.data(), {c.hidden});
    add(p + "post_attention_layernorm.weight", block.ffn_norm.data(), {c.hidden});
    for (std::size_t k = 0; k < 3; ++k)
      if (block.qkv_bias[k].size() > 0) add(p + hf_name(all_linears[k]) + ".bias", block.qkv_bias[k].data(), {block.qkv_bias[k].size()});
    if (block.q_norm.size() > 0) {
      add(p + "self_attn.q_norm.weight", block.q_norm.data(), {block.q_norm.size()});
      add(p + "self_attn.k_norm.weight", block.k_norm.data(), {block.k_norm.size()});
    }
    for (Linear l : all_linears) add(p + hf_name(l) + ".weight", block[l].data(), {block[l].rows(), block[l].cols()});
  }
  w.write(dir / "model.safetensors");
  write_text(dir / "config.json", config);
  write_text(dir / "tokenizer_config.json", R"({"tokenizer_class": "PreTrainedTokenizerFast"})");
  return dir;
}

bool same_linears(const LlamaModel& a, const LlamaModel& b) {
  for (std::size_t k = 0; k < a.blocks.size(); ++k)
    for (Linear l : all_linears)
      if (a.blocks[k][l] != b.blocks[k][l]) return false;
  return true;
}

std::vector<std::int32_t> random_tokens(std::size_t n) {
  std::mt19937 rng(3);
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = static_cast<std::int32_t>(rng() % 96);
  return t;
}
}  // namespace

TEST_CASE("a float checkpoint loads back exactly, through load_llama") {
  const LlamaModel m = tiny_model();
  const auto dir = write_float_checkpoint(m, fs::temp_directory_path() / "autoround_hf_float");
  const LlamaModel back = load_llama(dir);
  CHECK(same_linears(m, back));
  CHECK(back.embedding == m.embedding);
  CHECK(back.output == m.output);
  CHECK(back.config.rope_style == RopeStyle::HalfSplit);
  CHECK(back.config.head_dim == 16);
  fs::remove_all(dir);
}

TEST_CASE("quantized exports with mixed precision load back bit-identical") {
  const LlamaModel original = tiny_model();
  const auto source = write_float_checkpoint(original, fs::temp_directory_path() / "autoround_hf_source");
  LlamaModel m = original;
  ModelQuantOptions options;
  options.spec = {4, 32, Asymmetric};
  options.tune.iters = 0;
  options.nsamples = 2;
  options.seqlen = 16;
  options.overrides = {{"mlp\\.down_proj", std::nullopt}, {"layers\\.1\\.self_attn\\.v_proj", QuantSpec{8, 32, Symmetric}}};
  const auto layers = quantize_model(m, random_tokens(32), options);
  const QuantizedLlama q{m, layers, options};
  for (HfFormat f : {HfFormat::AutoRound, HfFormat::AutoGptq}) {
    const std::string name = format_name(f);
    CAPTURE(name);
    const fs::path out = fs::temp_directory_path() / ("autoround_hf_" + name);
    fs::remove_all(out);
    fs::create_directories(out);
    const auto fp16_layers = export_hf_checkpoint(q, f, out, {nullptr, source});
    CHECK(fp16_layers.size() == 2);  // the two down_proj layers
    CHECK(fs::exists(out / "tokenizer_config.json"));  // copied from the source directory
    const LlamaModel back = load_llama(out);
    for (std::size_t k = 0; k < m.blocks.size(); ++k)
      for (Linear l : all_linears) {
        if (l == Linear::Down) continue;  // stored as float16
        CHECK(back.blocks[k][l] == m.blocks[k][l]);
      }
    std::ifstream in(out / "config.json");
    const auto config = nlohmann::json::parse(in);
    const auto& qc = config.at("quantization_config");
    if (f == HfFormat::AutoRound) {
      CHECK(qc.at("packing_format") == "auto_round");
      CHECK(qc.at("extra_config").at("model.layers.1.self_attn.v_proj").at("bits") == 8);
      CHECK(qc.at("extra_config").at("model.layers.0.mlp.down_proj").at("bits") == 16);
    } else {
      CHECK(qc.at("quant_method") == "gptq");
      CHECK(qc.at("dynamic").contains("-:^model\\.layers\\.0\\.mlp\\.down_proj$"));
    }
    fs::remove_all(out);
  }
  const fs::path awq = fs::temp_directory_path() / "autoround_hf_awq";
  fs::create_directories(awq);
  CHECK_THROWS_WITH_AS(export_hf_checkpoint(q, HfFormat::AutoAwq, awq, {nullptr, source}),
                       doctest::Contains("model.layers.1.self_attn.v_proj: AWQ checkpoints hold one scheme"), Error);
  fs::remove_all(awq);
  fs::remove_all(source);
}

TEST_CASE("a streamed checkpoint (untied LM head read a slice at a time) holds the whole-model export's bytes") {
  const LlamaModel original = tiny_model();
  const auto source_dir = write_float_checkpoint(original, fs::temp_directory_path() / "autoround_hf_stream_source");
  const HfModelSource source(source_dir);
  const std::vector<std::int32_t> ids{95, 0, 7};
  const RowMatrix head = source.output_rows(ids), embedded = source.embedding_rows(ids);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    CHECK(head.row(static_cast<Index>(i)) == original.output.row(ids[i]));
    CHECK(embedded.row(static_cast<Index>(i)) == original.embedding.row(ids[i]));
  }
  CHECK_THROWS_WITH_AS(source.output_rows(std::vector<std::int32_t>{96}), doctest::Contains("outside the vocabulary"), Error);
  ModelQuantOptions options;
  options.spec = {4, 32, Asymmetric};
  options.tune.iters = 0;
  options.nsamples = 2;
  options.seqlen = 16;
  const auto tokens = random_tokens(32);
  const fs::path whole = fs::temp_directory_path() / "autoround_hf_stream_whole", streamed = fs::temp_directory_path() / "autoround_hf_stream";
  for (const auto& dir : {whole, streamed}) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  LlamaModel m = original;
  const auto layers = quantize_model(m, tokens, options);
  export_hf_checkpoint(QuantizedLlama<>{m, layers, options}, HfFormat::AutoRound, whole, {nullptr, source_dir});
  HfShardWriter writer(HfFormat::AutoRound, streamed, source.config(), options, {nullptr, source_dir});
  const auto samples = consecutive_windows(tokens, options.nsamples, options.seqlen);
  quantize_model_streaming(source, samples, options, [&](Index b, const LlamaBlock& block, const LayerResults<>& results) {
    writer.add_block(b, block, results);
  });
  writer.finish(source);
  const SafetensorsFile a((whole / "model.safetensors").string()), b((streamed / "model.safetensors").string());
  REQUIRE(a.tensors().size() == b.tensors().size());
  CHECK(b.tensor("lm_head.weight").dtype == Dtype::F16);
  for (const SafetensorsTensor& t : a.tensors()) {
    CAPTURE(t.name);
    const SafetensorsTensor& s = b.tensor(t.name);
    CHECK(s.shape == t.shape);
    CHECK(std::equal(s.data.begin(), s.data.end(), t.data.begin(), t.data.end()));
  }
  for (const auto& dir : {whole, streamed, source_dir}) fs::remove_all(dir);
}

TEST_CASE("bad checkpoint directories are refused with the reason") {
  const LlamaModel m = tiny_model();
  const auto dir = write_float_checkpoint(m, fs::temp_directory_path() / "autoround_hf_bad");
  const std::string config = kConfig;
  const auto with = [&](const std::string& from, const std::string& to) {
    std::string c = config;
    c.replace(c.find(from), from.size(), to);
    write_text(dir / "config.json", c);
  };
  with("\"llama\"", "\"gpt2\"");
  CHECK_THROWS_WITH_AS(load_llama_hf(dir), doctest::Contains("model_type 'gpt2' is not supported"), Error);
  with("\"llama\"", "\"gemma3\"");  // a vision-language type without its language model's config
  CHECK_THROWS_WITH_AS(load_llama_hf(dir), doctest::Contains("a gemma3 vision-language config without text_config"), Error);
  with("\"llama\"", "\"qwen3\"");  // a Qwen3 checkpoint without its q/k norms
  CHECK_THROWS_WITH_AS(load_llama_hf(dir), doctest::Contains("has no tensor named 'model.layers.0.self_attn.q_norm.weight'"), Error);
  with("\"llama\"", "\"qwen2\"");  // a Qwen2 checkpoint without its biases
  CHECK_THROWS_WITH_AS(load_llama_hf(dir), doctest::Contains("has no tensor named 'model.layers.0.self_attn.q_proj.bias'"), Error);
  with("\"vocab_size\": 96", "\"vocab_size\": 96, \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 4.0}");
  CHECK_THROWS_WITH_AS(load_llama_hf(dir), doctest::Contains("rope_scaling type 'dynamic' is not supported"), Error);
  with("\"vocab_size\": 96", "\"vocab_size\": 96, \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 4.0}");
  CHECK(load_llama_hf(dir).config.rope_divisors == std::vector<float>(8, 4.0f));
  // transformers 5 writes RoPE's theta and scaling as rope_parameters (no top-level rope_theta)
  with("\"rope_theta\": 10000.0", "\"rope_parameters\": {\"rope_theta\": 20000.0, \"rope_type\": \"default\"}");
  CHECK(load_llama_hf(dir).config.rope_theta == 20000.0f);
  CHECK(load_llama_hf(dir).config.rope_divisors.empty());
  with("\"rope_theta\": 10000.0", "\"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"linear\", \"factor\": 2.0}");
  CHECK(load_llama_hf(dir).config.rope_theta == 500000.0f);
  CHECK(load_llama_hf(dir).config.rope_divisors == std::vector<float>(8, 2.0f));
  with("\"num_attention_heads\": 4", "\"num_attention_heads\": 3");
  CHECK_THROWS_WITH_AS(load_llama_hf(dir), doctest::Contains("inconsistent head counts"), Error);
  write_text(dir / "config.json", "{ not json");
  CHECK_THROWS_WITH_AS(load_llama_hf(dir), doctest::Contains("config.json: not valid JSON"), Error);
  fs::remove(dir / "config.json");
  CHECK_THROWS_WITH_AS(load_llama_hf(dir), doctest::Contains("config.json: cannot open"), Error);
  write_text(dir / "config.json", config);
  with("\"intermediate_size\": 128", "\"intermediate_size\": 96");
  CHECK_THROWS_WITH_AS(load_llama_hf(dir), doctest::Contains("tensor 'model.layers.0.mlp.gate_proj.weight' is 128x64, expected 96x64"), Error);
  fs::remove_all(dir);
}

TEST_CASE("bad Gemma, Phi-3 and vision-language configs are refused with the reason") {
  // the transformers fixtures (tests/fixtures/families, tests/fixtures/vlm) with one key broken
  const auto broken = [](const std::string& fixture, const std::string& from, const std::string& to) {
    const fs::path source = fs::path(AUTOROUND_FIXTURES_DIR) / fixture, dir = fs::temp_directory_path() / "autoround_hf_bad_family";
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(source / "model.safetensors", dir / "model.safetensors");
    std::ifstream in(source / "config.json");
    std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto at = config.find(from);
    REQUIRE(at != std::string::npos);
    config.replace(at, from.size(), to);
    write_text(dir / "config.json", config);
    return dir;
  };
  CHECK_THROWS_WITH_AS(load_llama_hf(broken("families/gemma3_text", "\"sliding_attention\",\n    \"sliding_attention\",", "\"sliding_attention\",")),
                       doctest::Contains("layer_types has 3 entries, not num_hidden_layers"), Error);
  CHECK_THROWS_WITH_AS(load_llama_hf(broken("families/gemma3_text", "\"hidden_activation\": \"gelu_pytorch_tanh\"", "\"hidden_activation\": \"relu\"")),
                       doctest::Contains("hidden_activation 'relu' is not supported"), Error);
  CHECK_THROWS_WITH_AS(load_llama_hf(broken("families/gemma3_text", "\"rope_type\": \"linear\"", "\"rope_type\": \"yarn\"")),
                       doctest::Contains("full-attention RoPE type 'yarn' is not supported"), Error);
  CHECK_THROWS_WITH_AS(load_llama_hf(broken("families/gemma3_text", "\"use_bidirectional_attention\": false", "\"use_bidirectional_attention\": true")),
                       doctest::Contains("use_bidirectional_attention is not supported"), Error);
  CHECK_THROWS_WITH_AS(load_llama_hf(broken("families/phi3", "\"long_factor\": [", "\"long_factor\": [0.5, ")),
                       doctest::Contains("long_factor has 5 values, expected 4 (one per rotated pair)"), Error);
  CHECK_THROWS_WITH_AS(load_llama_hf(broken("vlm/llava", "\"text_config\"", "\"language_config\"")),
                       doctest::Contains("a llava vision-language config without text_config"), Error);
  CHECK_THROWS_WITH_AS(load_llama_hf(broken("vlm/gemma3", "\"tie_word_embeddings\": true,\n  \"transformers_version\"",
                                            "\"tie_word_embeddings\": false,\n  \"transformers_version\"")),
                       doctest::Contains("no tensor named 'lm_head.weight'"), Error);  // untied, yet no LM head stored
  fs::remove_all(fs::temp_directory_path() / "autoround_hf_bad_family");
}

TEST_CASE("act-order GPTQ checkpoints and mis-shaped packed tensors are refused") {
  const auto dir = fs::temp_directory_path() / "autoround_hf_gptq_bad";
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto q = make_unpacked(4, 32, Asymmetric, 32, 64);
  std::fill(q.scales.begin(), q.scales.end(), 0.5f);
  std::fill(q.zeros.begin(), q.zeros.end(), 3);  // v1 stores zero - 1: keep it representable
  for (std::size_t i = 0; i < q.codes.size(); ++i) q.codes[i] = static_cast<std::uint8_t>(i % 16);
  const GptqTensors t = pack_gptq(q, GptqZeros::MinusOne, true);
  const nlohmann::json qc = {{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 32}, {"sym", false}};
  const auto write = [&](std::vector<std::int32_t> g_idx, std::vector<std::int64_t> qweight_shape) {
    SafetensorsWriter w;
    w.add<std::int32_t>("layer.qweight", Dtype::I32, qweight_shape, t.qweight);
    w.add<std::int32_t>("layer.qzeros", Dtype::I32, {2, 4}, t.qzeros);
    w.add<std::uint16_t>("layer.scales", Dtype::F16, {2, 32}, t.scales);
    w.add<std::int32_t>("layer.g_idx", Dtype::I32, {64}, g_idx);
    w.write(dir / "model.safetensors");
    return SafetensorsCheckpoint(dir);
  };
  CHECK(detail::load_quantized_linear(write(t.g_idx, {8, 32}), qc, "layer", 32, 64) == q.dequantize());
  std::vector<std::int32_t> shuffled = t.g_idx;
  std::swap(shuffled[0], shuffled[40]);
  CHECK_THROWS_WITH_AS(detail::load_quantized_linear(write(shuffled, {8, 32}), qc, "layer", 32, 64),
                       doctest::Contains("act-order (desc_act) checkpoints are not supported"), Error);
  CHECK_THROWS_WITH_AS(detail::load_quantized_linear(write(t.g_idx, {32, 8}), qc, "layer", 32, 64),
                       doctest::Contains("tensor 'layer.qweight' has shape [ 32 8 ], expected [ 8 32 ]"), Error);
  CHECK_THROWS_WITH_AS(detail::load_quantized_linear(write(t.g_idx, {8, 32}), {{"quant_method", "bitsandbytes"}}, "layer", 32, 64),
                       doctest::Contains("quant_method 'bitsandbytes' is not supported"), Error);
  fs::remove_all(dir);
}

TEST_CASE("GGUF writer and scheme names refuse what they cannot write") {
  GgufWriter w;
  CHECK_THROWS_WITH_AS(w.add_tensor("t", {32, 2}, ggml::Type::Q4_0, std::vector<std::byte>(35)),
                       doctest::Contains("tensor 't': 35 bytes do not hold its shape"), Error);
  CHECK_THROWS_WITH_AS(w.add_tensor("t", {20, 2}, ggml::Type::Q4_0, std::vector<std::byte>(36)),
                       doctest::Contains("rows of 20 are not whole Q4_0 blocks"), Error);
  w.add_tensor("t", {32, 2}, ggml::Type::Q4_0, std::vector<std::byte>(36));
  CHECK_THROWS_WITH_AS(w.add_tensor("t", {32, 2}, ggml::Type::Q4_0, std::vector<std::byte>(36)),
                       doctest::Contains("tensor 't' added twice"), Error);
  CHECK_THROWS_WITH_AS(gguf_scheme("q9_k"), doctest::Contains("gguf:q9_k: unknown GGUF type"), Error);
  CHECK(gguf_scheme("q4_k").mix == GgufMix::Q4_K_M);  // llama-quantize's alias
}

TEST_CASE("llama3 RoPE scaling equals transformers' _compute_llama3_parameters") {
  // divisors (unscaled / scaled frequency) printed by transformers 5.23 for head_dim 128,
  // theta 500000, factor 8, low_freq_factor 1, high_freq_factor 4, original 8192 positions
  const std::vector<std::pair<int, float>> expected{{0, 1.0f},         {28, 1.0f},         {29, 1.207484f}, {30, 1.553415f},
                                                    {31, 2.026313f},   {32, 2.69453f},     {33, 3.684253f}, {34, 5.257327f},
                                                    {35, 8.0f},        {63, 8.0f}};
  const auto d = rope_llama3_divisors(500000.0f, 128, 8.0, 1.0, 4.0, 8192.0);
  REQUIRE(d.size() == 64);
  for (const auto& [i, value] : expected) {
    CAPTURE(i);
    CHECK(d[static_cast<std::size_t>(i)] == doctest::Approx(value).epsilon(1e-5));
  }
}

TEST_CASE("linear RoPE scaling by 2 rotates position t as the unscaled rotation rotates t / 2") {
  LlamaConfig c;
  c.head_dim = 8, c.rope_theta = 100.0f, c.rope_style = RopeStyle::HalfSplit;
  RowMatrix x = RowMatrix::Random(8, 8);
  RowMatrix scaled = x;
  c.rope_divisors.assign(4, 2.0f);
  detail::apply_rope(scaled, 1, c);
  c.rope_divisors.clear();
  RowMatrix plain(4, 8);
  for (Index t = 0; t < 4; ++t) plain.row(t) = x.row(2 * t);  // row t of `plain` sits at position t
  detail::apply_rope(plain, 1, c);
  for (Index t = 0; t < 4; ++t) CHECK((scaled.row(2 * t) - plain.row(t)).cwiseAbs().maxCoeff() < 1e-6f);
}

TEST_CASE("Qwen2: q/k/v biases load, survive quantized export, and shift the outputs") {
  LlamaModel m = tiny_model();
  m.config.model_type = "qwen2";
  std::mt19937 rng(8);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (auto& block : m.blocks)
    for (std::size_t k = 0; k < 3; ++k) {
      block.qkv_bias[k].resize(linear_shape(m.config, all_linears[k]).first);
      for (Index i = 0; i < block.qkv_bias[k].size(); ++i) block.qkv_bias[k][i] = round_to_half(normal(rng));  // fp16-exact
    }
  std::string config = kConfig;
  config.replace(config.find("\"llama\""), 7, "\"qwen2\"");
  const auto source = write_float_checkpoint(m, fs::temp_directory_path() / "autoround_hf_qwen2", config);
  const LlamaModel back = load_llama(source);
  CHECK(back.config.model_type == "qwen2");
  CHECK(back.blocks[1].qkv_bias[2] == m.blocks[1].qkv_bias[2]);
  const auto tokens = random_tokens(12);
  const RowMatrix logits = forward_logits(back, tokens);
  LlamaModel no_bias = back;
  for (auto& block : no_bias.blocks)
    for (auto& b : block.qkv_bias) b.resize(0);
  CHECK((forward_logits(no_bias, tokens) - logits).cwiseAbs().maxCoeff() > 1e-3f);  // the biases matter

  LlamaModel q = back;
  ModelQuantOptions options;
  options.spec = {4, 32, Symmetric};
  options.tune.iters = 0;
  options.nsamples = 2;
  options.seqlen = 16;
  const auto layers = quantize_model(q, random_tokens(32), options);
  const fs::path out = fs::temp_directory_path() / "autoround_hf_qwen2_q";
  fs::remove_all(out);
  fs::create_directories(out);
  export_hf_checkpoint({q, layers, options}, HfFormat::AutoRound, out, {nullptr, source});
  const LlamaModel reread = load_llama(out);
  CHECK(same_linears(q, reread));
  CHECK(reread.blocks[0].qkv_bias[0] == q.blocks[0].qkv_bias[0]);
  CHECK((forward_logits(reread, tokens) - forward_logits(q, tokens)).cwiseAbs().maxCoeff() < 1e-2f);  // fp16 norms/embeddings
  fs::remove_all(out);
  fs::remove_all(source);
}

TEST_CASE("Qwen3: per-head q/k norms load, change the outputs, and survive quantized export") {
  LlamaModel m = tiny_model();
  m.config.model_type = "qwen3";
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(1.0f, 0.3f);
  for (auto& block : m.blocks) {
    block.q_norm.resize(16);
    block.k_norm.resize(16);
    for (Index i = 0; i < 16; ++i) block.q_norm[i] = round_to_half(normal(rng)), block.k_norm[i] = round_to_half(normal(rng));
  }
  std::string config = kConfig;
  config.replace(config.find("\"llama\""), 7, "\"qwen3\"");
  const auto source = write_float_checkpoint(m, fs::temp_directory_path() / "autoround_hf_qwen3", config);
  const LlamaModel back = load_llama(source);
  CHECK(back.blocks[1].k_norm == m.blocks[1].k_norm);
  const auto tokens = random_tokens(12);
  LlamaModel without = back;
  for (auto& block : without.blocks) block.q_norm.resize(0), block.k_norm.resize(0);
  CHECK((forward_logits(without, tokens) - forward_logits(back, tokens)).cwiseAbs().maxCoeff() > 1e-3f);

  LlamaModel q = back;
  ModelQuantOptions options;
  options.spec = {4, 32, Asymmetric};
  options.tune.iters = 2;  // through the block backward with the norms
  options.nsamples = 2;
  options.seqlen = 16;
  options.tune.batch_size = 2;
  const auto layers = quantize_model(q, random_tokens(32), options);
  const fs::path out = fs::temp_directory_path() / "autoround_hf_qwen3_q";
  fs::remove_all(out);
  fs::create_directories(out);
  export_hf_checkpoint({q, layers, options}, HfFormat::AutoGptq, out, {nullptr, source});
  const LlamaModel reread = load_llama(out);
  CHECK(same_linears(q, reread));
  CHECK(reread.blocks[0].q_norm == q.blocks[0].q_norm);
  fs::remove_all(out);
  fs::remove_all(source);
}

TEST_CASE("Qwen3-MoE checkpoints load and evaluate: experts that all equal the dense MLP give the dense model's logits") {
  // the dense Qwen3 model's MLP copied into every expert: with renormalized top-k weights (they
  // sum to 1) each token's mixture is that MLP, so the logits are the dense model's, which the
  // LLaMA-family tests check against transformers; without renormalization they are not
  LlamaModel dense = tiny_model();
  dense.config.model_type = "qwen3";
  std::mt19937 rng(21);
  std::normal_distribution<float> normal(1.0f, 0.3f), small(0.0f, 0.5f);
  for (auto& block : dense.blocks) {
    block.q_norm.resize(16), block.k_norm.resize(16);
    for (Index i = 0; i < 16; ++i) block.q_norm[i] = normal(rng), block.k_norm[i] = normal(rng);
  }
  const auto tokens = random_tokens(12);
  const RowMatrix expected = forward_logits(dense, tokens);
  for (bool normalize : {true, false}) {
    CAPTURE(normalize);
    const fs::path dir = fs::temp_directory_path() / "autoround_hf_qwen3_moe";
    fs::remove_all(dir);
    fs::create_directories(dir);
    SafetensorsWriter w;
    const auto add = [&](const std::string& name, const auto& m, std::vector<std::int64_t> shape) {
      w.add<float>(name, Dtype::F32, shape, std::span<const float>(m.data(), static_cast<std::size_t>(m.size())));
    };
    const LlamaConfig& c = dense.config;
    add("model.embed_tokens.weight", dense.embedding, {c.vocab, c.hidden});
    add("lm_head.weight", dense.output, {c.vocab, c.hidden});
    add("model.norm.weight", dense.final_norm, {c.hidden});
    for (Index b = 0; b < c.layers; ++b) {
      const std::string p = "model.layers." + std::to_string(b) + ".";
      const LlamaBlock& block = dense.blocks[static_cast<std::size_t>(b)];
      add(p + "input_layernorm.weight", block.attn_norm, {c.hidden});
      add(p + "post_attention_layernorm.weight", block.ffn_norm, {c.hidden});
      add(p + "self_attn.q_norm.weight", block.q_norm, {16});
      add(p + "self_attn.k_norm.weight", block.k_norm, {16});
      for (Linear l : {Linear::Query, Linear::Key, Linear::Value, Linear::Output})
        add(p + hf_name(l) + ".weight", block[l], {block[l].rows(), block[l].cols()});
      RowMatrix router(4, c.hidden);  // random routing over four copies
      for (Index i = 0; i < router.size(); ++i) router.data()[i] = small(rng);
      add(p + "mlp.gate.weight", router, {4, c.hidden});
      for (int e = 0; e < 4; ++e) {
        const std::string q = p + "mlp.experts." + std::to_string(e) + ".";
        add(q + "gate_proj.weight", block[Linear::Gate], {128, 64});
        add(q + "up_proj.weight", block[Linear::Up], {128, 64});
        add(q + "down_proj.weight", block[Linear::Down], {64, 128});
      }
    }
    w.write(dir / "model.safetensors");
    std::string config = kConfig;
    config.replace(config.find("\"llama\""), 7, "\"qwen3_moe\"");
    config.replace(config.rfind('}'), 1, std::string(R"(, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 128, "norm_topk_prob": )") +
                                             (normalize ? "true" : "false") + "}");
    write_text(dir / "config.json", config);
    const LlamaModel moe = load_llama(dir);
    REQUIRE(moe.blocks[0].moe.has_value());
    CHECK(moe.blocks[0].moe->weights.experts.size() == 4);
    CHECK(moe.blocks[0][Linear::Gate].size() == 0);
    const float gap = (forward_logits(moe, tokens) - expected).cwiseAbs().maxCoeff();
    if (normalize) CHECK(gap < 1e-5f);
    else CHECK(gap > 1e-3f);  // each mixture is (p1 + p2) times the MLP
    // it tunes (every expert a linear slot; tests/test_moe_tuning.cpp has the details) and stays near the float model
    LlamaModel q = moe;
    ModelQuantOptions options;
    options.nsamples = 2;
    options.seqlen = 8;
    options.tune.iters = 4;
    options.spec = {4, 32, Asymmetric};
    const auto results = quantize_model(q, random_tokens(16), options);
    REQUIRE(results.size() == static_cast<std::size_t>(c.layers));
    REQUIRE(results[0].size() == 4 + 4 * 3);
    for (const auto& r : results[0]) CHECK(r.has_value());
    const RowMatrix before = forward_logits(moe, tokens), after = forward_logits(q, tokens);
    CHECK((after - before).cwiseAbs().maxCoeff() < 0.2f * before.cwiseAbs().maxCoeff());
    CHECK(after != before);
    fs::remove_all(dir);
  }
}

TEST_CASE("compressed-tensors configs: MX / NV / FP8 per channel and in tiles read as auto-round's, others refused by name") {
  const auto group = [](nlohmann::json weights, nlohmann::json inputs) {
    return nlohmann::json{{"config_groups", {{"group_0", {{"weights", weights}, {"input_activations", inputs}, {"targets", {"Linear"}}}}}}};
  };
  auto qc = group({{"num_bits", 4}, {"group_size", 32}, {"strategy", "group"}, {"type", "float"}}, {{"num_bits", 4}, {"dynamic", true}});
  qc["quant_method"] = "compressed-tensors";
  qc["format"] = "mxfp4-pack-quantized";
  const nlohmann::json mx = detail::auto_round_view(qc);
  CHECK(detail::float_scheme_of(mx, "layer") == float_spec(FloatFormat::MxFp4));  // W4A4, as the preset
  qc["config_groups"]["group_0"]["input_activations"] = nullptr;
  CHECK(detail::float_scheme_of(detail::auto_round_view(qc), "layer") == weight_only(float_spec(FloatFormat::MxFp4)));
  qc["format"] = "pack-quantized";
  CHECK_THROWS_WITH_AS(detail::auto_round_view(qc), doctest::Contains("compressed-tensors format 'pack-quantized' is not supported"), Error);
  qc = group({{"num_bits", 8}, {"strategy", "channel"}, {"type", "float"}}, {{"num_bits", 8}, {"dynamic", false}, {"strategy", "tensor"}});
  qc["quant_method"] = "compressed-tensors";
  qc["format"] = "float-quantized";
  CHECK(detail::float_scheme_of(detail::auto_round_view(qc), "layer") == float_spec(FloatFormat::Fp8));  // FP8_STATIC
  // FP8_BLOCK: 128 x 128 weight tiles, inputs dynamic per 128 features; other tiles and inputs refused
  auto block = qc;
  block["config_groups"]["group_0"]["weights"]["strategy"] = "block";
  block["config_groups"]["group_0"]["weights"]["block_structure"] = {64, 64};
  CHECK_THROWS_WITH_AS(detail::auto_round_view(block), doctest::Contains("block_structure [64,64]"), Error);
  block["config_groups"]["group_0"]["weights"]["block_structure"] = {128, 128};
  CHECK_THROWS_WITH_AS(detail::auto_round_view(block), doctest::Contains("dynamic in groups of 128"), Error);
  block["config_groups"]["group_0"]["input_activations"] = {{"num_bits", 8}, {"dynamic", true}, {"strategy", "group"}, {"group_size", 128}};
  CHECK(detail::float_scheme_of(detail::auto_round_view(block), "layer") == float_spec(FloatFormat::Fp8Block));
  block["config_groups"]["group_0"]["input_activations"] = nullptr;
  CHECK(detail::float_scheme_of(detail::auto_round_view(block), "layer") == weight_only(float_spec(FloatFormat::Fp8Block)));
  // transformers' FineGrainedFP8 config (quant_method fp8), as auto-round's format fp8 writes it
  const nlohmann::json fp8 = {{"quant_method", "fp8"}, {"weight_block_size", {128, 128}}, {"activation_scheme", "dynamic"}};
  CHECK(detail::float_scheme_of(detail::auto_round_view(fp8), "layer") == float_spec(FloatFormat::Fp8Block));
  CHECK_THROWS_WITH_AS(detail::auto_round_view(nlohmann::json{{"quant_method", "fp8"}, {"weight_block_size", {1, 128}}}),
                       doctest::Contains("weight_block_size [1,128]"), Error);
  // auto-round's own FP8_BLOCK config: group_size [128, 128]
  const nlohmann::json ar = {{"quant_method", "auto-round"}, {"data_type", "fp"}, {"bits", 8}, {"group_size", {128, 128}}, {"act_bits", 8}};
  CHECK(detail::float_scheme_of(ar, "layer") == float_spec(FloatFormat::Fp8Block));
  CHECK_THROWS_WITH_AS(detail::float_scheme_of(nlohmann::json{{"quant_method", "auto-round"}, {"data_type", "fp"}, {"bits", 8}, {"group_size", 128}}, "layer"),
                       doctest::Contains("not group_size 128"), Error);
  qc["config_groups"]["group_0"]["input_activations"]["dynamic"] = true;
  CHECK_THROWS_WITH_AS(detail::auto_round_view(qc), doctest::Contains("static per tensor"), Error);
  qc["config_groups"]["group_1"] = qc["config_groups"]["group_0"];
  CHECK_THROWS_WITH_AS(detail::auto_round_view(qc), doctest::Contains("2 config_groups"), Error);
}
}  // namespace test_hf_checkpoint
