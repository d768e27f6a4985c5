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
  REQUIRE(fixture["types"].size() == 14);
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
