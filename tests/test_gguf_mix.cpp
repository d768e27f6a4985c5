// GGUF files with llama-quantize's tensor types (export/gguf_mix.hpp), checked against what
// llama-quantize itself did to the asset model and to its first 6 blocks: the fixtures hold the
// type of every tensor and the size of the file it wrote for each file type
// (scripts/make_llama_quantize_fixture.sh).
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/assets.hpp"

namespace test_gguf_mix {  // this file's names: tests/CMakeLists.txt compiles several test files as one unit

using namespace autoround;
namespace fs = std::filesystem;

TEST_CASE("use_more_bits: llama.cpp's layers with more bits, worked by hand for 30 layers") {
  // first eighth (30/8 = 3: 0..2), last eighth (from 7*30/8 = 26), every third from layer 3 + 2
  std::vector<Index> picked;
  for (Index i = 0; i < 30; ++i)
    if (detail::use_more_bits(i, 30)) picked.push_back(i);
  CHECK(picked == std::vector<Index>{0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29});
}

namespace {
/// Our type for every tensor of `model_path` under each gguf:TYPE of the fixture (made by
/// llama-quantize from that model), and the file's size as planned (gguf_file_size); `write`: the
/// file also written (export_gguf_model), its types as written and its size on disk.
void check_llama_quantize_types(const std::string& fixture_name, const std::string& model_path, bool write) {
  std::ifstream in(std::string(AUTOROUND_FIXTURES_DIR) + "/" + fixture_name);
  REQUIRE(in);
  const auto fixture = nlohmann::json::parse(in);
  const GgufFile source(model_path);
  const LlamaModel model = load_llama_gguf(model_path);
  const std::vector<BlockResults> none;  // nothing tuned: every tensor quantized from the source
  const ModelQuantOptions options;
  const QuantizedLlama quantized{model, none, options};
  const fs::path path = fs::temp_directory_path() / "autoround_test_gguf_mix.gguf";
  REQUIRE(fixture["types"].size() == 15);  // the 14 llama-quantize file types and gguf:mxfp4
  for (const auto& [name, expected] : fixture["types"].items()) {
    CAPTURE(fixture_name);
    CAPTURE(name);
    std::vector<GgufTensorChoice> choices;
    if (write) {
      choices = export_gguf_model(quantized, source, gguf_scheme(name), path);
      CHECK(fs::file_size(path) == expected["bytes"].get<std::uintmax_t>());
    } else {
      for (const GgufTensor& t : source.tensors())
        choices.push_back({t.name, gguf_output_type(source, t, gguf_scheme(name), model.config, gguf_experts(source))});
    }
    REQUIRE(choices.size() == expected["tensors"].size());
    int differing = 0;
    for (const GgufTensorChoice& c : choices) {
      CAPTURE(c.name);
      REQUIRE(expected["tensors"].contains(c.name));
      const std::string theirs = expected["tensors"][c.name];
      differing += theirs != ggml::traits(c.type).name;
      if (theirs != ggml::traits(c.type).name) MESSAGE(name << " " << c.name << ": ours " << std::string(ggml::traits(c.type).name) << ", llama-quantize " << theirs);
    }
    CHECK(differing == 0);
    CHECK(gguf_file_size(source, gguf_scheme(name), model.config).total() == expected["bytes"].get<std::uint64_t>());
  }
  fs::remove(path);
}
}  // namespace

TEST_CASE("every gguf:TYPE: llama-quantize's block type for each tensor, and its file size to the byte") {
  // the whole model's 30 blocks as planned; the files written from the model cut to 6 blocks
  // (writing 15 files of the whole model took most of this test's time)
  check_llama_quantize_types("llama_quantize_types.json", test_assets::model(), false);
  check_llama_quantize_types("llama_quantize_types_short.json", test_assets::short_model(), true);
}

TEST_CASE("a size budget (gguf_budget.hpp): at llama-quantize's Q2_K size, the chosen types fit, are written, and score better") {
  const GgufFile source(test_assets::model());
  const GgufModelSource model_source(test_assets::model());
  const LlamaConfig& config = model_source.config();
  const std::vector<std::int32_t> calibration = read_token_file(test_assets::calibration_tokens());
  std::vector<TokenSequence> samples;
  for (int s = 0; s < 4; ++s) samples.emplace_back(calibration.begin() + s * 256, calibration.begin() + (s + 1) * 256);
  const ModelFisher fisher = measure_fisher(model_source, samples, 2);
  const GgufScheme q2_k = gguf_scheme("q2_k");
  const std::uint64_t budget = parse_gguf_budget("q2_k", source, config);
  CHECK(budget == gguf_file_size(source, q2_k, config).total());
  // the source is Q4_1: re-encoding in Q4_1 is lossless, and the estimate finds it free (checked
  // below); llama-quantize's mixes never pick it, so the comparison leaves it out
  std::vector<ggml::Type> allowed = parse_gguf_budget_types("q2_k,q3_k,q4_0,q4_k,q5_0,q5_k,q5_1,q6_k,q8_0");
  CHECK(allowed.size() == 9);
  const GgufBudgetPlan plan = plan_gguf_budget(source, model_source, q2_k, fisher, budget, allowed);
  CHECK(plan.file_bytes <= budget);
  CHECK(plan.file_bytes >= budget - budget / 1000);  // the budget is spent (the smallest step is ~10 KB)
  REQUIRE(plan.tensors.size() == static_cast<std::size_t>(7 * config.layers + 1));  // the linears and the tied embedding
  // the estimate at llama-quantize's own types: the choice is a cheaper point of the same budget
  double rule = 0;
  for (const GgufTensorSensitivity& t : plan.tensors) {
    const ggml::Type type = gguf_output_type(source, *source.find_tensor(t.name), q2_k, config, {});
    const auto k = std::find(t.types.begin(), t.types.end(), type);
    REQUIRE(k != t.types.end());
    rule += t.loss_rise[static_cast<std::size_t>(k - t.types.begin())];
    // 8.5 bits cost less than 4.5 (between neighbours the order may turn: from the source's
    // Q4_1 grid Q5_0 can land closer than Q5_1)
    const auto q4_0 = std::find(t.types.begin(), t.types.end(), ggml::Type::Q4_0);
    const auto q8_0 = std::find(t.types.begin(), t.types.end(), ggml::Type::Q8_0);
    REQUIRE((q4_0 != t.types.end() && q8_0 != t.types.end()));
    CHECK_MESSAGE(t.loss_rise[static_cast<std::size_t>(q8_0 - t.types.begin())] < t.loss_rise[static_cast<std::size_t>(q4_0 - t.types.begin())], t.name);
  }
  CHECK(plan.loss_rise < rule);
  {  // Q4_1, the source's own type, re-encodes block 0's q exactly: an estimate of 0
    const LlamaBlock b0 = model_source.block(0);
    const RowMatrix& w = b0[Linear::Query];
    CHECK(fisher.of(0, Linear::Query).loss_rise(w, detail::ggml_round_trip(ggml::Type::Q4_1, w)) == 0.0);
    CHECK(fisher.of(0, Linear::Query).loss_rise(w, detail::ggml_round_trip(ggml::Type::Q4_0, w)) > 0.0);
  }
  MESSAGE("estimated loss rise: chosen " << plan.loss_rise << ", llama-quantize's q2_k types " << rule);
  // written (round to nearest, as llama-quantize would with these types): the size and types as
  // planned, and a lower perplexity than the q2_k mix on text the Fisher never saw
  const LlamaModel model = load_llama_gguf(test_assets::model());
  const std::vector<BlockResults> none;
  const ModelQuantOptions options;
  const QuantizedLlama quantized{model, none, options};
  GgufScheme budgeted = q2_k;
  budgeted.tensor_types = plan.types;
  const fs::path chosen_path = fs::temp_directory_path() / "autoround_test_gguf_budget.gguf";
  const fs::path rule_path = fs::temp_directory_path() / "autoround_test_gguf_budget_rule.gguf";
  const auto choices = export_gguf_model(quantized, source, budgeted, chosen_path);
  export_gguf_model(quantized, source, q2_k, rule_path);
  CHECK(fs::file_size(chosen_path) == plan.file_bytes);
  CHECK(fs::file_size(rule_path) == budget);
  for (const GgufTensorChoice& c : choices)
    if (plan.types.count(c.name)) CHECK(c.type == plan.types.at(c.name));
  const std::vector<std::int32_t> eval = read_token_file(test_assets::evaluation_tokens());
  const double chosen_ppl = perplexity(load_llama_gguf(chosen_path.string()), eval, 512, 4).perplexity;
  const double rule_ppl = perplexity(load_llama_gguf(rule_path.string()), eval, 512, 4).perplexity;
  MESSAGE("kjv-eval, 4 windows (8: 17.92 against 22.03, 2026-12-06): chosen types " << chosen_ppl << ", llama-quantize's q2_k " << rule_ppl);
  CHECK(chosen_ppl < rule_ppl);
  fs::remove(chosen_path);
  fs::remove(rule_path);
  // a budget below every tensor's smallest type is refused with both sizes
  CHECK_THROWS_WITH_AS(plan_gguf_budget(source, model_source, q2_k, fisher, budget / 4), doctest::Contains("the file takes at least"), Error);
  CHECK_THROWS_WITH_AS(parse_gguf_budget("12 parsecs", source, config), doctest::Contains("unknown unit ' parsecs'"), Error);
  CHECK_THROWS_WITH_AS(parse_gguf_budget("q9_k", source, config), doctest::Contains("unknown GGUF type"), Error);
  CHECK_THROWS_WITH_AS(parse_gguf_budget_types("q4_k,iq2_xs"), doctest::Contains("'IQ2_XS' is not one of"), Error);
  CHECK(parse_gguf_budget("84MiB", source, config) == 84ull * 1048576);
}

TEST_CASE("llama-quantize's types where every row holds k-quant blocks: 32 layers (8B-like) and 80 (70B class)") {
  // synthetic GGUF files with hidden 256 quantized by llama-quantize itself
  // (scripts/make_llama_quantize_synthetic.py): the rules the asset's 576-wide rows hide
  std::ifstream in(std::string(AUTOROUND_FIXTURES_DIR) + "/llama_quantize_types_synthetic.json");
  REQUIRE(in);
  const auto fixture = nlohmann::json::parse(in);
  REQUIRE(fixture["models"].size() == 2);
  for (const auto& [model, entry] : fixture["models"].items()) {
    const auto& c = entry["config"];
    LlamaConfig config;
    config.layers = c["layers"];
    config.hidden = c["hidden"];
    config.intermediate = c["intermediate"];
    config.heads = c["heads"];
    config.kv_heads = c["kv_heads"];
    config.head_dim = config.hidden / config.heads;
    config.tied_embeddings = false;
    for (const auto& [name, tensors] : entry["types"].items()) {
      CAPTURE(model);
      CAPTURE(name);
      REQUIRE(tensors.size() == static_cast<std::size_t>(7 * config.layers + 2));
      int differing = 0;
      for (const auto& [tensor, theirs] : tensors.items()) {
        const GgufTensorSite site = gguf_tensor_site(tensor);
        const auto& [block, linear] = std::pair{site.block, site.linear};
        const Index cols = linear ? linear_shape(config, *linear).second : config.hidden;  // token_embd, output: hidden
        const ggml::Type ours = gguf_tensor_type(gguf_scheme(name), cols, block, linear, config, tensor == "output.weight");
        if (theirs.get<std::string>() != ggml::traits(ours).name) {
          ++differing;
          MESSAGE(tensor << ": ours " << std::string(ggml::traits(ours).name) << ", llama-quantize " << theirs.get<std::string>());
        }
      }
      CHECK(differing == 0);
    }
  }
}
}  // namespace test_gguf_mix
