// GGUF files with llama-quantize's tensor types (export/gguf_mix.hpp), checked against what
// llama-quantize itself did to the asset model: the fixture holds the type of every tensor and
// the size of the file it wrote for each file type (scripts/make_llama_quantize_fixture.sh).
#include <doctest/doctest.h>

#include <autoround/autoround.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/assets.hpp"

using namespace autoround;
namespace fs = std::filesystem;

TEST_CASE("use_more_bits: llama.cpp's layers with more bits, worked by hand for 30 layers") {
  // first eighth (30/8 = 3: 0..2), last eighth (from 7*30/8 = 26), every third from layer 3 + 2
  std::vector<Index> picked;
  for (Index i = 0; i < 30; ++i)
    if (detail::use_more_bits(i, 30)) picked.push_back(i);
  CHECK(picked == std::vector<Index>{0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29});
}

TEST_CASE("every gguf:TYPE: llama-quantize's block type for each tensor, and its file size to the byte") {
  std::ifstream in(std::string(AUTOROUND_FIXTURES_DIR) + "/llama_quantize_types.json");
  REQUIRE(in);
  const auto fixture = nlohmann::json::parse(in);
  const GgufFile source(test_assets::model());
  const LlamaModel model = load_llama_gguf(test_assets::model());
  const std::vector<BlockResults> none;  // nothing tuned: every tensor quantized from the source
  const ModelQuantOptions options;
  const QuantizedLlama quantized{model, none, options};
  const fs::path path = fs::temp_directory_path() / "autoround_test_gguf_mix.gguf";
  REQUIRE(fixture["types"].size() == 15);  // the 14 llama-quantize file types and gguf:mxfp4
  for (const auto& [name, expected] : fixture["types"].items()) {
    CAPTURE(name);
    const auto choices = export_gguf_model(quantized, source, gguf_scheme(name), path);
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
    CHECK(fs::file_size(path) == expected["bytes"].get<std::uintmax_t>());
  }
  fs::remove(path);
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
        const auto [block, linear, owner, keep] = gguf_tensor_site(tensor);
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
